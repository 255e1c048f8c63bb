// The device functions that reach beyond one thread, for emu/device.h:
// __syncthreads, the warp collectives (shuffles, votes, __syncwarp, and the
// exchange mma.sync runs on), __shared__ storage, address-space conversions
// and atomics. They run on the calling CUDA thread's fiber and park it with
// the scheduler (sched.cpp) when it must wait for others.
//
// CUDA leaves undefined, and these report: a __syncthreads some thread of
// the block does not reach (it ended, or waits at another one), a warp
// collective a lane reaches at another place or with another mask, and a
// lane that ends while its warp waits for it.
#include <algorithm>
#include <cstring>
#include <ctime>

#include "runtime.h"

extern "C" void emu_fiber_switch(void** save_sp, void* load_sp);

namespace emu {

static Fiber& me(const char* what, Site s) {
    Fiber* f = current_fiber();
    if (!f) fatal("%s called outside a kernel (%s)", what, describe_site(s).c_str());
    return *f;
}

static void park(Fiber& f) { emu_fiber_switch(&f.sp, f.block->sched_sp); }

// ---- __syncthreads -----------------------------------------------------------------
static void barrier(Fiber& f, Site s) {
    Block& b = *f.block;
    if (b.exited > 0)
        fault(719, strprintf("__syncthreads %s reached after %u thread(s) of the block ended (a barrier every "
                             "thread must reach: CUDA leaves this undefined)",
                             describe_site(s).c_str(), b.exited));
    if (b.at_barrier == 0) {
        b.bar_site = s;
        b.bar_diverged = false;
    } else if (b.bar_site.line != s.line || std::strcmp(b.bar_site.file, s.file) != 0) {
        fault(719, strprintf("divergent __syncthreads: this thread is %s while %u others wait %s",
                             describe_site(s).c_str(), b.at_barrier, describe_site(b.bar_site).c_str()));
    }
    b.at_barrier++;
    f.state = F_BARRIER;
    f.wait_site = s;
    if (b.at_barrier == b.live) {
        b.bar_gen++;
        b.at_barrier = 0;
        for (unsigned t = 0; t < b.nthreads; t++)
            if (b.fibers[t].state == F_BARRIER) b.fibers[t].state = F_RUN;
        return;
    }
    park(f);
}

void syncthreads(Site s) { barrier(me("__syncthreads", s), s); }

int syncthreads_reduce(int mode, int pred, Site s) {
    Fiber& f = me("__syncthreads_count", s);
    f.in[15] = pred != 0;
    // Everyone deposits before the barrier and reads after it: the barrier
    // itself orders the exchange.
    barrier(f, s);
    Block& b = *f.block;
    unsigned count = 0;
    for (unsigned t = 0; t < b.nthreads; t++) count += (unsigned)b.fibers[t].in[15];
    // A second barrier keeps a fast thread from overwriting in[15] before a
    // slow one has counted.
    barrier(f, s);
    return mode == 0 ? (int)count : mode == 1 ? count == b.nthreads : count > 0;
}

// ---- warp collectives ---------------------------------------------------------------
void warp_collective(int kind, unsigned mask, Site s, WarpComplete complete) {
    Fiber& f = me("a warp collective", s);
    Block& b = *f.block;
    WarpState& w = b.warps[f.warp];
    const unsigned lo = f.warp * 32;
    const unsigned lanes = std::min(32u, b.nthreads - lo);
    const unsigned present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    if (!(mask >> f.lane & 1))
        fault(719, strprintf("lane %u calls a warp collective %s with mask 0x%08x, which does not name it", f.lane,
                             describe_site(s).c_str(), mask));
    if (mask & ~present)
        fault(719, strprintf("warp collective %s names lanes 0x%08x of a warp that has only 0x%08x",
                             describe_site(s).c_str(), mask, present));
    for (unsigned l = 0; l < lanes; l++)
        if ((mask >> l & 1) && b.fibers[lo + l].state == F_DONE)
            fault(719, strprintf("warp collective %s waits for lane %u, which has ended", describe_site(s).c_str(), l));
    if (w.arrived == 0) {
        w.kind = kind;
        w.mask = mask;
        w.site = s;
    } else if (w.kind != kind || w.mask != mask || w.site.line != s.line || std::strcmp(w.site.file, s.file) != 0) {
        fault(719, strprintf("diverged warp: lane %u is at a collective %s (mask 0x%08x) while other lanes wait at "
                             "%s (mask 0x%08x)",
                             f.lane, describe_site(s).c_str(), mask, describe_site(w.site).c_str(), w.mask));
    }
    w.arrived |= 1u << f.lane;
    f.state = F_WARP;
    f.wait_site = s;
    if (w.arrived == mask) {
        complete(b, f.warp, mask);
        w.arrived = 0;
        w.gen++;
        for (unsigned l = 0; l < lanes; l++)
            if (mask >> l & 1) b.fibers[lo + l].state = F_RUN;
        return;
    }
    park(f);
}

void syncwarp(unsigned mask, Site s) {
    warp_collective(1, mask, s, [](Block&, unsigned, unsigned) {});
}

uint32_t shfl(int mode, unsigned mask, uint32_t v, int lane, int width, Site s) {
    Fiber& f = me("__shfl_sync", s);
    if (width <= 0 || width > 32 || (width & (width - 1)))
        fault(719, strprintf("__shfl_sync %s with width %d (a power of two up to 32)", describe_site(s).c_str(), width));
    f.in[0] = v;
    f.in[1] = (uint64_t)(uint32_t)lane;
    f.in[2] = (uint64_t)width;
    f.in[3] = (uint64_t)mode;
    warp_collective(100 + mode, mask, s, [](Block& b, unsigned warp, unsigned m) {
        for (unsigned l = 0; l < 32; l++) {
            if (!(m >> l & 1)) continue;
            Fiber& me = b.fibers[warp * 32 + l];
            const int w = (int)me.in[2], md = (int)me.in[3], arg = (int)(uint32_t)me.in[1];
            const int base = (int)l & ~(w - 1), sub = (int)l & (w - 1);
            int src;
            switch (md) {
            case 0: src = base + (arg & (w - 1)); break;             // idx
            case 1: src = sub - arg < 0 ? (int)l : (int)l - arg; break;  // up
            case 2: src = sub + arg >= w ? (int)l : (int)l + arg; break;  // down
            default: src = base + ((sub ^ arg) & (w - 1)); break;     // xor
            }
            // A source lane outside the mask gives an undefined value: poison it.
            me.out[0] = (m >> src & 1) ? b.fibers[warp * 32 + src].in[0] : 0xffffffffu;
        }
    });
    return (uint32_t)f.out[0];
}

unsigned vote(int mode, unsigned mask, int pred, Site s) {
    Fiber& f = me("a warp vote", s);
    f.in[0] = pred != 0;
    warp_collective(200 + mode, mask, s, [](Block& b, unsigned warp, unsigned m) {
        unsigned ballot = 0;
        for (unsigned l = 0; l < 32; l++)
            if ((m >> l & 1) && b.fibers[warp * 32 + l].in[0]) ballot |= 1u << l;
        for (unsigned l = 0; l < 32; l++)
            if (m >> l & 1) b.fibers[warp * 32 + l].out[0] = ballot;
    });
    const unsigned ballot = (unsigned)f.out[0];
    return mode == 0 ? ballot : mode == 1 ? ballot != 0 : ballot == mask;
}

unsigned activemask() {
    Fiber* f = current_fiber();
    if (!f) fatal("__activemask called outside a kernel");
    // Lanes are not converged here; report the ones that have not ended.
    Block& b = *f->block;
    unsigned m = 0;
    for (unsigned l = 0; l < 32 && f->warp * 32 + l < b.nthreads; l++)
        if (b.fibers[f->warp * 32 + l].state != F_DONE) m |= 1u << l;
    return m;
}

void yield(Site s) {
    Fiber& f = me("__nanosleep", s);
    park(f);
}

[[noreturn]] void trap(const char* what, Site s) {
    fault(710, strprintf("%s %s", what, describe_site(s).c_str()));
}

long long clock64() {
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

// ---- shared memory -----------------------------------------------------------------
void* shared_alloc(const void* key, std::size_t bytes, std::size_t align, const char* name, Site s) {
    Fiber& f = me("a __shared__ declaration", s);
    Block& b = *f.block;
    for (const SharedVar& v : b.vars)
        if (v.key == key) return b.arena + v.offset;
    if (align < 16) align = 16;
    uint32_t statics = 0;
    for (const SharedVar& v : b.vars) statics += v.size;
    if (statics + bytes > kStaticSharedLimit)
        fault(1, strprintf("__shared__ %s %s takes static shared memory to %zu bytes, over the %u-byte limit of "
                           "static shared memory (use dynamic shared memory and cuFuncSetAttribute)",
                           name, describe_site(s).c_str(), statics + bytes, kStaticSharedLimit));
    const uint32_t at = (uint32_t)((b.arena_used + align - 1) & ~(align - 1));
    if (at + bytes + 64 > kArenaBytes || statics + bytes + b.dyn_size > kOptinSharedLimit)
        fault(701, strprintf("__shared__ %s %s: static (%zu B) and dynamic (%u B) shared memory exceed the %u-byte "
                             "limit of a block",
                             name, describe_site(s).c_str(), statics + bytes, b.dyn_size, kOptinSharedLimit));
    std::memset(b.arena + at, config().poison, bytes);
    std::memset(b.valid + at, 1, bytes);
    b.vars.push_back(SharedVar{key, at, (uint32_t)bytes, name, s});
    b.arena_used = (uint32_t)(at + bytes + 64);  // a red zone after every variable
    return b.arena + at;
}

void* dynamic_shared(std::size_t align, Site s) {
    Fiber& f = me("extern __shared__", s);
    Block& b = *f.block;
    if (b.dyn_offset % (align ? align : 1))
        fault(716, strprintf("dynamic shared memory is not aligned to %zu %s", align, describe_site(s).c_str()));
    return b.arena + b.dyn_offset;
}

uint32_t cvta_to_shared(const void* p, Site s) {
    Fiber& f = me("__cvta_generic_to_shared", s);
    const auto* c = static_cast<const unsigned char*>(p);
    if (c < f.block->arena || c >= f.block->arena + kArenaBytes)
        fault(717, strprintf("__cvta_generic_to_shared %s of %p, which is not this block's shared memory",
                             describe_site(s).c_str(), p));
    return (uint32_t)(c - f.block->arena);
}

void* cvta_from_shared(uint32_t a, Site s) {
    Fiber& f = me("__cvta_shared_to_generic", s);
    if (a >= kArenaBytes)
        fault(717, strprintf("shared address 0x%x %s is past the block's shared memory", a, describe_site(s).c_str()));
    return f.block->arena + a;
}

// ---- atomics -------------------------------------------------------------------------
template <class T>
static T rmw(int op, T old, T v) {
    using S = std::make_signed_t<T>;
    switch (op) {
    case A_ADD: return (T)(old + v);
    case A_SUB: return (T)(old - v);
    case A_MIN: return old < v ? old : v;
    case A_MAX: return old > v ? old : v;
    case A_SMIN: return (S)old < (S)v ? old : v;
    case A_SMAX: return (S)old > (S)v ? old : v;
    case A_AND: return old & v;
    case A_OR: return old | v;
    case A_XOR: return old ^ v;
    case A_EXCH: return v;
    case A_INC: return old >= v ? 0 : (T)(old + 1);
    case A_DEC: return (old == 0 || old > v) ? v : (T)(old - 1);
    case A_FADD:
        if constexpr (sizeof(T) == 4) return from_bits<T>(to_bits(from_bits<float>(old) + from_bits<float>(v)));
        if constexpr (sizeof(T) == 8) return from_bits<T>(to_bits(from_bits<double>(old) + from_bits<double>(v)));
        return v;
    default: return v;
    }
}

template <class T>
static uint64_t atomic_on(T* p, int op, uint64_t v, uint64_t cmp, bool shared) {
    const T tv = (T)v;
    if (shared) {  // one block's threads run on one worker, one at a time
        const T old = *p;
        *p = op == A_CAS ? (old == (T)cmp ? tv : old) : rmw<T>(op, old, tv);
        return old;
    }
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    for (;;) {
        const T nv = op == A_CAS ? (old == (T)cmp ? tv : old) : rmw<T>(op, old, tv);
        if (__atomic_compare_exchange_n(p, &old, nv, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return old;
    }
}

uint64_t atomic(int op, void* addr, int size, uint64_t v, uint64_t cmp, Site s) {
    Fiber& f = me("an atomic", s);
    auto* p = static_cast<unsigned char*>(addr);
    const bool shared = p >= f.block->arena && p < f.block->arena + kArenaBytes;
    if ((uintptr_t)p % size) fault(716, strprintf("misaligned %d-byte atomic at %p %s", size, addr, describe_site(s).c_str()));
    Site site = s;
    if (shared)
        shared_access(&f, p, (uint32_t)size, 2, nullptr, &site);
    else
        device_access(&f, (uint64_t)p, (uint32_t)size, 2, nullptr, &site);
    switch (size) {
    case 2: return atomic_on(reinterpret_cast<uint16_t*>(p), op, v, cmp, shared);
    case 4: return atomic_on(reinterpret_cast<uint32_t*>(p), op, v, cmp, shared);
    case 8: return atomic_on(reinterpret_cast<uint64_t*>(p), op, v, cmp, shared);
    default: fatal("atomic of %d bytes", size);
    }
}

}  // namespace emu
