// augment: the GPU augmentation, stages 1 and 3. Stage 1: RandomResizedCrop's
// Pillow-exact bilinear resampling (and the flip) for a whole batch of
// (image, sample) crops in two launches, one per separable pass. Stage 2,
// RandAugment, is its own family (randaug.cu); stage 3 (to float, erase,
// normalize, mixing, the teacher's layout) is at the end of this file.
//
// Math:   Pillow's fixed-point pass (libImaging/Resample.c, FACTS.md §1):
//         out = clamp((2^21 + sum_i in[first + i] * w[i]) >> 22, 0, 255) per
//         channel, taps (first, count, 22-bit weights) computed on the host
//         exactly as augment::resample::taps. An axis that keeps its size
//         uses one tap of weight 2^22 (a copy, as Pillow skips the pass).
//         The second pass may write its rows mirrored: RandomHorizontalFlip
//         folded in (it comes right after the crop in ml-dr's order).
// Layout: images and outputs are HWC uint8 (RGB); each sample's pass reads a
//         rectangle of `src` at `src_off` with row stride `src_stride` bytes
//         and writes `out_w x out_h` pixels at `dst_off` (stride out_w * 3).
//         Descriptor: RESAMPLE_DESC u32s per sample (see the enum below).
// Launch: grid (ceil(max_out_pixels / 256), samples), block 256; one thread
//         per output pixel, three channels.
// Tolerance vs the CPU twin (src/augment/gpu.rs, cpu module): exact.
#include <stdint.h>

#include "common/bf16.cuh"

#define RESAMPLE_THREADS 256

enum {
    D_SRC_OFF = 0,
    D_SRC_STRIDE,
    D_OUT_W,
    D_OUT_H,
    D_DST_OFF,
    D_TAPS,      // index of the first output index's taps in first/count
    D_WEIGHTS,   // index of its weights in `weights`
    D_KSIZE,
    D_VERTICAL,  // 0: taps run along x, 1: along y
    D_FLIP,      // 1: write the row mirrored (the horizontal flip, folded in)
    RESAMPLE_DESC
};

extern "C" __global__ void __launch_bounds__(RESAMPLE_THREADS)
resample_pass_u8(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst,
                 const uint32_t* __restrict__ desc, const uint32_t* __restrict__ first,
                 const uint32_t* __restrict__ count, const int32_t* __restrict__ weights) {
    const uint32_t* d = desc + (uint64_t)blockIdx.y * RESAMPLE_DESC;
    const uint32_t out_w = d[D_OUT_W], out_h = d[D_OUT_H];
    const uint32_t px = blockIdx.x * RESAMPLE_THREADS + threadIdx.x;
    if (px >= out_w * out_h) return;
    const uint32_t x = px % out_w, y = px / out_w;
    const bool vertical = d[D_VERTICAL] != 0;
    const uint32_t o = vertical ? y : x;  // output index along the tap axis
    const uint32_t f = first[d[D_TAPS] + o], n = count[d[D_TAPS] + o];
    const int32_t* k = weights + d[D_WEIGHTS] + (uint64_t)o * d[D_KSIZE];
    const uint8_t* s = src + d[D_SRC_OFF];
    const uint32_t stride = d[D_SRC_STRIDE];
    int64_t acc[3] = {1 << 21, 1 << 21, 1 << 21};
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t* p = vertical ? s + (uint64_t)(f + i) * stride + x * 3
                                    : s + (uint64_t)y * stride + (f + i) * 3;
        const int64_t w = k[i];
        acc[0] += p[0] * w;
        acc[1] += p[1] * w;
        acc[2] += p[2] * w;
    }
    const uint32_t xo = d[D_FLIP] ? out_w - 1 - x : x;
    uint8_t* q = dst + d[D_DST_OFF] + ((uint64_t)y * out_w + xo) * 3;
#pragma unroll
    for (int c = 0; c < 3; c++) {
        const int64_t v = acc[c] >> 22;
        q[c] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
}

// Stage 3: the float ops on the augmented uint8 crops, written as the
// teacher's input: float32 NCHW (the parity layout) or bf16 NHWC (what the
// GPU teacher reads).
//
// Math:   v = u8 / 255 (IEEE division); 0 inside the erase box; then
//         (v - mean[c]) / std[c] when normalizing; the pair the same way;
//         MixUp a*v + b*v2 (a = fl32(lam), b = fl32(1 - lam), no fma);
//         then CutMix: rows x1..x2, columns y1..y2 take the pair's value.
//         Exactly torch's CPU float32 ops (src/augment/tensor.rs). bf16 is
//         that float32 rounded to nearest, ties to even (values are finite).
// Layout: crops HWC uint8 (w x h); out [samples][3][h][w] f32 or
//         [samples][h][w][3] bf16 bits; norm = {mean[3], std[3]};
//         descriptor FINISH_DESC u32s per sample.
// Launch: grid (ceil(w*h / 256), samples), block 256, one pixel a thread.
// Tolerance vs the CPU twin: exact (both layouts).

enum {
    F_SRC = 0,
    F_ERASE,          // top, left, height, width (height 0: none)
    F_PAIR_SRC = 5,
    F_PAIR_ERASE,     // as F_ERASE
    F_MIX = 10,       // bit 0 MixUp, bit 1 CutMix, bit 2 normalize
    F_MIXUP_A,        // float bits
    F_MIXUP_B,
    F_CUTMIX,         // x1, y1, x2, y2 (clamped to the tensor)
    FINISH_DESC = 17
};

__device__ __forceinline__ float side_value(const uint8_t* img, const uint32_t* erase, uint32_t w,
                                            uint32_t x, uint32_t y, int c, const float* norm,
                                            bool normalize) {
    float v = __fdiv_rn((float)img[((uint64_t)y * w + x) * 3 + c], 255.0f);
    if (y >= erase[0] && y < erase[0] + erase[2] && x >= erase[1] && x < erase[1] + erase[3]) v = 0.0f;
    if (normalize) v = __fdiv_rn(__fsub_rn(v, norm[c]), norm[3 + c]);
    return v;
}

// The three channels of pixel (x, y) of sample `d`.
__device__ __forceinline__ void finish_pixel(const uint8_t* crops, const uint32_t* d,
                                             const float* norm, uint32_t w, uint32_t x,
                                             uint32_t y, float v[3]) {
    const uint32_t mix = d[F_MIX];
    const bool normalize = (mix & 4u) != 0;
    const float a = __uint_as_float(d[F_MIXUP_A]), b = __uint_as_float(d[F_MIXUP_B]);
    const bool in_box = (mix & 2u) && y >= d[F_CUTMIX] && y < d[F_CUTMIX + 2] && x >= d[F_CUTMIX + 1] &&
                        x < d[F_CUTMIX + 3];
#pragma unroll
    for (int c = 0; c < 3; c++) {
        v[c] = side_value(crops + d[F_SRC], d + F_ERASE, w, x, y, c, norm, normalize);
        if (mix & 3u) {
            const float v2 = side_value(crops + d[F_PAIR_SRC], d + F_PAIR_ERASE, w, x, y, c, norm, normalize);
            if (mix & 1u) v[c] = __fadd_rn(__fmul_rn(a, v[c]), __fmul_rn(b, v2));
            if (in_box) v[c] = v2;
        }
    }
}

// This thread's pixel of sample blockIdx.y into v; false past the image.
__device__ __forceinline__ bool finish_this(const uint8_t* crops, const uint32_t* desc,
                                            const float* norm, uint32_t w, uint32_t h,
                                            uint32_t& px, float v[3]) {
    px = blockIdx.x * RESAMPLE_THREADS + threadIdx.x;
    if (px >= w * h) return false;
    finish_pixel(crops, desc + (uint64_t)blockIdx.y * FINISH_DESC, norm, w, px % w, px / w, v);
    return true;
}

extern "C" __global__ void __launch_bounds__(RESAMPLE_THREADS)
finish_f32_nchw(const uint8_t* __restrict__ crops, const uint32_t* __restrict__ desc,
                const float* __restrict__ norm, float* __restrict__ out, uint32_t w, uint32_t h) {
    uint32_t px;
    float v[3];
    if (!finish_this(crops, desc, norm, w, h, px, v)) return;
    float* o = out + (uint64_t)blockIdx.y * 3 * w * h + px;
#pragma unroll
    for (int c = 0; c < 3; c++) o[(uint64_t)c * w * h] = v[c];
}

// NHWC with `channels` (3, or more with zeros after RGB: a teacher whose stem
// reads its input 8 channels at a time, see teacher/gpu/lower.rs).
extern "C" __global__ void __launch_bounds__(RESAMPLE_THREADS)
finish_bf16_nhwc(const uint8_t* __restrict__ crops, const uint32_t* __restrict__ desc,
                 const float* __restrict__ norm, uint16_t* __restrict__ out, uint32_t w, uint32_t h,
                 uint32_t channels) {
    uint32_t px;
    float v[3];
    if (!finish_this(crops, desc, norm, w, h, px, v)) return;
    uint16_t* o = out + ((uint64_t)blockIdx.y * w * h + px) * channels;
    if (channels == 8) {  // one 16-byte store (the launcher checked the alignment)
        const uint32_t rg = (uint32_t)f32_to_bf16(v[0]) | ((uint32_t)f32_to_bf16(v[1]) << 16);
        *reinterpret_cast<uint4*>(o) = make_uint4(rg, f32_to_bf16(v[2]), 0u, 0u);
        return;
    }
#pragma unroll
    for (int c = 0; c < 3; c++) o[c] = f32_to_bf16(v[c]);
    for (uint32_t c = 3; c < channels; c++) o[c] = 0;
}
