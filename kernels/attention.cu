// attention: fused scaled-dot-product attention, softmax(q k^T scale + bias) v,
// for the transformer teachers (ViT/DeiT: 197 tokens, head dim 64; Swin:
// 49-token windows with a relative-position bias and a shift mask), in the
// FlashAttention-2 manner: a block's 64 query rows stay in registers, keys
// and values stream through shared memory 64 at a time, the softmax is
// online in fp32, and no score matrix ever reaches memory.
//
// Math:   per (batch b, head h, query row i), over keys j < n_kv, with
//         s_ij = q_i . k_j from bf16 in fp32 on the tensor cores and
//         c = scale * log2(e): with a bias, x_j = fma(s_ij, c, bias_ij *
//         log2(e)) and c' = 1; without, x_j = s_ij and c' = c. A tile of
//         64 keys at a time, in order: m' = max(m, (max_j x_j) * c'),
//         alpha = 2^(m - m'), p_j = 2^fma(x_j, c', -m') (0 past n_kv),
//         l = l * alpha + (sum of p_j), o = o * alpha + sum_j bf16(p_j) v_j,
//         and at the end y_i = o * (1 / l) rounded to bf16. 2^ is
//         ex2.approx.ftz (2 ulp, subnormals flushed). Each of the 4 lanes of a row keeps its own part
//         of l (keys 8c + 2t, 8c + 2t + 1 of every tile, c = 0..7, for lane
//         t of the quad, in that order) and the parts meet as
//         (l0 + l1) + (l2 + l3) on every lane, so l is the same whatever
//         the batch or the launch.
// Layout: q [batch][heads][n_q][d], k and v [batch][heads][n_kv][d], y
//         [batch][heads][n_q][d], each bf16 with its own element strides
//         for the batch, head and row axes (`AttnParams`) and d contiguous:
//         q, k and v are views of the qkv projection's output, y is written
//         where its consumer wants it (tokens-major: [b][i][h][d]). bias
//         (the _bias entries) [bias_batch][heads][n_q][n_kv] f32, batch b
//         reading bias[b % bias_batch] (Swin's windows).
// Tiling: a block of 4 warps takes 64 query rows of one (b, h), 16 rows a
//         warp; D (the template: 16, 32, 64, 96, 128) is d rounded up to 16,
//         the columns past d zero-filled on load and never stored. Q is
//         loaded once into A fragments (ldmatrix); each tile of 64 keys and
//         values comes by cp.async into one of two stages, the next tile's
//         copies in flight while this one computes. S = Q K^T takes ldmatrix
//         fragments of K rows as B; the probabilities of two 8-key score
//         tiles are the A fragment of P V as they lie in the accumulators
//         (cvt.rn.bf16x2); V's B fragments come by ldmatrix.trans. Shared
//         rows are D + 8 values long, so the 8 rows of an ldmatrix land in
//         distinct banks.
// Launch: grid (ceil(n_q / 64) * heads * batch), 128 threads,
//         ATT_SHARED(D) bytes of dynamic shared memory (over 48 KB for D
//         96 and 128: the launcher raises the limit). d % 8 == 0, strides
//         % 8 == 0 and 16-byte aligned q, k, v (cp.async moves 16 bytes).
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
#define ATT_BM 64
#define ATT_BN 64
// Bytes of dynamic shared memory: Q (64 rows) and two stages of K and V
// (64 rows each), rows of D + 8 bf16.
#define ATT_SHARED(D) ((ATT_BM + 4 * ATT_BN) * ((D) + 8) * 2)

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

// 2^x in one MUFU.EX2 (PTX ex2.approx.ftz: 2 ulp, subnormals flushed),
// where exp2f would add range fix-ups around it.
__device__ __forceinline__ float att_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// rows x D of a [rows][d] view (row stride `rs`) into shared rows of D + 8,
// 16 bytes a copy; rows at or past `valid` and columns past d are zeros.
template <int D>
__device__ __forceinline__ void att_load_tile(uint32_t dst, const uint16_t* __restrict__ src, uint32_t rs,
                                              uint32_t valid, uint32_t d) {
    constexpr int CHUNKS = D / 8;
    static_assert((64 * CHUNKS) % ATT_THREADS == 0, "whole rounds of copies");
#pragma unroll
    for (int i = 0; i < 64 * CHUNKS / ATT_THREADS; i++) {
        const uint32_t c = threadIdx.x + i * ATT_THREADS;
        const uint32_t row = c / CHUNKS, col = (c % CHUNKS) * 8;
        const bool ok = row < valid && col < d;
        const uint16_t* g = ok ? src + (uint64_t)row * rs + col : src;
        cp_async16(dst + (row * (D + 8) + col) * 2, g, ok);
    }
}

// One warp's state over the key tiles: Q's A fragments, O's accumulators,
// and per row (g and g + 8 of its 16) the running max in log2 units and
// this lane's part of the sum.
template <int D>
struct AttState {
    uint32_t qf[D / 16][4];
    float o[D / 8][4];
    float m[2], l[2];
};

// Key tile kt (its K and V in shared `stage`): S = Q K^T, the online
// softmax, O += P V. MASK: the tile runs past n_kv (the last one only).
template <int D, bool BIAS, bool MASK>
__device__ __forceinline__ void att_tile(AttState<D>& st, uint32_t stage, uint32_t kt, const float* __restrict__ bg,
                                         uint32_t row0, const AttnParams& p) {
    constexpr int ROW = D + 8, KD = D / 16, ND = D / 8;
    const int lane = threadIdx.x % 32, t = lane % 4;
    // S = Q K^T: 16 rows x 64 keys, 8 n8 tiles.
    float s[8][4];
#pragma unroll
    for (int c = 0; c < 8; c++) s[c][0] = s[c][1] = s[c][2] = s[c][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KD; kk++) {
#pragma unroll
        for (int jp = 0; jp < 4; jp++) {
            uint32_t bf[4];
            const int key = jp * 16 + (lane / 16) * 8 + lane % 8;
            ldsm_x4(bf, stage + (key * ROW + kk * 16 + ((lane / 8) % 2) * 8) * 2);
            mma_bf16_16816(s[2 * jp], st.qf[kk], bf);
            mma_bf16_16816(s[2 * jp + 1], st.qf[kk], bf + 2);
        }
    }
    const uint32_t j0 = kt * ATT_BN;
    // With a bias the scores become log2 units now; without, the scale
    // rides in the exponent's fma below (positive: the max commutes with it).
    if (BIAS) {
#pragma unroll
        for (int c = 0; c < 8; c++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const uint32_t key = j0 + c * 8 + 2 * t + (e % 2), row = row0 + 8 * (e / 2);
                const float bv = (!MASK || key < p.n_kv) && row < p.n_q ? bg[(uint64_t)row * p.n_kv + key] : 0.0f;
                s[c][e] = __fmaf_rn(s[c][e], p.scale_log2, __fmul_rn(bv, ATT_LOG2E));
            }
    }
    if (MASK) {
#pragma unroll
        for (int c = 0; c < 8; c++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (j0 + c * 8 + 2 * t + (e % 2) >= p.n_kv) s[c][e] = ATT_NEG_INF;
    }
    const float sl = BIAS ? 1.0f : p.scale_log2;
    float tmax[2] = {ATT_NEG_INF, ATT_NEG_INF};
#pragma unroll
    for (int c = 0; c < 8; c++) {
        tmax[0] = fmaxf(tmax[0], fmaxf(s[c][0], s[c][1]));
        tmax[1] = fmaxf(tmax[1], fmaxf(s[c][2], s[c][3]));
    }
    float alpha[2], neg_m[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 1));
        tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 2));
        const float m_new = fmaxf(st.m[r], __fmul_rn(tmax[r], sl));
        // A row with no finite score yet subtracts 0, not -inf (no NaN).
        const float m_use = m_new == ATT_NEG_INF ? 0.0f : m_new;
        alpha[r] = att_exp2(__fsub_rn(st.m[r], m_use));
        st.m[r] = m_new;
        st.l[r] = __fmul_rn(st.l[r], alpha[r]);
        neg_m[r] = -m_use;
    }
    // P = 2^(s sl - m), this lane's part of l, and P as bf16 A fragments.
    uint32_t pf[4][4];
#pragma unroll
    for (int c = 0; c < 8; c++) {
        float pv[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = e / 2;
            pv[e] = att_exp2(__fmaf_rn(s[c][e], sl, neg_m[r]));
            st.l[r] = __fadd_rn(st.l[r], pv[e]);
        }
        pf[c / 2][(c % 2) * 2 + 0] = bf16x2_not_nan(pv[0], pv[1]);
        pf[c / 2][(c % 2) * 2 + 1] = bf16x2_not_nan(pv[2], pv[3]);
    }
#pragma unroll
    for (int n = 0; n < ND; n++) {
        st.o[n][0] = __fmul_rn(st.o[n][0], alpha[0]);
        st.o[n][1] = __fmul_rn(st.o[n][1], alpha[0]);
        st.o[n][2] = __fmul_rn(st.o[n][2], alpha[1]);
        st.o[n][3] = __fmul_rn(st.o[n][3], alpha[1]);
    }
    // O += P V: k16 steps over the 64 keys, V's B fragments transposed.
    const uint32_t s_v = stage + ATT_BN * ROW * 2;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        // Keys 16kk..16kk+15: score tiles 2kk (a0, a1) and 2kk+1 (a2, a3).
#pragma unroll
        for (int np = 0; np < ND / 2; np++) {
            uint32_t bf[4];
            const int key = kk * 16 + ((lane / 8) % 2) * 8 + lane % 8;
            ldsm_x4_trans(bf, s_v + (key * ROW + np * 16 + (lane / 16) * 8) * 2);
            mma_bf16_16816(st.o[2 * np], pf[kk], bf);
            mma_bf16_16816(st.o[2 * np + 1], pf[kk], bf + 2);
        }
    }
}

template <int D, bool BIAS>
__device__ __forceinline__ void attention_body(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                                               const uint16_t* __restrict__ v, const float* __restrict__ bias,
                                               uint16_t* __restrict__ y, const AttnParams& p) {
    constexpr int ROW = D + 8, KD = D / 16, ND = D / 8;
    extern __shared__ __align__(16) uint8_t att_smem[];
    const uint32_t s_q = smem_u32(att_smem);
    const uint32_t s_kv = s_q + ATT_BM * ROW * 2;  // stage s: K at + s * stage_bytes, V after K
    const uint32_t stage_bytes = 2 * ATT_BN * ROW * 2;

    const uint32_t q_tiles = (p.n_q + ATT_BM - 1) / ATT_BM;
    const uint32_t qt = blockIdx.x % q_tiles;
    const uint32_t bh = blockIdx.x / q_tiles;
    const uint32_t h = bh % p.heads, b = bh / p.heads;
    const uint32_t i0 = qt * ATT_BM;
    const uint16_t* qg = q + (uint64_t)b * p.q_b + (uint64_t)h * p.q_h + (uint64_t)i0 * p.q_s;
    const uint16_t* kg = k + (uint64_t)b * p.k_b + (uint64_t)h * p.k_h;
    const uint16_t* vg = v + (uint64_t)b * p.v_b + (uint64_t)h * p.v_h;
    const float* bg = BIAS ? bias + ((uint64_t)(b % p.bias_batch) * p.heads + h) * p.n_q * p.n_kv : nullptr;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const uint32_t kv_tiles = (p.n_kv + ATT_BN - 1) / ATT_BN;
    // Query rows past n_q read zeros and are never stored.
    const uint32_t row0 = i0 + warp * 16 + g;

    att_load_tile<D>(s_q, qg, p.q_s, p.n_q - i0, p.d);
    att_load_tile<D>(s_kv, kg, p.k_s, p.n_kv, p.d);
    att_load_tile<D>(s_kv + ATT_BN * ROW * 2, vg, p.v_s, p.n_kv, p.d);
    cp_async_commit();

    AttState<D> st;
#pragma unroll
    for (int n = 0; n < ND; n++) st.o[n][0] = st.o[n][1] = st.o[n][2] = st.o[n][3] = 0.0f;
    st.m[0] = st.m[1] = ATT_NEG_INF;
    st.l[0] = st.l[1] = 0.0f;

    for (uint32_t kt = 0; kt < kv_tiles; kt++) {
        const uint32_t stage = s_kv + (kt % 2) * stage_bytes;
        if (kt + 1 < kv_tiles) {
            const uint32_t next = s_kv + ((kt + 1) % 2) * stage_bytes;
            const uint32_t j1 = (kt + 1) * ATT_BN;
            att_load_tile<D>(next, kg + (uint64_t)j1 * p.k_s, p.k_s, p.n_kv - j1, p.d);
            att_load_tile<D>(next + ATT_BN * ROW * 2, vg + (uint64_t)j1 * p.v_s, p.v_s, p.n_kv - j1, p.d);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int kk = 0; kk < KD; kk++)
                ldsm_x4(st.qf[kk], s_q + ((warp * 16 + lane % 16) * ROW + kk * 16 + (lane / 16) * 8) * 2);
        }
        // Only a last tile that runs past n_kv pays for the mask (the two
        // paths share the loop: the static report counts both).
        if ((kt + 1) * ATT_BN <= p.n_kv)
            att_tile<D, BIAS, false>(st, stage, kt, bg, row0, p);
        else
            att_tile<D, BIAS, true>(st, stage, kt, bg, row0, p);
        __syncthreads();  // this stage is refilled two tiles on
    }
    cp_async_wait<0>();

    // l's four lane parts, in a fixed order; then y = o / l.
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = __fadd_rn(st.l[r], __shfl_xor_sync(0xffffffffu, st.l[r], 1));
        l = __fadd_rn(l, __shfl_xor_sync(0xffffffffu, l, 2));
        inv[r] = __fdiv_rn(1.0f, l);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const uint32_t row = row0 + 8 * r;
        if (row >= p.n_q) continue;
        uint16_t* yr = y + (uint64_t)b * p.y_b + (uint64_t)h * p.y_h + (uint64_t)row * p.y_s;
#pragma unroll
        for (int n = 0; n < ND; n++) {
            const uint32_t col = n * 8 + 2 * t;
            if (col >= p.d) continue;
            const uint32_t lo = f32_to_bf16(__fmul_rn(st.o[n][2 * r], inv[r]));
            const uint32_t hi = f32_to_bf16(__fmul_rn(st.o[n][2 * r + 1], inv[r]));
            *reinterpret_cast<uint32_t*>(yr + col) = lo | hi << 16;
        }
    }
}

#define ATT_ENTRY(D)                                                                                            \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                                  \
        attention_bf16_d##D(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,                    \
                            const uint16_t* __restrict__ v, const float* __restrict__ bias,                    \
                            uint16_t* __restrict__ y, AttnParams p) {                                          \
        attention_body<D, false>(q, k, v, bias, y, p);                                                         \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                                  \
        attention_bf16_d##D##_bias(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,             \
                                   const uint16_t* __restrict__ v, const float* __restrict__ bias,             \
                                   uint16_t* __restrict__ y, AttnParams p) {                                   \
        attention_body<D, true>(q, k, v, bias, y, p);                                                          \
    }

ATT_ENTRY(16)
ATT_ENTRY(32)
ATT_ENTRY(64)
ATT_ENTRY(96)
ATT_ENTRY(128)
