// layout: strided copies of bf16 tensors, the data movement the GPU
// executor cannot leave as a view: a transpose or window partition
// (Swin's [B, H/w, w, W/w, w, C] -> [B, H/w, W/w, w, w, C]) materialised
// for a matrix product, a slice or roll (Swin's cyclic shift as two slices
// and a concat), a token concat (ViT's class token) and anything else that
// moves elements without computing. Most transposes in a transformer are
// views the next kernel reads through its strides (attention's q, k, v);
// these copies are what remains.
//
// Math:   y[sum_a c_a dst_a] = x[sum_a c_a src_a] for every coordinate
//         c of `shape` (exact: bits move unchanged).
// Layout: x and y bf16 with per-axis element strides, six axes (the
//         launcher merges axes that are contiguous in both, drops axes of
//         one and pads with leading ones: teacher/gpu/layout.rs); fewer
//         than 2^32 items.
// Variants: one entry; `vec` 8 when the innermost axis is contiguous in
//         both, a multiple of 8 long, every other stride a multiple of 8 and
//         both bases 16-byte aligned: a thread moves 16 bytes (the
//         launcher has divided that axis by 8 and set its strides to 8),
//         otherwise one element.
// Launch: one thread an item, LAYOUT_THREADS a block, grid ceil(n /
//         LAYOUT_THREADS); items in the destination's row-major order.
// Tolerance vs the CPU twin (teacher/gpu/layout.rs, cpu module): exact.
#include <stdint.h>

#define LAYOUT_THREADS 256

struct CopyParams {
    uint64_t n;
    uint32_t rank, vec;
    uint32_t shape[6];
    uint32_t src[6];
    uint32_t dst[6];
};
static_assert(sizeof(CopyParams) == 88, "CopyParams layout is shared with kernels.rs");

extern "C" __global__ void __launch_bounds__(LAYOUT_THREADS)
copy_strided_bf16(const uint16_t* __restrict__ x, uint16_t* __restrict__ y, CopyParams p) {
    const uint64_t i = (uint64_t)blockIdx.x * LAYOUT_THREADS + threadIdx.x;
    if (i >= p.n) return;
    // Six axes always (the launcher pads with leading axes of one), so the
    // loop unrolls and the parameters stay in registers.
    uint32_t rest = (uint32_t)i;
    uint64_t from = 0, to = 0;
#pragma unroll
    for (int a = 5; a >= 0; a--) {
        const uint32_t c = rest % p.shape[a];
        rest /= p.shape[a];
        from += (uint64_t)c * p.src[a];
        to += (uint64_t)c * p.dst[a];
    }
    if (p.vec == 8)
        *reinterpret_cast<uint4*>(y + to) = *reinterpret_cast<const uint4*>(x + from);
    else
        y[to] = x[from];
}
