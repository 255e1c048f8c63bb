// GELU in fp32, shared by the convolution epilogues (conv_params.cuh
// `activate`) and eltwise.cu's unary ops, so a GELU folded into a
// convolution and one left standing give the same bits. erff and tanhf
// are CUDA's (within 2 ulp); every other operation rounds as written.
#pragma once

// x/2 (1 + erf(x / sqrt 2)): ONNX Gelu (approximate "none"), torch's default.
__device__ __forceinline__ float gelu_erf(float v) {
    return __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, erff(__fmul_rn(v, 0.70710678f))));
}

// x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): approximate "tanh".
__device__ __forceinline__ float gelu_tanh(float v) {
    const float cube = __fmul_rn(__fmul_rn(v, v), v);
    const float inner = __fmul_rn(0.7978845608f, __fadd_rn(v, __fmul_rn(0.044715f, cube)));
    return __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, tanhf(inner)));
}
