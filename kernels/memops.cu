// memops: device copy and fill, the simplest kernels dr has. They measure the
// device's copy bandwidth (`dr bench bandwidth`) and prove a build's kernels
// load and run (the GPU smoke test).
//
// Math:   copy_bytes: dst[i] = src[i] for i < n          (bytes)
//         fill_u32:   dst[i] = value  for i < n          (32-bit words)
// Layout: flat buffers; dst and src must not overlap.
// Launch: 1-D grid-stride loops, 256 threads a block, grid = min(work, 8 blocks
//         per SM x SMs) chosen by the launcher (src/cuda/memops.rs). The bulk
//         moves in 16-byte vectors (LDG.128/STG.128) when both pointers are
//         16-byte aligned; the head/tail and unaligned buffers go byte by byte
//         (word by word for fill), so any length and offset is correct.
// Tolerance vs the CPU twin (src/cuda/memops.rs, cpu module): exact.
#include <stdint.h>

#define MEMOPS_THREADS 256

extern "C" __global__ void __launch_bounds__(MEMOPS_THREADS)
copy_bytes(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, uint64_t n) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    const uint64_t tid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    uint64_t done = 0;
    if ((((uintptr_t)src | (uintptr_t)dst) & 15) == 0) {
        const uint64_t nvec = n / 16;
        const uint4* s = reinterpret_cast<const uint4*>(src);
        uint4* d = reinterpret_cast<uint4*>(dst);
        // Two independent 16-byte loads in flight per thread per iteration.
        uint64_t i = tid;
        for (; i + stride < nvec; i += 2 * stride) {
            uint4 a = __ldcs(s + i);
            uint4 b = __ldcs(s + i + stride);
            __stcs(d + i, a);
            __stcs(d + i + stride, b);
        }
        if (i < nvec) __stcs(d + i, __ldcs(s + i));
        done = nvec * 16;
    }
    for (uint64_t i = done + tid; i < n; i += stride) dst[i] = src[i];
}

extern "C" __global__ void __launch_bounds__(MEMOPS_THREADS)
fill_u32(uint32_t* __restrict__ dst, uint32_t value, uint64_t n) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    const uint64_t tid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    uint64_t done = 0;
    if (((uintptr_t)dst & 15) == 0) {
        const uint64_t nvec = n / 4;
        const uint4 v = make_uint4(value, value, value, value);
        uint4* d = reinterpret_cast<uint4*>(dst);
        for (uint64_t i = tid; i < nvec; i += stride) __stcs(d + i, v);
        done = nvec * 4;
    }
    for (uint64_t i = done + tid; i < n; i += stride) dst[i] = value;
}
