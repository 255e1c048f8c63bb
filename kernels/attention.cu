// attention: fused scaled-dot-product attention, softmax(q k^T scale + bias) v,
// for the transformer teachers (ViT/DeiT: 197 tokens, head dim 64; Swin:
// 49-token windows with a relative-position bias and a shift mask), in the
// FlashAttention-2 manner: a block's query rows stay in registers, keys and
// values stream through shared memory 64 at a time, the softmax is online
// in fp32, and no score matrix ever reaches memory.
//
// Math:   per (batch b, head h, query row i), over keys j < n_kv, with
//         s_ij = q_i . k_j from bf16 in fp32 on the tensor cores and
//         c = scale * log2(e): with a bias, x_j = fma(s_ij, c, bias_ij *
//         log2(e)) and c' = 1; without, x_j = s_ij and c' = c. A tile of
//         64 keys at a time, in order, with m the row's reference (log2
//         units) and t the tile's max of x_j c':
//           first tile: m = t;
//           p_j = 2^fma(x_j, c', -m) (m read as 0 while -inf; 0 past n_kv),
//           T = sum_j bf16(p_j) on the tensor cores (fp32, 16 keys an mma);
//           later tiles, when T > 2^32, T is not finite or m is -inf (the
//           rebase): m' = max(m, t), o *= 2^(m - m'), l *= 2^(m - m'),
//           m = m', and p_j, T again;
//           l += T, o += sum_j bf16(p_j) v_j (tensor cores, 16 keys an mma);
//         and at the end y_i = o * (1 / l) rounded to bf16. 2^ is
//         ex2.approx.ftz (2 ulp, subnormals flushed).
//         Why a lazy reference: FlashAttention's every-tile max costs a max
//         a score and a rescale of o a tile; here a later tile needs
//         neither unless its scores pass m by about 32 (in log2 units), so
//         the common tile spends per score an fma, an ex2 and half a
//         convert, and p < 2^32 keeps fp32 and bf16 far from overflow. A
//         warp rebases when any of its rows needs it; a row that does not
//         keeps its m and p (the same bits). Why T on the tensor cores: an
//         mma of P with a column of ones sums 16 keys in one instruction
//         where the lanes would spend an add a key, and l then sums the
//         very bf16(p) that o weighs with.
//         Every row's arithmetic depends only on its own scores, so y is
//         the same whatever the batch, the block shape or the launch.
// Layout: q [batch][heads][n_q][d], k and v [batch][heads][n_kv][d], y
//         [batch][heads][n_q][d], each bf16 with its own element strides
//         for the batch, head and row axes (`AttnParams`) and d contiguous:
//         q, k and v are views of the qkv projection's output, y is written
//         where its consumer wants it (tokens-major: [b][i][h][d]). bias
//         (the _bias entries) [bias_batch][heads][n_q][n_kv] f32, batch b
//         reading bias[b % bias_batch] (Swin's windows).
// Tiling: a block of 4 warps takes 64 MT query rows of one (b, h), 16 MT
//         rows a warp (MT = 2, the _x2 entries, for D <= 64 and long
//         sequences: each K and V fragment then feeds two m16 tiles); D (16,
//         32, 64, 96, 128) is d rounded up to 16, the columns past d
//         zero-filled on load and never stored. Q is loaded once into A
//         fragments (ldmatrix); tiles of 64 keys and values come by cp.async
//         into two stages, the next tile's copies in flight while this one
//         computes; a last tile that would run past n_kv is loaded ending
//         at key n_kv - 1 (its keys below the tile are masked), so the
//         loop's copies need no row test; Q rows past n_q (and keys of a
//         sequence under 64) repeat the last valid row (finite; never
//         stored, or masked). S = Q K^T takes ldmatrix fragments of K rows as B; the
//         probabilities of two 8-key score tiles are the A fragment of P V
//         as they lie in the accumulators (cvt.rn.bf16x2); V's B fragments
//         come by ldmatrix.trans. Shared rows are D + 8 values long, so the
//         8 rows of an ldmatrix land in distinct banks. The first tile and
//         a last tile past n_kv are peeled off the loop (only the last is
//         masked), so the loop holds the common tile and the rebase.
// Launch: grid (ceil(n_q / (64 MT)) * heads * batch), 128 threads,
//         ATT_SHARED(D, MT) bytes of dynamic shared memory (over 48 KB from
//         D 64 MT 2 and D 96 on: the launcher raises the limit). d % 8 == 0,
//         strides % 8 == 0 and 16-byte aligned q, k, v (cp.async moves 16
//         bytes).
// Tolerance vs the CPU twin (teacher/gpu/attention.rs, the same tiles and
//         order; its dot products in f64): Tol::Bf16Terms with the sum of
//         bf16(p_j) |v_j| / l of each output: each probability may round
//         to bf16 one step apart (the dot products' fp32 order and exp2f's
//         ulps move it) besides the output's own rounding.
#include <stdint.h>

#include "common/bf16.cuh"
#include "common/mma.cuh"

#define ATT_WARPS 4
#define ATT_THREADS (32 * ATT_WARPS)
#define ATT_BN 64
// Bytes of dynamic shared memory: Q (64 MT rows) and two stages of K and V
// (64 rows each), rows of D + 8 bf16.
#define ATT_SHARED(D, MT) ((64 * (MT) + 4 * ATT_BN) * ((D) + 8) * 2)
// The most a row's sum of P over one tile may be before its reference m
// moves (att_tile): each p then stays below 2^32, far from fp32's range.
#define ATT_SUM_MAX 4294967296.0f

struct AttnParams {
    uint32_t batch, heads, n_q, n_kv;
    uint32_t d, bias_batch;
    uint32_t q_b, q_h, q_s;
    uint32_t k_b, k_h, k_s;
    uint32_t v_b, v_h, v_s;
    uint32_t y_b, y_h, y_s;
    float scale_log2;  // scale * log2(e), > 0
    uint32_t unused;
};
static_assert(sizeof(AttnParams) == 80, "AttnParams layout is shared with kernels.rs");

#define ATT_LOG2E 1.4426950408889634f
#define ATT_NEG_INF __int_as_float(0xff800000u)
// Two bf16 ones: the B fragment of a column of ones (any column: all eight
// are ones, the sum lands in every accumulator of a row).
#define ATT_ONES 0x3f803f80u

// 2^x in one MUFU.EX2 (PTX ex2.approx.ftz: 2 ulp, subnormals flushed),
// where exp2f would add range fix-ups around it.
__device__ __forceinline__ float att_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// p, hidden from the optimiser: without it, ptxas folds the tile's base into
// each copy's row as a 64-bit sum (six instructions a copy where one
// multiply-add does).
__device__ __forceinline__ const char* att_opaque(const char* p) {
    uint64_t q;
    asm("mov.b64 %0, %1;\n" : "=l"(q) : "l"(reinterpret_cast<uint64_t>(p)));
    return reinterpret_cast<const char*>(q);
}

// Columns C0 .. C0 + W - 1 (W 16, 32, 64 or 128: a thread's copies then
// share one column) of rows j .. j + ROWS - 1 of a [n][d] view (row stride
// `rsb` bytes) into shared rows of D + 8, 16 bytes a copy; columns past d
// are zeros. FULL: every row is below n, and a copy's source is one
// multiply-add from the tile's base (the loop's loads; a last tile that
// would run past n is loaded ending at row n - 1 instead, see att_scores'
// jl). Else rows at or past n repeat row n - 1 (the prologue's Q and short
// sequences).
template <int D, int ROWS, bool FULL, int C0, int W>
__device__ __forceinline__ void att_load_cols(uint32_t dst, const uint16_t* __restrict__ view, uint32_t j,
                                              uint32_t rsb, uint32_t n, uint32_t d) {
    constexpr int CHUNKS = W / 8;
    static_assert(ATT_THREADS % CHUNKS == 0 && (ROWS * CHUNKS) % ATT_THREADS == 0, "whole rounds, one column");
    const uint32_t col = C0 + (threadIdx.x % CHUNKS) * 8, row0 = threadIdx.x / CHUNKS;
    const bool ok = col < d;
    const char* tile = att_opaque(reinterpret_cast<const char*>(view) + (uint64_t)j * rsb + (ok ? col * 2 : 0));
#pragma unroll
    for (int i = 0; i < ROWS * CHUNKS / ATT_THREADS; i++) {
        const uint32_t row = row0 + i * (ATT_THREADS / CHUNKS);
        const uint32_t from = FULL ? row : min(row, n - 1 - j);
        cp_async16(dst + (row * (D + 8) + col) * 2, tile + (uint64_t)from * rsb, ok);
    }
}

// All D columns: 96 as 64 + 32.
template <int D, int ROWS, bool FULL>
__device__ __forceinline__ void att_load_tile(uint32_t dst, const uint16_t* __restrict__ view, uint32_t j,
                                              uint32_t rsb, uint32_t n, uint32_t d) {
    if constexpr (D == 96) {
        att_load_cols<D, ROWS, FULL, 0, 64>(dst, view, j, rsb, n, d);
        att_load_cols<D, ROWS, FULL, 64, 32>(dst, view, j, rsb, n, d);
    } else {
        att_load_cols<D, ROWS, FULL, 0, D>(dst, view, j, rsb, n, d);
    }
}

// One warp's state over the key tiles, per m16 tile: Q's A fragments, O's
// accumulators, and per row (g, then g + 8) l, the reference m and what a
// tile reads of m (-m, or 0 while m is -inf; the most a tile's sum may be
// before m must move: ATT_SUM_MAX, or -1 while m is -inf so that a tile
// always moves it), kept beside m so that only a rebase recomputes them.
template <int D, int MT>
struct AttState {
    uint32_t qf[MT][D / 16][4];
    float o[MT][D / 8][4];
    float l[MT][2], m[MT][2], neg_m[MT][2], sum_max[MT][2];

    __device__ __forceinline__ void set_m(int mt, int r, float v) {
        m[mt][r] = v;
        neg_m[mt][r] = v == ATT_NEG_INF ? 0.0f : -v;
        sum_max[mt][r] = v == ATT_NEG_INF ? -1.0f : ATT_SUM_MAX;
    }
};

// S = Q K^T for the tile of keys j0 .. j0 + 63 (K in shared `stage`; shared
// row r holds key jl + r), in log2 units with a bias (c' = 1), raw without
// (c' = scale log2(e), applied in the exponent). MASK (the last tile, when
// it runs past n_kv): keys outside j0 .. n_kv - 1 are -inf; its rows were
// loaded from jl = n_kv - 64 (those below j0 an earlier tile's) or, with
// fewer than 64 keys in all, from 0 (those past n_kv repeats). Without
// MASK, jl = j0.
template <int D, int MT, bool BIAS, bool MASK>
__device__ __forceinline__ void att_scores(float (&s)[MT][8][4], const AttState<D, MT>& st, uint32_t stage,
                                           uint32_t j0, uint32_t jl, const float* __restrict__ bg, uint32_t row0,
                                           const AttnParams& p) {
    constexpr int ROW = D + 8, KD = D / 16;
    const int lane = threadIdx.x % 32, t = lane % 4;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int c = 0; c < 8; c++) s[mt][c][0] = s[mt][c][1] = s[mt][c][2] = s[mt][c][3] = 0.0f;
    // Each K fragment serves every m16 tile. The lane's part of the address
    // first, so that each fragment adds a constant.
    const uint32_t k_lane = stage + (((lane / 16) * 8 + lane % 8) * ROW + ((lane / 8) % 2) * 8) * 2;
#pragma unroll
    for (int kk = 0; kk < KD; kk++) {
#pragma unroll
        for (int jp = 0; jp < 4; jp++) {
            uint32_t bf[4];
            ldsm_x4(bf, k_lane + (jp * 16 * ROW + kk * 16) * 2);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16_16816(s[mt][2 * jp], st.qf[mt][kk], bf);
                mma_bf16_16816(s[mt][2 * jp + 1], st.qf[mt][kk], bf + 2);
            }
        }
    }
    if (BIAS) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int c = 0; c < 8; c++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const uint32_t key = jl + c * 8 + 2 * t + (e % 2), row = row0 + mt * 16 + 8 * (e / 2);
                    const float bv =
                        (!MASK || key < p.n_kv) && row < p.n_q ? bg[(uint64_t)row * p.n_kv + key] : 0.0f;
                    s[mt][c][e] = __fmaf_rn(s[mt][c][e], p.scale_log2, __fmul_rn(bv, ATT_LOG2E));
                }
    }
    if (MASK) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int c = 0; c < 8; c++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (const uint32_t key = jl + c * 8 + 2 * t + (e % 2); key < j0 || key >= p.n_kv)
                        s[mt][c][e] = ATT_NEG_INF;
    }
}

// P = 2^(s c' - m) as bf16 A fragments (two 8-key score tiles each), and
// each row's sum of them, P times a column of ones on the tensor cores
// (one mma for 16 keys where the lanes would spend an add a key; the sum
// is of the very bf16 values that weigh v).
template <int D, int MT>
__device__ __forceinline__ void att_probs(uint32_t (&pf)[MT][4][4], float (&ts)[MT][4], const float (&s)[MT][8][4],
                                          float sl, const AttState<D, MT>& st) {
    const uint32_t ones[2] = {ATT_ONES, ATT_ONES};
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int c = 0; c < 8; c++) {
            float pv[4];
#pragma unroll
            for (int e = 0; e < 4; e++) pv[e] = att_exp2(__fmaf_rn(s[mt][c][e], sl, st.neg_m[mt][e / 2]));
            pf[mt][c / 2][(c % 2) * 2 + 0] = bf16x2_not_nan(pv[0], pv[1]);
            pf[mt][c / 2][(c % 2) * 2 + 1] = bf16x2_not_nan(pv[2], pv[3]);
        }
        ts[mt][0] = ts[mt][1] = ts[mt][2] = ts[mt][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) mma_bf16_16816(ts[mt], pf[mt][kk], ones);
    }
}

// Each row's max of s c' over the tile (its quad's four lanes agree).
template <int MT>
__device__ __forceinline__ void att_row_max(float (&top)[MT][2], const float (&s)[MT][8][4], float sl) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float tmax[2] = {fmaxf(s[mt][0][0], s[mt][0][1]), fmaxf(s[mt][0][2], s[mt][0][3])};
#pragma unroll
        for (int c = 1; c < 8; c++) {
            tmax[0] = fmaxf(tmax[0], fmaxf(s[mt][c][0], s[mt][c][1]));
            tmax[1] = fmaxf(tmax[1], fmaxf(s[mt][c][2], s[mt][c][3]));
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 1));
            tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 2));
            top[mt][r] = __fmul_rn(tmax[r], sl);
        }
    }
}

// A tile of 64 keys (K and V in shared `stage`): S, P against the row's
// reference m, and O += P V, l += sum P. FIRST (the first tile): m is the
// tile's max. Else m stays while the tile's sum of P is at most
// ATT_SUM_MAX; a row whose sum is larger (or not finite, or whose m is
// still -inf) moves m to the tile's max, rescales o and l by 2^(m - m'),
// and takes P again: the rebase, run by the warp when any of its rows
// needs it (a row that does not keeps its m and P: the same bits).
template <int D, int MT, bool BIAS, bool MASK, bool FIRST>
__device__ __forceinline__ void att_tile(AttState<D, MT>& st, uint32_t stage, uint32_t j0, uint32_t jl,
                                         const float* __restrict__ bg, uint32_t row0, const AttnParams& p) {
    constexpr int ROW = D + 8, ND = D / 8;
    const int lane = threadIdx.x % 32;
    const float sl = BIAS ? 1.0f : p.scale_log2;
    float s[MT][8][4];
    att_scores<D, MT, BIAS, MASK>(s, st, stage, j0, jl, bg, row0, p);
    if (FIRST) {
        float top[MT][2];
        att_row_max<MT>(top, s, sl);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int r = 0; r < 2; r++) st.set_m(mt, r, top[mt][r]);
    }
    uint32_t pf[MT][4][4];
    float ts[MT][4];
    att_probs<D, MT>(pf, ts, s, sl, st);
    if (!FIRST) {
        bool need = false;
#pragma unroll
        for (int mt = 0; mt < MT; mt++) need |= !(ts[mt][0] <= st.sum_max[mt][0]) || !(ts[mt][2] <= st.sum_max[mt][1]);
        if (__any_sync(0xffffffffu, need)) {
            float top[MT][2];
            att_row_max<MT>(top, s, sl);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float alpha[2];
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const bool up = !(ts[mt][2 * r] <= st.sum_max[mt][r]);
                    const float m_new = fmaxf(st.m[mt][r], top[mt][r]);
                    alpha[r] = up ? att_exp2(__fsub_rn(st.m[mt][r], m_new)) : 1.0f;
                    if (up) st.set_m(mt, r, m_new);
                    st.l[mt][r] = __fmul_rn(st.l[mt][r], alpha[r]);
                }
#pragma unroll
                for (int n = 0; n < ND; n++) {
                    st.o[mt][n][0] = __fmul_rn(st.o[mt][n][0], alpha[0]);
                    st.o[mt][n][1] = __fmul_rn(st.o[mt][n][1], alpha[0]);
                    st.o[mt][n][2] = __fmul_rn(st.o[mt][n][2], alpha[1]);
                    st.o[mt][n][3] = __fmul_rn(st.o[mt][n][3], alpha[1]);
                }
            }
            att_probs<D, MT>(pf, ts, s, sl, st);
        }
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        st.l[mt][0] = __fadd_rn(st.l[mt][0], ts[mt][0]);
        st.l[mt][1] = __fadd_rn(st.l[mt][1], ts[mt][2]);
    }
    // O += P V: k16 steps over the 64 keys, V's B fragments transposed,
    // each serving every m16 tile.
    const uint32_t v_lane = stage + (ATT_BN * ROW + (((lane / 8) % 2) * 8 + lane % 8) * ROW + (lane / 16) * 8) * 2;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
#pragma unroll
        for (int np = 0; np < ND / 2; np++) {
            uint32_t bf[4];
            ldsm_x4_trans(bf, v_lane + (kk * 16 * ROW + np * 16) * 2);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16_16816(st.o[mt][2 * np], pf[mt][kk], bf);
                mma_bf16_16816(st.o[mt][2 * np + 1], pf[mt][kk], bf + 2);
            }
        }
    }
}

template <int D, int MT, bool BIAS>
__device__ __forceinline__ void attention_body(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                                               const uint16_t* __restrict__ v, const float* __restrict__ bias,
                                               uint16_t* __restrict__ y, const AttnParams& p) {
    constexpr int ROW = D + 8, KD = D / 16, ND = D / 8, BM = 64 * MT;
    extern __shared__ __align__(16) uint8_t att_smem[];
    const uint32_t s_q = smem_u32(att_smem);
    const uint32_t s_kv = s_q + BM * ROW * 2;  // stage s: K at + s * stage_bytes, V after K
    constexpr uint32_t stage_bytes = 2 * ATT_BN * ROW * 2;

    const uint32_t q_tiles = (p.n_q + BM - 1) / BM;
    const uint32_t qt = blockIdx.x % q_tiles;
    const uint32_t bh = blockIdx.x / q_tiles;
    const uint32_t h = bh % p.heads, b = bh / p.heads;
    const uint32_t i0 = qt * BM;
    const uint16_t* qg = q + (uint64_t)b * p.q_b + (uint64_t)h * p.q_h + (uint64_t)i0 * p.q_s;
    const uint16_t* kg = k + (uint64_t)b * p.k_b + (uint64_t)h * p.k_h;
    const uint16_t* vg = v + (uint64_t)b * p.v_b + (uint64_t)h * p.v_h;
    const float* bg = BIAS ? bias + ((uint64_t)(b % p.bias_batch) * p.heads + h) * p.n_q * p.n_kv : nullptr;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const uint32_t full = p.n_kv / ATT_BN, kv_tiles = (p.n_kv + ATT_BN - 1) / ATT_BN;
    // This lane's first row; m16 tile mt holds rows + 16 mt and + 16 mt + 8.
    const uint32_t row0 = i0 + warp * 16 * MT + g;

    // Prologue: Q with tile 0, then tile 1, in flight together. A view's
    // byte strides; a tile past the first that would run past n_kv is
    // loaded ending at its last row (jl).
    const uint32_t ksb = p.k_s * 2, vsb = p.v_s * 2;
    const uint32_t jl_max = p.n_kv >= ATT_BN ? p.n_kv - ATT_BN : 0;
    att_load_tile<D, BM, false>(s_q, qg, 0, p.q_s * 2, p.n_q - i0, p.d);
    if (p.n_kv >= ATT_BN) {
        att_load_tile<D, ATT_BN, true>(s_kv, kg, 0, ksb, p.n_kv, p.d);
        att_load_tile<D, ATT_BN, true>(s_kv + ATT_BN * ROW * 2, vg, 0, vsb, p.n_kv, p.d);
    } else {
        att_load_tile<D, ATT_BN, false>(s_kv, kg, 0, ksb, p.n_kv, p.d);
        att_load_tile<D, ATT_BN, false>(s_kv + ATT_BN * ROW * 2, vg, 0, vsb, p.n_kv, p.d);
    }
    cp_async_commit();
    if (kv_tiles > 1) {
        const uint32_t jl = min(ATT_BN, jl_max);
        att_load_tile<D, ATT_BN, true>(s_kv + stage_bytes, kg, jl, ksb, p.n_kv, p.d);
        att_load_tile<D, ATT_BN, true>(s_kv + stage_bytes + ATT_BN * ROW * 2, vg, jl, vsb, p.n_kv, p.d);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    AttState<D, MT> st;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int kk = 0; kk < KD; kk++)
            ldsm_x4(st.qf[mt][kk],
                    s_q + ((warp * 16 * MT + mt * 16 + lane % 16) * ROW + kk * 16 + (lane / 16) * 8) * 2);
#pragma unroll
        for (int n = 0; n < ND; n++) st.o[mt][n][0] = st.o[mt][n][1] = st.o[mt][n][2] = st.o[mt][n][3] = 0.0f;
        st.l[mt][0] = st.l[mt][1] = 0.0f;
        st.set_m(mt, 0, ATT_NEG_INF);
        st.set_m(mt, 1, ATT_NEG_INF);
    }

    // Tile kt + 2 refills kt's stage once every warp is done with it, then
    // tile kt + 1 must have landed.
    auto next = [&](uint32_t kt) {
        __syncthreads();
        if (kt + 2 < kv_tiles) {
            const uint32_t stage = s_kv + (kt % 2) * stage_bytes, jl = min((kt + 2) * ATT_BN, jl_max);
            att_load_tile<D, ATT_BN, true>(stage, kg, jl, ksb, p.n_kv, p.d);
            att_load_tile<D, ATT_BN, true>(stage + ATT_BN * ROW * 2, vg, jl, vsb, p.n_kv, p.d);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
    };
    if (full == 0) {
        att_tile<D, MT, BIAS, true, true>(st, s_kv, 0, 0, bg, row0, p);
    } else {
        att_tile<D, MT, BIAS, false, true>(st, s_kv, 0, 0, bg, row0, p);
        next(0);
        for (uint32_t kt = 1; kt < full; kt++) {
            att_tile<D, MT, BIAS, false, false>(st, s_kv + (kt % 2) * stage_bytes, kt * ATT_BN, kt * ATT_BN, bg,
                                               row0, p);
            next(kt);
        }
        if (full < kv_tiles)
            att_tile<D, MT, BIAS, true, false>(st, s_kv + (full % 2) * stage_bytes, full * ATT_BN, jl_max, bg,
                                               row0, p);
    }
    cp_async_wait<0>();

    // y = o / l, l whole in every lane of the row's quad.
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const uint32_t row = row0 + mt * 16 + 8 * r;
            if (row >= p.n_q) continue;
            const float inv = __fdiv_rn(1.0f, st.l[mt][r]);
            uint16_t* yr = y + (uint64_t)b * p.y_b + (uint64_t)h * p.y_h + (uint64_t)row * p.y_s;
#pragma unroll
            for (int n = 0; n < ND; n++) {
                const uint32_t col = n * 8 + 2 * t;
                if (col >= p.d) continue;
                const uint32_t lo = f32_to_bf16(__fmul_rn(st.o[mt][n][2 * r], inv));
                const uint32_t hi = f32_to_bf16(__fmul_rn(st.o[mt][n][2 * r + 1], inv));
                *reinterpret_cast<uint32_t*>(yr + col) = lo | hi << 16;
            }
        }
    }
}

#define ATT_ENTRY(NAME, D, MT, BIAS)                                                                           \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                                  \
        NAME(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k, const uint16_t* __restrict__ v,   \
             const float* __restrict__ bias, uint16_t* __restrict__ y, AttnParams p) {                         \
        attention_body<D, MT, BIAS>(q, k, v, bias, y, p);                                                      \
    }

ATT_ENTRY(attention_bf16_d16, 16, 1, false)
ATT_ENTRY(attention_bf16_d16_bias, 16, 1, true)
ATT_ENTRY(attention_bf16_d32, 32, 1, false)
ATT_ENTRY(attention_bf16_d32_bias, 32, 1, true)
ATT_ENTRY(attention_bf16_d32_x2, 32, 2, false)
ATT_ENTRY(attention_bf16_d64, 64, 1, false)
ATT_ENTRY(attention_bf16_d64_bias, 64, 1, true)
ATT_ENTRY(attention_bf16_d64_x2, 64, 2, false)
ATT_ENTRY(attention_bf16_d96, 96, 1, false)
ATT_ENTRY(attention_bf16_d96_bias, 96, 1, true)
ATT_ENTRY(attention_bf16_d128, 128, 1, false)
ATT_ENTRY(attention_bf16_d128_bias, 128, 1, true)
