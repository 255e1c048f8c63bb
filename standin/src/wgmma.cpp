// wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16 (PTX ISA 9.7.15,
// Asynchronous Warpgroup Level Matrix Multiply-Accumulate): D = A x B + D
// over a warpgroup (four consecutive warps, the first a multiple of 4),
// computed when its 128th thread arrives, as mma.sync is at a warp barrier.
//
// Operands (PTX ISA 9.7.15.5, "Matrix Descriptor Format", "Shared Memory
// Matrix Layout", and the register fragment figures):
//   descriptor: bits 0-13 start address >> 4, 16-29 leading-dimension byte
//     offset (LBO) >> 4, 32-45 stride-dimension byte offset (SBO) >> 4,
//     49-51 base offset, 62-63 swizzle: 0 none, 1 128B, 2 64B, 3 32B.
//   A (64x16) and B (16xN, stored as N rows of K) K-major: row r of M or N,
//     column k, r = 8 r1 + r0, k = 8 k1 + k0 (bf16, 16-byte core-matrix rows):
//       no swizzle: start + r0*16 + r1*SBO + k0*2 + k1*LBO (8x16-byte core
//         matrices, LBO between the two along K, SBO between those along M/N);
//       swizzle of W = 32, 64, 128 bytes: start + r0*W + r1*SBO + k0*2 + k1*16,
//         then the 16-byte chunk bits XORed with the row bits (hopper.h
//         swizzle(), on the absolute shared address, which is what a TMA
//         load with the same swizzle writes); LBO is unused.
//   A from registers: thread 32w + L of the warpgroup holds rows 16w + L/4
//     (+8) as mma.m16n8k16's A fragment: a0 (row g, k 2t, 2t+1), a1 (row g+8),
//     a2 (row g, k 2t+8, 2t+9), a3 (row g+8, k 2t+8, 2t+9); g = L/4, t = L%4.
//   D (64xN f32): register i of thread 32w + L is row 16w + L/4 + 8((i/2)%2),
//     column 8(i/4) + 2(L%4) + i%2.
// Products of bf16 are exact in double; the sum over K (and D) is taken in
// double and rounded to f32 once, as the mma.sync emulation does.
//
// Not emulated (fault when used): transposed (MN-major) A or B, a nonzero
// descriptor base offset, imm-scale other than +-1.
#include <cmath>
#include <cstring>
#include <limits>

#include "hopper.h"

namespace emu {
using ptx::WgmmaArgs;

namespace {

struct Operand {
    uint32_t start, lbo, sbo;
    int swz;  // swizzle bits: 0 none, 1 32B, 2 64B, 3 128B
};

Operand decode(uint64_t desc, Site s, const char* which) {
    Operand o;
    o.start = (uint32_t)(desc & 0x3fff) << 4;
    o.lbo = (uint32_t)(desc >> 16 & 0x3fff) << 4;
    o.sbo = (uint32_t)(desc >> 32 & 0x3fff) << 4;
    const unsigned base = (unsigned)(desc >> 49 & 7), mode = (unsigned)(desc >> 62);
    static const int bits[4] = {0, 3, 2, 1};
    o.swz = bits[mode];
    if (base)
        fault(715, strprintf("wgmma %s descriptor 0x%016llx %s has base offset %u: the stand-in emulates base offset 0 "
                             "only (matrices aligned to their swizzle pattern)",
                             which, (unsigned long long)desc, describe_site(s).c_str(), base));
    return o;
}

// Shared address of element (r, k) of a K-major bf16 operand.
uint32_t element(const Operand& o, unsigned r, unsigned k) {
    const unsigned r0 = r % 8, r1 = r / 8, k0 = k % 8, k1 = k / 8;
    if (o.swz == 0) return o.start + r0 * 16 + r1 * o.sbo + k0 * 2 + k1 * o.lbo;
    const uint32_t width = 16u << o.swz;
    return swizzle(o.start + r0 * width + r1 * o.sbo + k0 * 2 + k1 * 16, o.swz);
}

float bf16_at(Block& b, uint32_t addr) {
    uint16_t h;
    std::memcpy(&h, b.arena + addr, 2);
    return from_bits<float>((uint64_t)h << 16);
}

float bf16_half(uint32_t reg, int hi) { return from_bits<float>((uint64_t)(hi ? reg >> 16 : reg & 0xffff) << 16); }

// Reads rows x 16 of a K-major operand, checking each element as an async-proxy read.
void load(Fiber& f, const Operand& o, unsigned rows, float* out, Site s, const char* which) {
    Block& b = *f.block;
    for (unsigned r = 0; r < rows; r++)
        for (unsigned k = 0; k < 16; k++) {
            const uint32_t a = element(o, r, k);
            if (a % 2 || a + 2 > kArenaBytes)
                fault(700, strprintf("wgmma %s element (%u, %u) at shared 0x%x %s is misaligned or past shared memory",
                                     which, r, k, a, describe_site(s).c_str()));
            async_read_check(f, a, 2, which[0] == 'A' ? "wgmma operand A" : "wgmma operand B", s);
            out[r * 16 + k] = bf16_at(b, a);
        }
}

void complete(Fiber& me, unsigned wg, Site s) {
    Block& b = *me.block;
    const WgmmaArgs& w0 = *static_cast<WgmmaArgs*>(b.fibers[wg * 128].wg_args);
    const unsigned n = w0.n;
    for (unsigned t = 0; t < 128; t++) {
        const WgmmaArgs& w = *static_cast<WgmmaArgs*>(b.fibers[wg * 128 + t].wg_args);
        if (w.n != n || w.a_regs != w0.a_regs || w.desc_b != w0.desc_b || (!w.a_regs && w.desc_a != w0.desc_a) ||
            w.scale_d != w0.scale_d || w.scale_a != w0.scale_a || w.scale_b != w0.scale_b)
            fault(719, strprintf("wgmma %s: thread %u of the warpgroup gives other descriptors, shape or scales than "
                                 "its first thread (they must agree across the warpgroup)",
                                 describe_site(s).c_str(), t));
    }
    thread_local float A[64 * 16], B[256 * 16];  // per worker: blocks run on several
    if (w0.a_regs) {
        for (unsigned t = 0; t < 128; t++) {
            const WgmmaArgs& w = *static_cast<WgmmaArgs*>(b.fibers[wg * 128 + t].wg_args);
            const unsigned row = 16 * (t / 32) + (t % 32) / 4, c = 2 * (t % 4);
            for (int q = 0; q < 4; q++)
                for (int h = 0; h < 2; h++) A[(row + 8 * (q & 1)) * 16 + c + 8 * (q >> 1) + h] = bf16_half(w.a[q], h);
        }
    } else {
        load(me, decode(w0.desc_a, s, "A"), 64, A, s, "A");
    }
    load(me, decode(w0.desc_b, s, "B"), n, B, s, "B");
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const double sign = (double)(w0.scale_a * w0.scale_b);
    for (unsigned t = 0; t < 128; t++) {
        Fiber& f = b.fibers[wg * 128 + t];
        const WgmmaArgs& w = *static_cast<WgmmaArgs*>(f.wg_args);
        const unsigned L = t % 32, row0 = 16 * (t / 32) + L / 4;
        float out[128];
        for (unsigned i = 0; i < n / 2; i++) {
            const unsigned row = row0 + 8 * ((i >> 1) & 1), col = 8 * (i >> 2) + 2 * (L % 4) + (i & 1);
            double acc = 0;
            if (w.scale_d) {
                // A result still in flight for this register is its value (wgmmas on
                // the same accumulators are ordered without a wait).
                auto it = f.wg_latest.find(w.d[i]);
                acc = it != f.wg_latest.end() ? it->second.first : *w.d[i];
            }
            double sum = 0;
            for (unsigned k = 0; k < 16; k++) sum += (double)A[row * 16 + k] * (double)B[col * 16 + k];
            out[i] = (float)(acc + sign * sum);
        }
        for (unsigned i = 0; i < n / 2; i++) {
            f.wg_uncommitted.push_back(WgmmaResult{w.d[i], out[i]});
            auto& l = f.wg_latest[w.d[i]];
            l.first = out[i];
            l.second++;
            *w.d[i] = nan;  // undefined until wgmma.wait_group
        }
    }
}

}  // namespace

namespace ptx {

void wgmma_issue(Site s, WgmmaArgs& w) {
    Fiber& f = hopper_me("wgmma.mma_async", s);
    Block& b = *f.block;
    if (!f.wg_fenced)
        fault(719, strprintf("wgmma.mma_async %s before any wgmma.fence in this thread (PTX ISA: a wgmma.fence "
                             "comes before the first wgmma.mma_async)",
                             describe_site(s).c_str()));
    if (w.tnsp_a || w.tnsp_b)
        fault(715, strprintf("wgmma.mma_async %s with imm-trans-a %d, imm-trans-b %d: the stand-in emulates K-major "
                             "(0) A and B only",
                             describe_site(s).c_str(), w.tnsp_a, w.tnsp_b));
    if ((w.scale_a != 1 && w.scale_a != -1) || (w.scale_b != 1 && w.scale_b != -1))
        fault(715, strprintf("wgmma.mma_async %s with imm-scale-a %d, imm-scale-b %d (1 or -1)", describe_site(s).c_str(),
                             w.scale_a, w.scale_b));
    const unsigned wg = f.warp / 4;
    if ((wg + 1) * 128 > b.nthreads)
        fault(719, strprintf("wgmma.mma_async %s in warp %u: its warpgroup (warps %u..%u) is not whole in a block of %u "
                             "threads",
                             describe_site(s).c_str(), f.warp, 4 * wg, 4 * wg + 3, b.nthreads));
    for (unsigned t = wg * 128; t < wg * 128 + 128; t++)
        if (b.fibers[t].state == F_DONE)
            fault(719, strprintf("wgmma.mma_async %s waits for thread %u of its warpgroup, which has ended",
                                 describe_site(s).c_str(), t));
    if (b.group_arrived[wg] == 0) {
        b.group_site[wg] = s;
    } else if (b.group_site[wg].line != s.line || std::strcmp(b.group_site[wg].file, s.file) != 0) {
        fault(719, strprintf("diverged warpgroup: a thread is at wgmma %s while %u others wait at %s", describe_site(s).c_str(),
                             b.group_arrived[wg], describe_site(b.group_site[wg]).c_str()));
    }
    f.wg_args = &w;
    f.state = F_GROUP;
    f.wait_site = s;
    if (++b.group_arrived[wg] < 128) {
        hopper_park(f);
        return;
    }
    complete(f, wg, s);
    b.group_arrived[wg] = 0;
    for (unsigned t = wg * 128; t < wg * 128 + 128; t++) b.fibers[t].state = F_RUN;
}

void wgmma_fence_sync_aligned(Site s) { hopper_me("wgmma.fence", s).wg_fenced = true; }

void wgmma_commit_group_sync_aligned(Site s) {
    Fiber& f = hopper_me("wgmma.commit_group", s);
    f.wg_groups.push_back(std::move(f.wg_uncommitted));
    f.wg_uncommitted.clear();
}

void wgmma_wait_group_sync_aligned(Site s, uint32_t n) {
    Fiber& f = hopper_me("wgmma.wait_group", s);
    while (f.wg_groups.size() > n) {
        for (const WgmmaResult& r : f.wg_groups.front()) {
            auto it = f.wg_latest.find(r.reg);
            if (--it->second.second == 0) {  // the last result in flight for it: it lands
                *r.reg = it->second.first;
                f.wg_latest.erase(it);
            }
        }
        f.wg_groups.pop_front();
    }
}

}  // namespace ptx
}  // namespace emu
