// The PTX instructions of emu/ptx.h, each from the PTX ISA's description.
#include <cmath>
#include <cstring>

#include "runtime.h"

namespace emu::ptx {

namespace {

Fiber& me(const char* what, Site s) {
    Fiber* f = current_fiber();
    if (!f) fatal("%s outside a kernel (%s)", what, describe_site(s).c_str());
    return *f;
}

// ---- cvt.rn.bf16x2.f32 --------------------------------------------------------------
uint16_t bf16_rn(Site s, float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        fault(719, strprintf("cvt.rn.bf16x2.f32 of a NaN (0x%08x) %s: dr's kernels convert only values that "
                             "cannot be NaN this way (kernels/common/bf16.cuh)",
                             u, describe_site(s).c_str()));
    // Round to nearest even on the bits: the carry out of the low half
    // rounds the mantissa, and into the exponent when it overflows.
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// ---- cp.async ---------------------------------------------------------------------
// Issue: the destination is checked and poisoned now (it is undefined until
// the copy completes, and a read of it before then is reported); the
// source is read when the copy completes, at the wait, which is the latest
// a GPU may read it. Zero-fill of the bytes past src_size happens then too.
void issue(Site s, uint32_t dst, uint64_t src, uint32_t cp_size, uint32_t src_size, bool cg) {
    Fiber& f = me("cp.async", s);
    Block& b = *f.block;
    const bool size_ok = cg ? cp_size == 16 : (cp_size == 4 || cp_size == 8 || cp_size == 16);
    if (!size_ok)
        fault(715, strprintf("cp.async.%s with cp-size %u %s (.cg: 16; .ca: 4, 8 or 16)", cg ? "cg" : "ca", cp_size,
                             describe_site(s).c_str()));
    if (src_size > cp_size)
        fault(715, strprintf("cp.async src-size %u is larger than cp-size %u %s", src_size, cp_size, describe_site(s).c_str()));
    if (dst % cp_size || (src_size > 0 && src % cp_size))
        fault(716, strprintf("cp.async of %u bytes from 0x%llx to shared 0x%x %s: both must be aligned to %u", cp_size,
                             (unsigned long long)src, dst, describe_site(s).c_str(), cp_size));
    if (dst + cp_size > kArenaBytes)
        fault(700, strprintf("cp.async to shared 0x%x %s is past the block's shared memory", dst, describe_site(s).c_str()));
    if (src_size > 0) {
        Site site = s;
        device_access(&f, src, src_size, 0, nullptr, &site);
    }
    unsigned char* p = b.arena + dst;
    shared_async_issue(&f, p, cp_size, s);
    f.uncommitted.push_back(CpAsync{p, src, cp_size, src_size, s});
}

void complete(Fiber& f, const CpAsync& c) {
    if (c.src_size > 0) {
        Site site = c.site;
        device_access(&f, c.src, c.src_size, 0, nullptr, &site);
        std::memcpy(c.dst, reinterpret_cast<const void*>(c.src), c.src_size);
    }
    std::memset(c.dst + c.src_size, 0, c.cp_size - c.src_size);
    shared_async_complete(&f, c.dst, c.cp_size, c.site);
}

}  // namespace

void cp_async_cg_shared_global(Site s, uint32_t dst, uint64_t src, uint32_t cp_size, uint32_t src_size) {
    issue(s, dst, src, cp_size, src_size, true);
}
void cp_async_cg_shared_global(Site s, uint32_t dst, uint64_t src, uint32_t cp_size) {
    issue(s, dst, src, cp_size, cp_size, true);
}
void cp_async_ca_shared_global(Site s, uint32_t dst, uint64_t src, uint32_t cp_size, uint32_t src_size) {
    issue(s, dst, src, cp_size, src_size, false);
}
void cp_async_ca_shared_global(Site s, uint32_t dst, uint64_t src, uint32_t cp_size) {
    issue(s, dst, src, cp_size, cp_size, false);
}

void cvt_rn_bf16x2_f32(Site s, uint32_t& d, float a, float b) {
    me("cvt.rn.bf16x2.f32", s);
    d = (uint32_t)bf16_rn(s, a) << 16 | bf16_rn(s, b);
}

void ex2_approx_ftz_f32(Site s, float& d, float a) {
    me("ex2.approx.ftz.f32", s);
    const auto flush = [](float v) { return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v; };
    d = flush(std::exp2(flush(a)));
}

void mov_b64(Site s, uint64_t& d, uint64_t a) {
    me("mov.b64", s);
    d = a;
}

void cp_async_commit_group(Site s) {
    Fiber& f = me("cp.async.commit_group", s);
    // An empty group is allowed and counts (PTX ISA: commit_group with no
    // pending cp.async makes an empty group).
    f.groups.push_back(std::move(f.uncommitted));
    f.uncommitted.clear();
}

void cp_async_wait_group(Site s, uint32_t n) {
    Fiber& f = me("cp.async.wait_group", s);
    while (f.groups.size() > n) {
        for (const CpAsync& c : f.groups.front()) complete(f, c);
        f.groups.pop_front();
    }
}

void cp_async_wait_all(Site s) {
    cp_async_commit_group(s);
    cp_async_wait_group(s, 0);
}

// ---- mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 ----------------------------
// Fragment layout (PTX ISA 9.7.14.5.8), groupID = lane >> 2, t = lane % 4:
//   A (16x16, row): register r holds two bf16, low half first;
//     a0,a1: row groupID,     columns 2t, 2t+1        (register 0)
//     a2,a3: row groupID + 8, columns 2t, 2t+1        (register 1)
//     a4,a5: row groupID,     columns 2t+8, 2t+9      (register 2)
//     a6,a7: row groupID + 8, columns 2t+8, 2t+9      (register 3)
//   B (16x8, col): b0,b1 rows 2t, 2t+1 (register 0), b2,b3 rows 2t+8, 2t+9
//     (register 1), column groupID;
//   C, D (16x8 f32): c0,c1 row groupID, columns 2t, 2t+1; c2,c3 row
//     groupID + 8, the same columns.
// The products of bf16 values are exact in fp32; the hardware's summation
// order is unspecified, so the sum is taken in double (exactly for K = 16)
// and rounded to fp32 once: a result within the Bf16Accum tolerance of any
// order a tensor core uses.
namespace {

float bf16(uint32_t reg, int hi) {
    const uint32_t bits = (hi ? reg >> 16 : reg & 0xffff) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

void mma_complete(Block& b, unsigned warp, unsigned) {
    float A[16][16], B[16][8], C[16][8];
    for (unsigned lane = 0; lane < 32; lane++) {
        const Fiber& f = b.fibers[warp * 32 + lane];
        const unsigned g = lane >> 2, t = lane & 3;
        const uint32_t ra[4] = {(uint32_t)f.in[0], (uint32_t)f.in[1], (uint32_t)f.in[2], (uint32_t)f.in[3]};
        const uint32_t rb[2] = {(uint32_t)f.in[4], (uint32_t)f.in[5]};
        A[g][2 * t] = bf16(ra[0], 0);
        A[g][2 * t + 1] = bf16(ra[0], 1);
        A[g + 8][2 * t] = bf16(ra[1], 0);
        A[g + 8][2 * t + 1] = bf16(ra[1], 1);
        A[g][2 * t + 8] = bf16(ra[2], 0);
        A[g][2 * t + 9] = bf16(ra[2], 1);
        A[g + 8][2 * t + 8] = bf16(ra[3], 0);
        A[g + 8][2 * t + 9] = bf16(ra[3], 1);
        B[2 * t][g] = bf16(rb[0], 0);
        B[2 * t + 1][g] = bf16(rb[0], 1);
        B[2 * t + 8][g] = bf16(rb[1], 0);
        B[2 * t + 9][g] = bf16(rb[1], 1);
        float c[4];
        for (int i = 0; i < 4; i++) c[i] = from_bits<float>(f.in[6 + i]);
        C[g][2 * t] = c[0];
        C[g][2 * t + 1] = c[1];
        C[g + 8][2 * t] = c[2];
        C[g + 8][2 * t + 1] = c[3];
    }
    for (unsigned lane = 0; lane < 32; lane++) {
        Fiber& f = b.fibers[warp * 32 + lane];
        const unsigned g = lane >> 2, t = lane & 3;
        const unsigned rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
        for (int i = 0; i < 4; i++) {
            double acc = C[rows[i]][cols[i]];
            for (int k = 0; k < 16; k++) acc += (double)A[rows[i]][k] * (double)B[k][cols[i]];
            f.out[i] = to_bits((float)acc);
        }
    }
}

}  // namespace

void mma_sync_aligned_m16n8k16_row_col_f32_bf16_bf16_f32(Site s, float& d0, float& d1, float& d2, float& d3,
                                                         uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                         uint32_t b0, uint32_t b1, float c0, float c1, float c2,
                                                         float c3) {
    Fiber& f = me("mma.sync", s);
    const uint64_t in[10] = {a0, a1, a2, a3, b0, b1, to_bits(c0), to_bits(c1), to_bits(c2), to_bits(c3)};
    std::memcpy(f.in, in, sizeof in);
    warp_collective(300, 0xffffffffu, s, &mma_complete);
    d0 = from_bits<float>(f.out[0]);
    d1 = from_bits<float>(f.out[1]);
    d2 = from_bits<float>(f.out[2]);
    d3 = from_bits<float>(f.out[3]);
}

// ---- ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16 ------------------------
// Each lane that names a row checks its 16 bytes as a shared read when it
// arrives (bounds, alignment, the race detector); the rows are read when the
// last lane arrives, as one warp-wide load, and dealt out in the fragment
// layout of emu/ptx.h.
namespace {

template <int NUM, bool TRANS>
void ldmatrix_complete(Block& b, unsigned warp, unsigned) {
    uint16_t M[NUM][8][8];
    for (unsigned lane = 0; lane < 8 * NUM; lane++) {
        const Fiber& f = b.fibers[warp * 32 + lane];
        std::memcpy(M[lane / 8][lane % 8], b.arena + (uint32_t)f.in[0], 16);
    }
    for (unsigned lane = 0; lane < 32; lane++) {
        Fiber& f = b.fibers[warp * 32 + lane];
        const unsigned g = lane / 4, t = lane % 4;
        for (int q = 0; q < NUM; q++) {
            const uint16_t lo = TRANS ? M[q][2 * t][g] : M[q][g][2 * t];
            const uint16_t hi = TRANS ? M[q][2 * t + 1][g] : M[q][g][2 * t + 1];
            f.out[q] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}

template <int NUM, bool TRANS>
void ldmatrix(Site s, uint32_t addr, uint32_t* d[NUM]) {
    Fiber& f = me("ldmatrix", s);
    if (f.lane < 8u * NUM) {
        if (addr % 16)
            fault(716, strprintf("ldmatrix row address 0x%x of lane %u %s is not 16-byte aligned", addr, f.lane,
                                 describe_site(s).c_str()));
        if (addr + 16 > kArenaBytes)
            fault(700, strprintf("ldmatrix row at shared 0x%x %s is past the block's shared memory", addr,
                                 describe_site(s).c_str()));
        shared_access(&f, f.block->arena + addr, 16, 0, nullptr, &s);
    }
    f.in[0] = addr;
    warp_collective(400 + NUM * 2 + TRANS, 0xffffffffu, s, &ldmatrix_complete<NUM, TRANS>);
    for (int q = 0; q < NUM; q++) *d[q] = (uint32_t)f.out[q];
}

}  // namespace

void ldmatrix_sync_aligned_m8n8_x1_shared_b16(Site s, uint32_t& d0, uint32_t addr) {
    uint32_t* d[1] = {&d0};
    ldmatrix<1, false>(s, addr, d);
}
void ldmatrix_sync_aligned_m8n8_x2_shared_b16(Site s, uint32_t& d0, uint32_t& d1, uint32_t addr) {
    uint32_t* d[2] = {&d0, &d1};
    ldmatrix<2, false>(s, addr, d);
}
void ldmatrix_sync_aligned_m8n8_x4_shared_b16(Site s, uint32_t& d0, uint32_t& d1, uint32_t& d2, uint32_t& d3,
                                              uint32_t addr) {
    uint32_t* d[4] = {&d0, &d1, &d2, &d3};
    ldmatrix<4, false>(s, addr, d);
}
void ldmatrix_sync_aligned_m8n8_x1_trans_shared_b16(Site s, uint32_t& d0, uint32_t addr) {
    uint32_t* d[1] = {&d0};
    ldmatrix<1, true>(s, addr, d);
}
void ldmatrix_sync_aligned_m8n8_x2_trans_shared_b16(Site s, uint32_t& d0, uint32_t& d1, uint32_t addr) {
    uint32_t* d[2] = {&d0, &d1};
    ldmatrix<2, true>(s, addr, d);
}
void ldmatrix_sync_aligned_m8n8_x4_trans_shared_b16(Site s, uint32_t& d0, uint32_t& d1, uint32_t& d2, uint32_t& d3,
                                                    uint32_t addr) {
    uint32_t* d[4] = {&d0, &d1, &d2, &d3};
    ldmatrix<4, true>(s, addr, d);
}

}  // namespace emu::ptx
