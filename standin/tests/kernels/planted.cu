// Kernels for the stand-in's self-test (tests/selftest.cpp): probes of each
// emulated PTX instruction on hand-made inputs, and planted bugs the stand-in
// must catch, each beside its correct twin. Compiled only into the self-test
// library, never into dr.
#include <stdint.h>

// ---- PTX probes -------------------------------------------------------------------

__device__ __forceinline__ void mma(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
}

// Thread t: d[t] = cvt.rn.bf16x2.f32 of (hi[t], lo[t]).
extern "C" __global__ void cvt_bf16x2_probe(const float* hi, const float* lo, uint32_t* d) {
    const unsigned t = threadIdx.x;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(d[t]) : "f"(hi[t]), "f"(lo[t]));
}

extern "C" __global__ void ex2_probe(const float* x, float* y) {
    const unsigned t = threadIdx.x;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y[t]) : "f"(x[t]));
}

extern "C" __global__ void mov_probe(const uint64_t* x, uint64_t* y) {
    const unsigned t = threadIdx.x;
    asm("mov.b64 %0, %1;\n" : "=l"(y[t]) : "l"(x[t]));
}

// One warp: lane l's registers a[l][0..3], b[l][0..1], c[l][0..3] in, d[l][0..3] out.
extern "C" __global__ void mma_probe(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
    const unsigned l = threadIdx.x;
    uint32_t ra[4], rb[2];
    float rc[4], rd[4];
    for (int i = 0; i < 4; i++) ra[i] = a[l * 4 + i], rc[i] = c[l * 4 + i];
    for (int i = 0; i < 2; i++) rb[i] = b[l * 2 + i];
    mma(rd, ra, rb, rc);
    for (int i = 0; i < 4; i++) d[l * 4 + i] = rd[i];
}

// Planted: the A fragment gathered with rows and columns of registers 1 and 2
// swapped (a common slip: row + 8 versus column + 8). The self-test shows the
// product then differs from the reference.
extern "C" __global__ void mma_swapped_a(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
    const unsigned l = threadIdx.x;
    uint32_t ra[4], rb[2];
    float rc[4], rd[4];
    ra[0] = a[l * 4 + 0];
    ra[1] = a[l * 4 + 2];
    ra[2] = a[l * 4 + 1];
    ra[3] = a[l * 4 + 3];
    for (int i = 0; i < 4; i++) rc[i] = c[l * 4 + i];
    for (int i = 0; i < 2; i++) rb[i] = b[l * 2 + i];
    mma(rd, ra, rb, rc);
    for (int i = 0; i < 4; i++) d[l * 4 + i] = rd[i];
}

__device__ __forceinline__ void cp16(void* smem, const void* gmem, uint32_t src_bytes) {
    const uint32_t dst = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void wait_group() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Thread t copies 16 bytes at src + 16 t with src-size sizes[t] into shared
// memory, then writes what arrived to out (zero-fill check). A src-size of 0
// reads nothing: src may then point anywhere.
extern "C" __global__ void cp_async_zero_fill(const uint8_t* src, const uint32_t* sizes, uint8_t* out) {
    __shared__ __align__(16) uint8_t buf[16 * 32];
    const unsigned t = threadIdx.x;
    const uint8_t* from = sizes[t] ? src + 16 * t : (const uint8_t*)0x10;
    cp16(buf + 16 * t, from, sizes[t]);
    commit();
    wait_group<0>();
    for (int i = 0; i < 16; i++) out[16 * t + i] = buf[16 * t + i];
}

// Two groups; wait_group 1 completes the first only. `read_second` then reads
// the second group's bytes too early (planted when 1).
extern "C" __global__ void cp_async_groups(const uint8_t* src, uint8_t* out, uint32_t read_second) {
    __shared__ __align__(16) uint8_t buf[64];
    cp16(buf, src, 16);
    commit();
    cp16(buf + 16, src + 16, 16);
    commit();
    wait_group<1>();
    for (int i = 0; i < 16; i++) out[i] = buf[i];
    if (read_second) out[16] = buf[16];
    wait_group<0>();
    for (int i = 16; i < 32; i++) out[i] = buf[i];
}

// ---- planted bugs and their correct twins -------------------------------------------

// Reads x[n - 1 + extra]: extra = 1 is one element past the end.
extern "C" __global__ void read_last(const float* x, float* y, uint32_t n, uint32_t extra) {
    if (threadIdx.x == 0) y[0] = x[n - 1 + extra];
}

// A block sum in shared memory; with `barrier` 0 the tree steps run without
// __syncthreads between them (a missing barrier and a shared-memory race).
extern "C" __global__ void block_sum(const uint32_t* x, uint32_t* out, uint32_t barrier) {
    __shared__ uint32_t s[128];
    const unsigned t = threadIdx.x;
    s[t] = x[t];
    if (barrier) __syncthreads();
    for (unsigned w = 64; w > 0; w >>= 1) {
        if (t < w) s[t] += s[t + w];
        if (barrier) __syncthreads();
    }
    if (t == 0) out[0] = s[0];
}

// Thread 0 publishes a value through shared memory; `barrier` 0 leaves out
// the __syncthreads between the write and the others' reads.
extern "C" __global__ void publish(uint32_t* out, uint32_t barrier) {
    __shared__ uint32_t v;
    if (threadIdx.x == 0) v = 42;
    if (barrier) __syncthreads();
    out[threadIdx.x] = v;
}

// Copies tiles through a double buffer with cp.async: with `wait` 0 the
// cp.async.wait_group before the barrier is missing.
extern "C" __global__ void staged_copy(const uint8_t* src, uint8_t* out, uint32_t tiles, uint32_t wait) {
    __shared__ __align__(16) uint8_t buf[2][32 * 16];
    const unsigned t = threadIdx.x;
    cp16(&buf[0][16 * t], src + 16 * t, 16);
    commit();
    for (uint32_t k = 0; k < tiles; k++) {
        const int cur = k & 1;
        if (k + 1 < tiles) {
            cp16(&buf[cur ^ 1][16 * t], src + (k + 1) * 512 + 16 * t, 16);
            commit();
            if (wait) wait_group<1>();
        } else if (wait) {
            wait_group<0>();
        }
        __syncthreads();
        // Each thread reads another thread's bytes: the barrier publishes them.
        const unsigned u = (t + 1) % 32;
        for (int i = 0; i < 16; i++) out[k * 512 + 16 * u + i] = buf[cur][16 * u + i];
        __syncthreads();
    }
}

// The same double buffer without the trailing barrier (`trailing` 0): a warp
// that runs ahead refills the stage the others still read.
extern "C" __global__ void double_buffer(const uint8_t* src, uint8_t* out, uint32_t tiles, uint32_t trailing) {
    __shared__ __align__(16) uint8_t buf[2][64 * 16];
    const unsigned t = threadIdx.x;
    cp16(&buf[0][16 * t], src + 16 * t, 16);
    commit();
    for (uint32_t k = 0; k < tiles; k++) {
        const int cur = k & 1;
        if (k + 1 < tiles) {
            cp16(&buf[cur ^ 1][16 * t], src + (k + 1) * 1024 + 16 * t, 16);
            commit();
            wait_group<1>();
        } else {
            wait_group<0>();
        }
        __syncthreads();
        const unsigned u = 63 - t;  // the other warp's bytes
        for (int i = 0; i < 16; i++) out[k * 1024 + 16 * u + i] = buf[cur][16 * u + i];
        if (trailing) __syncthreads();
    }
}

// A __syncthreads only half the block reaches.
extern "C" __global__ void barrier_in_branch(uint32_t* out, uint32_t all) {
    __shared__ uint32_t s[64];
    s[threadIdx.x] = threadIdx.x;
    if (all || threadIdx.x < 32) __syncthreads();
    out[threadIdx.x] = s[63 - threadIdx.x];
}

// y[i] = x[i] + 1: the cross-stream test's producer and consumer.
extern "C" __global__ void add_one(const uint32_t* x, uint32_t* y, uint32_t n) {
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] + 1;
}

// Warp shuffles and votes: out[4 l + 0..3] = xor-1, idx 3, down 2, ballot of odd lanes.
extern "C" __global__ void warp_ops(uint32_t* out) {
    const unsigned l = threadIdx.x;
    out[4 * l + 0] = __shfl_xor_sync(0xffffffffu, l * 10, 1);
    out[4 * l + 1] = __shfl_sync(0xffffffffu, l * 10, 3);
    out[4 * l + 2] = __shfl_down_sync(0xffffffffu, l * 10, 2);
    out[4 * l + 3] = __ballot_sync(0xffffffffu, l & 1);
}

// Shared and global atomics: out[0] = sum of thread ids over the grid,
// out[1] = max, out[2] = a block's shared count (each block the same).
extern "C" __global__ void atomics(uint32_t* out) {
    __shared__ uint32_t count;
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    atomicAdd(&count, 1u);
    const uint32_t g = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&out[0], g);
    atomicMax(&out[1], g);
    __syncthreads();
    if (threadIdx.x == 0) atomicExch(&out[2], count);
}

// Static shared memory over the 48 KB limit.
extern "C" __global__ void too_much_shared(uint32_t* out) {
    __shared__ uint32_t big[13 * 1024];
    big[threadIdx.x] = 1;
    out[0] = big[0];
}

// Dynamic shared memory: out[t] = t through it.
extern "C" __global__ void dynamic_smem(uint32_t* out) {
    extern __shared__ __align__(16) uint32_t dyn[];
    dyn[threadIdx.x] = threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = dyn[threadIdx.x];
}

// Writes one element past a __shared__ array (into its red zone).
extern "C" __global__ void shared_overrun(uint32_t* out) {
    __shared__ uint32_t s[32];
    s[threadIdx.x] = threadIdx.x;  // launched with 33 threads
    __syncthreads();
    out[0] = s[0];
}

// A kernel with __launch_bounds__: launching more threads is refused.
extern "C" __global__ void __launch_bounds__(64) bounded(uint32_t* out) { out[threadIdx.x] = 1; }

// Every thread counts itself into shared memory with an atomic, then reads
// the total; `barrier` 0 reads it before the others have added (a race of a
// plain read with atomics).
extern "C" __global__ void count_then_read(uint32_t* out, uint32_t barrier) {
    __shared__ uint32_t c;
    if (threadIdx.x == 0) c = 0;
    __syncthreads();
    atomicAdd(&c, 1u);
    if (barrier) __syncthreads();
    out[threadIdx.x] = c;
}

// ---- ldmatrix -----------------------------------------------------------------------
// One warp: four 8x8 b16 matrices m[q][r][c] = in[q*64 + r*8 + c] staged in
// shared memory; lane l names row l%8 of matrix l/8 (offset by `skew` bytes:
// 0 correct, 2 the planted misaligned row). d[l*11 + ...]: x4 (4 registers),
// x4.trans (4), x2 (2), x1 (1).
extern "C" __global__ void ldmatrix_probe(const uint16_t* in, uint32_t* d, uint32_t skew) {
    __shared__ __align__(16) uint16_t m[4 * 64 + 8];
    const unsigned l = threadIdx.x;
    for (int i = l; i < 4 * 64 + 8; i += 32) m[i] = i < 256 ? in[i] : 0;
    __syncthreads();
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(&m[(l / 8) * 64 + (l % 8) * 8]) + (l == 3 ? skew : 0);
    uint32_t* o = d + l * 11;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(o[0]), "=r"(o[1]), "=r"(o[2]), "=r"(o[3])
                 : "r"(a));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(o[4]), "=r"(o[5]), "=r"(o[6]), "=r"(o[7])
                 : "r"(a));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(o[8]), "=r"(o[9]) : "r"(a));
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(o[10]) : "r"(a));
}
