// conv: NHWC bf16 convolution as an implicit GEMM on the tensor cores
// (mma.sync m16n8k16, fp32 accumulation), grouped convolution in the same
// launch (blockIdx.z = group), with the fused epilogue
// y = act(conv(x, w) + bias + residual). 1x1 convolutions over a 1x1 image
// are the FC layers' GEMM.
//
// Math:   per group g, D[m][n] = sum_k A[m][k] * B[n][k] with
//           m = (image, oh, ow), M = N*OH*OW output pixels;
//           n = output channel within the group, Ng = Cout / groups;
//           k = (kh, kw, c) tap-major, c the input channel within the group,
//             K = KH*KW*Cin_g;
//           A[m][k] = x[image][oh*sh - ph + kh*dh][ow*sw - pw + kw*dw][g*Cin_g + c]
//             (0 outside the image: the zero padding);
//           B[n][k] = the packed weight (teacher/gpu/conv.rs `pack_weights`).
//         Then v = D + bias[ch] + residual[m][ch] in fp32, act(v), rounded to
//         bf16 (nearest even). act: 0 none, 1 ReLU, 2 SiLU, 3 HardSwish,
//         4 sigmoid.
// Layout: x [N][H][W][Cin] bf16; w [groups][Ng][K_pad] bf16, K_pad a
//         multiple of CONV_BK, zero past K; bias [Cout] f32; residual and y
//         [N][OH][OW][Cout] bf16. bf16 travels as uint16_t bits.
// Launch: grid (ceil(M / BM), ceil(Ng / BN), groups), block CONV_THREADS
//         (4 warps in a WM x WN grid), static shared memory
//         2 stages x (BM + BN) x (CONV_BK + 8) bf16 (<= 30 KB). Variants
//         (entry points) differ in BN, for narrow groups (ResNeXt: Ng = 8 to
//         64 at 32 groups), and in how A is gathered: `_v8` loads 8 channels
//         (16 bytes) at once with cp.async and needs Cin_g % 8 == 0; `_v1`
//         loads one at a time (the RGB stem, or any Cin_g % 8 != 0), in
//         the 128x64 tile only. Depthwise layers (Cin_g = 1) have their own
//         kernel at the end of this file.
// Pipeline: two shared-memory stages; the next k-tile's cp.async copies are
//         in flight while the current one feeds the tensor cores.
// Tolerance vs the CPU twin (teacher/gpu/conv.rs, cpu module: the same bf16
//         products summed in f64): Tol::Bf16Accum, |y - ref| <= 2^-7 |ref| +
//         K 2^-23 sum|terms| (the fp32 accumulation order of the tensor
//         cores is not specified, then one bf16 rounding).
#include <stdint.h>

#include "common/bf16.cuh"
#include "common/window.cuh"

#define CONV_THREADS 128
#define CONV_BK 32
#define CONV_LDS (CONV_BK + 8)  // padded row: conflict-free fragment loads

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

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    const uint32_t dst = (uint32_t)__cvta_generic_to_shared(smem);
    const int src_bytes = valid ? 16 : 0;  // 0: the 16 bytes are zero-filled
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all_but_one() { asm volatile("cp.async.wait_group 1;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Rows of the A tile this thread gathers: where each output pixel's window
// starts (image offset, top-left input coordinate), or m past M.
template <int ROWS>
struct RowPlan {
    uint64_t base[ROWS];  // element offset of the pixel's image in x
    int ih0[ROWS], iw0[ROWS];
    bool valid[ROWS];
};

template <int BM, int BN, int WM, int WN, int VEC>
__device__ __forceinline__ void conv_body(const uint16_t* __restrict__ x, const uint16_t* __restrict__ wt,
                                          const float* __restrict__ bias,
                                          const uint16_t* __restrict__ residual, uint16_t* __restrict__ y,
                                          const ConvParams& p) {
    constexpr int WARP_M = BM / WM, WARP_N = BN / WN;
    constexpr int MI = WARP_M / 16, NI = WARP_N / 8;
    static_assert(WM * WN * 32 == CONV_THREADS, "4 warps");
    static_assert(MI >= 1 && NI >= 1 && WARP_M % 16 == 0 && WARP_N % 8 == 0, "warp tile");
    // A gather. _v8: a thread copies 8 channels (16 bytes) of A_ROWS rows;
    // _v1: a thread owns one row and loads its CONV_BK values one by one.
    constexpr int A_THREADS_PER_ROW = VEC == 8 ? CONV_BK / 8 : 1;
    constexpr int A_ELEMS = VEC == 8 ? 8 : CONV_BK;
    constexpr int A_ROWS = BM * A_THREADS_PER_ROW / CONV_THREADS;  // per thread
    constexpr int A_ROW_STEP = CONV_THREADS / A_THREADS_PER_ROW;
    static_assert(A_ROWS >= 1 && BM * A_THREADS_PER_ROW % CONV_THREADS == 0, "A rows split evenly");
    constexpr int B_CHUNKS = BN * (CONV_BK / 8);  // 16-byte chunks

    __shared__ __align__(16) uint16_t sa[2][BM][CONV_LDS];
    __shared__ __align__(16) uint16_t sb[2][BN][CONV_LDS];

    const uint32_t tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const uint32_t warp_m0 = (warp / WN) * WARP_M, warp_n0 = (warp % WN) * WARP_N;
    const uint32_t g = blockIdx.z;
    const uint64_t m_block = (uint64_t)blockIdx.x * BM;
    const uint32_t n_block = blockIdx.y * BN;
    const uint32_t a_col = (tid % A_THREADS_PER_ROW) * A_ELEMS;  // k offset within the tile
    const uint32_t a_row0 = tid / A_THREADS_PER_ROW;

    RowPlan<A_ROWS> rows;
#pragma unroll
    for (int i = 0; i < A_ROWS; i++) {
        const uint64_t m = m_block + a_row0 + i * A_ROW_STEP;
        rows.valid[i] = m < p.m;
        const uint32_t mm = rows.valid[i] ? (uint32_t)m : 0;
        const uint32_t ow = mm % p.ow, t = mm / p.ow, oh = t % p.oh, img = t / p.oh;
        rows.base[i] = (uint64_t)img * p.h * p.w * p.cin + (uint64_t)g * p.cin_g;
        rows.ih0[i] = (int)(oh * p.sh) - (int)p.ph;
        rows.iw0[i] = (int)(ow * p.sw) - (int)p.pw;
    }

    auto load_a = [&](int stage, uint32_t k0) {
#pragma unroll
        for (int i = 0; i < A_ROWS; i++) {
            uint16_t* dst = &sa[stage][a_row0 + i * A_ROW_STEP][a_col];
#pragma unroll
            for (int v = 0; v < (VEC == 8 ? 1 : A_ELEMS); v++) {
                const uint32_t k = k0 + a_col + v;
                // (kh, kw, c): with VEC == 8 the 8 channels share a tap (Cin_g % 8 == 0).
                const uint32_t c = k % p.cin_g, tap = k / p.cin_g;
                const int ih = rows.ih0[i] + (int)((tap / p.kw) * p.dh);
                const int iw = rows.iw0[i] + (int)((tap % p.kw) * p.dw);
                const bool ok = rows.valid[i] && k < p.k && ih >= 0 && iw >= 0 && ih < (int)p.h && iw < (int)p.w;
                const uint16_t* src = ok ? x + rows.base[i] + ((uint64_t)ih * p.w + iw) * p.cin + c : x;
                if (VEC == 8)
                    cp_async16(dst, src, ok);
                else
                    dst[v] = ok ? *src : (uint16_t)0;
            }
        }
    };
    auto load_b = [&](int stage, uint32_t k0) {
        for (int i = tid; i < B_CHUNKS; i += CONV_THREADS) {
            const uint32_t n = i / (CONV_BK / 8), kc = (i % (CONV_BK / 8)) * 8;
            const bool ok = n_block + n < p.ng;
            const uint16_t* src = ok ? wt + ((uint64_t)g * p.ng + n_block + n) * p.k_pad + k0 + kc : wt;
            cp_async16(&sb[stage][n][kc], src, ok);
        }
    };

    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;

    const uint32_t k_tiles = p.k_pad / CONV_BK;
    load_a(0, 0);
    load_b(0, 0);
    cp_async_commit();
    for (uint32_t kt = 0; kt < k_tiles; kt++) {
        const int cur = kt & 1;
        if (kt + 1 < k_tiles) {
            load_a(cur ^ 1, (kt + 1) * CONV_BK);
            load_b(cur ^ 1, (kt + 1) * CONV_BK);
            cp_async_commit();
            cp_async_wait_all_but_one();
        } else {
            cp_async_wait_all();
        }
        __syncthreads();
        const uint32_t gid = lane / 4, tig = lane % 4;
#pragma unroll
        for (int kk = 0; kk < CONV_BK; kk += 16) {
            uint32_t af[MI][4], bfr[NI][2];
#pragma unroll
            for (int i = 0; i < MI; i++) {
                const uint32_t r = warp_m0 + i * 16 + gid;
                af[i][0] = *(const uint32_t*)&sa[cur][r][kk + tig * 2];
                af[i][1] = *(const uint32_t*)&sa[cur][r + 8][kk + tig * 2];
                af[i][2] = *(const uint32_t*)&sa[cur][r][kk + 8 + tig * 2];
                af[i][3] = *(const uint32_t*)&sa[cur][r + 8][kk + 8 + tig * 2];
            }
#pragma unroll
            for (int j = 0; j < NI; j++) {
                const uint32_t n = warp_n0 + j * 8 + gid;
                bfr[j][0] = *(const uint32_t*)&sb[cur][n][kk + tig * 2];
                bfr[j][1] = *(const uint32_t*)&sb[cur][n][kk + 8 + tig * 2];
            }
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int j = 0; j < NI; j++) mma_bf16(acc[i][j], af[i], bfr[j]);
        }
        __syncthreads();  // the stage is refilled next iteration
    }

    // Epilogue: accumulator (row gid / gid + 8, columns tig*2, tig*2 + 1) of each tile.
    const uint32_t gid = lane / 4, tig = lane % 4;
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const uint64_t m = m_block + warp_m0 + i * 16 + gid + (r / 2) * 8;
                const uint32_t n = n_block + warp_n0 + j * 8 + tig * 2 + (r % 2);
                if (m >= p.m || n >= p.ng) continue;
                const uint32_t ch = g * p.ng + n;
                const uint64_t at = m * p.cout + ch;
                float v = acc[i][j][r];
                if (p.has_bias) v += bias[ch];
                if (p.has_residual) v += bf16_to_f32(residual[at]);
                y[at] = f32_to_bf16(activate(v, p.act));
            }
}

#define CONV_VARIANT(NAME, BM, BN, WM, WN, VEC)                                                            \
    extern "C" __global__ void __launch_bounds__(CONV_THREADS)                                             \
        NAME(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w, const float* __restrict__ bias, \
             const uint16_t* __restrict__ residual, uint16_t* __restrict__ y, ConvParams p) {             \
        conv_body<BM, BN, WM, WN, VEC>(x, w, bias, residual, y, p);                                        \
    }

CONV_VARIANT(conv_bf16_128x64_v8, 128, 64, 2, 2, 8)
CONV_VARIANT(conv_bf16_128x32_v8, 128, 32, 4, 1, 8)
CONV_VARIANT(conv_bf16_128x16_v8, 128, 16, 4, 1, 8)
CONV_VARIANT(conv_bf16_128x8_v8, 128, 8, 4, 1, 8)
CONV_VARIANT(conv_bf16_128x64_v1, 128, 64, 2, 2, 1)

// Depthwise convolution (one input channel per group: MobileNet, EfficientNet,
// ConvNeXt's 7x7), its own kernel: the implicit GEMM would pad K = KH*KW to
// CONV_BK and waste the tensor cores. One thread per output element,
// channels fastest (coalesced); the taps summed in fp32 in (kh, kw) order,
// then the same epilogue. Same ConvParams and packed weights ([Cout][K_pad],
// k = (kh, kw)); output channel o reads input channel o / Ng.
// Launch: grid ceil(M * Cout / CONV_THREADS), block CONV_THREADS.
extern "C" __global__ void __launch_bounds__(CONV_THREADS)
conv_depthwise_bf16_nhwc(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                         const float* __restrict__ bias, const uint16_t* __restrict__ residual,
                         uint16_t* __restrict__ y, ConvParams p) {
    const uint64_t i = (uint64_t)blockIdx.x * CONV_THREADS + threadIdx.x;
    if (i >= (uint64_t)p.m * p.cout) return;
    const uint32_t o = i % p.cout;
    const uint64_t m = i / p.cout;
    const uint32_t ox = m % p.ow, oy = (m / p.ow) % p.oh;
    const uint64_t img = m / ((uint64_t)p.ow * p.oh);
    const uint32_t ci = o / p.ng;
    const uint16_t* wo = w + (uint64_t)o * p.k_pad;
    float acc = 0.0f;
    for_each_tap(p, oy, ox, [&](uint32_t iy, uint32_t ix, uint32_t ky, uint32_t kx) {
        const float xv = bf16_to_f32(x[((img * p.h + iy) * p.w + ix) * p.cin + ci]);
        acc = __fadd_rn(acc, __fmul_rn(xv, bf16_to_f32(wo[ky * p.kw + kx])));
    });
    float v = acc;
    if (p.has_bias) v += bias[o];
    if (p.has_residual) v += bf16_to_f32(residual[i]);
    y[i] = f32_to_bf16(activate(v, p.act));
}
