// The parameters every convolution kernel takes (conv.cu, conv_grouped.cu:
// one struct, laid out as src/cuda/kernels.rs `ConvParams`) and the fused
// activations of their epilogues, in fp32.
#pragma once
#include <stdint.h>

struct ConvParams {
    uint32_t n, h, w, cin;
    uint32_t oh, ow, cout, groups;
    uint32_t cin_g, ng, kh, kw;
    uint32_t sh, sw, ph, pw;
    uint32_t dh, dw, k, k_pad;
    uint32_t m, act, has_bias, has_residual;
};
static_assert(sizeof(ConvParams) == 96, "ConvParams layout is shared with kernels.rs");

__device__ __forceinline__ float activate(float v, uint32_t act) {
    switch (act) {
    case 1: return fmaxf(v, 0.0f);
    case 2: return v / (1.0f + expf(-v));
    case 3: return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) * (1.0f / 6.0f);
    case 4: return 1.0f / (1.0f + expf(-v));
    default: return v;
    }
}

// ACT fixed at compile time, or -1: the code read from the parameters.
template <int ACT>
__device__ __forceinline__ float activate_t(float v, uint32_t act) {
    return activate(v, ACT < 0 ? act : (uint32_t)ACT);
}
