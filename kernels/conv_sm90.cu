// conv_sm90: the convolutions and linear layers on Hopper's wgmma (sm_90a
// only), with conv.cu's fused epilogue, in two kernel sets sharing one
// consumer loop and epilogue: `conv_sm90_*`, the 1x1 layers as a
// warp-specialized wgmma + TMA GEMM, and `conv_sm90g_*`, any other layer as
// an implicit GEMM whose producer threads gather the pixels with cp.async.
//
// Math:   y[m][n] = act(sum_k x[m][k] w[n][k] + bias[n] (+ residual[m][n])),
//         the sum in fp32 on the tensor cores, then v = D + bias, v += the
//         residual, act(v) in fp32 (common/conv_params.cuh `activate`; 0 none,
//         1 ReLU, 2 SiLU, 3 HardSwish, 4 sigmoid, 5/6 GELU), rounded to bf16
//         (nearest even). A stride-1, unpadded, ungrouped 1x1 convolution over
//         NHWC is exactly this GEMM with m = (image, y, x) and k = the input
//         channel; the gather kernels' m is the output pixel and k runs over
//         (tap r kw + s, 64-channel chunk of the group), x[m][k] the input
//         pixel the tap reads (zero in the padding and past Cin_g).
// Layout: x [M][K] bf16 (NHWC pixels, K = Cin contiguous; the gather's x is
//         NHWC [N][H][W][Cin]); w [N][K_pad] bf16 (teacher/gpu/conv.rs
//         `pack_weights`, K-major, k = tap Cin_g + c); bias [N] f32;
//         residual and y [M][N] bf16. The launcher (teacher/gpu/conv_sm90.rs)
//         takes K and N multiples of 8 (16-byte rows) and any M: the TMA
//         fills what lies past M, K_pad and N with zeros (a ragged last
//         k-tile adds exact zeros, as the packed weights' padding does), and
//         the epilogue stores no row past M and no column past N. A gather
//         k-tile's w columns past its tap's Cin_g channels belong to the next
//         tap: they meet the zeros gathered past Cin_g, and add exact zeros.
// Launch: ceil(M / BM) * ceil(N / BN) tiles, the output-channel tiles
//         fastest (tiles sharing x rows run together; a gather tile never
//         spans two groups: BN divides Cout_g), over persistent blocks, at
//         most one an SM: block b takes tiles b, b + gridDim.x, ..., its
//         ring's stages and phases running on from one tile to the next, so
//         the next tile's loads stream in while the consumers store the last
//         and the pipeline fills once a block. A tile's bits depend on the
//         tile alone, never on which block or how many computed it;
//         384 threads: warpgroup 0 the
//         producer (the GEMM: one thread issues the TMA loads, setmaxnreg.dec
//         40; the gather: all 128 threads copy, one also loads w with the
//         TMA, 56 or 88 registers), warpgroups 1 and 2 the consumers (rows
//         0 to BM/2 - 1 and the rest, BM/128 wgmma m64nBNk16 each per 16 of
//         K; setmaxnreg.inc 232, or 224/208); dynamic shared memory STAGES x
//         (BM + BN) x 128 bytes + 1 KB to align the ring to the 1024 bytes of
//         the 128B swizzle pattern.
// Pipeline: a ring of STAGES k-tiles of 64 (one 128-byte swizzled row per
//         tile row, as tensor maps with CU_TENSOR_MAP_SWIZZLE_128B write it and
//         the wgmma descriptors read it), `full[s]` (one arrival with the
//         stage's bytes as transactions, completed by the TMA; the gather's
//         also the 128 producers', each after its copies of the stage have
//         landed) and `empty[s]` (the 256 consumer threads' arrivals)
//         mbarriers; no __syncthreads after the barriers' initialisation. A
//         consumer keeps one wgmma group in flight: it releases stage s-1
//         once the group reading it has completed (wgmma.wait_group 1).
// Budget (per consumer warp and k-tile): 4 BM/128 HGMMA of BN/2 tensor
//         clocks each (BM x BN x 64 multiply-adds at 2048 a clock per SM,
//         H100), during which its scheduler has as many issue slots; the
//         loop's other work (full wait, fence, descriptors, commit, wait,
//         empty arrival; the round's count once every 4 k-tiles) is 23
//         instructions at BM 128: 4.5% of the slots at BN 256, 8.9% at 128
//         ([gpu-hopper]'s goal <= 10%; tools/sass_report.py), 6.0% for the
//         gather's 128x192, 5.9% for its 256x128, 8.0% for 256x96; its
//         narrowest tiles miss (256 x 64, 48: 13.3%, 18.0%: the wgmmas are
//         short). Most of it is the descriptors: ptxas rebuilds each wgmma's
//         (lo, hi) pair in uniform registers (UIADD3 + UMOV). That needs the
//         consumer warpgroup's index warp-uniform in ptxas's eyes (read
//         through a shuffle from lane 0), else the descriptors are built in
//         vector registers and moved over (R2UR, 31 instructions a k-tile at
//         BM 128). Whole rounds carry no bound check, and the ring's and the
//         barriers' shared addresses are made opaque once (`opaque_u32`),
//         else ptxas recomputes them every round. A gather producer thread
//         fills BM/16 rows a k-tile for about 9 instructions each (a row
//         keeps its pixel's offset and a mask of its taps inside the image:
//         `GatherRows`): with both consumer warps, a scheduler's issue load
//         is 27-49% of its slots on the gating gather tiles, 99.7% on 256x48.
// Tolerance vs the CPU twin (teacher/gpu/conv/cpu.rs, the same bf16 products
//         in f64): Tol::Bf16Accum, as conv.cu. The bits differ from conv.cu's
//         kernels (another accumulation order), so a layer's kernel is chosen
//         by the device alone, never by the batch.
#include <cuda.h>
#include <stdint.h>

#include "common/bf16.cuh"
#include "common/conv_params.cuh"

#define SM90_BK 64  // bf16: one 128-byte swizzle row
#define SM90_STAGES 4
#define SM90_THREADS 384
// k-tiles a gather producer keeps in flight before it completes the oldest
// one's barrier: at most STAGES - 2, else it waits on an empty barrier the
// consumers release only after the full one it has not yet arrived on.
#define SM90_GATHER_LAG 2

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "common/hopper.cuh"
#include "common/mma.cuh"

template <int BN>
__device__ __forceinline__ void wgmma_tile(float (&acc)[BN / 2], uint64_t da, uint64_t db) {
    if constexpr (BN == 48) wgmma_m64n48k16_ss(acc, da, db, 1);
    else if constexpr (BN == 64) wgmma_m64n64k16_ss(acc, da, db, 1);
    else if constexpr (BN == 96) wgmma_m64n96k16_ss(acc, da, db, 1);
    else if constexpr (BN == 128) wgmma_m64n128k16_ss(acc, da, db, 1);
    else if constexpr (BN == 192) wgmma_m64n192k16_ss(acc, da, db, 1);
    else wgmma_m64n256k16_ss(acc, da, db, 1);
}

// The stage ring's geometry, shared by the producer and the consumers: a
// stage is BM rows of x (or of the gathered pixels) then BN rows of w, 128
// bytes (64 of K) each; MT the 64-row wgmma blocks a consumer warpgroup owns.
template <int BM, int BN>
struct Ring {
    static constexpr int MT = BM / 128;
    static constexpr uint32_t A_BYTES = BM * SM90_BK * 2, B_BYTES = BN * SM90_BK * 2, STAGE = A_BYTES + B_BYTES;
    static_assert(A_BYTES % 1024 == 0 && B_BYTES % 1024 == 0, "stages keep the 1024-byte swizzle alignment");
};

// One consumer warpgroup's loop over one tile: rows 64 MT WG to 64 MT (WG
// + 1) - 1, all BN columns, the tile's k-tiles being the ring's g0 to g0 +
// ktiles - 1 (a k-tile's stage its index mod STAGES, its parity the
// round's). WG is a template parameter so that every address of the loop
// is a function of the block alone (uniform registers, as the descriptors
// must be). A step waits for its k-tile's bytes, issues the wgmmas, then
// releases the stage before it (its group has completed: wait_group 1),
// except at the tile's first k-tile (the previous tile released its last
// stage itself). Whole rounds start at stage 0, so each of their steps'
// stages is a constant (descriptor offsets and barrier addresses
// immediates); a tile that starts mid-ring (persistent blocks) takes its
// first k-tiles up to the round's end with the stage in a register, at
// most STAGES - 1 a tile. One copy of the round: the kernels compile in a
// quarter of the time four copies, one for each starting stage, took.
template <int BM, int BN, int WG>
__device__ __forceinline__ void consume(float (&acc)[BM / 128][BN / 2], uint8_t* ring, uint64_t* full,
                                        uint64_t* empty, uint32_t ktiles, uint32_t g0) {
    using R = Ring<BM, BN>;
    // Descriptors of stage 0, k 0: 128B swizzle, 8 rows of 128 bytes 1024 apart
    // (SBO), LBO unused by a swizzled K-major operand. A stage s, the k16
    // step kk and the 64-row block mt move the start address (the low 14
    // bits, in 16 bytes) by s STAGE/16 + 2 kk + 512 mt: never past 2^14
    // (228 KB of shared memory), so the low word is added to alone.
    const uint64_t da = wgmma_desc(smem_u32(ring) + WG * R::MT * 64 * 128, 16, 1024, 1);
    const uint64_t db = wgmma_desc(smem_u32(ring) + R::A_BYTES, 16, 1024, 1);
    const uint32_t a_lo = opaque_u32((uint32_t)da), b_lo = opaque_u32((uint32_t)db);
    const uint32_t a_hi = (uint32_t)(da >> 32), b_hi = (uint32_t)(db >> 32);
    const uint32_t full0 = opaque_u32(smem_u32(full)), empty0 = opaque_u32(smem_u32(empty));
    auto step = [&](uint32_t s, uint32_t phase, bool release) {
        mbar_wait(full0 + 8 * s, phase);
        wgmma_fence();
#pragma unroll
        for (uint32_t kk = 0; kk < SM90_BK / 16; kk++) {  // 16 of K are 32 bytes along the swizzled row
            const uint32_t off = s * (R::STAGE / 16) + 2 * kk;
#pragma unroll
            for (int mt = 0; mt < R::MT; mt++)
                wgmma_tile<BN>(acc[mt], (uint64_t)a_hi << 32 | (a_lo + off + 512 * mt),
                               (uint64_t)b_hi << 32 | (b_lo + off));
        }
        wgmma_commit();
        wgmma_wait<1>();  // the previous k-tile's group has read its stage
        if (release) mbar_arrive_at(empty0 + 8 * ((s + SM90_STAGES - 1) % SM90_STAGES));
    };
    const uint32_t head = min((SM90_STAGES - g0 % SM90_STAGES) % SM90_STAGES, ktiles);
    uint32_t kt = 0;
    for (; kt < head; kt++) step((g0 + kt) % SM90_STAGES, ((g0 + kt) / SM90_STAGES) & 1, kt > 0);
    // Whole rounds of the ring with no bound to check (the phase flips once
    // a round), then the last k-tiles: the checks a k-tile would cost are
    // paid once a tile, not once a k-tile.
    static_assert(SM90_STAGES == 4, "a round below is four steps");
    uint32_t phase = ((g0 + kt) / SM90_STAGES) & 1;
    for (; kt + SM90_STAGES <= ktiles; kt += SM90_STAGES, phase ^= 1) {
        step(0, phase, kt > 0);
        step(1, phase, true);
        step(2, phase, true);
        step(3, phase, true);
    }
    const uint32_t left = ktiles - kt;
    if (left > 0) step(0, phase, kt > 0);
    if (left > 1) step(1, phase, true);
    if (left > 2) step(2, phase, true);
    wgmma_wait<0>();
    mbar_arrive_at(empty0 + 8 * ((g0 + ktiles - 1) % SM90_STAGES));  // the tile's last stage
}

// The block's tiles: blockIdx.x, + gridDim.x, ... of the m_tiles x n_tiles
// grid, the output-channel tiles fastest (a launch of one block per SM
// computes the tiles in waves, each wave's tiles adjacent in that order:
// they share x rows and w columns in L2 as one non-persistent wave would).
struct Tiles {
    uint32_t n_tiles, count, bm, bn;
    __device__ __forceinline__ uint32_t m0(uint32_t tile) const { return tile / n_tiles * bm; }
    __device__ __forceinline__ uint32_t n0(uint32_t tile) const { return tile % n_tiles * bn; }
};

// The epilogue of one 64-row wgmma block whose first row is `row0`, from
// the accumulators: register i of thread t is row 16(t/32) + (t%32)/4 +
// 8((i/2)%2), column 8(i/4) + 2(t%4) + i%2 (PTX ISA 9.7.15.5.1, the wgmma D
// fragment), so pairs (i, i+1) are two channels.
template <int BN, int ACT, int RES>
__device__ __forceinline__ void store_block(const float (&acc)[BN / 2], uint32_t row0, uint32_t n0,
                                            const float* __restrict__ bias, const uint16_t* __restrict__ residual,
                                            uint16_t* __restrict__ y, const ConvParams& p) {
    const uint32_t t = threadIdx.x % 128;
    const bool res = RES < 0 ? p.has_residual != 0 : RES != 0;
    const float* bias_t = bias + n0 + 2 * (t % 4);  // channel pair 8j of this thread: + 8j
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const uint32_t m = row0 + 16 * (t / 32) + (t % 32) / 4 + 8 * h;
        if (m >= p.m) continue;
        const uint64_t row = (uint64_t)m * p.cout + n0 + 2 * (t % 4);
        uint32_t* y_t = reinterpret_cast<uint32_t*>(y + row);
        const uint32_t* r_t = reinterpret_cast<const uint32_t*>(residual + row);
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
            if (n0 + 8 * j >= p.cout) break;  // N % 8 == 0: a group of 8 columns is all in or all out
            const float2 b = __ldg(reinterpret_cast<const float2*>(bias_t + 8 * j));
            float v0 = acc[4 * j + 2 * h] + b.x, v1 = acc[4 * j + 2 * h + 1] + b.y;
            if (res) {
                const uint32_t r = r_t[4 * j];
                v0 += bf16_to_f32((uint16_t)r);
                v1 += bf16_to_f32((uint16_t)(r >> 16));
            }
            y_t[4 * j] = ACT == 1 ? bf16x2_not_nan(fmaxf(v0, 0.0f), fmaxf(v1, 0.0f))
                                  : (uint32_t)f32_to_bf16(activate_t<ACT>(v0, p.act)) |
                                        (uint32_t)f32_to_bf16(activate_t<ACT>(v1, p.act)) << 16;
        }
    }
}

// The consumers' half of a block: setmaxnreg, then for each of the
// block's tiles the k-loop and the epilogue, the ring's k-tile count
// running on across tiles as the producer's does.
template <int BM, int BN, int ACT, int RES, uint32_t REGS>
__device__ __forceinline__ void consumers(uint8_t* ring, uint64_t* full, uint64_t* empty, uint32_t ktiles,
                                          const Tiles& tiles, const float* __restrict__ bias,
                                          const uint16_t* __restrict__ residual, uint16_t* __restrict__ y,
                                          const ConvParams& p) {
    constexpr int MT = Ring<BM, BN>::MT;
    setmaxnreg_inc<REGS>();
    const uint32_t wg = __shfl_sync(0xffffffffu, threadIdx.x / 128, 0) - 1;  // warp-uniform to ptxas
    uint32_t g0 = 0;
    for (uint32_t tile = blockIdx.x; tile < tiles.count; tile += gridDim.x, g0 += ktiles) {
        float acc[MT][BN / 2];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < BN / 2; i++) acc[mt][i] = 0.0f;
        if (wg == 0) consume<BM, BN, 0>(acc, ring, full, empty, ktiles, g0);
        else consume<BM, BN, 1>(acc, ring, full, empty, ktiles, g0);
        const uint32_t m0 = tiles.m0(tile), n0 = tiles.n0(tile);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            store_block<BN, ACT, RES>(acc[mt], m0 + (wg * MT + mt) * 64, n0, bias, residual, y, p);
    }
}

// The block's ring (aligned to the 1024 bytes of the 128B swizzle: the
// swizzle is a function of the shared address bits 4-9) and its barriers,
// initialised by thread 0: `full[s]` completes with `arrivals` arrivals and
// the stage's TMA bytes, `empty[s]` with the 256 consumer threads'.
__device__ __forceinline__ uint8_t* ring_init(uint8_t* smem_dynamic, uint64_t* full, uint64_t* empty,
                                              uint32_t arrivals) {
    if (threadIdx.x == 0) {
        for (int s = 0; s < SM90_STAGES; s++) {
            mbar_init(&full[s], arrivals);
            mbar_init(&empty[s], 256);
        }
        fence_proxy_async_smem();  // the barriers, visible to the TMA unit
    }
    __syncthreads();
    return smem_dynamic + ((1024 - (smem_u32(smem_dynamic) & 1023)) & 1023);
}

template <int BN, int ACT, int RES>
__device__ __forceinline__ void conv_sm90_body(const CUtensorMap& map_x, const CUtensorMap& map_w,
                                               const float* __restrict__ bias, const uint16_t* __restrict__ residual,
                                               uint16_t* __restrict__ y, const ConvParams& p) {
    using R = Ring<128, BN>;
    extern __shared__ __align__(16) uint8_t smem_dynamic[];
    __shared__ __align__(8) uint64_t full[SM90_STAGES], empty[SM90_STAGES];
    uint8_t* ring = ring_init(smem_dynamic, full, empty, 1);
    const uint32_t n_tiles = (p.cout + BN - 1) / BN, ktiles = (p.k + SM90_BK - 1) / SM90_BK;
    const Tiles tiles{n_tiles, (p.m + 127) / 128 * n_tiles, 128, BN};

    if (threadIdx.x < 128) {  // producer warpgroup
        setmaxnreg_dec<40>();
        if (threadIdx.x == 0) {
            prefetch_map(&map_x);
            prefetch_map(&map_w);
            uint32_t s = 0, phase = 0;
            for (uint32_t tile = blockIdx.x; tile < tiles.count; tile += gridDim.x) {
                const int32_t m0 = (int32_t)tiles.m0(tile), n0 = (int32_t)tiles.n0(tile);
                for (uint32_t kt = 0; kt < ktiles; kt++) {
                    mbar_wait(&empty[s], phase ^ 1);  // the first round passes at once
                    uint8_t* a = ring + s * R::STAGE;
                    mbar_arrive_expect_tx(&full[s], R::STAGE);
                    tma_load_2d(a, &map_x, (int32_t)(kt * SM90_BK), m0, &full[s]);
                    tma_load_2d(a + R::A_BYTES, &map_w, (int32_t)(kt * SM90_BK), n0, &full[s]);
                    if (++s == SM90_STAGES) {
                        s = 0;
                        phase ^= 1;
                    }
                }
            }
        }
        return;
    }
    consumers<128, BN, ACT, RES, 232>(ring, full, empty, ktiles, tiles, bias, residual, y, p);
}

// ---- the gather kernels: any convolution (kernel size, stride, padding,
// dilation, groups) with Cin_g and Cout_g multiples of 8, as an implicit
// GEMM over k = (tap, channel chunk of 64). The 128 producer threads gather
// each stage's BM output pixels' input rows with 16-byte cp.async (src-size
// 0 where the tap falls in the padding or past the group's channels: zeros,
// as the packed weights' columns there need), writing the 128B-swizzled
// layout the TMA would (16-byte chunk c of row r at chunk c ^ (r % 8));
// thread 0 loads the weights' k-tile with the TMA as the 1x1 kernels do.
// cp.async writes through the generic proxy and wgmma reads through the
// async one, so a producer thread waits for its copies of a k-tile
// (cp.async.wait_group, LAG k-tiles behind its newest), fences the proxies
// and only then arrives on the stage's `full` barrier (129 arrivals: the
// 128 producers' and the TMA's expect_tx).
template <int BM>
struct GatherRows {
    static constexpr int N = BM / 16;  // rows a producer thread fills: BM rows x 8 chunks over 128 threads
    // Element offset in x of the row's pixel at tap (0, 0) plus this
    // thread's channels (negative where that tap lies above or left of the
    // image), and bit r kw + s set where tap (r, s) lies inside the image
    // (none for a row past M): a k-tile then costs a row one add, one bit
    // test and the copy, not the coordinates' arithmetic.
    int32_t off[N];
    uint32_t taps[N];
};

// A producer thread's rows of the tile at output pixel m0, its channels
// those of the group of output channel n0.
template <int BM>
__device__ __forceinline__ void gather_rows(GatherRows<BM>& g, uint32_t m0, uint32_t n0, const ConvParams& p) {
    const uint32_t t = threadIdx.x, plane = p.oh * p.ow, channel = (n0 / p.ng) * p.cin_g + 8 * (t % 8);
#pragma unroll
    for (int i = 0; i < GatherRows<BM>::N; i++) {
        const uint32_t m = m0 + t / 8 + 16 * i;
        const uint32_t img = m / plane, rem = m - img * plane, oy = rem / p.ow, ox = rem - oy * p.ow;
        const int32_t iy0 = (int32_t)(oy * p.sh) - (int32_t)p.ph, ix0 = (int32_t)(ox * p.sw) - (int32_t)p.pw;
        uint32_t cols = 0, taps = 0;
        for (uint32_t s = 0; s < p.kw; s++) cols |= (uint32_t)((uint32_t)(ix0 + (int32_t)(s * p.dw)) < p.w) << s;
        for (uint32_t r = 0; r < p.kh; r++)
            if ((uint32_t)(iy0 + (int32_t)(r * p.dh)) < p.h) taps |= cols << (r * p.kw);
        g.taps[i] = m < p.m ? taps : 0;
        g.off[i] = (((int32_t)(img * p.h) + iy0) * (int32_t)p.w + ix0) * (int32_t)p.cin + (int32_t)channel;
    }
}

template <int BM, int BN>
__device__ __forceinline__ void gather_produce(const CUtensorMap& map_w, const uint16_t* __restrict__ x,
                                               uint8_t* ring, uint64_t* full, uint64_t* empty, uint32_t ktiles,
                                               const Tiles& tiles, const ConvParams& p) {
    using R = Ring<BM, BN>;
    const uint32_t t = threadIdx.x, chunk = t % 8;
    // Row t/8 + 16 i, chunk c at chunk c ^ (row % 8) (the 128B swizzle): row % 8 is (t/8) % 8 for every i.
    const uint32_t dst_t = (t / 8) * 128 + ((chunk ^ ((t / 8) % 8)) << 4);
    const uint32_t ring_s = smem_u32(ring);
    if (t == 0) prefetch_map(&map_w);
    // g: the ring's k-tile, running on across the block's tiles.
    uint32_t s = 0, phase = 0, g = 0;
    for (uint32_t tile = blockIdx.x; tile < tiles.count; tile += gridDim.x) {
        const uint32_t n0 = tiles.n0(tile);
        GatherRows<BM> rows;
        gather_rows<BM>(rows, tiles.m0(tile), n0, p);
        uint32_t c0 = 0, tap = 0, tap_col = 0;
        int32_t dy = 0, dx = 0;
        for (uint32_t kt = 0; kt < ktiles; kt++, g++) {
            mbar_wait(&empty[s], phase ^ 1);  // the first round passes at once
            const uint32_t a = ring_s + s * R::STAGE;
            if (t == 0) {
                mbar_arrive_expect_tx(&full[s], R::B_BYTES);
                tma_load_2d(ring + s * R::STAGE + R::A_BYTES, &map_w, (int32_t)(tap_col + c0), (int32_t)n0,
                            &full[s]);
            }
            // This k-tile: tap `tap`, channels c0 + 8 chunk of the group (past
            // Cin_g: zeros, as the weights' columns there need).
            const uint32_t live = c0 + 8 * chunk < p.cin_g ? 1u << tap : 0u;
            const int32_t tap_off = (dy * (int32_t)p.w + dx) * (int32_t)p.cin + (int32_t)c0;
#pragma unroll
            for (int i = 0; i < GatherRows<BM>::N; i++) {
                const bool ok = (rows.taps[i] & live) != 0;
                const uint32_t at = ok ? (uint32_t)(rows.off[i] + tap_off) : 0u;
                cp_async16(a + dst_t + 2048 * i, x + at, ok);
            }
            cp_async_commit();
            if (g >= SM90_GATHER_LAG) {
                cp_async_wait<SM90_GATHER_LAG>();  // the ring's k-tile g - LAG has landed
                fence_proxy_async_smem();
                mbar_arrive(&full[(g - SM90_GATHER_LAG) % SM90_STAGES]);
            }
            // The next k-tile: the next 64 channels, else the next tap.
            c0 += SM90_BK;
            if (c0 >= p.cin_g) {
                c0 = 0;
                tap++;
                tap_col += p.cin_g;
                dx += (int32_t)p.dw;
                if (dx == (int32_t)(p.kw * p.dw)) {
                    dx = 0;
                    dy += (int32_t)p.dh;
                }
            }
            if (++s == SM90_STAGES) {
                s = 0;
                phase ^= 1;
            }
        }
    }
    cp_async_wait<0>();
    fence_proxy_async_smem();
    for (uint32_t k = g > SM90_GATHER_LAG ? g - SM90_GATHER_LAG : 0; k < g; k++) mbar_arrive(&full[k % SM90_STAGES]);
}

template <int BM, int BN, int ACT, int RES>
__device__ __forceinline__ void conv_sm90_gather_body(const CUtensorMap& map_w, const uint16_t* __restrict__ x,
                                                      const float* __restrict__ bias,
                                                      const uint16_t* __restrict__ residual, uint16_t* __restrict__ y,
                                                      const ConvParams& p) {
    extern __shared__ __align__(16) uint8_t smem_dynamic[];
    __shared__ __align__(8) uint64_t full[SM90_STAGES], empty[SM90_STAGES];
    uint8_t* ring = ring_init(smem_dynamic, full, empty, 129);
    const uint32_t n_tiles = (p.cout + BN - 1) / BN;
    const uint32_t ktiles = p.kh * p.kw * ((p.cin_g + SM90_BK - 1) / SM90_BK);
    const Tiles tiles{n_tiles, (p.m + BM - 1) / BM * n_tiles, BM, BN};
    // Registers: 168 a thread at launch (384 threads); the producers give
    // theirs to the consumers, 64512 of the 65536 in all either way.
    constexpr uint32_t PRODUCER_REGS = BM == 256 ? 88 : 56, CONSUMER_REGS = BM == 256 ? 208 : 224;
    if (threadIdx.x < 128) {
        setmaxnreg_dec<PRODUCER_REGS>();
        gather_produce<BM, BN>(map_w, x, ring, full, empty, ktiles, tiles, p);
        return;
    }
    consumers<BM, BN, ACT, RES, CONSUMER_REGS>(ring, full, empty, ktiles, tiles, bias, residual, y, p);
}
#define SM90_BODY(BN, ACT, RES) conv_sm90_body<BN, ACT, RES>(map_x, map_w, bias, residual, y, p)
#define SM90_GATHER_BODY(BM, BN, ACT, RES) conv_sm90_gather_body<BM, BN, ACT, RES>(map_w, x, bias, residual, y, p)
#else
// Other targets get a stub: the launcher runs this family on compute capability 9.0 only.
#define SM90_BODY(BN, ACT, RES) __trap()
#define SM90_GATHER_BODY(BM, BN, ACT, RES) __trap()
#endif

#define CONV_SM90(NAME, BN, ACT, RES)                                                                          \
    extern "C" __global__ void __launch_bounds__(SM90_THREADS, 1)                                           \
        NAME(const __grid_constant__ CUtensorMap map_x, const __grid_constant__ CUtensorMap map_w,           \
             const float* __restrict__ bias, const uint16_t* __restrict__ residual, uint16_t* __restrict__ y, \
             ConvParams p) {                                                                                 \
        SM90_BODY(BN, ACT, RES);                                                                             \
    }

// ResNet/ResNeXt's epilogues fixed at compile time (conv+BN, +ReLU,
// +residual+ReLU); `_any` reads the activation and the residual from p.
CONV_SM90(conv_sm90_128x128_none, 128, 0, 0)
CONV_SM90(conv_sm90_128x128_relu, 128, 1, 0)
CONV_SM90(conv_sm90_128x128_relu_res, 128, 1, 1)
CONV_SM90(conv_sm90_128x128_any, 128, -1, -1)
// The wide tile: half the x traffic per multiply-add and twice the tensor
// time per k-tile against the same loop overhead; N % 256 == 0.
CONV_SM90(conv_sm90_128x256_none, 256, 0, 0)
CONV_SM90(conv_sm90_128x256_relu, 256, 1, 0)
CONV_SM90(conv_sm90_128x256_relu_res, 256, 1, 1)
CONV_SM90(conv_sm90_128x256_any, 256, -1, -1)

#define CONV_SM90_GATHER(NAME, BM, BN, ACT, RES)                                                                \
    extern "C" __global__ void __launch_bounds__(SM90_THREADS, 1)                                            \
        NAME(const __grid_constant__ CUtensorMap map_w, const uint16_t* __restrict__ x,                       \
             const float* __restrict__ bias, const uint16_t* __restrict__ residual, uint16_t* __restrict__ y, \
             ConvParams p) {                                                                                  \
        SM90_GATHER_BODY(BM, BN, ACT, RES);                                                                   \
    }

// The gather tiles: BN the group's output channels or a divisor of them
// (ResNeXt's 3x3 groups: 48 to 384 wide), 256 pixels a block below 192
// (each consumer warpgroup two 64-row wgmmas a k16 step: twice the tensor
// time per trip of the loop), 128 at 192 and 256 (the accumulators' registers).
// Epilogues: conv+BN+ReLU (every 3x3 of ResNet/ResNeXt), `_any` otherwise.
CONV_SM90_GATHER(conv_sm90g_256x48_relu, 256, 48, 1, 0)
CONV_SM90_GATHER(conv_sm90g_256x48_any, 256, 48, -1, -1)
CONV_SM90_GATHER(conv_sm90g_256x64_relu, 256, 64, 1, 0)
CONV_SM90_GATHER(conv_sm90g_256x64_any, 256, 64, -1, -1)
CONV_SM90_GATHER(conv_sm90g_256x96_relu, 256, 96, 1, 0)
CONV_SM90_GATHER(conv_sm90g_256x96_any, 256, 96, -1, -1)
CONV_SM90_GATHER(conv_sm90g_256x128_relu, 256, 128, 1, 0)
CONV_SM90_GATHER(conv_sm90g_256x128_any, 256, 128, -1, -1)
CONV_SM90_GATHER(conv_sm90g_128x192_relu, 128, 192, 1, 0)
CONV_SM90_GATHER(conv_sm90g_128x192_any, 128, 192, -1, -1)
CONV_SM90_GATHER(conv_sm90g_128x256_relu, 128, 256, 1, 0)
CONV_SM90_GATHER(conv_sm90g_128x256_any, 128, 256, -1, -1)
