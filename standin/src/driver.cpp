// The CUDA driver API of the stand-in (libcuda.so.1): initialization, the
// device and its attributes, contexts. Modules and launches are in
// modules.cpp, memory in memory_api.cpp, streams, events and graphs in
// streams.cpp.
//
// The device is a CPU pretending to be one GPU (DR_EMU_DEVICES for more) of
// compute capability 9.0 (DR_EMU_CC), named "dr CPU stand-in ..." so that no
// one mistakes it for hardware.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>

#include "driver.h"

namespace emu {

namespace {

constexpr const char* kName = "dr CPU stand-in (emulates sm_%d%d; not a GPU)";

int device_count() {
    static const int n = [] {
        const char* v = getenv("DR_EMU_DEVICES");
        return v && *v ? std::max(0, atoi(v)) : 1;
    }();
    return n;
}

bool g_initialized = false;
std::vector<Context*> g_primary;  // per device
thread_local std::vector<Context*> t_ctx_stack;
thread_local Context* t_current = nullptr;
thread_local Stream* t_per_thread = nullptr;

Context* primary(int dev) {
    if (g_primary.empty())
        for (int i = 0; i < device_count(); i++) {
            auto* c = new Context;
            c->device = i;
            c->legacy.ctx = c;
            c->legacy.id = 0;
            g_primary.push_back(c);
        }
    return g_primary[dev];
}

const char* error_string(CUresult e) {
    switch (e) {
    case CUDA_SUCCESS: return "no error";
    case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
    case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
    case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
    case CUDA_ERROR_NO_DEVICE: return "no CUDA-capable device is detected";
    case CUDA_ERROR_INVALID_DEVICE: return "invalid device ordinal";
    case CUDA_ERROR_INVALID_IMAGE: return "device kernel image is invalid";
    case CUDA_ERROR_INVALID_CONTEXT: return "invalid device context";
    case CUDA_ERROR_NO_BINARY_FOR_GPU: return "no kernel image is available for execution on the device";
    case CUDA_ERROR_INVALID_HANDLE: return "invalid resource handle";
    case CUDA_ERROR_ILLEGAL_STATE: return "the operation cannot be performed in the present state";
    case CUDA_ERROR_NOT_FOUND: return "named symbol not found";
    case CUDA_ERROR_NOT_READY: return "device not ready";
    case CUDA_ERROR_ILLEGAL_ADDRESS: return "an illegal memory access was encountered";
    case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "too many resources requested for launch";
    case CUDA_ERROR_ASSERT: return "device-side assert triggered";
    case CUDA_ERROR_ILLEGAL_INSTRUCTION: return "an illegal instruction was encountered";
    case CUDA_ERROR_MISALIGNED_ADDRESS: return "misaligned address";
    case CUDA_ERROR_INVALID_ADDRESS_SPACE: return "operation not supported on global/shared address space";
    case CUDA_ERROR_LAUNCH_FAILED: return "unspecified launch failure";
    case CUDA_ERROR_NOT_PERMITTED: return "operation not permitted";
    case CUDA_ERROR_NOT_SUPPORTED: return "operation not supported";
    case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: return "operation not permitted when stream is capturing";
    case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: return "operation failed due to a previous error during capture";
    case CUDA_ERROR_STREAM_CAPTURE_UNMATCHED: return "capture was not initiated in this stream";
    case CUDA_ERROR_STREAM_CAPTURE_UNJOINED: return "capturing stream has unjoined work";
    case CUDA_ERROR_STREAM_CAPTURE_ISOLATION: return "dependency created on uncaptured work in another stream";
    case CUDA_ERROR_STREAM_CAPTURE_IMPLICIT: return "operation would make the legacy stream depend on a capturing blocking stream";
    case CUDA_ERROR_CAPTURED_EVENT: return "operation not permitted on an event last recorded in a capturing stream";
    case CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return nullptr;
    }
}

int attribute(int a, int dev) {
    const Config& c = config();
    (void)dev;
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return (int)kStaticSharedLimit;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return 1000000;  // kHz; nothing here runs at any clock
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return c.sm_count;
    case CU_DEVICE_ATTRIBUTE_INTEGRATED: return 0;
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 1;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: return 0;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: return 0xee;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: return dev;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: return 0xffff;  // no such PCI domain: nothing in sysfs matches
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 1000000;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 64;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 4 << 20;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 2;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return c.cc_major;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return c.cc_minor;
    case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return 228 << 10;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: return 0;
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: return 0;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return (int)kOptinSharedLimit;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return 32;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return c.memory_pools ? 1 : 0;
    default: return -1;
    }
}

}  // namespace

Context* current_context() { return t_current; }

Stream* resolve_stream(CUstream h, CUresult* err) {
    Context* c = t_current;
    if (!c) {
        *err = CUDA_ERROR_INVALID_CONTEXT;
        return nullptr;
    }
    if (h == nullptr || h == EMU_STREAM_LEGACY) return &c->legacy;
    if (h == EMU_STREAM_PER_THREAD) {
        // Per-thread default stream: a blocking stream of this thread's own.
        if (!t_per_thread) {
            t_per_thread = new Stream;
            t_per_thread->ctx = c;
            t_per_thread->id = c->next_stream_id++;
            c->streams.push_back(t_per_thread);
        }
        return t_per_thread;
    }
    auto* s = reinterpret_cast<Stream*>(h);
    if (std::find(c->streams.begin(), c->streams.end(), s) == c->streams.end()) {
        *err = CUDA_ERROR_INVALID_HANDLE;
        return nullptr;
    }
    return s;
}

}  // namespace emu

using namespace emu;

#define NEED_DEVICE(d) \
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED; \
    if ((d) < 0 || (d) >= device_count()) return CUDA_ERROR_INVALID_DEVICE

// ---- initialization and devices ----------------------------------------------------
API cuInit(unsigned flags) {
    LOCK;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    g_initialized = true;
    return CUDA_SUCCESS;
}

API cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = 13000;
    return CUDA_SUCCESS;
}

API cuDeviceGetCount(int* n) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *n = device_count();
    return CUDA_SUCCESS;
}

API cuDeviceGet(CUdevice* d, int ordinal) {
    NEED_DEVICE(ordinal);
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    *d = ordinal;
    return CUDA_SUCCESS;
}

API cuDeviceGetName(char* name, int len, CUdevice d) {
    NEED_DEVICE(d);
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(name, (size_t)len, kName, config().cc_major, config().cc_minor);
    return CUDA_SUCCESS;
}

API cuDeviceTotalMem_v2(size_t* bytes, CUdevice d) {
    NEED_DEVICE(d);
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    *bytes = config().total_mem;
    return CUDA_SUCCESS;
}

API cuDeviceGetAttribute(int* v, int a, CUdevice d) {
    NEED_DEVICE(d);
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    const int x = attribute(a, d);
    if (x < 0) {
        note("cuDeviceGetAttribute(%d): this attribute is not emulated", a);
        return CUDA_ERROR_INVALID_VALUE;
    }
    *v = x;
    return CUDA_SUCCESS;
}

API cuGetErrorString(CUresult e, const char** s) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = error_string(e);
    return *s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

API cuGetErrorName(CUresult e, const char** s) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = error_string(e);
    return *s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// ---- contexts -------------------------------------------------------------------------
API cuDevicePrimaryCtxRetain(CUcontext* out, CUdevice d) {
    LOCK;
    NEED_DEVICE(d);
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    Context* c = primary(d);
    c->refs++;
    *out = reinterpret_cast<CUcontext>(c);
    return CUDA_SUCCESS;
}

API cuDevicePrimaryCtxRelease_v2(CUdevice d) {
    LOCK;
    NEED_DEVICE(d);
    Context* c = primary(d);
    if (c->refs == 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (--c->refs == 0) {
        // The primary context ends: its work is done and a fault is forgotten.
        drain_context(c);
        c->sticky = 0;
    }
    return CUDA_SUCCESS;
}

API cuCtxSetCurrent(CUcontext c) {
    t_current = reinterpret_cast<Context*>(c);
    return CUDA_SUCCESS;
}

API cuCtxGetCurrent(CUcontext* c) {
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    *c = reinterpret_cast<CUcontext>(t_current);
    return CUDA_SUCCESS;
}

API cuCtxPushCurrent_v2(CUcontext c) {
    t_ctx_stack.push_back(t_current);
    t_current = reinterpret_cast<Context*>(c);
    return CUDA_SUCCESS;
}

API cuCtxPopCurrent_v2(CUcontext* c) {
    if (c) *c = reinterpret_cast<CUcontext>(t_current);
    if (t_ctx_stack.empty()) {
        t_current = nullptr;
        return CUDA_SUCCESS;
    }
    t_current = t_ctx_stack.back();
    t_ctx_stack.pop_back();
    return CUDA_SUCCESS;
}

API cuCtxGetDevice(CUdevice* d) {
    NEED_CONTEXT;
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    *d = ctx->device;
    return CUDA_SUCCESS;
}

API cuCtxSynchronize() {
    LOCK;
    NEED_CONTEXT;
    // Unsafe in a capture of this thread (or a global-mode capture of any
    // thread); another thread's thread-local capture only holds recorded
    // work, which a synchronize does not wait for.
    if (Capture* cap = capture_forbidding_unsafe_calls()) {
        note("cuCtxSynchronize while a stream of the context is being captured into a graph");
        invalidate(cap);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    drain_context(ctx);
    return ctx->sticky;
}
