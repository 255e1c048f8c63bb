// conv_grouped: the narrow-group 3x3 convolutions of ResNeXt (Cin_g = Ng =
// 8, 16 or 32 channels a group: every grouped 3x3 of ResNeXt-101 32x8d but
// its last stage) on the tensor cores, NHWC bf16, fp32 accumulation, with
// the epilogue y = act(bias + conv(x, w)).
//
// Why a kernel of its own: as an implicit GEMM a group is a GEMM of N = Ng
// (8 to 32) columns, so each activation fragment read from shared memory
// feeds one to four mma and the tile loads dominate (conv.cu's conv_bf16_*
// kernels spend 30 to 110 issued instructions per HMMA on these layers).
// Here the roles turn round and the reuse comes from the 3x3 window:
//   - the weights are the mma's A operand (m16 = 16 output channels), held
//     in registers: a group's 9 taps x 16 input channels are 9 fragments;
//   - the activations are B (n8 = 8 output pixels), read with ldmatrix from
//     a shared halo tile of the CTA's 64 channels, and each B fragment
//     (8 input pixels of one row, 16 channels) feeds every output it is a
//     tap of: up to 3 output rows (the window's rows) times up to 3 of the
//     warp's pixel blocks (its columns), because a pixel block is 8 pixels
//     XB apart (block j: columns j, j + XB, ..., j + 7 XB) so that shifting
//     a tap by one column moves to the neighbouring block instead of
//     breaking the block;
//   - Ng = 8: one m16 holds two groups and its A fragments are block-
//     diagonal (half the multiply-adds are zeros, the price of m16); Ng =
//     16: one group per m16; Ng = 32: a group is two m16 and two k16 chunks.
//
// Math:   o = output channel, g = o / Ng; for output pixel (oy, ox),
//           y = act(bias[o] + sum_{c, r, s} x[oy*S - 1 + r][ox*S - 1 + s][g Ng + c]
//                                        * w[o][(r*3 + s)*Ng + c])
//         (zero outside the image), in fp32, rounded to bf16 (nearest even).
//         The accumulator starts at the bias and adds k16 chunk by chunk
//         (16 input channels: all of the group for Ng <= 16), each chunk
//         tap by tap in (r, s) order; the order depends on the layer only,
//         never on the tile, the batch or the block order, so both S = 1
//         tiles give the same bits. It differs from conv.cu's k order, so a
//         layer this kernel computes is never computed by conv.cu (see
//         teacher/gpu/conv.rs `variant`).
// Layout: as conv.cu: x [N][H][W][C] bf16, w [Cout][K_pad] bf16 with
//         k = (r, s, c) (teacher/gpu/conv.rs `pack_weights`), bias [C] f32,
//         y [N][OH][OW][C] bf16. Needs a 3x3 kernel, pad 1, dilation 1,
//         stride S (1 or 2) both ways, Cin = Cout = C, C % 64 == 0, Cin_g =
//         Ng in {8, 16, 32} (16 or 32 at stride 2: teacher/gpu/conv.rs
//         `grouped_fits`), a bias, no residual, x, w, y and bias on 16-byte
//         boundaries (the launcher checks).
// Tiles:  a CTA computes R output rows x 8*XB output columns x 64 channels
//         of one image; warp w the 16 channels 16w..16w+15 (an m16) over
//         all of the tile's pixels: R x XB accumulators of m16n8.
// Shared: the halo tile, TR = (R-1)S + 3 rows x TC = (8 XB - 1)S + 3
//         columns x 64 channels, 128 bytes a pixel, the 16-byte chunk q of
//         column col at q ^ ((col / (S XB)) % 8): the 8 rows of every
//         ldmatrix (pixels S XB apart) land in 8 different bank groups. The
//         epilogue stages the bf16 tile (same swizzle by block index) in
//         the same buffer, then writes 16-byte chunks.
// Launch: grid (ceil(OW / (8 XB)) * ceil(OH / R), C / 64, N), block
//         CONV_GROUPED_THREADS, static shared TR * TC * 128 bytes (<= 26 KB).
// Tolerance vs the CPU twin (teacher/gpu/conv.rs, cpu module): Tol::Bf16Accum
//         as conv.cu.
#include <stdint.h>

#include "common/bf16.cuh"
#include "common/conv_params.cuh"
#include "common/mma.cuh"

#define CONV_GROUPED_THREADS 128
#define CONV_GROUPED_CH 64  // channels a CTA: 4 warps x m16

template <int S, int R, int XB, int ACT>
__device__ __forceinline__ void conv_grouped_body(const uint16_t* __restrict__ x, const uint16_t* __restrict__ wt,
                                                  const float* __restrict__ bias, uint16_t* __restrict__ y,
                                                  const ConvParams& p) {
    static_assert(S == 1 || S == 2, "stride 1 or 2");
    static_assert(XB == 2 || XB == 4, "pixel blocks a warp: a power of two, even (pairs per ldmatrix.x4)");
    constexpr int TR = (R - 1) * S + 3, TC = (8 * XB - 1) * S + 3;
    constexpr int SPAN = S * XB;          // input columns between a block's pixels
    constexpr int E = S * (XB - 1) + 3;   // input blocks a row: e = S j + s
    constexpr int PIX = CONV_GROUPED_CH * 2;  // bytes a pixel
    constexpr int ROWB = TC * PIX;
    constexpr int SMEM = TR * ROWB;
    constexpr int A_WARP = 9 * 512;  // a warp's weights for one chunk
    constexpr int OUT_PIX = R * 8 * XB;
    static_assert(OUT_PIX * PIX <= SMEM, "the output tile is staged in the halo buffer");
    static_assert(E < 2 * SPAN + 1 && SPAN % 2 == 0, "an input block pair never straddles SPAN");

    __shared__ __align__(128) uint8_t smem[SMEM + 4 * A_WARP];
    const uint32_t s_tile = smem_u32(smem);
    const uint32_t tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const uint32_t tiles_x = (p.ow + 8 * XB - 1) / (8 * XB);
    const uint32_t oy0 = blockIdx.x / tiles_x * R, ox0 = blockIdx.x % tiles_x * (8 * XB);
    const uint32_t c_cta = blockIdx.y * CONV_GROUPED_CH, img = blockIdx.z;
    const uint32_t C = p.cin;

    // ---- the halo tile: TR x TC pixels x 8 chunks, zeros outside the image.
    // Thread t copies chunk t % 8 of columns t / 8 + 16 j of every row: the
    // column terms are worked out once, a row then costs an add per copy.
    {
        constexpr int SLOTS = CONV_GROUPED_THREADS / 8, J = (TC + SLOTS - 1) / SLOTS;
        const uint32_t q = tid % 8, slot = tid / 8;
        const int iy0 = (int)(oy0 * S) - 1, ix0 = (int)(ox0 * S) - 1;
        uint32_t dst[J], src[J];
        bool col_ok[J];
        // Out-of-image pixels copy nothing (zero fill) from a clamped,
        // in-image address: no pointer selects in the copies.
#pragma unroll
        for (int j = 0; j < J; j++) {
            const uint32_t col = slot + SLOTS * j;
            const int ix = ix0 + (int)col;
            dst[j] = s_tile + col * PIX + ((q ^ (col / SPAN % 8)) << 4);
            src[j] = ((uint32_t)min(max(ix, 0), (int)p.w - 1) * C + q * 8) * 2;  // bytes
            col_ok[j] = col < (uint32_t)TC && (uint32_t)ix < p.w;
        }
        const char* xi = reinterpret_cast<const char*>(x + (uint64_t)img * p.h * p.w * C + c_cta);
        const uint64_t row_bytes = (uint64_t)p.w * C * 2;
#pragma unroll
        for (int row = 0; row < TR; row++) {
            const int iy = iy0 + row;
            const bool row_ok = (uint32_t)iy < p.h;
            const char* xr = xi + (uint32_t)min(max(iy, 0), (int)p.h - 1) * row_bytes;
#pragma unroll
            for (int j = 0; j < J; j++) {
                if (SLOTS * j + SLOTS > TC && slot + SLOTS * j >= (uint32_t)TC) continue;  // past the tile
                cp_async16(dst[j] + row * ROWB, xr + src[j], row_ok && col_ok[j]);
            }
        }
        cp_async_commit();
    }

    // ---- this lane's output channels (rows gid, gid + 8 of the m16) and the
    // accumulators, which start at the bias.
    const uint32_t gid = lane / 4, tig = lane % 4;
    const uint32_t o_lo = c_cta + warp * 16 + gid, o_hi = o_lo + 8;
    float acc[R][XB][4];
    {
        const float b_lo = __ldg(bias + o_lo), b_hi = __ldg(bias + o_hi);
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int j = 0; j < XB; j++) {
                acc[i][j][0] = acc[i][j][1] = b_lo;
                acc[i][j][2] = acc[i][j][3] = b_hi;
            }
    }
    const uint32_t ng = p.ng;
    const uint32_t g16 = ng < 16 ? 16 : ng;  // input channels an m16 block reads
    const uint32_t in0 = (warp * 16) / g16 * g16;  // ... from this one (CTA-local)

    // ---- A: this warp's weights for chunk cc into its own 9 x 512 bytes,
    // tap t at t * 512: [row 16][two 16-byte halves, k 0-7 and 8-15], half
    // h of row r at h ^ (r / 4 % 2) (conflict-free ldmatrix). Lane copies
    // half lane % 2 of row lane / 2 for every tap; Ng = 8 zero-fills the
    // off-diagonal halves.
    const uint32_t s_a = s_tile + SMEM + warp * A_WARP;
    auto load_a = [&](uint32_t cc) {
        const uint32_t row = lane / 2, half = lane % 2;
        const bool ok = ng != 8 || half == row / 8;
        const uint16_t* src = wt + (uint64_t)(c_cta + warp * 16 + row) * p.k_pad + cc * 16 + (ng == 8 ? 0 : half * 8);
        const uint32_t dst = s_a + row * 32 + ((half ^ (row / 4 % 2)) << 4);
#pragma unroll
        for (int t = 0; t < 9; t++) cp_async16(dst + t * 512, src + t * ng, ok);  // in the weight either way
    };
    load_a(0);
    cp_async_commit();
    // ldmatrix.x4 of A: matrix mq = lane / 8 is rows (mq % 2) * 8 .. + 7, half mq / 2.
    const uint32_t a_row = (lane / 8 % 2) * 8 + lane % 8;
    const uint32_t a_ld = s_a + a_row * 32 + (((lane / 16) ^ (a_row / 4 % 2)) << 4);
    // ldmatrix.x4 of B: lanes 8mq..8mq+7 give the rows (pixels k = lane % 8)
    // of matrix mq: input blocks e0 (mq 0, 1) and e0 + 1 (mq 2, 3), channels
    // 0-7 (even mq) and 8-15 (odd mq) of the chunk.
    const uint32_t k = lane % 8, mq = lane / 8;
    const uint32_t lane_col = (mq / 2) + SPAN * k;

    cp_async_wait<0>();
    __syncthreads();

    const uint32_t chunks = g16 / 16;
    for (uint32_t cc = 0; cc < chunks; cc++) {
        if (cc > 0) {  // Ng = 32: the second chunk's weights (this warp's own buffer)
            __syncwarp();
            load_a(cc);
            cp_async_commit();
            cp_async_wait<0>();
            __syncwarp();
        }
        uint32_t a[9][4];
#pragma unroll
        for (int t = 0; t < 9; t++) ldsm_x4(a[t], a_ld + t * 512);
        const uint32_t q = (in0 + cc * 16) / 8 + mq % 2;  // this lane's 16-byte chunk
        uint32_t base[2];  // input block pairs below SPAN, and at or past it
#pragma unroll
        for (int hi = 0; hi < 2; hi++) base[hi] = s_tile + lane_col * PIX + ((q ^ ((k + hi) % 8)) << 4);

#pragma unroll
        for (int iy = 0; iy < TR; iy++) {
#pragma unroll
            for (int e0 = 0; e0 < E; e0 += 2) {
                uint32_t b[4];
                const uint32_t addr = base[e0 >= SPAN] + iy * ROWB + e0 * PIX;
                if (e0 + 1 < E)
                    ldsm_x4(b, addr);
                else
                    ldsm_x2(b, addr);
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int e = e0 + h;
                    if (e >= E) continue;
                    // Every output this block is a tap of: row i = (iy - r) / S,
                    // block j = (e - s) / S, in (r, s) order.
#pragma unroll
                    for (int r = 0; r < 3; r++) {
                        const int di = iy - r;
                        if (di < 0 || di % S != 0 || di / S >= R) continue;
#pragma unroll
                        for (int s = 0; s < 3; s++) {
                            const int dj = e - s;
                            if (dj < 0 || dj % S != 0 || dj / S >= XB) continue;
                            mma_bf16_16816(acc[di / S][dj / S], a[r * 3 + s], &b[2 * h]);
                        }
                    }
                }
            }
        }
    }
    __syncthreads();  // the halo tile becomes the output staging

    // ---- epilogue: act, bf16, staged as [pixel (i, col)][64 channels] with
    // chunk (channel / 8) ^ (block index n % 8), then 16-byte stores.
    // acc[i][j][2h + v]: channel o_lo + 8h, pixel column j + XB (2 tig + v).
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int j = 0; j < XB; j++)
#pragma unroll
            for (int v = 0; v < 2; v++) {
                const uint32_t n = 2 * tig + v, col = j + XB * n;
                const uint32_t at = (i * 8 * XB + col) * PIX + gid * 2;
                // Channels o_lo (h 0) and o_lo + 8 (h 1) of one pixel:
                // converted as a pair, stored in their own chunks.
                const float a0 = activate_t<ACT>(acc[i][j][v], p.act), a1 = activate_t<ACT>(acc[i][j][2 + v], p.act);
                const uint32_t pair = ACT == 1 ? bf16x2_not_nan(a0, a1)
                                               : (uint32_t)f32_to_bf16(a0) | (uint32_t)f32_to_bf16(a1) << 16;
                *reinterpret_cast<uint16_t*>(smem + at + (((warp * 2) ^ n) << 4)) = (uint16_t)pair;
                *reinterpret_cast<uint16_t*>(smem + at + (((warp * 2 + 1) ^ n) << 4)) = (uint16_t)(pair >> 16);
            }
    __syncthreads();
    constexpr int OUT_CHUNKS = OUT_PIX * 8;
    static_assert(OUT_CHUNKS % CONV_GROUPED_THREADS == 0, "the output tile splits evenly");
#pragma unroll
    for (int it = 0; it < OUT_CHUNKS / CONV_GROUPED_THREADS; it++) {
        const uint32_t idx = it * CONV_GROUPED_THREADS + tid;
        const uint32_t qo = idx % 8, pix = idx / 8, col = pix % (8 * XB), i = pix / (8 * XB);
        const uint32_t oy = oy0 + i, ox = ox0 + col;
        const uint4 v = *reinterpret_cast<const uint4*>(smem + pix * PIX + ((qo ^ (col / XB % 8)) << 4));
        if (oy < p.oh && ox < p.ow)
            *reinterpret_cast<uint4*>(y + (((uint64_t)img * p.oh + oy) * p.ow + ox) * C + c_cta + qo * 8) = v;
    }
}

#define CONV_GROUPED(NAME, S, R, XB, ACT)                                                                       \
    extern "C" __global__ void __launch_bounds__(CONV_GROUPED_THREADS, 3)                                      \
        NAME(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w, const float* __restrict__ bias,     \
             const uint16_t* __restrict__ residual, uint16_t* __restrict__ y, ConvParams p) {                 \
        (void)residual;                                                                                        \
        conv_grouped_body<S, R, XB, ACT>(x, w, bias, y, p);                                                   \
    }

// Stride 1: 4 rows x 32 columns (56x56 and 28x28 maps tile evenly in rows),
// 7 x 16 for 14x14; stride 2: 3 x 16. ReLU (ResNeXt's BN + ReLU) fixed, or
// `_any` reading p.act.
CONV_GROUPED(conv_grouped_s1_4x32_relu, 1, 4, 4, 1)
CONV_GROUPED(conv_grouped_s1_4x32_any, 1, 4, 4, -1)
CONV_GROUPED(conv_grouped_s1_7x16_relu, 1, 7, 2, 1)
CONV_GROUPED(conv_grouped_s1_7x16_any, 1, 7, 2, -1)
CONV_GROUPED(conv_grouped_s2_3x16_relu, 2, 3, 2, 1)
CONV_GROUPED(conv_grouped_s2_3x16_any, 2, 3, 2, -1)
