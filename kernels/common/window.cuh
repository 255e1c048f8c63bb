// The taps of a sliding window that fall inside the image, shared by the
// depthwise convolution (conv.cu) and pooling (pool.cu): output pixel
// (oy, ox) reads input (oy*sh + ky*dh - ph, ox*sw + kx*dw - pw), padding
// skipped, in (ky, kx) order (the order their fp32 sums are taken in).
// P is any params struct with h, w, kh, kw, sh, sw, dh, dw, ph, pw.
#pragma once
#include <stdint.h>

template <typename P, typename F>
__device__ __forceinline__ void for_each_tap(const P& p, uint32_t oy, uint32_t ox, F tap) {
    for (uint32_t ky = 0; ky < p.kh; ky++) {
        const int iy = (int)(oy * p.sh + ky * p.dh) - (int)p.ph;
        if (iy < 0 || iy >= (int)p.h) continue;
        for (uint32_t kx = 0; kx < p.kw; kx++) {
            const int ix = (int)(ox * p.sw + kx * p.dw) - (int)p.pw;
            if (ix < 0 || ix >= (int)p.w) continue;
            tap((uint32_t)iy, (uint32_t)ix, ky, kx);
        }
    }
}
