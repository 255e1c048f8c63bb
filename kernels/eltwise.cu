// eltwise: the GPU teacher's elementwise steps on NHWC bf16 tensors, for
// what the convolution epilogue does not absorb: activations (MobileNet's
// HardSwish, EfficientNet's SiLU, squeeze-excite's sigmoid / hard sigmoid,
// ReLU6 as Clip), binary ops with the broadcasts CNNs use (same shape, one
// value per image and channel: squeeze-excite's scale, one per channel, a
// scalar), per-channel affine (a BatchNorm that could not be folded:
// DenseNet), and channel concatenation (DenseNet).
//
// Math:   each element in fp32 from bf16, rounded back to bf16 (nearest
//         even). Unary u: 0 ReLU, 1 clip(a, b), 2 SiLU x/(1+e^-x),
//         3 HardSwish x*clip(x+3, 0, 6)/6, 4 sigmoid, 5 hard sigmoid
//         clip(a*x + b, 0, 1), 6 tanh, 7 GELU (erf) x/2 (1 + erf(x/sqrt 2)),
//         8 GELU (tanh form; common/gelu.cuh).
//         Binary: 0 add, 1 sub, 2 mul, 3 div of a and b[broadcast index].
//         exp/erf/tanh are CUDA's (expf, erff, tanhf: within 2 ulp).
// Layout: x, a, y [rows][c] bf16 (rows = N*H*W); b by mode: 0 [rows][c],
//         1 [n][c] with hw rows per image, 2 [c], 3 [1] (constant operands
//         are stored in bf16 at load). concat: x [rows][c_in] into columns
//         [offset, offset + c_in) of y [rows][c_out].
// Launch: one thread per output element, grid ceil(n / ELT_THREADS).
// Tolerance vs the CPU twin (teacher/gpu/eltwise.rs): Tol::Bf16Accum { k: 0 }
//         (one bf16 rounding of a value within a few fp32 ulp); exact for
//         ReLU, clip, the binary ops, affine and concat.
#include <stdint.h>

#include "common/bf16.cuh"
#include "common/gelu.cuh"

#define ELT_THREADS 256

__device__ __forceinline__ uint64_t elt_index() { return (uint64_t)blockIdx.x * ELT_THREADS + threadIdx.x; }

extern "C" __global__ void __launch_bounds__(ELT_THREADS)
unary_bf16(const uint16_t* __restrict__ x, uint16_t* __restrict__ y, uint64_t n, uint32_t op, float a,
           float b) {
    const uint64_t i = elt_index();
    if (i >= n) return;
    const float v = bf16_to_f32(x[i]);
    float r;
    switch (op) {
    case 0: r = fmaxf(v, 0.0f); break;
    case 1: r = fminf(fmaxf(v, a), b); break;
    case 2: r = __fdiv_rn(v, __fadd_rn(1.0f, expf(-v))); break;
    case 3: r = __fdiv_rn(__fmul_rn(v, fminf(fmaxf(__fadd_rn(v, 3.0f), 0.0f), 6.0f)), 6.0f); break;
    case 4: r = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-v))); break;
    case 5: r = fminf(fmaxf(__fadd_rn(__fmul_rn(a, v), b), 0.0f), 1.0f); break;
    case 6: r = tanhf(v); break;
    case 7: r = gelu_erf(v); break;
    default: r = gelu_tanh(v); break;
    }
    y[i] = f32_to_bf16(r);
}

extern "C" __global__ void __launch_bounds__(ELT_THREADS)
binary_bf16_nhwc(const uint16_t* __restrict__ a, const uint16_t* __restrict__ b, uint16_t* __restrict__ y,
                 uint64_t n, uint32_t op, uint32_t mode, uint32_t c, uint32_t hw) {
    const uint64_t i = elt_index();
    if (i >= n) return;
    uint64_t j;
    switch (mode) {
    case 0: j = i; break;
    case 1: j = (i / ((uint64_t)hw * c)) * c + i % c; break;
    case 2: j = i % c; break;
    default: j = 0; break;
    }
    const float u = bf16_to_f32(a[i]);
    const float v = bf16_to_f32(b[j]);
    float r;
    switch (op) {
    case 0: r = __fadd_rn(u, v); break;
    case 1: r = __fsub_rn(u, v); break;
    case 2: r = __fmul_rn(u, v); break;
    default: r = __fdiv_rn(u, v); break;
    }
    y[i] = f32_to_bf16(r);
}

// y = x * scale[c] + shift[c] (no fma, as the twin).
extern "C" __global__ void __launch_bounds__(ELT_THREADS)
affine_bf16_nhwc(const uint16_t* __restrict__ x, const float* __restrict__ scale,
                 const float* __restrict__ shift, uint16_t* __restrict__ y, uint64_t n, uint32_t c) {
    const uint64_t i = elt_index();
    if (i >= n) return;
    const uint32_t ch = i % c;
    y[i] = f32_to_bf16(__fadd_rn(__fmul_rn(bf16_to_f32(x[i]), scale[ch]), shift[ch]));
}

extern "C" __global__ void __launch_bounds__(ELT_THREADS)
concat_channels_bf16(const uint16_t* __restrict__ x, uint16_t* __restrict__ y, uint64_t rows,
                     uint32_t c_in, uint32_t c_out, uint32_t offset) {
    const uint64_t i = elt_index();
    if (i >= rows * c_in) return;
    y[(i / c_in) * c_out + offset + i % c_in] = x[i];
}

// bf16 -> f32 (exact): the teachers' logits for the ensemble softmax + top-k,
// x [rows][c] into columns of y at `y_offset` (one member's slice).
extern "C" __global__ void __launch_bounds__(ELT_THREADS)
bf16_to_f32(const uint16_t* __restrict__ x, float* __restrict__ y, uint64_t n, uint64_t y_offset) {
    const uint64_t i = elt_index();
    if (i >= n) return;
    y[y_offset + i] = bf16_to_f32(x[i]);
}
