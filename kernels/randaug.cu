// randaug: the GPU augmentation, stage 2 — RandAugment's 14 ops on the uint8
// crops of stage 1, exactly as torchvision's tensor `_apply_op` computes them
// with ml-dr's settings (nearest interpolation, no fill; FACTS.md §4). One
// block per crop runs that crop's op list in order, with block barriers
// between ops, so the per-image reductions (Contrast's mean, AutoContrast's
// min/max, Equalize's histogram) live in shared memory and need no second
// launch. Identity is never encoded; the geometric ops' inverse matrices,
// the blend ratios, Posterize's mask and Solarize's threshold are computed
// on the host (src/augment/gpu_randaug.rs) from the stored magnitudes.
//
// Math:   every float32 / float64 rounding of the reference, in its order,
//         with explicit _rn intrinsics so nvcc cannot contract to fma:
//         blend  trunc(clamp(fl32(r*x) + fl32(r1*other), 0, 255));
//         gray   trunc(fl32(fl32(0.2989*R) + fl32(0.587*G)) + fl32(0.114*B));
//         affine (double) ix = rint(M0*xc + M1*yc + M2 + W/2 - 0.5), zeros outside;
//         sharpen blurred = (2*S + 13) / 26 on the interior, border = original;
//         equalize lut[v] = (cum[v-1] + step/2) / step, step = (N - hist[max]) / 255.
//         Reductions are integer (sums, min/max, histograms): order-free, so
//         the result is deterministic and equal to the CPU's.
// Layout: crops HWC uint8, crop n at n * w*h*3 in `crops`, and its scratch at
//         the same offset in `scratch` (ops that read neighbours ping-pong;
//         the result always ends in `crops`). Descriptor RANDAUG_DESC u32s
//         per crop with ops: {crop index, first op word, op count}; program
//         RANDAUG_OP_WORDS u32s per op: {code, params...}.
// Launch: grid (crops with ops), block RANDAUG_THREADS, static shared ~9 KB.
// Tolerance vs the CPU twin (src/augment/gpu_randaug.rs, cpu module): exact.
#include <stdint.h>

#define RANDAUG_THREADS 512
#define RANDAUG_DESC 3
#define RANDAUG_OP_WORDS 13

enum {
    OP_AFFINE = 1,  // words 1..12: the inverse matrix, 6 doubles (lo, hi)
    OP_BRIGHTNESS,  // words 1, 2: fl32(r), fl32(1 - r) bits
    OP_COLOR,       // as OP_BRIGHTNESS
    OP_CONTRAST,    // as OP_BRIGHTNESS
    OP_SHARPNESS,   // as OP_BRIGHTNESS
    OP_POSTERIZE,   // word 1: the bit mask
    OP_SOLARIZE,    // word 1: values >= this are inverted (256: none)
    OP_AUTOCONTRAST,
    OP_EQUALIZE,
};

__device__ __forceinline__ uint8_t blend(float r, float r1, float x, float other) {
    float v = __fadd_rn(__fmul_rn(r, x), __fmul_rn(r1, other));
    return (uint8_t)__float2uint_rz(fminf(fmaxf(v, 0.0f), 255.0f));
}

__device__ __forceinline__ uint32_t gray(const uint8_t* p) {
    float v = __fadd_rn(__fmul_rn(0.2989f, (float)p[0]), __fmul_rn(0.587f, (float)p[1]));
    return __float2uint_rz(__fadd_rn(v, __fmul_rn(0.114f, (float)p[2])));
}

__device__ __forceinline__ double word_f64(const uint32_t* w, int i) {
    return __hiloint2double((int)w[2 * i + 1], (int)w[2 * i]);
}

// arr[c] for a runtime c in 0..3 without a local-memory array.
template <typename T>
__device__ __forceinline__ T pick3(const T (&arr)[3], uint32_t c) {
    return c == 0 ? arr[0] : (c == 1 ? arr[1] : arr[2]);
}

struct Shared {
    uint32_t hist[2][3 * 256];  // histogram, then its scan (ping-pong)
    uint32_t lo[3], hi[3];
    unsigned long long sum;
};

// Nearest-neighbour affine from `src` into `dst`.
__device__ void affine(const uint8_t* src, uint8_t* dst, const uint32_t* op, uint32_t w,
                       uint32_t h) {
    double m[6];
#pragma unroll
    for (int i = 0; i < 6; i++) m[i] = word_f64(op + 1, i);
    const double hw = (double)w * 0.5, hh = (double)h * 0.5;
    for (uint32_t px = threadIdx.x; px < w * h; px += RANDAUG_THREADS) {
        const uint32_t x = px % w, y = px / w;
        const double xc = __dsub_rn(__dadd_rn((double)x, 0.5), hw);
        const double yc = __dsub_rn(__dadd_rn((double)y, 0.5), hh);
        const double sx = __dadd_rn(__dadd_rn(__dmul_rn(m[0], xc), __dmul_rn(m[1], yc)), m[2]);
        const double sy = __dadd_rn(__dadd_rn(__dmul_rn(m[3], xc), __dmul_rn(m[4], yc)), m[5]);
        const double ix = rint(__dsub_rn(__dadd_rn(sx, hw), 0.5));
        const double iy = rint(__dsub_rn(__dadd_rn(sy, hh), 0.5));
        const bool inside = ix >= 0.0 && iy >= 0.0 && ix < (double)w && iy < (double)h;
        const uint8_t* s = src + ((uint64_t)(inside ? iy : 0.0) * w + (uint64_t)(inside ? ix : 0.0)) * 3;
#pragma unroll
        for (int c = 0; c < 3; c++) dst[(uint64_t)px * 3 + c] = inside ? s[c] : 0;
    }
}

// Blend with the 3x3 (1,1,1; 1,5,1; 1,1,1)/13 blur; the border blends with itself.
__device__ void sharpness(const uint8_t* src, uint8_t* dst, float r, float r1, uint32_t w,
                          uint32_t h) {
    for (uint32_t px = threadIdx.x; px < w * h; px += RANDAUG_THREADS) {
        const uint32_t x = px % w, y = px / w;
        const bool border = x == 0 || y == 0 || x == w - 1 || y == h - 1;
#pragma unroll
        for (int c = 0; c < 3; c++) {
            const uint32_t v = src[(uint64_t)px * 3 + c];
            uint32_t other = v;
            if (!border) {
                uint32_t s = 4 * v;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                        s += src[((uint64_t)(y + dy) * w + (x + dx)) * 3 + c];
                other = (2 * s + 13) / 26;
            }
            dst[(uint64_t)px * 3 + c] = blend(r, r1, (float)v, (float)other);
        }
    }
}

// Per-channel min and max into sh.lo / sh.hi.
__device__ void channel_range(const uint8_t* img, uint32_t n, Shared& sh) {
    if (threadIdx.x < 3) {
        sh.lo[threadIdx.x] = 255;
        sh.hi[threadIdx.x] = 0;
    }
    __syncthreads();
    uint32_t lo[3] = {255, 255, 255}, hi[3] = {0, 0, 0};
    for (uint32_t px = threadIdx.x; px < n; px += RANDAUG_THREADS)
#pragma unroll
        for (int c = 0; c < 3; c++) {
            const uint32_t v = img[(uint64_t)px * 3 + c];
            lo[c] = min(lo[c], v);
            hi[c] = max(hi[c], v);
        }
#pragma unroll
    for (int c = 0; c < 3; c++) {
        atomicMin(&sh.lo[c], lo[c]);
        atomicMax(&sh.hi[c], hi[c]);
    }
    __syncthreads();
}

// torchvision `_scale_channel` per channel: histogram, its exclusive scan, the lut.
__device__ void equalize(uint8_t* img, uint32_t n, Shared& sh) {
    for (uint32_t i = threadIdx.x; i < 3 * 256; i += RANDAUG_THREADS) sh.hist[0][i] = 0;
    channel_range(img, n, sh);  // its barriers also order the zeroing
    for (uint32_t px = threadIdx.x; px < n; px += RANDAUG_THREADS)
#pragma unroll
        for (int c = 0; c < 3; c++) atomicAdd(&sh.hist[0][c * 256 + img[(uint64_t)px * 3 + c]], 1u);
    __syncthreads();
    uint32_t step[3];
#pragma unroll
    for (int c = 0; c < 3; c++) step[c] = (n - sh.hist[0][c * 256 + sh.hi[c]]) / 255;
    // Inclusive Hillis-Steele scan of each channel's 256 bins, ping-ponged.
    int in = 0;
    for (uint32_t off = 1; off < 256; off *= 2) {
        for (uint32_t i = threadIdx.x; i < 3 * 256; i += RANDAUG_THREADS) {
            const uint32_t v = sh.hist[in][i];
            sh.hist[1 - in][i] = (i % 256 >= off) ? v + sh.hist[in][i - off] : v;
        }
        in = 1 - in;
        __syncthreads();
    }
    for (uint32_t i = threadIdx.x; i < n * 3; i += RANDAUG_THREADS) {
        const uint32_t c = i % 3, v = img[i], s = pick3(step, c);
        if (s == 0 || v == 0) continue;  // step 0: the channel is left as it is
        img[i] = (uint8_t)min((sh.hist[in][c * 256 + v - 1] + s / 2) / s, 255u);
    }
}

extern "C" __global__ void __launch_bounds__(RANDAUG_THREADS)
randaug_u8(uint8_t* __restrict__ crops, uint8_t* __restrict__ scratch,
           const uint32_t* __restrict__ desc, const uint32_t* __restrict__ prog, uint32_t w,
           uint32_t h) {
    __shared__ Shared sh;
    const uint32_t* d = desc + (uint64_t)blockIdx.x * RANDAUG_DESC;
    const uint64_t bytes = (uint64_t)w * h * 3;
    uint8_t* home = crops + d[0] * bytes;
    uint8_t* cur = home;
    uint8_t* alt = scratch + d[0] * bytes;
    const uint32_t n = w * h;
    for (uint32_t k = 0; k < d[2]; k++) {
        const uint32_t* op = prog + d[1] + (uint64_t)k * RANDAUG_OP_WORDS;
        const float r = __uint_as_float(op[1]), r1 = __uint_as_float(op[2]);
        switch (op[0]) {
        case OP_AFFINE:
        case OP_SHARPNESS: {  // never encoded for w or h <= 2 (torchvision returns the image)
            if (op[0] == OP_AFFINE)
                affine(cur, alt, op, w, h);
            else
                sharpness(cur, alt, r, r1, w, h);
            uint8_t* t = cur;
            cur = alt;
            alt = t;
            break;
        }
        case OP_BRIGHTNESS:
            for (uint32_t i = threadIdx.x; i < n * 3; i += RANDAUG_THREADS)
                cur[i] = blend(r, r1, (float)cur[i], 0.0f);
            break;
        case OP_COLOR:
            for (uint32_t px = threadIdx.x; px < n; px += RANDAUG_THREADS) {
                uint8_t* p = cur + (uint64_t)px * 3;
                const float g = (float)gray(p);
#pragma unroll
                for (int c = 0; c < 3; c++) p[c] = blend(r, r1, (float)p[c], g);
            }
            break;
        case OP_CONTRAST: {
            if (threadIdx.x == 0) sh.sum = 0;
            __syncthreads();
            unsigned long long s = 0;
            for (uint32_t px = threadIdx.x; px < n; px += RANDAUG_THREADS) s += gray(cur + (uint64_t)px * 3);
            atomicAdd(&sh.sum, s);
            __syncthreads();
            const float mean = __fdiv_rn(__ull2float_rn(sh.sum), __uint2float_rn(n));
            for (uint32_t i = threadIdx.x; i < n * 3; i += RANDAUG_THREADS)
                cur[i] = blend(r, r1, (float)cur[i], mean);
            break;
        }
        case OP_POSTERIZE:
            for (uint32_t i = threadIdx.x; i < n * 3; i += RANDAUG_THREADS) cur[i] &= (uint8_t)op[1];
            break;
        case OP_SOLARIZE:
            for (uint32_t i = threadIdx.x; i < n * 3; i += RANDAUG_THREADS)
                if (cur[i] >= op[1]) cur[i] = 255 - cur[i];
            break;
        case OP_AUTOCONTRAST: {
            channel_range(cur, n, sh);
            float lo[3], scale[3];
#pragma unroll
            for (int c = 0; c < 3; c++) {
                lo[c] = (float)sh.lo[c];
                scale[c] = __fmul_rn(__fdiv_rn(1.0f, __fsub_rn((float)sh.hi[c], lo[c])), 255.0f);
            }
            for (uint32_t i = threadIdx.x; i < n * 3; i += RANDAUG_THREADS) {
                const uint32_t c = i % 3;
                if (sh.hi[c] == sh.lo[c]) continue;  // flat: torchvision leaves it
                const float v = __fmul_rn(__fsub_rn((float)cur[i], pick3(lo, c)), pick3(scale, c));
                cur[i] = (uint8_t)__float2uint_rz(fminf(fmaxf(v, 0.0f), 255.0f));
            }
            break;
        }
        case OP_EQUALIZE:
            equalize(cur, n, sh);
            break;
        default:
            break;  // the host never encodes another code
        }
        __syncthreads();
    }
    if (cur != home)
        for (uint32_t i = threadIdx.x; i < n * 3; i += RANDAUG_THREADS) home[i] = cur[i];
}
