// A warp-specialized bf16 GEMM tile, the Hopper pieces together under the
// stand-in's scheduler (tests/selftest_tma.cpp runs it): C (64 x 64, f32,
// row-major) = A (64 x K, bf16, row-major) x B, B given as B^T (64 x K,
// bf16, row-major), so both operands are K-major.
//
// Launch: one block of 256 threads. Warpgroup 0 is the producer (one thread
// issues the TMA loads), warpgroup 1 the consumer (wgmma). K runs in tiles of
// 64 (128 bytes of bf16, one 128B-swizzle row) through a 2-stage ring of
// shared buffers: `full[s]` (count 1, plus the tile's 16 KB of transactions)
// tells the consumer a stage has landed, `empty[s]` (count 128) tells the
// producer it may be refilled. Each k-tile is four m64n64k16 wgmmas, the
// descriptors' start address 32 bytes further for each 16 columns of K. A
// tail tile past K is zero-filled by the TMA. `wait_full` 0 leaves out the
// consumer's wait (planted: the wgmma then reads a stage still being loaded).
// Compiles with nvcc -gencode=arch=compute_90a,code=sm_90a as well.
#include <cuda.h>
#include <stdint.h>

#include "common/hopper.cuh"

extern "C" __global__ void __launch_bounds__(256, 1)
    gemm_ws_64x64(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b, float* c,
                  uint32_t k, uint32_t wait_full) {
    __shared__ __align__(1024) uint8_t sa[2][64 * 128];
    __shared__ __align__(1024) uint8_t sb[2][64 * 128];
    __shared__ __align__(8) uint64_t full[2], empty[2];
    const uint32_t ktiles = (k + 63) / 64;
    if (threadIdx.x == 0) {
        for (int s = 0; s < 2; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 128);
        }
    }
    __syncthreads();
    if (threadIdx.x < 128) {
        setmaxnreg_dec<40>();
        if (threadIdx.x == 0) {
            prefetch_map(&map_a);
            prefetch_map(&map_b);
            for (uint32_t kt = 0; kt < ktiles; kt++) {
                const uint32_t s = kt % 2;
                mbar_wait(&empty[s], ((kt / 2) & 1) ^ 1);  // the first round passes at once
                mbar_arrive_expect_tx(&full[s], 2 * 64 * 128);
                tma_load_2d(sa[s], &map_a, (int32_t)(kt * 64), 0, &full[s]);
                tma_load_2d(sb[s], &map_b, (int32_t)(kt * 64), 0, &full[s]);
            }
        }
        return;
    }
    setmaxnreg_inc<232>();
    float acc[32];
    for (int i = 0; i < 32; i++) acc[i] = 0.0f;
    for (uint32_t kt = 0; kt < ktiles; kt++) {
        const uint32_t s = kt % 2;
        if (wait_full) mbar_wait(&full[s], (kt / 2) & 1);
        wgmma_fence();
        for (uint32_t kk = 0; kk < 4; kk++) {
            const uint64_t da = wgmma_desc(smem_u32(sa[s]) + 32 * kk, 16, 1024, 1);
            const uint64_t db = wgmma_desc(smem_u32(sb[s]) + 32 * kk, 16, 1024, 1);
            wgmma_m64n64k16_ss(acc, da, db, (kt | kk) != 0);
        }
        wgmma_commit();
        wgmma_wait<0>();
        mbar_arrive(&empty[s]);
    }
    // D fragment: register i of thread t is row 16(t/32) + (t%32)/4 + 8((i/2)%2), column 8(i/4) + 2(t%4) + i%2.
    const unsigned t = threadIdx.x - 128;
    for (int i = 0; i < 32; i++) {
        const unsigned row = 16 * (t / 32) + (t % 32) / 4 + 8 * ((i / 2) % 2), col = 8 * (i / 4) + 2 * (t % 4) + i % 2;
        c[row * 64 + col] = acc[i];
    }
}
