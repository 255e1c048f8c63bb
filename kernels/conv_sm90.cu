// conv_sm90: the 1x1 convolutions and linear layers as a warp-specialized
// wgmma + TMA GEMM for Hopper (sm_90a only), with conv.cu's fused epilogue.
//
// Math:   y[m][n] = act(sum_k x[m][k] w[n][k] + bias[n] (+ residual[m][n])),
//         the sum in fp32 on the tensor cores, then v = D + bias, v += the
//         residual, act(v) in fp32 (common/conv_params.cuh `activate`; 0 none,
//         1 ReLU, 2 SiLU, 3 HardSwish, 4 sigmoid, 5/6 GELU), rounded to bf16
//         (nearest even). A stride-1, unpadded, ungrouped 1x1 convolution over
//         NHWC is exactly this GEMM with m = (image, y, x) and k = the input channel.
// Layout: x [M][K] bf16 (NHWC pixels, K = Cin contiguous); w [N][K_pad] bf16
//         (teacher/gpu/conv.rs `pack_weights`, K-major); bias [N] f32;
//         residual and y [M][N] bf16. The launcher (teacher/gpu/conv_sm90.rs)
//         takes K and N multiples of 8 (16-byte rows) and any M: the TMA
//         fills what lies past M, K_pad and N with zeros (a ragged last
//         k-tile adds exact zeros, as the packed weights' padding does), and
//         the epilogue stores no row past M and no column past N.
// Launch: grid ceil(M / 128) * ceil(N / BN) blocks, the output-channel tiles
//         fastest (blocks sharing x rows run together); 384 threads: warpgroup
//         0 the producer (one thread issues the TMA loads; setmaxnreg.dec 40),
//         warpgroups 1 and 2 the consumers (rows 0-63 and 64-127 of the
//         tile, one wgmma m64nBNk16 per 16 of K; setmaxnreg.inc 232);
//         dynamic shared memory STAGES x (128 + BN) x 128 bytes + 1 KB to align
//         the ring to the 1024 bytes of the 128B swizzle pattern.
// Pipeline: a ring of STAGES k-tiles of 64 (one 128-byte swizzled row per
//         tile row, as tensor maps with CU_TENSOR_MAP_SWIZZLE_128B write it and
//         the wgmma descriptors read it), `full[s]` (one arrival with the
//         stage's bytes as transactions, completed by the TMA) and `empty[s]`
//         (the 256 consumer threads' arrivals) mbarriers; no __syncthreads
//         after the barriers' initialisation. A consumer keeps one wgmma
//         group in flight: it releases stage s-1 once the group reading it
//         has completed (wgmma.wait_group 1).
// Budget (per consumer warp and k-tile): 4 HGMMA of BN/2 tensor clocks each
//         (128 x BN x 64 multiply-adds at 2048 a clock per SM, H100), during
//         which its scheduler has as many issue slots; the loop's other work
//         (full wait, fence, descriptors, commit, wait, empty arrival; the
//         round's count once every 4 k-tiles) is 24 instructions: 4.7% of the
//         slots at BN 256, 9.4% at 128 ([gpu-hopper]'s goal <= 10%;
//         tools/sass_report.py). Two thirds of it are the descriptors: ptxas
//         rebuilds each wgmma's (lo, hi) pair, 4 moves a wgmma. Whole rounds
//         carry no bound check, and the ring's and the barriers' shared
//         addresses are made opaque once (`opaque_u32`), else ptxas
//         recomputes them every round (31 instructions a k-tile before).
// Tolerance vs the CPU twin (teacher/gpu/conv/cpu.rs, the same bf16 products
//         in f64): Tol::Bf16Accum, as conv.cu. The bits differ from conv.cu's
//         kernels (another accumulation order), so a layer's kernel is chosen
//         by the device alone, never by the batch.
#include <cuda.h>
#include <stdint.h>

#include <type_traits>

#include "common/bf16.cuh"
#include "common/conv_params.cuh"

#define SM90_BM 128
#define SM90_BK 64  // bf16: one 128-byte swizzle row
#define SM90_STAGES 4
#define SM90_THREADS 384

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "common/hopper.cuh"

template <int BN>
__device__ __forceinline__ void wgmma_tile(float (&acc)[BN / 2], uint64_t da, uint64_t db) {
    if constexpr (BN == 128) wgmma_m64n128k16_ss(acc, da, db, 1);
    else wgmma_m64n256k16_ss(acc, da, db, 1);
}

// The stage ring's geometry, shared by the producer and the consumers.
template <int BN>
struct Ring {
    static constexpr uint32_t A_BYTES = SM90_BM * SM90_BK * 2, B_BYTES = BN * SM90_BK * 2, STAGE = A_BYTES + B_BYTES;
};

// One consumer warpgroup: tile rows 64 WG to 64 WG + 63, all BN columns. WG
// is a template parameter so that every address of the loop is a function
// of the block alone (uniform registers, as the descriptors must be) and
// the loop carries only the stage, its phase and the count.
template <int BN, int WG>
__device__ __forceinline__ void consume(float (&acc)[BN / 2], uint8_t* ring, uint64_t* full, uint64_t* empty,
                                        uint32_t ktiles) {
    using R = Ring<BN>;
    // Descriptors of stage 0, k 0: 128B swizzle, 8 rows of 128 bytes 1024 apart
    // (SBO), LBO unused by a swizzled K-major operand. A stage s and the k16
    // step kk move the start address (the low 14 bits, in 16 bytes) by
    // s STAGE/16 + 2 kk: never past 2^14, so the low word is added to alone.
    const uint64_t da = wgmma_desc(smem_u32(ring) + WG * 64 * 128, 16, 1024, 1);
    const uint64_t db = wgmma_desc(smem_u32(ring) + R::A_BYTES, 16, 1024, 1);
    const uint32_t a_lo = opaque_u32((uint32_t)da), b_lo = opaque_u32((uint32_t)db);
    const uint32_t a_hi = (uint32_t)(da >> 32), b_hi = (uint32_t)(db >> 32);
    const uint32_t full0 = opaque_u32(smem_u32(full)), empty0 = opaque_u32(smem_u32(empty));
    // One k-tile in stage S: wait for its bytes, four wgmma, then release
    // the stage before it (its group has completed: wait_group 1), except
    // before the first k-tile. S is a constant in every copy (descriptor
    // offsets and barrier addresses immediates).
    auto step = [&](auto S, uint32_t phase, bool release) {
        constexpr uint32_t s = decltype(S)::value;
        mbar_wait(full0 + 8 * s, phase);
        wgmma_fence();
#pragma unroll
        for (uint32_t kk = 0; kk < SM90_BK / 16; kk++) {  // 16 of K are 32 bytes along the swizzled row
            const uint32_t off = s * (R::STAGE / 16) + 2 * kk;
            wgmma_tile<BN>(acc, (uint64_t)a_hi << 32 | (a_lo + off), (uint64_t)b_hi << 32 | (b_lo + off));
        }
        wgmma_commit();
        wgmma_wait<1>();  // the previous k-tile's group has read its stage
        if (release) mbar_arrive_at(empty0 + 8 * ((s + SM90_STAGES - 1) % SM90_STAGES));
    };
    // Whole rounds of the ring with no bound to check (the phase flips once
    // a round), then the last ktiles % STAGES k-tiles: the checks a k-tile
    // would cost are paid once a layer, not once a k-tile.
    static_assert(SM90_STAGES == 4, "a round below is four steps");
    uint32_t phase = 0, kt = 0;
    for (; kt + SM90_STAGES <= ktiles; kt += SM90_STAGES, phase ^= 1) {
        step(std::integral_constant<uint32_t, 0>{}, phase, kt > 0);
        step(std::integral_constant<uint32_t, 1>{}, phase, true);
        step(std::integral_constant<uint32_t, 2>{}, phase, true);
        step(std::integral_constant<uint32_t, 3>{}, phase, true);
    }
    const uint32_t left = ktiles - kt;
    if (left > 0) step(std::integral_constant<uint32_t, 0>{}, phase, kt > 0);
    if (left > 1) step(std::integral_constant<uint32_t, 1>{}, phase, true);
    if (left > 2) step(std::integral_constant<uint32_t, 2>{}, phase, true);
    wgmma_wait<0>();
}

template <int BN, int ACT, int RES>
__device__ __forceinline__ void conv_sm90_body(const CUtensorMap& map_x, const CUtensorMap& map_w,
                                               const float* __restrict__ bias, const uint16_t* __restrict__ residual,
                                               uint16_t* __restrict__ y, const ConvParams& p) {
    using R = Ring<BN>;
    extern __shared__ __align__(16) uint8_t smem_dynamic[];
    __shared__ __align__(8) uint64_t full[SM90_STAGES], empty[SM90_STAGES];
    // The swizzle is a function of the shared address bits 4-9: stages start on 1024 bytes.
    uint8_t* ring = smem_dynamic + ((1024 - (smem_u32(smem_dynamic) & 1023)) & 1023);
    const uint32_t n_tiles = (p.cout + BN - 1) / BN, ktiles = (p.k + SM90_BK - 1) / SM90_BK;
    const uint32_t m0 = blockIdx.x / n_tiles * SM90_BM, n0 = blockIdx.x % n_tiles * BN;
    if (threadIdx.x == 0) {
        for (int s = 0; s < SM90_STAGES; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 256);
        }
        fence_proxy_async_smem();  // the barriers, visible to the TMA unit
    }
    __syncthreads();

    if (threadIdx.x < 128) {  // producer warpgroup
        setmaxnreg_dec<40>();
        if (threadIdx.x == 0) {
            prefetch_map(&map_x);
            prefetch_map(&map_w);
            uint32_t s = 0, phase = 0;
            for (uint32_t kt = 0; kt < ktiles; kt++) {
                mbar_wait(&empty[s], phase ^ 1);  // the first round passes at once
                uint8_t* a = ring + s * R::STAGE;
                mbar_arrive_expect_tx(&full[s], R::STAGE);
                tma_load_2d(a, &map_x, (int32_t)(kt * SM90_BK), (int32_t)m0, &full[s]);
                tma_load_2d(a + R::A_BYTES, &map_w, (int32_t)(kt * SM90_BK), (int32_t)n0, &full[s]);
                if (++s == SM90_STAGES) {
                    s = 0;
                    phase ^= 1;
                }
            }
        }
        return;
    }

    setmaxnreg_inc<232>();
    const uint32_t wg = threadIdx.x / 128 - 1;
    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; i++) acc[i] = 0.0f;
    if (wg == 0) consume<BN, 0>(acc, ring, full, empty, ktiles);
    else consume<BN, 1>(acc, ring, full, empty, ktiles);

    // ---- epilogue, from the accumulators: register i of thread t is row
    // 16(t/32) + (t%32)/4 + 8((i/2)%2), column 8(i/4) + 2(t%4) + i%2 (PTX ISA
    // 9.7.15.5.1, the wgmma D fragment), so pairs (i, i+1) are two channels.
    const uint32_t t = threadIdx.x % 128;
    const bool res = RES < 0 ? p.has_residual != 0 : RES != 0;
    const float* bias_t = bias + n0 + 2 * (t % 4);  // channel pair 8j of this thread: + 8j
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const uint32_t m = m0 + wg * 64 + 16 * (t / 32) + (t % 32) / 4 + 8 * h;
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
#define SM90_BODY(BN, ACT, RES) conv_sm90_body<BN, ACT, RES>(map_x, map_w, bias, residual, y, p)
#else
// Other targets get a stub: the launcher runs this family on compute capability 9.0 only.
#define SM90_BODY(BN, ACT, RES) __trap()
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
