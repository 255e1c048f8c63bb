// norm: LayerNorm over the channels of bf16 rows, the transformer teachers'
// normalisation (ViT/DeiT/Swin before attention and MLP, ConvNeXt over the
// channels of an NHWC map), and softmax over rows (a Softmax the attention
// fusion did not absorb).
//
// Math:   per row r of C values, in fp32:
//           mean = (sum_c x[c]) / C,  var = (sum_c (x[c] - mean)^2) / C
//           (two passes, not E[x^2] - mean^2, which cancels),
//           y[c] = (x[c] - mean) * (1 / sqrt(var + eps)) * gamma[c] + beta[c],
//         rounded to bf16 (nearest even). IEEE division and sqrt, no
//         rsqrtf: the bits do not depend on the target.
// Order:  lane l of the row's warp owns 8-value chunks l, l + 32, ... and
//         sums them in that order, 8 values a chunk in order; the 32 lane
//         sums meet in an xor butterfly (16, 8, 4, 2, 1), whose every node
//         adds the same two values on every lane (fp32 addition commutes),
//         so all lanes hold the same total. No atomics: a row's result
//         depends on its values only, never on the batch or the launch.
// Layout: x, y [rows][C] bf16 (NHWC maps: rows = N*H*W; tokens: rows =
//         N*T); gamma, beta [C] f32 (beta zeros when the op has none).
// Variants: layernorm_bf16_v8 (C % 8 == 0, 16-byte aligned rows: one
//         16-byte load and store a chunk) and layernorm_bf16 (any C, the
//         same chunks read element by element): the same sums in the same
//         order, so the same bits.
// Launch: one warp a row, NORM_ROWS rows a block of 32 * NORM_ROWS
//         threads, grid ceil(rows / NORM_ROWS); the row is read three times
//         (mean, variance, output), the second and third from L1/L2.
// Softmax: per row, m = max_c x[c], s = sum_c expf(x[c] - m) in the chunk
//         order above and the same butterfly, y[c] = expf(x[c] - m) / s
//         rounded to bf16 (expf: CUDA's, 2 ulp).
// Tolerance vs the CPU twin (teacher/gpu/norm.rs, cpu module: statistics
//         in f64): Tol::Bf16Accum { k: C } with the sum of |terms| of each
//         output (|x - mean| |gamma| / sqrt(var + eps) + |beta|); softmax:
//         Tol::Bf16Accum { k: C } with y as its magnitude.
#include <stdint.h>

#include "common/bf16.cuh"

#define NORM_ROWS 4

// The 8 values of chunk q of a row (zeros past C), as fp32.
template <bool VEC>
__device__ __forceinline__ void load_chunk(const uint16_t* __restrict__ row, uint32_t q, uint32_t c, float v[8]) {
    if (VEC) {
        const uint4 u = *reinterpret_cast<const uint4*>(row + q * 8);
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = bf16_to_f32((uint16_t)(w[e / 2] >> (16 * (e % 2))));
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = q * 8 + e < c ? bf16_to_f32(row[q * 8 + e]) : 0.0f;
    }
}

__device__ __forceinline__ float warp_sum(float s) {
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, d));
    return s;
}

// y[ch] = bf16(f(x[ch], ch)) over a row, chunk by chunk as load_chunk reads.
template <bool VEC, class F>
__device__ __forceinline__ void map_row(const uint16_t* __restrict__ xr, uint16_t* __restrict__ yr, uint32_t c,
                                        uint32_t lane, F f) {
    const uint32_t chunks = (c + 7) / 8;
    float v[8];
    for (uint32_t q = lane; q < chunks; q += 32) {
        load_chunk<VEC>(xr, q, c, v);
        uint16_t o[8];
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const uint32_t ch = q * 8 + e;
            if (!VEC && ch >= c) break;
            o[e] = f32_to_bf16(f(v[e], ch));
            if (!VEC) yr[ch] = o[e];
        }
        if (VEC)
            *reinterpret_cast<uint4*>(yr + q * 8) =
                make_uint4(o[0] | (uint32_t)o[1] << 16, o[2] | (uint32_t)o[3] << 16, o[4] | (uint32_t)o[5] << 16,
                           o[6] | (uint32_t)o[7] << 16);
    }
}

template <bool VEC>
__device__ __forceinline__ void layernorm_body(const uint16_t* __restrict__ x, const float* __restrict__ gamma,
                                               const float* __restrict__ beta, uint16_t* __restrict__ y,
                                               uint32_t rows, uint32_t c, float eps) {
    const uint32_t lane = threadIdx.x % 32;
    const uint64_t r = (uint64_t)blockIdx.x * NORM_ROWS + threadIdx.x / 32;
    if (r >= rows) return;  // whole warps: the shuffles below see full warps
    const uint16_t* xr = x + r * c;
    uint16_t* yr = y + r * c;
    const uint32_t chunks = (c + 7) / 8;
    float v[8];

    float s = 0.0f;
    for (uint32_t q = lane; q < chunks; q += 32) {
        load_chunk<VEC>(xr, q, c, v);
#pragma unroll
        for (int e = 0; e < 8; e++) s = __fadd_rn(s, v[e]);
    }
    const float mean = __fdiv_rn(warp_sum(s), (float)c);

    float s2 = 0.0f;
    for (uint32_t q = lane; q < chunks; q += 32) {
        load_chunk<VEC>(xr, q, c, v);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            // Past C the chunk holds zeros, which must not count as values.
            const float d = q * 8 + e < c ? __fsub_rn(v[e], mean) : 0.0f;
            s2 = __fadd_rn(s2, __fmul_rn(d, d));
        }
    }
    const float var = __fdiv_rn(warp_sum(s2), (float)c);
    const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
    map_row<VEC>(xr, yr, c, lane, [&](float x, uint32_t ch) {
        return __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(x, mean), inv), gamma[ch]), beta[ch]);
    });
}

extern "C" __global__ void __launch_bounds__(32 * NORM_ROWS)
layernorm_bf16_v8(const uint16_t* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
                  uint16_t* __restrict__ y, uint32_t rows, uint32_t c, float eps) {
    layernorm_body<true>(x, gamma, beta, y, rows, c, eps);
}

extern "C" __global__ void __launch_bounds__(32 * NORM_ROWS)
layernorm_bf16(const uint16_t* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
               uint16_t* __restrict__ y, uint32_t rows, uint32_t c, float eps) {
    layernorm_body<false>(x, gamma, beta, y, rows, c, eps);
}

__device__ __forceinline__ float warp_max(float s) {
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) s = fmaxf(s, __shfl_xor_sync(0xffffffffu, s, d));
    return s;
}

template <bool VEC>
__device__ __forceinline__ void softmax_body(const uint16_t* __restrict__ x, uint16_t* __restrict__ y,
                                             uint32_t rows, uint32_t c) {
    const uint32_t lane = threadIdx.x % 32;
    const uint64_t r = (uint64_t)blockIdx.x * NORM_ROWS + threadIdx.x / 32;
    if (r >= rows) return;
    const uint16_t* xr = x + r * c;
    uint16_t* yr = y + r * c;
    const uint32_t chunks = (c + 7) / 8;
    float v[8];

    float m = __int_as_float(0xff800000u);
    for (uint32_t q = lane; q < chunks; q += 32) {
        load_chunk<VEC>(xr, q, c, v);
#pragma unroll
        for (int e = 0; e < 8; e++)
            if (q * 8 + e < c) m = fmaxf(m, v[e]);
    }
    m = warp_max(m);

    float s = 0.0f;
    for (uint32_t q = lane; q < chunks; q += 32) {
        load_chunk<VEC>(xr, q, c, v);
#pragma unroll
        for (int e = 0; e < 8; e++)
            if (q * 8 + e < c) s = __fadd_rn(s, expf(__fsub_rn(v[e], m)));
    }
    const float inv = __fdiv_rn(1.0f, warp_sum(s));
    map_row<VEC>(xr, yr, c, lane, [&](float x, uint32_t) { return __fmul_rn(expf(__fsub_rn(x, m)), inv); });
}

extern "C" __global__ void __launch_bounds__(32 * NORM_ROWS)
softmax_bf16_v8(const uint16_t* __restrict__ x, uint16_t* __restrict__ y, uint32_t rows, uint32_t c) {
    softmax_body<true>(x, y, rows, c);
}

extern "C" __global__ void __launch_bounds__(32 * NORM_ROWS)
softmax_bf16(const uint16_t* __restrict__ x, uint16_t* __restrict__ y, uint32_t rows, uint32_t c) {
    softmax_body<false>(x, y, rows, c);
}
