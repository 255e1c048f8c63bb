// topk: ensemble softmax and top-k, from the members' logits to the stored
// probabilities, one block per row.
//
// Math:   p[c] = (sum over members m, in order, of e_m[c] * (1 / s_m)) / M
//         e_m[c] = dr_exp(x_m[c] * inv_t - max_c(x_m[c] * inv_t)),
//         s_m = sum_c e_m[c]
//         then the k largest p[c], largest first, ties to the lower class id.
//         Every rounding is pinned so the CPU twin (src/teacher/gpu/topk.rs)
//         computes the same bits: dr_exp is our own exp (Cody-Waite range
//         reduction, degree-6 polynomial, explicit fmaf), products and sums
//         use __fmul_rn/__fadd_rn (no fma contraction), and both reductions
//         run in a fixed order: thread t sums classes t, t+256, ... in order,
//         then a shared-memory tree (t += t + s, s = 128, 64, ..., 1).
// Layout: logits [M][rows][classes] f32; probs (workspace) [rows][classes];
//         out_vals [rows][k] f32; out_ids [rows][k] u32.
// Launch: grid = rows, block = TOPK_THREADS, static shared memory ~11 KB;
//         1 <= k <= TOPK_MAX_K, or k = 0 for the probabilities alone: larger
//         k (up to the class count) ranks them in `topk_rank_f32` below.
// Select: 4 radix passes over the probability bits (p >= 0, so the bits order
//         as the values) find the k-th largest value; the values above it and
//         the lowest-id ones equal to it are gathered in id order, then a
//         bitonic sort by (value desc, id asc).
// Tolerance vs the CPU twin: exact (same values, same ids, same order).
#include <stdint.h>

#define TOPK_THREADS 256
#define TOPK_MAX_K 1024

// exp(x) for x <= 0; 0 below the smallest normal float's log.
__device__ __forceinline__ float dr_exp(float x) {
    if (x < -87.33654f) return 0.0f;
    const float n = rintf(__fmul_rn(x, 1.44269504f));
    float r = fmaf(-n, 0.693145751953125f, x);
    r = fmaf(-n, 1.428606765330187e-06f, r);
    float p = 1.38888889e-3f;
    p = fmaf(p, r, 8.33333333e-3f);
    p = fmaf(p, r, 4.16666667e-2f);
    p = fmaf(p, r, 1.66666667e-1f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    return __fmul_rn(p, __int_as_float(((int)n + 127) << 23));
}

// Tree reduction over `red` (all TOPK_THREADS threads call it).
__device__ __forceinline__ float block_reduce(float* red, float v, bool is_max) {
    const unsigned t = threadIdx.x;
    red[t] = v;
    __syncthreads();
    for (unsigned s = TOPK_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) red[t] = is_max ? fmaxf(red[t], red[t + s]) : __fadd_rn(red[t], red[t + s]);
        __syncthreads();
    }
    const float out = red[0];
    __syncthreads();
    return out;
}

// Exclusive prefix sums of `v` over the threads, in thread order.
__device__ __forceinline__ uint32_t exclusive_scan(uint32_t* buf, uint32_t v) {
    const unsigned t = threadIdx.x;
    buf[t] = v;
    __syncthreads();
    if (t == 0) {
        uint32_t acc = 0;
        for (unsigned i = 0; i < TOPK_THREADS; i++) {
            const uint32_t x = buf[i];
            buf[i] = acc;
            acc += x;
        }
    }
    __syncthreads();
    const uint32_t out = buf[t];
    __syncthreads();
    return out;
}

extern "C" __global__ void __launch_bounds__(TOPK_THREADS)
ensemble_topk_f32(const float* __restrict__ logits, uint32_t members, uint32_t rows,
                  uint32_t classes, float inv_t, uint32_t k, float* __restrict__ probs,
                  float* __restrict__ out_vals, uint32_t* __restrict__ out_ids) {
    __shared__ float red[TOPK_THREADS];
    __shared__ uint32_t scan[TOPK_THREADS];
    __shared__ uint32_t hist[256];
    __shared__ uint32_t pick[2];  // digit chosen, how many equal keys still wanted
    __shared__ float cand_v[TOPK_MAX_K];
    __shared__ uint32_t cand_i[TOPK_MAX_K];
    const unsigned t = threadIdx.x;
    const uint64_t row = blockIdx.x;
    float* p = probs + row * classes;

    for (uint32_t c = t; c < classes; c += TOPK_THREADS) p[c] = 0.0f;
    for (uint32_t m = 0; m < members; m++) {
        const float* x = logits + ((uint64_t)m * rows + row) * classes;
        float mx = -INFINITY;
        for (uint32_t c = t; c < classes; c += TOPK_THREADS) mx = fmaxf(mx, __fmul_rn(x[c], inv_t));
        mx = block_reduce(red, mx, true);
        float s = 0.0f;
        for (uint32_t c = t; c < classes; c += TOPK_THREADS)
            s = __fadd_rn(s, dr_exp(__fsub_rn(__fmul_rn(x[c], inv_t), mx)));
        s = block_reduce(red, s, false);
        const float inv = __fdiv_rn(1.0f, s);
        for (uint32_t c = t; c < classes; c += TOPK_THREADS)
            p[c] = __fadd_rn(p[c], __fmul_rn(dr_exp(__fsub_rn(__fmul_rn(x[c], inv_t), mx)), inv));
    }
    const float fm = (float)members;
    for (uint32_t c = t; c < classes; c += TOPK_THREADS) p[c] = __fdiv_rn(p[c], fm);
    __syncthreads();
    if (k == 0) return;  // probabilities only: topk_rank_f32 selects

    // Radix select of the k-th largest key.
    const uint32_t kk = k < classes ? k : classes;
    uint32_t prefix = 0, mask = 0, wanted = kk;
    for (int shift = 24; shift >= 0; shift -= 8) {
        hist[t] = 0;  // TOPK_THREADS == 256 bins
        __syncthreads();
        for (uint32_t c = t; c < classes; c += TOPK_THREADS) {
            const uint32_t key = __float_as_uint(p[c]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (t == 0) {
            uint32_t above = 0, d = 255;
            for (;; d--) {
                if (above + hist[d] >= wanted || d == 0) break;
                above += hist[d];
            }
            pick[0] = d;
            pick[1] = wanted - above;
        }
        __syncthreads();
        prefix |= pick[0] << shift;
        mask |= 255u << shift;
        wanted = pick[1];
        __syncthreads();
    }
    // Gather in id order: each thread owns a contiguous range of ids.
    const uint32_t chunk = (classes + TOPK_THREADS - 1) / TOPK_THREADS;
    const uint32_t lo = min(classes, t * chunk), hi = min(classes, lo + chunk);
    uint32_t n_gt = 0, n_eq = 0;
    for (uint32_t c = lo; c < hi; c++) {
        const uint32_t key = __float_as_uint(p[c]);
        n_gt += key > prefix;
        n_eq += key == prefix;
    }
    uint32_t at_gt = exclusive_scan(scan, n_gt);
    uint32_t at_eq = exclusive_scan(scan, n_eq);
    const uint32_t first_eq = kk - wanted;  // slots before the equal keys
    for (uint32_t c = lo; c < hi; c++) {
        const uint32_t key = __float_as_uint(p[c]);
        if (key > prefix) {
            cand_v[at_gt] = p[c];
            cand_i[at_gt] = c;
            at_gt++;
        } else if (key == prefix) {
            if (at_eq < wanted) {
                cand_v[first_eq + at_eq] = p[c];
                cand_i[first_eq + at_eq] = c;
            }
            at_eq++;
        }
    }
    // Bitonic sort of the kk candidates, padded to a power of two.
    uint32_t n2 = 1;
    while (n2 < kk) n2 <<= 1;
    for (uint32_t i = kk + t; i < n2; i += TOPK_THREADS) {
        cand_v[i] = -1.0f;
        cand_i[i] = 0xffffffffu;
    }
    __syncthreads();
    for (uint32_t size = 2; size <= n2; size <<= 1) {
        for (uint32_t stride = size >> 1; stride > 0; stride >>= 1) {
            for (uint32_t i = t; i < n2; i += TOPK_THREADS) {
                const uint32_t j = i ^ stride;
                if (j > i) {
                    // "before" = larger value, then lower id.
                    const bool i_first = cand_v[i] > cand_v[j] || (cand_v[i] == cand_v[j] && cand_i[i] < cand_i[j]);
                    const bool descending = (i & size) == 0;
                    if (i_first != descending) {
                        const float v = cand_v[i];
                        cand_v[i] = cand_v[j];
                        cand_v[j] = v;
                        const uint32_t id = cand_i[i];
                        cand_i[i] = cand_i[j];
                        cand_i[j] = id;
                    }
                }
            }
            __syncthreads();
        }
    }
    for (uint32_t i = t; i < kk; i += TOPK_THREADS) {
        out_vals[row * k + i] = cand_v[i];
        out_ids[row * k + i] = cand_i[i];
    }
}

// Any k up to the class count, for the probabilities ensemble_topk_f32 left
// in `probs` (launched with k = 0): each class's output slot is its rank,
// the number of classes before it in (value desc, id asc) order, so every
// slot below k is written exactly once. O(classes^2) a row: correct at
// every k, meant for the rare large k (dense storage); k <= TOPK_MAX_K uses
// the radix select above.
// Launch: grid (ceil(classes / TOPK_THREADS), rows), block TOPK_THREADS,
//         static shared memory 8 KB (a tile of the row).
#define RANK_TILE 2048

extern "C" __global__ void __launch_bounds__(TOPK_THREADS)
topk_rank_f32(const float* __restrict__ probs, uint32_t classes, uint32_t k,
              float* __restrict__ out_vals, uint32_t* __restrict__ out_ids) {
    __shared__ float tile[RANK_TILE];
    const uint64_t row = blockIdx.y;
    const float* p = probs + row * classes;
    const uint32_t c = blockIdx.x * TOPK_THREADS + threadIdx.x;
    const float v = c < classes ? p[c] : 0.0f;
    uint32_t rank = 0;
    for (uint32_t base = 0; base < classes; base += RANK_TILE) {
        const uint32_t n = min(RANK_TILE, classes - base);
        __syncthreads();
        for (uint32_t i = threadIdx.x; i < n; i += TOPK_THREADS) tile[i] = p[base + i];
        __syncthreads();
        for (uint32_t i = 0; i < n; i++) {
            const float u = tile[i];
            rank += u > v || (u == v && base + i < c);
        }
    }
    if (c < classes && rank < k) {
        out_vals[row * k + rank] = v;
        out_ids[row * k + rank] = c;
    }
}
