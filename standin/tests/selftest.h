// The self-test's harness (tests/selftest.cpp runs the cases): driver calls,
// launches of the test kernels (tests/kernels/*.cu, one module per file),
// and the checks a case makes. A case body returns false through CHECK / CU
// with the reason in g_why.
#pragma once
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "emu/cuda_api.h"

extern "C" {
CUresult cuInit(unsigned);
CUresult cuDeviceGet(CUdevice*, int);
CUresult cuDevicePrimaryCtxRetain(CUcontext*, CUdevice);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuCtxSynchronize();
CUresult cuModuleLoadData(CUmodule*, const void*);
CUresult cuModuleGetFunction(CUfunction*, CUmodule, const char*);
CUresult cuFuncSetAttribute(CUfunction, int, int);
CUresult cuLaunchKernel(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                        void**, void**);
CUresult cuMemAlloc_v2(CUdeviceptr*, size_t);
CUresult cuMemAllocAsync(CUdeviceptr*, size_t, CUstream);
CUresult cuMemcpyHtoD_v2(CUdeviceptr, const void*, size_t);
CUresult cuMemcpyDtoH_v2(void*, CUdeviceptr, size_t);
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr, const void*, size_t, CUstream);
CUresult cuMemcpyDtoHAsync_v2(void*, CUdeviceptr, size_t, CUstream);
CUresult cuMemsetD8Async(CUdeviceptr, unsigned char, size_t, CUstream);
CUresult cuMemHostAlloc(void**, size_t, unsigned);
CUresult cuStreamCreate(CUstream*, unsigned);
CUresult cuStreamSynchronize(CUstream);
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned);
CUresult cuEventCreate(CUevent*, unsigned);
CUresult cuEventRecord(CUevent, CUstream);
CUresult cuStreamBeginCapture_v2(CUstream, int);
CUresult cuStreamEndCapture(CUstream, CUgraph*);
CUresult cuGraphInstantiateWithFlags(CUgraphExec*, CUgraph, unsigned long long);
CUresult cuGraphLaunch(CUgraphExec, CUstream);
CUresult cuTensorMapEncodeTiled(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                                const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
}

namespace selftest {

// ---- the harness --------------------------------------------------------------
inline std::string g_why;

inline bool fail(const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_why = buf;
    return false;
}

#define CHECK(cond, ...) \
    do {                 \
        if (!(cond)) return fail(__VA_ARGS__); \
    } while (0)
#define CU(call)                                                                        \
    do {                                                                                \
        const CUresult rc_ = (call);                                                    \
        if (rc_ != CUDA_SUCCESS) return fail("%s returned %d (line %d)", #call, rc_, __LINE__); \
    } while (0)

inline CUmodule g_modules[3];

inline bool setup() {
    CU(cuInit(0));
    CUdevice d;
    CU(cuDeviceGet(&d, 0));
    CUcontext c;
    CU(cuDevicePrimaryCtxRetain(&c, d));
    CU(cuCtxSetCurrent(c));
    CU(cuModuleLoadData(&g_modules[0], "DRSTANDIN:planted"));
    CU(cuModuleLoadData(&g_modules[1], "DRSTANDIN:hopper"));
    CU(cuModuleLoadData(&g_modules[2], "DRSTANDIN:gemm_ws"));
    return true;
}

inline CUfunction fn(const char* name) {
    CUfunction f = nullptr;
    if (cuModuleGetFunction(&f, g_modules[0], name) != CUDA_SUCCESS &&
        cuModuleGetFunction(&f, g_modules[1], name) != CUDA_SUCCESS &&
        cuModuleGetFunction(&f, g_modules[2], name) != CUDA_SUCCESS) {
        fprintf(stderr, "no kernel %s\n", name);
        exit(3);
    }
    return f;
}

template <class... A>
CUresult launch(const char* name, unsigned grid, unsigned block, unsigned smem, CUstream s, A... args) {
    void* p[] = {&args..., nullptr};
    return cuLaunchKernel(fn(name), grid, 1, 1, block, 1, 1, smem, s, p, nullptr);
}

inline CUdeviceptr upload(const void* host, size_t n) {
    CUdeviceptr d = 0;
    if (cuMemAlloc_v2(&d, n) || cuMemcpyHtoD_v2(d, host, n)) {
        fprintf(stderr, "upload failed\n");
        exit(3);
    }
    return d;
}

template <class T>
std::vector<T> download(CUdeviceptr d, size_t count) {
    std::vector<T> v(count);
    if (cuMemcpyDtoH_v2(v.data(), d, count * sizeof(T))) fprintf(stderr, "download failed\n");
    return v;
}

struct Case {
    const char* name;
    std::vector<const char*> env;  // "NAME=value"
    std::function<bool()> body;
    const char* report = nullptr;  // a phrase the stand-in's stderr must contain
};

// The Hopper cases (tests/selftest_hopper.cpp).
std::vector<Case> hopper_cases();

}  // namespace selftest
