// Hopper synchronization of emu/ptx_hopper.h: mbarrier (PTX ISA, Parallel
// Synchronization and Communication Instructions: mbarrier), the proxy
// fences, setmaxnreg, elect.sync, stmatrix and the register moves of asm
// blocks; and the per-block / per-thread Hopper state.
//
// An mbarrier's state lives beside shared memory (Block::mbarriers, keyed by
// its address), so a use of one never initialized is reported. A thread in
// try_wait on an incomplete phase is parked until the barrier changes (a
// phase completes or a TMA load is issued on it): spinning threads cost
// nothing, and a phase that can never complete leaves no thread runnable,
// which the scheduler reports as a deadlock.
#include <cstring>

#include "hopper.h"

extern "C" void emu_fiber_switch(void** save_sp, void* load_sp);

namespace emu {

Fiber& hopper_me(const char* what, Site s) {
    Fiber* f = current_fiber();
    if (!f) fatal("%s outside a kernel (%s)", what, describe_site(s).c_str());
    return *f;
}

void hopper_park(Fiber& f) { emu_fiber_switch(&f.sp, f.block->sched_sp); }

void hopper_block_start(Block& b) {
    b.mbarriers.clear();
    b.bulk_loads.clear();
    for (unsigned& a : b.group_arrived) a = 0;
}

static MBarrier* find_bar(Block& b, uint32_t addr) {
    for (auto& [at, bar] : b.mbarriers)
        if (at == addr) return &bar;
    return nullptr;
}

static void check_object(Fiber& f, uint32_t addr, Site s, const char* what, int kind) {
    if (addr % 8)
        fault(716, strprintf("%s %s on shared 0x%x: an mbarrier is 8-byte aligned", what, describe_site(s).c_str(), addr));
    if (addr + 8 > kArenaBytes)
        fault(700, strprintf("%s %s on shared 0x%x, past the block's shared memory", what, describe_site(s).c_str(), addr));
    shared_access(&f, f.block->arena + addr, 8, kind, nullptr, &s);
}

MBarrier& mbar_at(Fiber& f, uint32_t addr, Site s, const char* what) {
    check_object(f, addr, s, what, 2);  // as an atomic: concurrent arrivals do not race
    MBarrier* bar = find_bar(*f.block, addr);
    if (!bar)
        fault(719, strprintf("%s %s on shared 0x%x, which mbarrier.init has not initialized", what,
                             describe_site(s).c_str(), addr));
    return *bar;
}

void mbar_wake(Block& b, uint32_t addr) {
    for (unsigned t = 0; t < b.nthreads; t++)
        if (b.fibers[t].state == F_MBAR && b.fibers[t].wait_mbar == addr) b.fibers[t].state = F_RUN;
}

// A phase completes when no arrival and no transaction byte is pending.
static void settle(Block& b, uint32_t addr, MBarrier& bar) {
    if (bar.pending == 0 && bar.tx == 0) {
        bar.phase++;
        bar.pending = bar.expected;
        mbar_wake(b, addr);
    }
}

static void add_tx(MBarrier& bar, int64_t bytes, Site s, const char* what) {
    bar.tx += bytes;
    // PTX ISA: the tx-count is in [-(2^20 - 1), 2^20 - 1].
    if (bar.tx > (1 << 20) - 1 || bar.tx < -((1 << 20) - 1))
        fault(719, strprintf("%s %s takes the mbarrier's transaction count to %lld, outside +-(2^20 - 1)", what,
                             describe_site(s).c_str(), (long long)bar.tx));
}

void mbar_complete_tx(Block& b, uint32_t addr, uint32_t bytes) {
    MBarrier* bar = find_bar(b, addr);
    if (!bar) return;  // checked when the copy was issued
    bar->tx -= bytes;
    settle(b, addr, *bar);
}

namespace ptx {

void setp_ne_b32(Site, bool& p, uint32_t a, uint32_t b) { p = a != b; }
void setp_eq_b32(Site, bool& p, uint32_t a, uint32_t b) { p = a == b; }
void selp_b32(Site, uint32_t& d, uint32_t a, uint32_t b, bool p) { d = p ? a : b; }
void selp_u32(Site, uint32_t& d, uint32_t a, uint32_t b, bool p) { d = p ? a : b; }
void mov_s32(Site, uint32_t& d, uint32_t a) { d = a; }
void mov_u32(Site, uint32_t& d, uint32_t a) { d = a; }
void mov_b32(Site, uint32_t& d, uint32_t a) { d = a; }

// ---- mbarrier ------------------------------------------------------------------------
void mbarrier_init_shared__cta_b64(Site s, uint32_t addr, uint32_t count) {
    Fiber& f = hopper_me("mbarrier.init", s);
    check_object(f, addr, s, "mbarrier.init", 1);
    if (count < 1 || count > (1u << 20) - 1)
        fault(719, strprintf("mbarrier.init %s with count %u (1 to 2^20 - 1)", describe_site(s).c_str(), count));
    MBarrier* bar = find_bar(*f.block, addr);
    if (!bar) bar = &f.block->mbarriers.emplace_back(addr, MBarrier{}).second;
    *bar = MBarrier{0, count, count, 0};
    std::memset(f.block->arena + addr, 0, 8);
}
void mbarrier_init_shared_b64(Site s, uint32_t addr, uint32_t count) { mbarrier_init_shared__cta_b64(s, addr, count); }

void mbarrier_inval_shared__cta_b64(Site s, uint32_t addr) {
    Fiber& f = hopper_me("mbarrier.inval", s);
    mbar_at(f, addr, s, "mbarrier.inval");
    auto& v = f.block->mbarriers;
    for (size_t i = 0; i < v.size(); i++)
        if (v[i].first == addr) v.erase(v.begin() + (long)i);
}

static void arrive(Site s, uint64_t& state, uint32_t addr, uint32_t count, int64_t tx, const char* what) {
    Fiber& f = hopper_me(what, s);
    MBarrier& bar = mbar_at(f, addr, s, what);
    if (tx) add_tx(bar, tx, s, what);
    if (count > bar.pending)
        fault(719, strprintf("%s %s: %u arrival(s) on an mbarrier with %u pending in this phase (init count %u): "
                             "more arrivals than the phase expects",
                             what, describe_site(s).c_str(), count, bar.pending, bar.expected));
    state = bar.phase;  // the phase this arrival belongs to
    bar.pending -= count;
    settle(*f.block, addr, bar);
}

void mbarrier_arrive_shared__cta_b64(Site s, uint64_t& state, uint32_t addr) {
    arrive(s, state, addr, 1, 0, "mbarrier.arrive");
}
void mbarrier_arrive_shared__cta_b64(Site s, uint64_t& state, uint32_t addr, uint32_t count) {
    if (count < 1 || count > (1u << 20) - 1)
        fault(719, strprintf("mbarrier.arrive %s with count %u (1 to 2^20 - 1)", describe_site(s).c_str(), count));
    arrive(s, state, addr, count, 0, "mbarrier.arrive");
}
void mbarrier_arrive_shared_b64(Site s, uint64_t& state, uint32_t addr) { arrive(s, state, addr, 1, 0, "mbarrier.arrive"); }
void mbarrier_arrive_expect_tx_shared__cta_b64(Site s, uint64_t& state, uint32_t addr, uint32_t tx) {
    arrive(s, state, addr, 1, tx, "mbarrier.arrive.expect_tx");
}

void mbarrier_expect_tx_shared__cta_b64(Site s, uint32_t addr, uint32_t tx) {
    Fiber& f = hopper_me("mbarrier.expect_tx", s);
    add_tx(mbar_at(f, addr, s, "mbarrier.expect_tx"), tx, s, "mbarrier.expect_tx");
}
void mbarrier_expect_tx_relaxed_cta_shared__cta_b64(Site s, uint32_t addr, uint32_t tx) {
    mbarrier_expect_tx_shared__cta_b64(s, addr, tx);
}
void mbarrier_complete_tx_shared__cta_b64(Site s, uint32_t addr, uint32_t tx) {
    Fiber& f = hopper_me("mbarrier.complete_tx", s);
    mbar_at(f, addr, s, "mbarrier.complete_tx");
    mbar_complete_tx(*f.block, addr, tx);
}

// Whether the phase named by `parity` (or by a state token) has completed.
static bool phase_done(Fiber& f, uint32_t addr, Site s, bool by_parity, uint64_t v, const char* what) {
    MBarrier& bar = mbar_at(f, addr, s, what);
    tma_deliver(*f.block, addr);
    // Parity: the current phase (same parity, not complete) or the one before it (complete).
    return by_parity ? (bar.phase & 1) != (v & 1) : bar.phase > v;
}

static void try_wait(Site s, bool& done, uint32_t addr, bool by_parity, uint64_t v) {
    Fiber& f = hopper_me("mbarrier.try_wait", s);
    done = phase_done(f, addr, s, by_parity, v, "mbarrier.try_wait");
    if (done) return;
    f.state = F_MBAR;
    f.wait_mbar = addr;
    f.wait_site = s;
    hopper_park(f);
    done = phase_done(f, addr, s, by_parity, v, "mbarrier.try_wait");
}

void mbarrier_try_wait_parity_shared__cta_b64(Site s, bool& done, uint32_t addr, uint32_t parity) {
    try_wait(s, done, addr, true, parity);
}
void mbarrier_try_wait_parity_shared__cta_b64(Site s, bool& done, uint32_t addr, uint32_t parity, uint32_t) {
    try_wait(s, done, addr, true, parity);
}
void mbarrier_try_wait_shared__cta_b64(Site s, bool& done, uint32_t addr, uint64_t state) {
    try_wait(s, done, addr, false, state);
}
void mbarrier_test_wait_parity_shared__cta_b64(Site s, bool& done, uint32_t addr, uint32_t parity) {
    Fiber& f = hopper_me("mbarrier.test_wait", s);
    done = phase_done(f, addr, s, true, parity, "mbarrier.test_wait");
    if (!done) hopper_park(f);  // still runnable: a spin on it lets the others run
}
void mbarrier_test_wait_shared__cta_b64(Site s, bool& done, uint32_t addr, uint64_t state) {
    Fiber& f = hopper_me("mbarrier.test_wait", s);
    done = phase_done(f, addr, s, false, state, "mbarrier.test_wait");
    if (!done) hopper_park(f);
}

// ---- fences, setmaxnreg, elect.sync -------------------------------------------------------
void fence_proxy_async_shared__cta(Site s) { hopper_me("fence.proxy.async", s); }
void fence_proxy_async(Site s) { hopper_me("fence.proxy.async", s); }
void fence_mbarrier_init_release_cluster(Site s) { hopper_me("fence.mbarrier_init", s); }

static void setmaxnreg(Site s, uint32_t n, const char* what) {
    hopper_me(what, s);
    if (n % 8 || n < 24 || n > 256)
        fault(715, strprintf("%s %u %s: the count is a multiple of 8 in [24, 256]", what, n, describe_site(s).c_str()));
}
void setmaxnreg_inc_sync_aligned_u32(Site s, uint32_t n) { setmaxnreg(s, n, "setmaxnreg.inc"); }
void setmaxnreg_dec_sync_aligned_u32(Site s, uint32_t n) { setmaxnreg(s, n, "setmaxnreg.dec"); }

void elect_sync(Site s, uint32_t& d, bool& p, uint32_t mask) {
    Fiber& f = hopper_me("elect.sync", s);
    warp_collective(500, mask, s, [](Block&, unsigned, unsigned) {});
    d = (uint32_t)__builtin_ctz(mask);
    p = f.lane == d;
}

// ---- stmatrix ------------------------------------------------------------------------------
namespace {

template <int NUM, bool TRANS>
void stmatrix_complete(Block& b, unsigned warp, unsigned) {
    uint16_t M[NUM][8][8];
    for (unsigned lane = 0; lane < 32; lane++) {
        const Fiber& f = b.fibers[warp * 32 + lane];
        const unsigned g = lane / 4, t = lane % 4;
        for (int q = 0; q < NUM; q++) {
            const uint32_t r = (uint32_t)f.in[1 + q];
            (TRANS ? M[q][2 * t][g] : M[q][g][2 * t]) = (uint16_t)r;
            (TRANS ? M[q][2 * t + 1][g] : M[q][g][2 * t + 1]) = (uint16_t)(r >> 16);
        }
    }
    for (unsigned lane = 0; lane < 8 * NUM; lane++)
        std::memcpy(b.arena + (uint32_t)b.fibers[warp * 32 + lane].in[0], M[lane / 8][lane % 8], 16);
}

template <int NUM, bool TRANS>
void stmatrix(Site s, uint32_t addr, const uint32_t (&r)[NUM]) {
    Fiber& f = hopper_me("stmatrix", s);
    if (f.lane < 8u * NUM) {
        if (addr % 16)
            fault(716, strprintf("stmatrix row address 0x%x of lane %u %s is not 16-byte aligned", addr, f.lane,
                                 describe_site(s).c_str()));
        if (addr + 16 > kArenaBytes)
            fault(700, strprintf("stmatrix row at shared 0x%x %s is past the block's shared memory", addr,
                                 describe_site(s).c_str()));
        shared_access(&f, f.block->arena + addr, 16, 1, nullptr, &s);
    }
    f.in[0] = addr;
    for (int q = 0; q < NUM; q++) f.in[1 + q] = r[q];
    warp_collective(600 + NUM * 2 + TRANS, 0xffffffffu, s, &stmatrix_complete<NUM, TRANS>);
}

}  // namespace

void stmatrix_sync_aligned_m8n8_x1_shared_b16(Site s, uint32_t a, uint32_t r0) { stmatrix<1, false>(s, a, {r0}); }
void stmatrix_sync_aligned_m8n8_x2_shared_b16(Site s, uint32_t a, uint32_t r0, uint32_t r1) {
    stmatrix<2, false>(s, a, {r0, r1});
}
void stmatrix_sync_aligned_m8n8_x4_shared_b16(Site s, uint32_t a, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
    stmatrix<4, false>(s, a, {r0, r1, r2, r3});
}
void stmatrix_sync_aligned_m8n8_x1_trans_shared_b16(Site s, uint32_t a, uint32_t r0) { stmatrix<1, true>(s, a, {r0}); }
void stmatrix_sync_aligned_m8n8_x2_trans_shared_b16(Site s, uint32_t a, uint32_t r0, uint32_t r1) {
    stmatrix<2, true>(s, a, {r0, r1});
}
void stmatrix_sync_aligned_m8n8_x4_trans_shared_b16(Site s, uint32_t a, uint32_t r0, uint32_t r1, uint32_t r2,
                                                    uint32_t r3) {
    stmatrix<4, true>(s, a, {r0, r1, r2, r3});
}

}  // namespace ptx

// ---- the end of a thread ------------------------------------------------------------------
void hopper_thread_end(Fiber& f) {
    Block& b = *f.block;
    const unsigned wg = f.warp / 4;
    if (wg < 8 && b.group_arrived[wg] > 0)
        fault(719, strprintf("a thread ended while its warpgroup waits for it at a wgmma %s",
                             describe_site(b.group_site[wg]).c_str()));
    // Bulk stores still in flight complete (a GPU finishes them); wgmma
    // results never waited for are dropped with the registers.
    ptx::cp_async_bulk_commit_group(Site{"<end of the thread>", 0});
    ptx::cp_async_bulk_wait_group(Site{"<end of the thread>", 0}, 0);
    f.wg_uncommitted.clear();
    f.wg_groups.clear();
    f.wg_latest.clear();
}

}  // namespace emu
