// Probes of the stand-in's Hopper emulations (tests/selftest_hopper.cpp):
// each runs one instruction family on inputs the self-test made by hand and
// writes what it saw; a few are planted bugs the stand-in must report.
// Compiled only into the self-test library (and checked to assemble with
// nvcc -gencode=arch=compute_90a,code=sm_90a -DDR_NVCC_CHECK -I kernels).
#include <cuda.h>
#include <stdint.h>

#include "common/hopper.cuh"

// ---- mbarrier ---------------------------------------------------------------------------
// One thread walks a barrier through two phases, writing after each step
// whether phase parity 0 / 1 (or a state token) reads as completed.
extern "C" __global__ void mbarrier_phases(uint32_t* out) {
    __shared__ __align__(8) uint64_t bar;
    if (threadIdx.x != 0) return;
    int i = 0;
    mbar_init(&bar, 2);
    out[i++] = mbar_test_parity(&bar, 0);  // 0: phase 0 is current
    out[i++] = mbar_test_parity(&bar, 1);  // 1: "the phase before", complete
    const uint64_t s0 = mbar_arrive(&bar);
    out[i++] = mbar_test_state(&bar, s0);  // 0: one arrival of two
    mbar_expect_tx(&bar, 100);
    mbar_arrive(&bar);
    out[i++] = mbar_test_parity(&bar, 0);  // 0: arrivals done, 100 bytes pending
    mbar_complete_tx(&bar, 60);
    out[i++] = mbar_test_parity(&bar, 0);  // 0: 40 bytes pending
    mbar_complete_tx(&bar, 40);
    out[i++] = mbar_test_parity(&bar, 0);  // 1: phase 0 complete
    out[i++] = mbar_test_parity(&bar, 1);  // 0: phase 1 is current
    out[i++] = mbar_test_state(&bar, s0);  // 1
    mbar_complete_tx(&bar, 16);            // bytes before they are expected: tx-count -16
    mbar_arrive_expect_tx(&bar, 16);       // +16, one arrival
    out[i++] = mbar_test_parity(&bar, 1);  // 0: one arrival pending
    const uint64_t s1 = mbar_arrive(&bar);
    out[i++] = mbar_test_parity(&bar, 1);  // 1: phase 1 complete
    out[i++] = mbar_test_parity(&bar, 0);  // 0: phase 2 is current
    out[i++] = (uint32_t)(s1 - s0);        // 1: the tokens of consecutive phases differ
}

// Planted: `bug` 1 arrives three times on a barrier of count 2 in one phase
// (bytes pending keep it open); 2 waits on a barrier never initialized.
extern "C" __global__ void mbarrier_misuse(uint32_t bug) {
    __shared__ __align__(8) uint64_t bar[2];
    if (threadIdx.x != 0) return;
    mbar_init(&bar[0], 2);
    mbar_expect_tx(&bar[0], 8);
    mbar_arrive(&bar[0]);
    mbar_arrive(&bar[0]);
    if (bug == 1) mbar_arrive(&bar[0]);
    if (bug == 2) mbar_wait(&bar[1], 0);
}

// Warp 0's lane 0 produces `rounds` values through a one-slot buffer, warp 1
// (32 consumers) reads each: `full` (count 1) and `empty` (count 32) ring
// with parity waits, every thread spinning on try_wait. `skip` 1 leaves out
// the producer's last arrival: the consumers then wait forever (a deadlock).
extern "C" __global__ void mbarrier_pingpong(uint32_t* out, uint32_t rounds, uint32_t skip) {
    __shared__ __align__(8) uint64_t full, empty;
    __shared__ uint32_t slot;
    const unsigned t = threadIdx.x;
    if (t == 0) {
        mbar_init(&full, 1);
        mbar_init(&empty, 32);
    }
    __syncthreads();
    for (uint32_t r = 0; r < rounds; r++) {
        if (t == 0) {
            mbar_wait(&empty, (r & 1) ^ 1);  // the first wait passes: "the phase before" is complete
            slot = 100 + r;
            if (!(skip && r + 1 == rounds)) mbar_arrive(&full);
        } else if (t >= 32) {
            mbar_wait(&full, r & 1);
            out[(t - 32) * rounds + r] = slot;
            mbar_arrive(&empty);
        }
    }
}

// ---- fences, setmaxnreg, elect.sync -------------------------------------------------------
// out[lane] = elected lane over all lanes (leader << 8 | is-elected), then
// over lanes 4..31 in out[32 + lane] (lanes 0..3 write 0xffff).
extern "C" __global__ void sync_misc(uint32_t* out) {
    fence_proxy_async_smem();
    fence_proxy_async_all();
    setmaxnreg_dec<40>();  // (a real kernel gives each warpgroup one of these)
    setmaxnreg_inc<232>();
    const unsigned lane = threadIdx.x % 32;
    if (threadIdx.x >= 32) return;
    uint32_t leader = 0;
    uint32_t me = elect_one(0xffffffffu, leader);
    out[lane] = leader << 8 | me;
    out[32 + lane] = 0xffff;
    if (lane >= 4) {
        me = elect_one(0xfffffff0u, leader);
        out[32 + lane] = leader << 8 | me;
    }
}

// Planted: setmaxnreg with 100 registers (not a multiple of 8), which ptxas
// refuses too: left out of an nvcc build (-DDR_NVCC_CHECK).
#ifndef DR_NVCC_CHECK
extern "C" __global__ void setmaxnreg_bad() { setmaxnreg_inc<100>(); }
#endif

// ---- stmatrix ------------------------------------------------------------------------------
// Lane L holds r[q] = (L << 8 | 2q) in the low half and (L << 8 | 2q + 1) in
// the high one; lane 8q + i points at row i of matrix q in a 4 x 8 x 8 grid of
// 16-bit values (matrix q at 128 q bytes, rows 16 bytes apart). out: the
// grid after x4, x4.trans, x2 and x1 (256 values each; untouched ones 0).
extern "C" __global__ void stmatrix_probe(uint16_t* out) {
    __shared__ __align__(128) uint16_t grid[4][8][8];
    const unsigned l = threadIdx.x;
    const uint32_t r[4] = {(l << 8 | 0) | (l << 8 | 1) << 16, (l << 8 | 2) | (l << 8 | 3) << 16,
                           (l << 8 | 4) | (l << 8 | 5) << 16, (l << 8 | 6) | (l << 8 | 7) << 16};
    const uint32_t row = smem_u32(&grid[l / 8][l % 8][0]);
    for (int v = 0; v < 4; v++) {
        for (int i = 0; i < 8; i++) (&grid[0][0][0])[l * 8 + i] = 0;
        __syncwarp();
        if (v == 0) stmatrix_x4(row, r);
        if (v == 1) stmatrix_x4_trans(row, r);
        if (v == 2) stmatrix_x2(row, r[0], r[1]);
        if (v == 3) stmatrix_x1(row, r[0]);
        __syncwarp();
        for (int i = 0; i < 8; i++) out[v * 256 + l * 8 + i] = (&grid[0][0][0])[l * 8 + i];
        __syncwarp();
    }
}

// ---- wgmma ----------------------------------------------------------------------------------
// One warpgroup. `image` (the self-test's bytes of A and B laid out by the ISA's
// shared-memory layout, 32 KB) is copied to a 1024-byte aligned buffer; the
// descriptors' start addresses are offsets into it. Thread t's accumulators
// start as c[t * N/2 + i] and end in d[t * N/2 + i]. Variants: N 8, 64, 256
// from descriptors; N 64 with A from registers (a_regs[t * 4 + q]).
// `early` 1 reads the accumulators before wgmma.wait_group (planted);
// `fence` 0 leaves out wgmma.fence (planted).
template <int N, bool RS>
__device__ void wgmma_run(const uint8_t* image, uint64_t desc_a, uint64_t desc_b, const uint32_t* a_regs, const float* c,
                          float* d, uint32_t scale_d, uint32_t early, uint32_t fence) {
    __shared__ __align__(1024) uint8_t buf[32768];
    const unsigned t = threadIdx.x;
    for (unsigned i = t; i < 32768 / 16; i += blockDim.x) ((uint4*)buf)[i] = ((const uint4*)image)[i];
    fence_proxy_async_smem();
    __syncthreads();
    const uint32_t base = smem_u32(buf);
    float acc[N / 2];
    for (int i = 0; i < N / 2; i++) acc[i] = c[t * (N / 2) + i];
    if (fence) wgmma_fence();
    if constexpr (RS) {
        const uint32_t a[4] = {a_regs[t * 4], a_regs[t * 4 + 1], a_regs[t * 4 + 2], a_regs[t * 4 + 3]};
        wgmma_m64n64k16_rs(acc, a, desc_b + (base >> 4), scale_d);
    } else if constexpr (N == 8) {
        wgmma_m64n8k16_ss(acc, desc_a + (base >> 4), desc_b + (base >> 4), scale_d);
    } else if constexpr (N == 64) {
        wgmma_m64n64k16_ss(acc, desc_a + (base >> 4), desc_b + (base >> 4), scale_d);
    } else {
        wgmma_m64n256k16_ss(acc, desc_a + (base >> 4), desc_b + (base >> 4), scale_d);
    }
    wgmma_commit();
    if (early) d[t * (N / 2)] = acc[0];
    wgmma_wait<0>();
    for (int i = early ? 1 : 0; i < N / 2; i++) d[t * (N / 2) + i] = acc[i];
}

extern "C" __global__ void __launch_bounds__(128) wgmma_ss_n8(const uint8_t* image, uint64_t da, uint64_t db,
                                                              const float* c, float* d, uint32_t scale_d) {
    wgmma_run<8, false>(image, da, db, nullptr, c, d, scale_d, 0, 1);
}
extern "C" __global__ void __launch_bounds__(128) wgmma_ss_n64(const uint8_t* image, uint64_t da, uint64_t db,
                                                               const float* c, float* d, uint32_t scale_d,
                                                               uint32_t early, uint32_t fence) {
    wgmma_run<64, false>(image, da, db, nullptr, c, d, scale_d, early, fence);
}
extern "C" __global__ void __launch_bounds__(128) wgmma_ss_n256(const uint8_t* image, uint64_t da, uint64_t db,
                                                                const float* c, float* d, uint32_t scale_d) {
    wgmma_run<256, false>(image, da, db, nullptr, c, d, scale_d, 0, 1);
}
extern "C" __global__ void __launch_bounds__(128) wgmma_rs_n64(const uint8_t* image, const uint32_t* a_regs,
                                                               uint64_t db, const float* c, float* d,
                                                               uint32_t scale_d) {
    wgmma_run<64, true>(image, 0, db, a_regs, c, d, scale_d, 0, 1);
}

// ---- TMA ------------------------------------------------------------------------------------
// Thread 0 loads the box at (c0, c1) of a 2-D map (or (c0, c1, c2) of a 3-D
// one) into a 1024-byte aligned buffer through an mbarrier; every thread
// waits on it, then the raw shared bytes (swizzle and all) go to out.
extern "C" __global__ void tma_load_probe(const __grid_constant__ CUtensorMap map, int32_t c0, int32_t c1, int32_t c2,
                                          uint32_t rank, uint32_t bytes, uint8_t* out) {
    __shared__ __align__(1024) uint8_t buf[16384];
    __shared__ __align__(8) uint64_t bar;
    if (threadIdx.x == 0) {
        prefetch_map(&map);
        mbar_init(&bar, 1);
        mbar_arrive_expect_tx(&bar, bytes);
        if (rank == 2) tma_load_2d(buf, &map, c0, c1, &bar);
        else tma_load_3d(buf, &map, c0, c1, c2, &bar);
    }
    __syncthreads();
    mbar_wait(&bar, 0);
    for (uint32_t i = threadIdx.x; i < bytes; i += blockDim.x) out[i] = buf[i];
}

// Planted: the box is read without waiting on the mbarrier.
extern "C" __global__ void tma_no_wait(const __grid_constant__ CUtensorMap map, uint8_t* out) {
    __shared__ __align__(1024) uint8_t buf[16384];
    __shared__ __align__(8) uint64_t bar;
    if (threadIdx.x == 0) {
        mbar_init(&bar, 1);
        mbar_arrive_expect_tx(&bar, 4096);
        tma_load_2d(buf, &map, 0, 0, &bar);
        out[0] = buf[0];
    }
}

// The raw shared bytes `image` are stored as the box at (c0, c1) of a 2-D map.
extern "C" __global__ void tma_store_probe(const __grid_constant__ CUtensorMap map, int32_t c0, int32_t c1,
                                           const uint8_t* image, uint32_t bytes) {
    __shared__ __align__(1024) uint8_t buf[16384];
    for (uint32_t i = threadIdx.x; i < bytes; i += blockDim.x) buf[i] = image[i];
    fence_proxy_async_smem();
    __syncthreads();
    if (threadIdx.x == 0) {
        tma_store_2d(&map, c0, c1, buf);
        bulk_commit();
        bulk_wait_read<0>();
        bulk_wait<0>();
    }
}
