// pool: NHWC bf16 pooling for the GPU teacher: windowed max / average
// (ONNX MaxPool, AveragePool; the stem's 3x3/2 max pool) and global average
// pooling (the head of every ResNet-style teacher).
//
// Math:   max: the largest bf16 in the window, padding ignored (exact).
//         average: the window's values summed in fp32 in (kh, kw) order,
//         divided by the number of in-image taps, or with count_include_pad
//         by the window clipped to the padded image (PyTorch's rule, as the
//         CPU executor), rounded to bf16 (nearest even).
//         global average: per (image, channel) the H*W values summed in fp32
//         in pixel order, divided by H*W, rounded to bf16.
// Layout: x [N][H][W][C] bf16, y [N][OH][OW][C] bf16 (global: [N][C]);
//         bf16 travels as uint16_t bits.
// Launch: one thread per output element, channels fastest (coalesced):
//         grid ceil(outputs / POOL_THREADS), block POOL_THREADS.
// Tolerance vs the CPU twin (teacher/gpu/pool.rs): exact (same order).
#include <stdint.h>

#include "common/bf16.cuh"
#include "common/window.cuh"

#define POOL_THREADS 256

struct PoolParams {
    uint32_t n, h, w, c;
    uint32_t oh, ow, kh, kw;
    uint32_t sh, sw, ph, pw;  // ph, pw: the top and left pads
    uint32_t pb, pr, dh, dw;  // pb, pr: the bottom and right pads
    uint32_t kind, unused[3];  // kind: 0 max, 1 average with pads counted, 2 without
};
static_assert(sizeof(PoolParams) == 80, "PoolParams layout is shared with kernels.rs");

extern "C" __global__ void __launch_bounds__(POOL_THREADS)
pool2d_bf16_nhwc(const uint16_t* __restrict__ x, uint16_t* __restrict__ y, PoolParams p) {
    const uint64_t i = (uint64_t)blockIdx.x * POOL_THREADS + threadIdx.x;
    if (i >= (uint64_t)p.n * p.oh * p.ow * p.c) return;
    const uint32_t ch = i % p.c;
    const uint64_t px = i / p.c;
    const uint32_t ox = px % p.ow, oy = (px / p.ow) % p.oh;
    const uint64_t img = px / ((uint64_t)p.ow * p.oh);
    float best = -INFINITY, sum = 0.0f;
    uint32_t taps = 0;
    for_each_tap(p, oy, ox, [&](uint32_t iy, uint32_t ix, uint32_t, uint32_t) {
        const float v = bf16_to_f32(x[((img * p.h + iy) * p.w + ix) * p.c + ch]);
        best = fmaxf(best, v);
        sum = __fadd_rn(sum, v);
        taps++;
    });
    float out = best;
    if (p.kind != 0) {
        uint32_t div = taps;
        if (p.kind == 1) {
            const int y0 = (int)(oy * p.sh) - (int)p.ph, x0 = (int)(ox * p.sw) - (int)p.pw;
            const int ye = min(y0 + (int)p.kh, (int)(p.h + p.pb)), xe = min(x0 + (int)p.kw, (int)(p.w + p.pr));
            div = (uint32_t)((ye - y0) * (xe - x0));
        }
        out = __fdiv_rn(sum, (float)max(div, 1u));
    }
    y[i] = f32_to_bf16(out);
}

extern "C" __global__ void __launch_bounds__(POOL_THREADS)
global_avgpool_bf16_nhwc(const uint16_t* __restrict__ x, uint16_t* __restrict__ y, uint32_t n,
                         uint32_t hw, uint32_t c) {
    const uint64_t i = (uint64_t)blockIdx.x * POOL_THREADS + threadIdx.x;
    if (i >= (uint64_t)n * c) return;
    const uint64_t img = i / c, ch = i % c;
    const uint16_t* s = x + img * hw * c + ch;
    float sum = 0.0f;
    for (uint32_t j = 0; j < hw; j++) sum = __fadd_rn(sum, bf16_to_f32(s[(uint64_t)j * c]));
    y[i] = f32_to_bf16(__fdiv_rn(sum, (float)hw));
}
