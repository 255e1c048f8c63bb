// The tensor-core building blocks of the implicit-GEMM kernels (conv.cu;
// later the transformer GEMMs): cp.async copies into shared memory,
// ldmatrix fragment loads and mma.sync m16n8k16 bf16 -> f32, each one PTX
// instruction that the stand-in emulates (standin/include/emu/ptx.h).
// Shared-memory operands are 32-bit shared-window addresses (`smem_u32`),
// so a kernel adds stage and tile offsets in 32-bit registers.
#pragma once
#include <stdint.h>

#include "smem.cuh"

// 16 bytes global -> shared; `valid` false copies nothing and zero-fills
// (src-size 0), which is the convolution's padding.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
    const int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// All but the N most recently committed groups have landed (this thread's).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 bf16 matrices: lanes 8q..8q+7 give the rows of matrix q; r[q]
// is this lane's (row lane/4, columns 2(lane%4), +1) of matrix q.
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// Two 8x8 matrices: lanes 0..15 give the rows (the rest are ignored).
__device__ __forceinline__ void ldsm_x2(uint32_t r[2], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
}

// ldsm_x4 transposed: r[q] is this lane's (rows 2(lane%4), +1, column
// lane/4) of matrix q, the B fragment of a row-major [k][n] tile (attention's V).
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// c += a (16x16, row) x b (16x8, col), fp32 accumulation.
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// An MI x NI grid of m16n8 fp32 accumulators, zeroed.
template <int MI, int NI>
__device__ __forceinline__ void zero_accumulators(float (&acc)[MI][NI][4]) {
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;
}
