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
//         4 sigmoid, 5 GELU (erf), 6 GELU (tanh form): common/conv_params.cuh.
// Layout: x [N][H][W][Cin] bf16; w [groups][Ng][K_pad] bf16, K_pad a
//         multiple of CONV_BK, zero past K; bias [Cout] f32; residual and y
//         [N][OH][OW][Cout] bf16. bf16 travels as uint16_t bits.
// Two kernels: conv_tc_* (the pipelined tensor-core kernel below: 256x128, 128x128,
//         128x64 and 128x48 tiles, three cp.async stages, ldmatrix, 16-byte
//         epilogue) for layers with more than 32 channels a group and channel
//         counts that are multiples of 8, and conv_bf16_* (conv_body, next)
//         for narrow groups and odd channel counts. Every variant that
//         computes a layer gives the same bits: the k order, the k16 steps
//         and the epilogue's fp32 operations are the same in all of them, so
//         the choice of kernel (teacher/gpu/conv.rs `variant`, or a tuner)
//         never changes the output. Layers with an output of one pixel an
//         image (the FC layers) and more than CONV_SPLIT_TILES k-tiles take
//         split-K variants of conv_tc_* and conv_split_reduce (the end of
//         the conv_tc section), always: their fp32 sums run in slices.
// Launch (conv_bf16_*): grid (ceil(M / BM), ceil(Ng / BN), groups), block CONV_THREADS
//         (4 warps in a WM x WN grid), static shared memory
//         2 stages x (BM + BN) x (CONV_BK + 8) bf16 (<= 30 KB). Variants
//         (entry points) differ in BN, for narrow groups (ResNeXt: Ng = 8 to
//         64 at 32 groups), and in how A is gathered: `_v8` loads 8 channels
//         (16 bytes) at once with cp.async and needs Cin_g % 8 == 0; `_v1`
//         loads one at a time (any Cin_g % 8 != 0; an RGB stem no longer:
//         teacher/gpu/lower.rs stores the model's input with 8 channels,
//         zeros after RGB, and zero-pads the stem's weights), in the 128x64
//         tile only. Depthwise layers (Cin_g = 1) have their own
//         kernel at the end of this file.
// Pipeline: two shared-memory stages; the next k-tile's cp.async copies are
//         in flight while the current one feeds the tensor cores.
// Tolerance vs the CPU twin (teacher/gpu/conv.rs, cpu module: the same bf16
//         products summed in f64): Tol::Bf16Accum, |y - ref| <= 2^-7 |ref| +
//         K 2^-23 sum|terms| (the fp32 accumulation order of the tensor
//         cores is not specified, then one bf16 rounding).
#include <stdint.h>

#include "common/bf16.cuh"
#include "common/conv_params.cuh"
#include "common/mma.cuh"
#include "common/window.cuh"

#define CONV_THREADS 128
#define CONV_BK 32
#define CONV_LDS (CONV_BK + 8)  // padded row: conflict-free fragment loads

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
                    cp_async16(smem_u32(dst), src, ok);
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
            cp_async16(smem_u32(&sb[stage][n][kc]), src, ok);
        }
    };

    float acc[MI][NI][4];
    zero_accumulators(acc);

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
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
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
                for (int j = 0; j < NI; j++) mma_bf16_16816(acc[i][j], af[i], bfr[j]);
        }
        __syncthreads();  // the stage is refilled next iteration
    }

    // Epilogue: accumulator (row gid / gid + 8, columns tig*2, tig*2 + 1) of each tile.
    // No GELU here (activate_no_gelu): its erf and tanh inlined in these
    // unrolled loops spill; teacher/gpu/conv.rs gives GELU layers to the
    // other kernels only.
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
                y[at] = f32_to_bf16(activate_no_gelu(v, p.act));
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

// ---- The pipelined tensor-core kernel (conv_tc_*) -----------------------------------
// The same implicit GEMM, the same k order and the same fp32 epilogue as
// conv_body, so every variant gives the same bits (each output's
// accumulator sees the same mma k16 steps in the same order), built for
// the large layers:
//   - BM x BN CTA tiles of 4 warps, each warp a (BM/WM) x (BN/WN) tile;
//   - CONV_STAGES shared-memory stages filled by cp.async, one barrier per
//     k-tile; rows of CONV_BK bf16 (64 bytes, four 16-byte chunks) stored
//     with chunk q of row r at chunk q ^ ((r >> 1) & 3), so that the
//     cp.async stores and the ldmatrix reads of 8 rows each touch 8
//     different 16-byte bank groups (conflict-free);
//   - fragments by ldmatrix.x4 (A: one per 16x16, B: one per two 8x16);
//   - the im2col gather without a divide in the loop. GATHER 0 ("rows",
//     Cin_g % 32 == 0): a k-tile is 32 channels of one tap for the whole
//     CTA, so the tap state is uniform and a thread copies the four chunks
//     of one A row (one bounds test, one address per tile). GATHER 4
//     ("chunks", Cin_g % 8 == 0): a thread copies one chunk of BM / 32
//     rows and keeps its chunk's (c, kh, kw), advanced by CONV_BK per tile
//     with up to four wraps of c past Cin_g (Cin_g = 8: four taps a tile);
//     GATHER 1 the same with one wrap (Cin_g >= 32, e.g. 48), which keeps
//     the tap update out of a four-deep chain.
//     B is always copied by rows (its rows are contiguous);
//   - the epilogue staged through shared memory in fp32 (row stride BN + 8
//     floats: conflict-free float2 fragment stores), then per thread 8
//     consecutive channels: bias as two float4, the residual as one
//     16-byte load, one 16-byte bf16 store. ACT and RES are template
//     parameters (-1: read p.act / p.has_residual at run time);
//   - blocks rastered with the output-channel tiles fastest (blockIdx.x =
//     m_tile * n_tiles + n_tile): the CTAs that share an A tile run
//     together, so the activation is read from DRAM about once.
// Needs Cin_g % 8 == 0 (% 32 for GATHER 0, >= 32 for GATHER 1), Ng % 8 ==
// 0, Cout % 8 == 0, a bias (p.has_bias) and 16-byte aligned x, y and
// residual; the launcher checks (teacher/gpu/conv.rs `variant`).
// Launch: grid (ceil(M / BM) * ceil(Ng / BN), 1, groups), block
//         CONV_THREADS (the 256x128 tile: 2 * CONV_THREADS), shared
//         CONV_STAGES * (BM + BN) * 64 bytes, static up to 48 KB, else
//         dynamic (256x128: 73728 bytes and 128 for alignment,
//         CONV_TC_256_SMEM).
#define CONV_STAGES 3
// k-tiles a split-K slice sums (CONV_SPLIT_TILES * CONV_BK = 256 of K).
#define CONV_SPLIT_TILES 8

// Shared offset of 16-byte chunk q of row r in a swizzled tile of 64-byte rows.
__device__ __forceinline__ uint32_t swizzled(uint32_t r, uint32_t q) { return r * 64 + ((q ^ ((r >> 1) & 3)) << 4); }

template <int BM, int BN, int WM, int WN, int GATHER, int ACT, int RES, bool SPLIT>
__device__ __forceinline__ void conv_tc_body(const uint16_t* __restrict__ x, const uint16_t* __restrict__ wt,
                                             const float* __restrict__ bias,
                                             const uint16_t* __restrict__ residual, uint16_t* __restrict__ y,
                                             float* __restrict__ ws, const ConvParams& p) {
    constexpr int WARP_M = BM / WM, WARP_N = BN / WN;
    constexpr int MI = WARP_M / 16, NI = WARP_N / 8;
    constexpr int THREADS = WM * WN * 32;
    static_assert(THREADS == CONV_THREADS || (THREADS == 2 * CONV_THREADS && GATHER == 0),
                  "4 warps, or 8 with the row gather (256x128)");
    static_assert(MI >= 1 && NI % 2 == 0 && WARP_M % 16 == 0, "warp tile: ldmatrix.x4 takes B two n8 tiles at a time");
    static_assert(GATHER == 0 || GATHER == 1 || GATHER == 4, "gather by rows (0) or by chunks, up to 1 or 4 wraps");
    constexpr int ROW_BYTES = CONV_BK * 2;  // 64: four 16-byte chunks
    constexpr int A_STAGE = BM * ROW_BYTES, B_STAGE = BN * ROW_BYTES;
    constexpr int SMEM = CONV_STAGES * (A_STAGE + B_STAGE);
    // B (and A with GATHER 0) by rows: B_CH chunks of one row per thread,
    // or with BN = 48 (192 chunks) one chunk of row tid / 4 and, for the
    // first 64 threads, one of row 32 + tid / 4.
    constexpr bool B_ODD = BN * 4 % THREADS != 0;
    constexpr int B_CH = B_ODD ? 1 : BN * 4 / THREADS, B_TPR = 4 / B_CH;
    static_assert(B_ODD ? BN == 48 : (B_CH == 1 || B_CH == 2 || B_CH == 4), "B rows split evenly (or BN = 48)");
    static_assert(GATHER != 0 || BM == THREADS, "gather by rows: one A row per thread");
    // A with GATHER 1 or 4: chunk tid % 4 of rows tid / 4 + 32 i.
    constexpr int A_ROWS = BM / 32;
    // Epilogue: fp32 rows of BN + 8 floats, in PASSES passes over the rows.
    constexpr int SLD = BN + 8;
    constexpr int PASSES = (BM * SLD * 4 <= SMEM) ? 1 : 2;
    static_assert(MI % PASSES == 0 && BM / PASSES * SLD * 4 <= SMEM, "epilogue staging fits the pipeline's buffers");

    // Over 48 KB (the 256x128 tile: 72 KB) the stages are dynamic shared
    // memory, which the launcher opts into (src/cuda: cuFuncSetAttribute).
    // Its base is promised 16-byte alignment only; the swizzle is
    // conflict-free on 128-byte boundaries, so the base is rounded up to
    // one (the launch gives 128 bytes more).
    // The mask, not an added remainder, lets the compiler see the 128-byte
    // alignment and keep the swizzle's XORs off the base (2.30 issued
    // instructions per HMMA on sm_90a, 2.55 without).
    uint8_t* smem;
    uint32_t s_a;
    if constexpr (SMEM > 48 * 1024) {
        extern __shared__ __align__(16) uint8_t smem_dynamic[];
        s_a = (smem_u32(smem_dynamic) + 127u) & ~127u;
        smem = smem_dynamic + (s_a - smem_u32(smem_dynamic));
    } else {
        __shared__ __align__(128) uint8_t smem_static[SMEM];
        smem = smem_static;
        s_a = smem_u32(smem);
    }
    const uint32_t s_b = s_a + CONV_STAGES * A_STAGE;

    const uint32_t tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const uint32_t warp_m0 = (warp / WN) * WARP_M, warp_n0 = (warp % WN) * WARP_N;
    const uint32_t g = blockIdx.z;
    const uint32_t n_tiles = (p.ng + BN - 1) / BN;
    const uint32_t n_block = (blockIdx.x % n_tiles) * BN;
    const uint32_t m_block = (blockIdx.x / n_tiles) * BM;
    // The k-tiles this block sums: all of them, or with SPLIT the slice
    // blockIdx.y of CONV_SPLIT_TILES (the last one may be shorter).
    const uint32_t all_tiles = p.k_pad / CONV_BK;
    const uint32_t kt0 = SPLIT ? blockIdx.y * CONV_SPLIT_TILES : 0;
    const uint32_t k_tiles = SPLIT ? min((uint32_t)CONV_SPLIT_TILES, all_tiles - kt0) : all_tiles;

    // ---- A: where each gathered row's window starts (its top-left tap,
    // channel 0 of the group), and the row's bounds; a row past M never is
    // inside the image.
    constexpr int AR = GATHER == 0 ? 1 : A_ROWS;
    const uint32_t a_row0 = GATHER == 0 ? tid : tid / 4, a_step = 32;
    const uint16_t* a_src[AR];
    int ih0[AR], iw0[AR];
#pragma unroll
    for (int i = 0; i < AR; i++) {
        const uint32_t m = m_block + a_row0 + i * a_step;
        const uint32_t mm = m < p.m ? m : 0;
        const uint32_t ow = mm % p.ow, t = mm / p.ow, oh = t % p.oh, img = t / p.oh;
        ih0[i] = m < p.m ? (int)(oh * p.sh) - (int)p.ph : -(1 << 30);
        iw0[i] = (int)(ow * p.sw) - (int)p.pw;
        a_src[i] = x + ((int64_t)img * p.h * p.w * p.cin + (int64_t)g * p.cin_g +
                        ((int64_t)ih0[i] * p.w + iw0[i]) * p.cin);
    }
    // k = (kh, kw, c) of the (first) chunk this thread copies; tc is the
    // element offset of that chunk from a_src: (kh dh W + kw dw) Cin + c.
    uint32_t c = GATHER == 0 ? 0 : (tid % 4) * 8, kw = 0, kh = 0;
    int kdh = 0, kdw = 0, tc = (int)c;
    const int step_w = (int)(p.dw * p.cin) - (int)p.cin_g;
    const int step_h = (int)(p.dh * p.w * p.cin) - (int)(p.kw * p.dw * p.cin);
    auto next_tap_if_past = [&]() {
        if (c >= p.cin_g) {
            c -= p.cin_g;
            kw++;
            kdw += p.dw;
            tc += step_w;
            if (kw == p.kw) {
                kw = 0;
                kdw = 0;
                kh++;
                kdh += p.dh;
                tc += step_h;
            }
        }
    };
    // Wraps of c past Cin_g per CONV_BK step: one when Cin_g >= 32 (GATHER
    // 0 and 1), up to four when Cin_g = 8 (GATHER 4).
    constexpr int WRAPS = GATHER == 0 ? 1 : GATHER;
    if (SPLIT) {
        // The slice starts at k = kt0 * CONV_BK: this chunk's (kh, kw, c)
        // by division, once (a k past K gives kh >= KH: zeros).
        const uint32_t k = kt0 * CONV_BK + c, tap = k / p.cin_g;
        c = k % p.cin_g;
        kh = tap / p.kw;
        kw = tap % p.kw;
        kdh = (int)(kh * p.dh);
        kdw = (int)(kw * p.dw);
        tc = (kdh * (int)p.w + kdw) * (int)p.cin + (int)c;
    } else {
#pragma unroll
        for (int r = 0; r < WRAPS - 1; r++) next_tap_if_past();  // Cin_g < 32: the chunk may start taps later
    }
    // Shared offsets within a stage: GATHER 0, chunk q of row tid at
    // a_dst ^ (q << 4) (the row's chunk 0, swizzled; rows are 64-byte
    // aligned, so the XOR only moves the chunk); GATHER 4, row tid / 4 + 32 i
    // at a_dst + i * 2048 (the same swizzle every 32 rows).
    const uint32_t a_dst = GATHER == 0 ? swizzled(tid, 0) : swizzled(tid / 4, tid % 4);
    // ---- B: B_CH chunks of row tid / B_TPR.
    const uint32_t b_row = tid / B_TPR, b_q0 = (tid % B_TPR) * B_CH;
    const bool b_ok = n_block + b_row < p.ng;
    const uint16_t* b_src = wt + ((uint64_t)g * p.ng + (b_ok ? n_block + b_row : 0)) * p.k_pad + kt0 * CONV_BK + b_q0 * 8;
    const uint32_t b_dst = swizzled(b_row, 0);  // chunk b_q0 + q at b_dst ^ ((b_q0 + q) << 4)
    // BN = 48: the second chunk (row 32 + tid / 4, threads 0..63). Row
    // 32 + r swizzles as row r (the swizzle repeats every 8 rows).
    const bool b2_has = B_ODD && tid < (BN - 32) * 4;
    const bool b2_ok = b2_has && n_block + 32 + b_row < p.ng;
    const uint16_t* b2_src =
        wt + ((uint64_t)g * p.ng + (b2_ok ? n_block + 32 + b_row : 0)) * p.k_pad + kt0 * CONV_BK + b_q0 * 8;

    auto load_tile = [&](uint32_t stage) {
        const uint32_t sa = s_a + stage * A_STAGE, sb = s_b + stage * B_STAGE;
        if (GATHER == 0) {
            const bool ok = (uint32_t)(ih0[0] + kdh) < p.h && (uint32_t)(iw0[0] + kdw) < p.w;
            const uint16_t* src = a_src[0] + tc;
            const uint32_t row = sa + a_dst;
#pragma unroll
            for (int q = 0; q < 4; q++) cp_async16(row ^ (q << 4), src + q * 8, ok);
        } else {
            const bool k_ok = kh < p.kh;  // past K (the last, partial tile): zeros
#pragma unroll
            for (int i = 0; i < A_ROWS; i++) {
                const bool ok = k_ok && (uint32_t)(ih0[i] + kdh) < p.h && (uint32_t)(iw0[i] + kdw) < p.w;
                cp_async16(sa + a_dst + i * 32 * ROW_BYTES, a_src[i] + tc, ok);
            }
        }
        c += CONV_BK;
        tc += CONV_BK;
#pragma unroll
        for (int r = 0; r < WRAPS; r++) next_tap_if_past();
#pragma unroll
        for (int q = 0; q < B_CH; q++) cp_async16((sb + b_dst) ^ ((b_q0 + q) << 4), b_src + q * 8, b_ok);
        b_src += CONV_BK;
        if (B_ODD) {
            if (b2_has) cp_async16((sb + b_dst + 32 * ROW_BYTES) ^ (b_q0 << 4), b2_src, b2_ok);
            b2_src += CONV_BK;
        }
    };

    // ---- ldmatrix addresses of this lane (stage 0), for k16 steps 0 and 1.
    uint32_t ld_a[2], ld_b[2];
#pragma unroll
    for (int kk = 0; kk < 2; kk++) {
        ld_a[kk] = s_a + swizzled(warp_m0 + lane % 8 + ((lane / 8) % 2) * 8, kk * 2 + lane / 16);
        ld_b[kk] = s_b + swizzled(warp_n0 + lane % 8 + (lane / 16) * 8, kk * 2 + (lane / 8) % 2);
    }

    float acc[MI][NI][4];
    zero_accumulators(acc);

#pragma unroll
    for (int s = 0; s < CONV_STAGES - 1; s++) {
        if ((uint32_t)s < k_tiles) load_tile(s);
        cp_async_commit();
    }
    uint32_t rd = 0, wr = CONV_STAGES - 1;
    for (uint32_t kt = 0; kt < k_tiles; kt++) {
        cp_async_wait<CONV_STAGES - 2>();  // tile kt has landed (this thread's copies)
        __syncthreads();                   // ... everyone's; and stage `wr` is no longer read
        if (kt + CONV_STAGES - 1 < k_tiles) load_tile(wr);
        cp_async_commit();
#pragma unroll
        for (int kk = 0; kk < 2; kk++) {
            uint32_t af[MI][4], bf[NI][2];
#pragma unroll
            for (int i = 0; i < MI; i++) ldsm_x4(af[i], ld_a[kk] + rd * A_STAGE + i * 16 * ROW_BYTES);
#pragma unroll
            for (int j = 0; j < NI; j += 2) {
                uint32_t q[4];
                ldsm_x4(q, ld_b[kk] + rd * B_STAGE + j * 8 * ROW_BYTES);
                bf[j][0] = q[0];
                bf[j][1] = q[1];
                bf[j + 1][0] = q[2];
                bf[j + 1][1] = q[3];
            }
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int j = 0; j < NI; j++) mma_bf16_16816(acc[i][j], af[i], bf[j]);
        }
        rd = rd == CONV_STAGES - 1 ? 0 : rd + 1;
        wr = wr == CONV_STAGES - 1 ? 0 : wr + 1;
    }
    cp_async_wait<0>();
    __syncthreads();  // the pipeline's buffers become the epilogue's staging

    // ---- epilogue
    float* st = reinterpret_cast<float*>(smem);
    const uint32_t gid = lane / 4, tig = lane % 4;
    constexpr int PASS_ROWS = WARP_M / PASSES;  // of each warp's rows, per pass
    const bool res = RES < 0 ? p.has_residual != 0 : RES != 0;
#pragma unroll
    for (int pass = 0; pass < PASSES; pass++) {
#pragma unroll
        for (int ii = 0; ii < MI / PASSES; ii++)
#pragma unroll
            for (int j = 0; j < NI; j++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const uint32_t srow = (warp / WN) * PASS_ROWS + ii * 16 + gid + h * 8;
                    const uint32_t scol = warp_n0 + j * 8 + tig * 2;
                    const float* a = acc[pass * (MI / PASSES) + ii][j];
                    *reinterpret_cast<float2*>(&st[srow * SLD + scol]) = make_float2(a[2 * h], a[2 * h + 1]);
                }
        __syncthreads();
        constexpr int CHUNKS = WM * PASS_ROWS * (BN / 8);
#pragma unroll 2
        for (int idx = tid; idx < CHUNKS; idx += THREADS) {
            const uint32_t srow = idx / (BN / 8), cu = idx % (BN / 8);
            const uint32_t m = m_block + (srow / PASS_ROWS) * WARP_M + pass * PASS_ROWS + srow % PASS_ROWS;
            const uint32_t n = n_block + cu * 8;
            if (m >= p.m || n >= p.ng) continue;
            const uint32_t ch = g * p.ng + n;
            const uint64_t at = (uint64_t)m * p.cout + ch;
            const float4 s0 = *reinterpret_cast<const float4*>(&st[srow * SLD + cu * 8]);
            const float4 s1 = *reinterpret_cast<const float4*>(&st[srow * SLD + cu * 8 + 4]);
            if (SPLIT) {  // the slice's fp32 sum, as it is: conv_split_reduce finishes it
                float4* to = reinterpret_cast<float4*>(ws + ((uint64_t)blockIdx.y * p.m + m) * p.cout + ch);
                to[0] = s0;
                to[1] = s1;
                continue;
            }
            const float4 b0 = __ldg(reinterpret_cast<const float4*>(bias + ch));
            const float4 b1 = __ldg(reinterpret_cast<const float4*>(bias + ch + 4));
            float v[8] = {s0.x + b0.x, s0.y + b0.y, s0.z + b0.z, s0.w + b0.w,
                          s1.x + b1.x, s1.y + b1.y, s1.z + b1.z, s1.w + b1.w};
            if (res) {
                const uint4 r = *reinterpret_cast<const uint4*>(residual + at);
                const uint32_t rw[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
                for (int e = 0; e < 8; e++) v[e] += bf16_to_f32((uint16_t)(rw[e / 2] >> (16 * (e % 2))));
            }
            uint32_t o[4];
#pragma unroll
            for (int e = 0; e < 4; e++)
                o[e] = ACT == 1 ? bf16x2_not_nan(fmaxf(v[2 * e], 0.0f), fmaxf(v[2 * e + 1], 0.0f))
                                : (uint32_t)f32_to_bf16(activate_t<ACT>(v[2 * e], p.act)) |
                                      (uint32_t)f32_to_bf16(activate_t<ACT>(v[2 * e + 1], p.act)) << 16;
            *reinterpret_cast<uint4*>(y + at) = make_uint4(o[0], o[1], o[2], o[3]);
        }
        if (PASSES > 1) __syncthreads();  // the next pass overwrites the staging
    }
}

#define CONV_TC(NAME, BM, BN, WM, WN, GATHER, ACT, RES)                                                     \
    extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2)                                           \
        NAME(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w, const float* __restrict__ bias,  \
             const uint16_t* __restrict__ residual, uint16_t* __restrict__ y, ConvParams p) {              \
        conv_tc_body<BM, BN, WM, WN, GATHER, ACT, RES, false>(x, w, bias, residual, y, nullptr, p);         \
    }

// ResNet/ResNeXt's three epilogues (conv+BN, +ReLU, +residual+ReLU) fixed at
// compile time; `_any` reads the activation and residual from p.
CONV_TC(conv_tc_128x128_none, 128, 128, 2, 2, 0, 0, 0)
CONV_TC(conv_tc_128x128_relu, 128, 128, 2, 2, 0, 1, 0)
CONV_TC(conv_tc_128x128_relu_res, 128, 128, 2, 2, 0, 1, 1)
CONV_TC(conv_tc_128x128_any, 128, 128, 2, 2, 0, -1, -1)
CONV_TC(conv_tc_128x64_none, 128, 64, 2, 2, 0, 0, 0)
CONV_TC(conv_tc_128x64_relu, 128, 64, 2, 2, 0, 1, 0)
CONV_TC(conv_tc_128x64_relu_res, 128, 64, 2, 2, 0, 1, 1)
CONV_TC(conv_tc_128x64_any, 128, 64, 2, 2, 0, -1, -1)
// Cin_g % 32 != 0 (the stem padded to 8 channels, 16, 24, 48, ...).
CONV_TC(conv_tc_128x64_chunks_any, 128, 64, 2, 2, 4, -1, -1)
// 48 channels a group (IG-ResNeXt-101 32x48d's first stage, where a 64-wide
// tile computes a quarter of zeros): warps of 32 x 48 stacked along M, the
// chunk gather with one wrap (Cin_g % 8 == 0, Cin_g >= 32).
CONV_TC(conv_tc_128x48_chunks_relu, 128, 48, 4, 1, 1, 1, 0)
CONV_TC(conv_tc_128x48_chunks_any, 128, 48, 4, 1, 1, -1, -1)

// 256x128: eight warps of 64x64 (the same warp tile, so the same registers
// and the same main loop per warp), one row of A per thread; a quarter
// less L2 traffic per multiply-add than 128x128 ((256 + 128) / (256 x 128)
// against 2 / 128 rows loaded per output), at one block an SM (220
// registers x 256 threads) and twice the tile's wave quantisation. A
// candidate for the tuner wherever the row-gather tiles compute a layer.
#define CONV_TC_256_SMEM (CONV_STAGES * (256 + 128) * CONV_BK * 2 + 128)
#define CONV_TC8(NAME, ACT, RES)                                                                             \
    extern "C" __global__ void __launch_bounds__(2 * CONV_THREADS, 1)                                       \
        NAME(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w, const float* __restrict__ bias,  \
             const uint16_t* __restrict__ residual, uint16_t* __restrict__ y, ConvParams p) {              \
        conv_tc_body<256, 128, 4, 2, 0, ACT, RES, false>(x, w, bias, residual, y, nullptr, p);             \
    }
CONV_TC8(conv_tc_256x128_none, 0, 0)
CONV_TC8(conv_tc_256x128_relu, 1, 0)
CONV_TC8(conv_tc_256x128_relu_res, 1, 1)
CONV_TC8(conv_tc_256x128_any, -1, -1)

// ---- Split K (layers whose output is one pixel an image: the FC layers) --------------
// At the product batch an FC layer has few output tiles (ResNet-50's
// 2048 -> 1000 at batch 256: 2 x 8 = 16 blocks for 132 SMs) and a long K
// (64 k-tiles), so its blocks run one after another on a mostly idle
// device. Split, each block sums one slice of CONV_SPLIT_TILES k-tiles from
// zero (grid y = slice) and writes that fp32 sum to a workspace; then
// conv_split_reduce adds the slices in slice order, then bias, residual and
// activation as the other epilogues do. The slices are fixed by K alone,
// the sums of different pixels never meet, and a layer that is split is
// never computed unsplit (teacher/gpu/conv.rs `split_slices`: its
// candidates are the split kernels only), so its bits depend neither on
// the batch nor on the kernel that ran it.
// Layout: ws [slices][M][Cout] fp32. Launch: grid (ceil(M / BM) * ceil(Ng /
//         BN), slices, groups), block CONV_THREADS; the main loop is
//         conv_tc_body's, unchanged.
#define CONV_TC_SPLIT(NAME, BM, BN, GATHER)                                                                     \
    extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2)                                           \
        NAME(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w, float* __restrict__ ws, ConvParams p) { \
        conv_tc_body<BM, BN, 2, 2, GATHER, 0, 0, true>(x, w, nullptr, nullptr, nullptr, ws, p);                \
    }
CONV_TC_SPLIT(conv_tc_128x128_split, 128, 128, 0)
CONV_TC_SPLIT(conv_tc_128x64_split, 128, 64, 0)
CONV_TC_SPLIT(conv_tc_128x64_chunks_split, 128, 64, 4)

// The split layer's epilogue: y[m][ch] = act(((ws[0] + ws[1]) + ...) +
// bias + residual), rounded to bf16. One thread per 8 channels of one
// pixel (Cout % 8 == 0), in two halves of 4 (16-byte reads of each slice,
// one 8-byte store each): eight values held across the activation's calls
// (SiLU's division) would spill.
// Launch: grid ceil(M * Cout / 8 / CONV_THREADS), block CONV_THREADS.
extern "C" __global__ void __launch_bounds__(CONV_THREADS)
conv_split_reduce(const float* __restrict__ ws, const float* __restrict__ bias,
                  const uint16_t* __restrict__ residual, uint16_t* __restrict__ y, ConvParams p,
                  uint32_t slices) {
    const uint64_t i = (uint64_t)blockIdx.x * CONV_THREADS + threadIdx.x;
    const uint64_t plane = (uint64_t)p.m * p.cout;
    if (i >= plane / 8) return;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const uint64_t at = i * 8 + half * 4;  // m * Cout + ch
        const uint32_t ch = (uint32_t)(at % p.cout);
        float4 v = *reinterpret_cast<const float4*>(ws + at);
        for (uint32_t s = 1; s < slices; s++) {
            const float4 b = *reinterpret_cast<const float4*>(ws + s * plane + at);
            v.x += b.x, v.y += b.y, v.z += b.z, v.w += b.w;
        }
        const float4 c = __ldg(reinterpret_cast<const float4*>(bias + ch));
        v.x += c.x, v.y += c.y, v.z += c.z, v.w += c.w;
        if (p.has_residual) {
            const uint2 r = *reinterpret_cast<const uint2*>(residual + at);
            v.x += bf16_to_f32((uint16_t)r.x), v.y += bf16_to_f32((uint16_t)(r.x >> 16));
            v.z += bf16_to_f32((uint16_t)r.y), v.w += bf16_to_f32((uint16_t)(r.y >> 16));
        }
        const uint32_t lo = (uint32_t)f32_to_bf16(activate(v.x, p.act)) |
                            (uint32_t)f32_to_bf16(activate(v.y, p.act)) << 16;
        const uint32_t hi = (uint32_t)f32_to_bf16(activate(v.z, p.act)) |
                            (uint32_t)f32_to_bf16(activate(v.w, p.act)) << 16;
        *reinterpret_cast<uint2*>(y + at) = make_uint2(lo, hi);
    }
}

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
