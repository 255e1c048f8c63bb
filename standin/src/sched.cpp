// Execution of one launch: blocks are claimed by worker threads in the
// configured order (forward, or reversed with DR_EMU_BLOCK_ORDER=reverse);
// a worker runs a block's threads as fibers under a cooperative scheduler
// until each has returned. A fiber runs until it reaches __syncthreads, a
// warp collective (shuffle, vote, __syncwarp, mma.sync) or its end.
//
// Schedules (DR_EMU_SCHEDULE), to expose missing synchronisation:
//   lockstep    every runnable thread in turn, in thread order (default);
//   warp-ahead  one warp runs until all its lanes wait at a block barrier or
//               have ended, then the next: a warp runs ahead of the others
//               into the next phase;
//   reverse     lockstep in reverse thread order.
// A block in which no thread can run is a deadlock, reported with where each
// waits. The waits themselves (barriers, collectives) are in device_fns.cpp.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <thread>

#include "runtime.h"

extern "C" void emu_fiber_switch(void** save_sp, void* load_sp);
extern "C" void emu_fiber_start();

namespace emu {

namespace {

constexpr unsigned kMaxThreads = 1024;
constexpr unsigned kMaxWorkers = 64;
constexpr uintptr_t kStateBytes = 8 << 10;  // ThreadState, then a guard page

unsigned char* g_fiber_region = nullptr;
unsigned char* g_arena_region = nullptr;
constexpr uintptr_t kWorkerStackBytes = uintptr_t(kMaxThreads) * kFiberBytes;

std::atomic<uint64_t> g_block_serial{1};

void* reserve_aligned(size_t bytes, size_t align) {
    void* p = mmap(nullptr, bytes + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fatal("cannot reserve %zu bytes of address space", bytes + align);
    return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + align - 1) & ~(uintptr_t)(align - 1));
}

void init_regions() {
    static std::once_flag once;
    std::call_once(once, [] {
        g_fiber_region = static_cast<unsigned char*>(reserve_aligned(kMaxWorkers * kWorkerStackBytes, kFiberBytes));
        g_arena_region = static_cast<unsigned char*>(reserve_aligned(kMaxWorkers * size_t(kArenaBytes), kArenaBytes));
    });
}

}  // namespace

bool on_fiber_stack(const void* p) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    const auto lo = reinterpret_cast<uintptr_t>(g_fiber_region);
    return lo != 0 && a - lo < kMaxWorkers * kWorkerStackBytes;
}

Fiber* current_fiber() {
    const void* sp = __builtin_frame_address(0);
    if (!on_fiber_stack(sp)) return nullptr;
    return static_cast<Fiber*>(self()->fiber);
}

// ---- kernel registry ------------------------------------------------------------
static std::vector<Kernel*>& registry() {
    static std::vector<Kernel*> r;
    return r;
}

void register_kernel(const KernelDesc& d) {
    for (Kernel* k : registry())
        if (k->name == d.name)
            fatal("kernel %s is defined by families %s and %s; entry point names must be unique", d.name,
                  k->family.c_str(), d.family);
    auto* k = new Kernel;
    k->d = d;
    k->family = d.family;
    k->name = d.name;
    registry().push_back(k);
}

const std::vector<Kernel*>& registered_kernels() { return registry(); }

// ---- one launch -------------------------------------------------------------------
struct LaunchRun {
    const Launch* l = nullptr;
    std::vector<uint32_t> order;
    std::atomic<uint32_t> next{0};
    std::atomic<int> code{0};
    std::atomic<int> reports{0};
};

namespace {

struct Worker {
    unsigned index = 0;
    unsigned char* stacks = nullptr;
    bool guards_set[kMaxThreads] = {};
    Block block;
};

void fiber_main(Fiber* f);

void start_fiber(Worker& w, Fiber& f, unsigned i) {
    auto* base = w.stacks + uintptr_t(i) * kFiberBytes;
    if (!w.guards_set[i]) {
        // A stack overflow runs into this page instead of the thread state.
        if (mprotect(base + kStateBytes, 4096, PROT_NONE) != 0) fatal("mprotect of a fiber guard page failed");
        w.guards_set[i] = true;
    }
    f.ts = reinterpret_cast<ThreadState*>(base);
    auto* top = reinterpret_cast<uint64_t*>(base + kFiberBytes);
    // The frame emu_fiber_switch pops: control words, r15..rbp, return address.
    uint64_t* sp = top - 2;
    *--sp = reinterpret_cast<uint64_t>(&emu_fiber_start);
    *--sp = 0;                                     // rbp
    *--sp = 0;                                     // rbx
    *--sp = reinterpret_cast<uint64_t>(&f);        // r12: the argument
    *--sp = reinterpret_cast<uint64_t>(&fiber_main);  // r13: the entry
    *--sp = 0;                                     // r14
    *--sp = 0;                                     // r15
    *--sp = 0x1f80 | (uint64_t(0x037f) << 32);     // mxcsr, x87 control word
    f.sp = sp;
}

void run_block(Worker& w, LaunchRun& run, uint32_t linear) {
    const Launch& l = *run.l;
    Block& b = w.block;
    b.run = &run;
    b.launch = &l;
    b.idx = uint3{linear % l.grid.x, linear / l.grid.x % l.grid.y, linear / (l.grid.x * l.grid.y)};
    b.nthreads = l.block.x * l.block.y * l.block.z;
    b.nwarps = (b.nthreads + 31) / 32;
    b.live = b.nthreads;
    b.at_barrier = b.exited = 0;
    b.serial = g_block_serial.fetch_add(1);
    b.bar_gen = 0;
    b.bar_diverged = false;
    b.aborted = false;
    b.races.clear();
    for (auto& ws : b.warps) ws = WarpState{};
    hopper_block_start(b);
    // Shared memory: a red zone, the dynamic part, then statics as declared.
    if (b.arena_used) std::memset(b.valid, 0, b.arena_used);
    b.vars.clear();
    b.dyn_offset = 64;
    b.dyn_size = l.dyn_shared;
    std::memset(b.arena + b.dyn_offset, config().poison, l.dyn_shared);
    std::memset(b.valid + b.dyn_offset, 1, l.dyn_shared);
    b.arena_used = (b.dyn_offset + l.dyn_shared + 64 + 127) & ~127u;
    if (b.fibers.size() < b.nthreads) b.fibers.resize(b.nthreads);
    const uint3 bd = l.block;
    for (unsigned t = 0; t < b.nthreads; t++) {
        Fiber& f = b.fibers[t];
        start_fiber(w, f, t);
        f.block = &b;
        f.state = F_RUN;
        f.tid = t;
        f.warp = t / 32;
        f.lane = t % 32;
        f.uncommitted.clear();
        f.groups.clear();
        f.wg_uncommitted.clear();
        f.wg_groups.clear();
        f.wg_latest.clear();
        f.wg_fenced = false;
        f.bulk_uncommitted.clear();
        f.bulk_groups.clear();
        ThreadState* ts = f.ts;
        ts->thread_idx = uint3{t % bd.x, t / bd.x % bd.y, t / (bd.x * bd.y)};
        ts->block_idx = b.idx;
        ts->block_dim = l.block;
        ts->grid_dim = dim3(l.grid);
        ts->fiber = &f;
        ts->alloc_cache = nullptr;
        std::memcpy(ts->params, l.params.data(), l.params.size());
    }
    const Schedule mode = config().schedule;
    unsigned done = 0;
    while (!b.aborted) {
        bool ran = false;
        auto step = [&](Fiber& f) {
            if (f.state != F_RUN || b.aborted) return false;
            emu_fiber_switch(&b.sched_sp, f.sp);
            return true;
        };
        if (mode == Schedule::WarpAhead) {
            for (unsigned wi = 0; wi < b.nwarps && !b.aborted; wi++) {
                const unsigned lo = wi * 32, hi = std::min(b.nthreads, lo + 32);
                for (bool any = true; any && !b.aborted;) {
                    any = false;
                    for (unsigned t = lo; t < hi; t++) any |= step(b.fibers[t]);
                    ran |= any;
                }
            }
        } else if (mode == Schedule::Reverse) {
            for (unsigned t = b.nthreads; t-- > 0;) ran |= step(b.fibers[t]);
        } else {
            for (unsigned t = 0; t < b.nthreads; t++) ran |= step(b.fibers[t]);
        }
        done = 0;
        for (unsigned t = 0; t < b.nthreads; t++) done += b.fibers[t].state == F_DONE;
        if (done == b.nthreads || b.aborted) break;
        if (!ran) {
            // Nobody can run: say where everyone waits.
            std::string s = "deadlock: no thread of the block can go on";
            for (unsigned t = 0; t < b.nthreads && t < 4096; t++) {
                const Fiber& f = b.fibers[t];
                if (f.state == F_DONE) continue;
                unsigned last = t;
                while (last + 1 < b.nthreads && b.fibers[last + 1].state == f.state &&
                       b.fibers[last + 1].wait_site.line == f.wait_site.line &&
                       b.fibers[last + 1].wait_site.file == f.wait_site.file)
                    last++;
                const char* at = f.state == F_BARRIER ? "__syncthreads"
                                 : f.state == F_GROUP ? "a warpgroup collective (wgmma)"
                                 : f.state == F_MBAR  ? "an mbarrier that never completes its phase"
                                                      : "a warp collective";
                s += strprintf("\n    threads %u..%u wait at %s %s", t, last, at, describe_site(f.wait_site).c_str());
                t = last;
            }
            int expected = 0;
            if (run.code.compare_exchange_strong(expected, 719)) note("%s\n  in kernel %s, block (%u,%u,%u)", s.c_str(), l.k->name.c_str(), b.idx.x, b.idx.y, b.idx.z);
            b.aborted = true;
        }
    }
    // Static shared memory only: the arena also holds the dynamic part before
    // the statics, which a later launch's own dynamic bytes must not meet twice.
    const uint32_t statics = b.arena_used - ((b.dyn_offset + b.dyn_size + 64 + 127) & ~127u);
    if (statics > l.k->static_shared.load()) l.k->static_shared.store(statics);
}

// ---- the worker pool: one launch at a time (the driver serialises them) ----------
struct Pool {
    std::mutex m;
    std::condition_variable wake, finished;
    LaunchRun* job = nullptr;
    uint64_t generation = 0;
    unsigned busy = 0;
    std::vector<Worker*> workers;
};

Pool& pool() {
    static Pool* p = [] {
        init_regions();
        auto* pool = new Pool;
        const unsigned n = std::min<unsigned>(kMaxWorkers, std::max(1, config().workers));
        for (unsigned i = 0; i < n; i++) {
            auto* w = new Worker;
            w->index = i;
            w->stacks = g_fiber_region + i * kWorkerStackBytes;
            w->block.arena = g_arena_region + size_t(i) * kArenaBytes;
            w->block.valid = new unsigned char[kArenaBytes]();
            if (config().racecheck) {
                void* sh = mmap(nullptr, sizeof(ShadowCell) * kArenaBytes, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (sh == MAP_FAILED) fatal("cannot map the race detector's shadow memory");
                w->block.shadow = static_cast<ShadowCell*>(sh);
            }
            pool->workers.push_back(w);
            std::thread([pool, w] {
                uint64_t seen = 0;
                for (;;) {
                    LaunchRun* job;
                    {
                        std::unique_lock<std::mutex> lk(pool->m);
                        pool->wake.wait(lk, [&] { return pool->generation != seen; });
                        seen = pool->generation;
                        job = pool->job;
                    }
                    for (;;) {
                        const uint32_t i = job->next.fetch_add(1);
                        if (i >= job->order.size() || job->code.load() != 0) break;
                        run_block(*w, *job, job->order[i]);
                    }
                    std::lock_guard<std::mutex> lk(pool->m);
                    if (--pool->busy == 0) pool->finished.notify_all();
                }
            }).detach();
        }
        return pool;
    }();
    return *p;
}

void fiber_main(Fiber* f) {
    Block& b = *f->block;
    b.launch->k->d.run(f->ts->params);
    // Copies still in flight complete when their thread ends.
    ptx::cp_async_wait_all(Site{"<end of the thread>", 0});
    hopper_thread_end(*f);
    f->state = F_DONE;
    b.live--;
    b.exited++;
    if (b.at_barrier > 0) {
        const Site s = b.bar_site;
        fault(719, strprintf("a thread ended while %u others wait at __syncthreads %s (a barrier every "
                             "thread of the block must reach: CUDA leaves this undefined)",
                             b.at_barrier, describe_site(s).c_str()));
    }
    for (unsigned w = 0; w < b.nwarps; w++)
        if (b.warps[w].arrived && (b.warps[w].mask >> f->lane & 1) && w == f->warp)
            fault(719, strprintf("a lane ended while its warp waits for it at a warp collective %s",
                                 describe_site(b.warps[w].site).c_str()));
    emu_fiber_switch(&f->sp, b.sched_sp);
    __builtin_unreachable();
}

}  // namespace

int run_launch(const Launch& l) {
    Pool& p = pool();
    LaunchRun run;
    run.l = &l;
    const uint32_t n = l.grid.x * l.grid.y * l.grid.z;
    run.order.resize(n);
    for (uint32_t i = 0; i < n; i++) run.order[i] = config().reverse_blocks ? n - 1 - i : i;
    {
        std::unique_lock<std::mutex> lk(p.m);
        p.job = &run;
        p.busy = static_cast<unsigned>(p.workers.size());
        p.generation++;
        p.wake.notify_all();
        p.finished.wait(lk, [&] { return p.busy == 0; });
        p.job = nullptr;
    }
    return run.code.load();
}

// ---- faults and reports -----------------------------------------------------------
std::string thread_where(const Fiber* f) {
    if (!f) return "";
    const Block& b = *f->block;
    const ThreadState* ts = f->ts;
    return strprintf("\n  in kernel %s, thread (%u,%u,%u) of block (%u,%u,%u); grid (%u,%u,%u), block (%u,%u,%u)",
                     b.launch->k->name.c_str(), ts->thread_idx.x, ts->thread_idx.y, ts->thread_idx.z, b.idx.x,
                     b.idx.y, b.idx.z, b.launch->grid.x, b.launch->grid.y, b.launch->grid.z, b.launch->block.x,
                     b.launch->block.y, b.launch->block.z);
}

void report(int code, const std::string& what) {
    Fiber* f = current_fiber();
    if (!f) fatal("report outside a kernel: %s", what.c_str());
    LaunchRun& run = *f->block->run;
    int expected = 0;
    run.code.compare_exchange_strong(expected, code);
    if (run.reports.fetch_add(1) < 8) note("%s%s", what.c_str(), thread_where(f).c_str());
}

void fault(int code, const std::string& what) {
    Fiber* f = current_fiber();
    if (!f) fatal("fault outside a kernel: %s", what.c_str());
    report(code, what);
    Block& b = *f->block;
    b.aborted = true;
    f->state = F_DONE;
    emu_fiber_switch(&f->sp, b.sched_sp);
    __builtin_unreachable();
}

}  // namespace emu
