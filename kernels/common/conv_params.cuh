// The parameters every convolution kernel takes (conv.cu, conv_grouped.cu:
// one struct, laid out as src/cuda/kernels.rs `ConvParams`) and the fused
// activations of their epilogues, in fp32.
#pragma once
#include <stdint.h>

#include "gelu.cuh"

struct ConvParams {
    uint32_t n, h, w, cin;
    uint32_t oh, ow, cout, groups;
    uint32_t cin_g, ng, kh, kw;
    uint32_t sh, sw, ph, pw;
    uint32_t dh, dw, k, k_pad;
    uint32_t m, act, has_bias, has_residual;
};
static_assert(sizeof(ConvParams) == 96, "ConvParams layout is shared with kernels.rs");

// 1 ReLU, 2 SiLU, 3 HardSwish, 4 sigmoid, 5 GELU (erf), 6 GELU (tanh form:
// x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))), else none. The GELUs are
// eltwise.cu's unary ops 7 and 8, operation for operation.
__device__ __forceinline__ float activate(float v, uint32_t act) {
    switch (act) {
    case 1: return fmaxf(v, 0.0f);
    case 2: return v / (1.0f + expf(-v));
    case 3: return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) * (1.0f / 6.0f);
    case 4: return 1.0f / (1.0f + expf(-v));
    case 5: return gelu_erf(v);
    case 6: return gelu_tanh(v);
    default: return v;
    }
}

// `activate` without the GELUs (codes 5 and 6 give the value unchanged):
// the older conv_bf16_* kernels', which the launcher never gives a GELU.
__device__ __forceinline__ float activate_no_gelu(float v, uint32_t act) {
    return act >= 5 ? v : activate(v, act);
}

// ACT fixed at compile time, or -1: the code read from the parameters.
template <int ACT>
__device__ __forceinline__ float activate_t(float v, uint32_t act) {
    return activate(v, ACT < 0 ? act : (uint32_t)ACT);
}
