// Memory of the stand-in's driver API: device and pinned allocations,
// copies and memsets (the allocations themselves are in memory.cpp).
#include <algorithm>

#include "driver.h"

using namespace emu;

namespace {
int g_alloc_serial = 0;
}  // namespace

// ---- memory -------------------------------------------------------------------------------
static CUresult check_device_range(uint64_t p, uint64_t n, const char* call) {
    Allocation* a = mem_find(p);
    if (!a || a->kind != MemKind::Device || a->state.load() == MEM_FREED || p + n > a->base + a->size) {
        note("%s: %s", call, mem_problem(p, n, false).c_str());
        return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

static std::string origin(const char* call, Stream* s) {
    return s ? strprintf("%s #%d on stream %d", call, ++g_alloc_serial, s->id) : strprintf("%s #%d", call, ++g_alloc_serial);
}

API cuMemAllocAsync(CUdeviceptr* out, size_t bytes, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    if (!config().memory_pools) return CUDA_ERROR_NOT_SUPPORTED;
    if (s->capture) {
        note("cuMemAllocAsync inside a graph capture: allocation nodes are not emulated by the stand-in");
        invalidate(s->capture);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    Allocation* a = mem_reserve(MemKind::Device, bytes, origin("cuMemAllocAsync", s));
    if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
    Op op(Op::Alloc);
    op.alloc = a;
    op.what = a->origin;
    const CUresult rc = enqueue(s, std::move(op));
    if (rc == CUDA_SUCCESS) *out = a->base;
    return rc;
}

API cuMemFreeAsync(CUdeviceptr p, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    Allocation* a = mem_find(p);
    if (!a || a->base != p || a->kind != MemKind::Device || a->state.load() == MEM_FREED) {
        note("cuMemFreeAsync(0x%llx): not the start of a device allocation that is not freed", (unsigned long long)p);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (s->capture) {
        note("cuMemFreeAsync inside a graph capture: free nodes are not emulated by the stand-in");
        invalidate(s->capture);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    Op op(Op::Free);
    op.alloc = a;
    op.what = strprintf("cuMemFreeAsync on stream %d", s->id);
    return enqueue(s, std::move(op));
}

API cuMemAlloc_v2(CUdeviceptr* out, size_t bytes) {
    LOCK;
    NEED_CONTEXT;
    if (!out || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (Capture* cap = capture_forbidding_unsafe_calls()) {
        invalidate(cap);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    Allocation* a = mem_reserve(MemKind::Device, bytes, origin("cuMemAlloc", nullptr));
    if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
    mem_make_live(a);
    *out = a->base;
    return ctx->sticky;
}

API cuMemFree_v2(CUdeviceptr p) {
    LOCK;
    NEED_CONTEXT;
    if (Capture* cap = capture_forbidding_unsafe_calls()) {
        invalidate(cap);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    Allocation* a = mem_find(p);
    if (!a || a->base != p || a->kind != MemKind::Device || a->state.load() == MEM_FREED) return CUDA_ERROR_INVALID_VALUE;
    drain_context(ctx);  // cuMemFree waits for the device
    mem_free(a);
    return ctx->sticky;
}

API cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    NEED_CONTEXT;
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = config().total_mem;
    *free_bytes = config().total_mem - std::min<uint64_t>(config().total_mem, device_bytes_reserved());
    return CUDA_SUCCESS;
}

API cuMemHostAlloc(void** out, size_t bytes, unsigned flags) {
    LOCK;
    NEED_CONTEXT;
    if (!out || flags > 7) return CUDA_ERROR_INVALID_VALUE;
    Allocation* a = mem_reserve(MemKind::Pinned, bytes, origin("cuMemHostAlloc", nullptr));
    if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
    mem_make_live(a);
    *out = reinterpret_cast<void*>(a->base);
    return CUDA_SUCCESS;
}

API cuMemAllocHost_v2(void** out, size_t bytes) { return cuMemHostAlloc(out, bytes, 0); }

API cuMemFreeHost(void* p) {
    LOCK;
    NEED_CONTEXT;
    Allocation* a = mem_find(reinterpret_cast<uint64_t>(p));
    if (!a || a->kind != MemKind::Pinned || a->base != reinterpret_cast<uint64_t>(p) || a->state.load() == MEM_FREED)
        return CUDA_ERROR_INVALID_VALUE;
    drain_context(ctx);  // copies still queued on it run first
    mem_free(a);
    return CUDA_SUCCESS;
}

API cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (n == 0) return CUDA_SUCCESS;
    if (!src) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult rc = check_device_range(dst, n, "cuMemcpyHtoDAsync")) return rc;
    Op op(Op::CopyHtoD);
    op.dst = dst;
    op.src = reinterpret_cast<uint64_t>(src);
    op.bytes = n;
    op.what = strprintf("cuMemcpyHtoDAsync of %zu bytes on stream %d", n, s->id);
    // Pageable memory: the driver takes the bytes now, the caller may reuse it at once.
    if (!is_pinned(src) && !s->capture) op.staged.assign(static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + n);
    return enqueue(s, std::move(op));
}

API cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (n == 0) return CUDA_SUCCESS;
    if (!dst) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult rc = check_device_range(src, n, "cuMemcpyDtoHAsync")) return rc;
    Op op(Op::CopyDtoH);
    op.dst = reinterpret_cast<uint64_t>(dst);
    op.src = src;
    op.bytes = n;
    op.what = strprintf("cuMemcpyDtoHAsync of %zu bytes on stream %d", n, s->id);
    const bool pageable = !is_pinned(dst);
    const CUresult rc = enqueue(s, std::move(op));
    // Pageable memory: the call returns once the bytes are there.
    if (rc == CUDA_SUCCESS && pageable) drain(s);
    return rc ? rc : (CUresult)s->ctx->sticky;
}

API cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (n == 0) return CUDA_SUCCESS;
    if (CUresult rc = check_device_range(src, n, "cuMemcpyDtoDAsync")) return rc;
    if (CUresult rc = check_device_range(dst, n, "cuMemcpyDtoDAsync")) return rc;
    Op op(Op::CopyDtoD);
    op.dst = dst;
    op.src = src;
    op.bytes = n;
    op.what = strprintf("cuMemcpyDtoDAsync of %zu bytes on stream %d", n, s->id);
    return enqueue(s, std::move(op));
}

static CUresult memset_async(CUdeviceptr dst, uint32_t v, size_t n, uint32_t elem, CUstream h, const char* call) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (n == 0) return CUDA_SUCCESS;
    if (dst % elem) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult rc = check_device_range(dst, n * elem, call)) return rc;
    Op op(Op::Memset);
    op.dst = dst;
    op.bytes = n;
    op.elem = elem;
    op.value = v;
    op.what = strprintf("%s of %zu x %u bytes on stream %d", call, n, elem, s->id);
    return enqueue(s, std::move(op));
}

API cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream h) {
    return memset_async(dst, v, n, 1, h, "cuMemsetD8Async");
}
API cuMemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, CUstream h) {
    return memset_async(dst, v, n, 2, h, "cuMemsetD16Async");
}
API cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream h) {
    return memset_async(dst, v, n, 4, h, "cuMemsetD32Async");
}

// Synchronous copies: on the legacy stream, returning when done; unsafe in a capture.
static CUresult sync_call(CUresult queued) {
    if (queued) return queued;
    Context* c = current_context();
    drain(&c->legacy);
    return c->sticky;
}
#define UNSAFE_IN_CAPTURE                                                   \
    if (Capture* cap = capture_forbidding_unsafe_calls()) {                 \
        invalidate(cap);                                                    \
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;                       \
    }
API cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    LOCK;
    UNSAFE_IN_CAPTURE;
    return sync_call(cuMemcpyHtoDAsync_v2(dst, src, n, nullptr));
}
API cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    LOCK;
    UNSAFE_IN_CAPTURE;
    return sync_call(cuMemcpyDtoHAsync_v2(dst, src, n, nullptr));
}
API cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    LOCK;
    UNSAFE_IN_CAPTURE;
    return sync_call(cuMemcpyDtoDAsync_v2(dst, src, n, nullptr));
}
API cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    LOCK;
    UNSAFE_IN_CAPTURE;
    return sync_call(cuMemsetD8Async(dst, v, n, nullptr));
}
