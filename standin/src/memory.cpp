// Memory of the stand-in and the checks on every access a kernel makes.
//
// Device and pinned allocations come from two large reserved address ranges,
// page-aligned with unmapped gaps between them, and an address is never
// reused: a stale pointer finds no memory, or a freed allocation that names
// itself. An allocation is inaccessible until it is live (a stream-ordered
// cuMemAllocAsync becomes live when its stream reaches it), is filled with
// the poison byte (DR_EMU_POISON, 0xff: NaN as f32 and bf16) when it
// becomes live, and is unmapped when freed.
//
// The translated kernels are compiled with -fsanitize=thread, which makes the
// compiler call __tsan_readN / __tsan_writeN before every load and store
// that could touch memory other than the thread's own stack; the hooks below
// implement those calls (no ThreadSanitizer runtime is linked). They check:
// a device access lies inside one live allocation; a shared access lies
// inside a __shared__ variable of the thread's own block and not under a
// cp.async still in flight; and, with DR_EMU_RACECHECK=1, two threads touch
// no shared byte between the same two barriers unless both only read (or
// both use atomics), reported with both source lines.
#include <dlfcn.h>
#include <link.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <shared_mutex>

#include "runtime.h"

namespace emu {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kGap = 64 << 10;  // unmapped space between two allocations

struct Region {
    explicit Region(const char* w) : what(w) {}
    const char* what;
    uint64_t lo = 0, hi = 0, next = 0;
    std::vector<Allocation*> allocs;  // by address (bump allocation keeps them sorted)
};

std::shared_mutex g_mem_lock;
Region g_device("device"), g_pinned("pinned host");
std::atomic<uint64_t> g_device_bytes{0};
std::atomic<uint64_t> g_serial{1};
// Static data of this library (string literals, tables in kernel code).
std::vector<std::pair<uintptr_t, uintptr_t>> g_image;

void init_region(Region& r, uint64_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fatal("cannot reserve %llu bytes of address space for %s memory", (unsigned long long)bytes, r.what);
    r.lo = r.next = (reinterpret_cast<uint64_t>(p) + (kGap - 1)) & ~(kGap - 1);
    r.hi = reinterpret_cast<uint64_t>(p) + bytes;
}

int find_image(dl_phdr_info* info, size_t, void* self) {
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const auto& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        const uintptr_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
        if ((uintptr_t)self >= lo && (uintptr_t)self < hi) {
            for (int j = 0; j < info->dlpi_phnum; j++) {
                const auto& q = info->dlpi_phdr[j];
                if (q.p_type == PT_LOAD) g_image.emplace_back(info->dlpi_addr + q.p_vaddr, info->dlpi_addr + q.p_vaddr + q.p_memsz);
            }
            return 1;
        }
    }
    return 0;
}

void init_memory() {
    static std::once_flag once;
    std::call_once(once, [] {
        init_region(g_device, uint64_t(1) << 40);
        init_region(g_pinned, uint64_t(1) << 38);
        dl_iterate_phdr(find_image, reinterpret_cast<void*>(&init_memory));
    });
}

Region& region_of(MemKind k) { return k == MemKind::Device ? g_device : g_pinned; }

Allocation* find_in(Region& r, uint64_t addr) {
    auto it = std::upper_bound(r.allocs.begin(), r.allocs.end(), addr,
                               [](uint64_t a, const Allocation* x) { return a < x->base; });
    if (it == r.allocs.begin()) return nullptr;
    Allocation* a = *(it - 1);
    return addr < a->base + std::max<uint64_t>(a->size, 1) ? a : nullptr;
}

Allocation* before(Region& r, uint64_t addr) {
    auto it = std::upper_bound(r.allocs.begin(), r.allocs.end(), addr,
                               [](uint64_t a, const Allocation* x) { return a < x->base; });
    return it == r.allocs.begin() ? nullptr : *(it - 1);
}

const char* state_name(int s) { return s == MEM_PENDING ? "not yet made" : s == MEM_LIVE ? "live" : "freed"; }

}  // namespace

Allocation* mem_reserve(MemKind kind, uint64_t bytes, const std::string& origin) {
    init_memory();
    Region& r = region_of(kind);
    const uint64_t span = (std::max<uint64_t>(bytes, 1) + kPage - 1) & ~(kPage - 1);
    if (kind == MemKind::Device) {
        uint64_t used = g_device_bytes.load();
        do {
            if (used + span > config().total_mem) return nullptr;
        } while (!g_device_bytes.compare_exchange_weak(used, used + span));
    }
    auto* a = new Allocation;
    a->kind = kind;
    a->size = bytes;
    a->serial = g_serial.fetch_add(1);
    a->origin = origin;
    std::unique_lock<std::shared_mutex> lk(g_mem_lock);
    if (r.next + span + kGap > r.hi) fatal("the stand-in's %s address range is used up", r.what);
    a->base = r.next;
    r.next += (span + kGap + kGap - 1) & ~(kGap - 1);
    r.allocs.push_back(a);
    return a;
}

void mem_make_live(Allocation* a) {
    const uint64_t span = (std::max<uint64_t>(a->size, 1) + kPage - 1) & ~(kPage - 1);
    if (mprotect(reinterpret_cast<void*>(a->base), span, PROT_READ | PROT_WRITE) != 0)
        fatal("mprotect of a %llu-byte allocation failed", (unsigned long long)a->size);
    std::memset(reinterpret_cast<void*>(a->base), config().poison, a->size);
    a->state.store(MEM_LIVE);
}

void mem_free(Allocation* a) {
    const uint64_t span = (std::max<uint64_t>(a->size, 1) + kPage - 1) & ~(kPage - 1);
    const int was = a->state.exchange(MEM_FREED);
    if (was == MEM_LIVE) {
        madvise(reinterpret_cast<void*>(a->base), span, MADV_DONTNEED);
        mprotect(reinterpret_cast<void*>(a->base), span, PROT_NONE);
    }
    if (a->kind == MemKind::Device && was != MEM_FREED) g_device_bytes.fetch_sub(span);
}

Allocation* mem_find(uint64_t addr) {
    init_memory();
    std::shared_lock<std::shared_mutex> lk(g_mem_lock);
    if (addr >= g_device.lo && addr < g_device.hi) return find_in(g_device, addr);
    if (addr >= g_pinned.lo && addr < g_pinned.hi) return find_in(g_pinned, addr);
    return nullptr;
}

uint64_t device_bytes_reserved() { return g_device_bytes.load(); }

bool is_pinned(const void* p) {
    Allocation* a = mem_find(reinterpret_cast<uint64_t>(p));
    return a && a->kind == MemKind::Pinned;
}

std::string mem_problem(uint64_t addr, uint64_t n, bool pinned_ok) {
    init_memory();
    std::shared_lock<std::shared_mutex> lk(g_mem_lock);
    Region* r = addr >= g_device.lo && addr < g_device.hi   ? &g_device
                : addr >= g_pinned.lo && addr < g_pinned.hi ? &g_pinned
                                                            : nullptr;
    if (!r) return strprintf("0x%llx is not device memory (nor pinned host memory)", (unsigned long long)addr);
    if (r == &g_pinned && !pinned_ok) return strprintf("0x%llx is pinned host memory, not device memory", (unsigned long long)addr);
    Allocation* a = find_in(*r, addr);
    if (!a) {
        Allocation* b = before(*r, addr);
        if (b)
            return strprintf("0x%llx is %llu bytes past the end of a %llu-byte %s allocation (%s, %s)",
                             (unsigned long long)addr, (unsigned long long)(addr - (b->base + b->size)),
                             (unsigned long long)b->size, r->what, b->origin.c_str(), state_name(b->state.load()));
        return strprintf("0x%llx is not in any %s allocation", (unsigned long long)addr, r->what);
    }
    const int st = a->state.load();
    if (st == MEM_PENDING)
        return strprintf("0x%llx is in a %llu-byte %s allocation (%s) that its stream has not made yet: "
                         "the work using it must wait for the allocating stream (an event, or a synchronize)",
                         (unsigned long long)addr, (unsigned long long)a->size, r->what, a->origin.c_str());
    if (st == MEM_FREED)
        return strprintf("0x%llx is in a %llu-byte %s allocation (%s) that has been freed",
                         (unsigned long long)addr, (unsigned long long)a->size, r->what, a->origin.c_str());
    if (addr + n > a->base + a->size)
        return strprintf("%llu bytes at 0x%llx run %llu bytes past the end of a %llu-byte %s allocation (%s)",
                         (unsigned long long)n, (unsigned long long)addr,
                         (unsigned long long)(addr + n - (a->base + a->size)), (unsigned long long)a->size, r->what,
                         a->origin.c_str());
    return "";
}

// ---- the checks behind the access hooks ---------------------------------------
static std::string where_of(const void* pc, Site* site) {
    return site ? describe_site(*site) : describe_pc(pc);
}

static const char* kind_name(int kind) { return kind == 0 ? "read" : kind == 1 ? "write" : "atomic"; }

void device_access(Fiber* f, uint64_t addr, uint32_t n, int kind, const void* pc, Site* site) {
    auto* a = static_cast<Allocation*>(f->ts->alloc_cache);
    if (a && addr >= a->base && addr + n <= a->base + a->size && a->state.load(std::memory_order_relaxed) == MEM_LIVE)
        return;
    a = mem_find(addr);
    if (a && addr + n <= a->base + a->size && a->state.load() == MEM_LIVE) {
        f->ts->alloc_cache = a;
        return;
    }
    fault(700, strprintf("illegal %u-byte %s %s: %s", n, kind_name(kind), where_of(pc, site).c_str(),
                         mem_problem(addr, n, true).c_str()));
}

static const SharedVar* var_at(const Block& b, uint32_t off) {
    for (const SharedVar& v : b.vars)
        if (off >= v.offset && off < v.offset + v.size) return &v;
    return nullptr;
}

static std::string shared_name(const Block& b, uint32_t off) {
    if (off >= b.dyn_offset && off < b.dyn_offset + b.dyn_size)
        return strprintf("dynamic shared memory + %u", off - b.dyn_offset);
    const SharedVar* v = var_at(b, off);
    if (v) return strprintf("__shared__ %s + %u (declared %s)", v->name, off - v->offset, describe_site(v->site).c_str());
    // The nearest variable before it, for an overrun.
    const SharedVar* best = nullptr;
    for (const SharedVar& u : b.vars)
        if (u.offset + u.size <= off && (!best || u.offset > best->offset)) best = &u;
    if (best)
        return strprintf("%u bytes past the end of __shared__ %s (%u bytes, declared %s)", off - (best->offset + best->size),
                         best->name, best->size, describe_site(best->site).c_str());
    return strprintf("shared offset %u, outside every __shared__ variable", off);
}

static std::string access_where(const Access& a) {
    if (a.line < 0) return describe_pc(a.where);
    return describe_site(Site{static_cast<const char*>(a.where), a.line});
}

static bool ordered(const Block& b, const Access& prev, unsigned tid) {
    return prev.tid == tid || (prev.tid != 0xffff && prev.tid / 32 == tid / 32 && prev.wgen < b.warps[tid / 32].gen);
}

static void race(Fiber* f, const char* what, const Access& prev, const char* prev_kind, uint32_t off, int kind,
                 const Access& now) {
    Block& b = *f->block;
    auto same = [](const Access& x, const Access& y) { return x.where == y.where && x.line == y.line; };
    for (const auto& r : b.races)
        if (same(r.first, prev) && same(r.second, now)) return;
    b.races.emplace_back(prev, now);
    const std::string prev_thread = prev.tid == 0xffff ? std::string("several threads") : strprintf("thread %u", prev.tid);
    report(719, strprintf("shared-memory race (%s) on %s: %s %s it %s, then thread %u %s it %s, "
                          "with no __syncthreads between",
                          what, shared_name(b, off).c_str(), prev_thread.c_str(), prev_kind, access_where(prev).c_str(),
                          f->tid, kind == 0 ? "reads" : kind == 1 ? "writes" : "updates", access_where(now).c_str()));
}

static void track(Fiber* f, uint32_t off, uint32_t n, int kind, const Access& now) {
    Block& b = *f->block;
    const uint64_t stamp = b.stamp();
    const unsigned tid = f->tid;
    const bool atomic = kind == 2;
    for (uint32_t i = off; i < off + n; i++) {
        ShadowCell& c = b.shadow[i];
        if (c.w_stamp == stamp && !(c.w.atomic && atomic) && !ordered(b, c.w, tid)) {
            race(f, kind == 0 ? "read after write" : "write after write", c.w, "wrote", i, kind, now);
            return;
        }
        if (kind != 0 && c.r_stamp == stamp && !(c.r.atomic && atomic) && !ordered(b, c.r, tid)) {
            race(f, "write after read", c.r, "read", i, kind, now);
            return;
        }
    }
    for (uint32_t i = off; i < off + n; i++) {
        ShadowCell& c = b.shadow[i];
        if (kind != 1) {
            if (c.r_stamp != stamp) {
                c.r_stamp = stamp;
                c.r = now;
            } else {
                if (c.r.tid != tid) c.r.tid = 0xffff;
                // One plain read in the interval makes the reads plain: an
                // atomic after it races with it.
                if (!now.atomic && c.r.atomic) {
                    c.r.atomic = 0;
                    c.r.where = now.where;  // name the plain read
                    c.r.line = now.line;
                }
            }
        }
        if (kind != 0) {
            c.w_stamp = stamp;
            c.w = now;
        }
    }
}

void shared_access(Fiber* f, unsigned char* p, uint32_t n, int kind, const void* pc, Site* site) {
    Block& b = *f->block;
    const uint32_t off = (uint32_t)(p - b.arena);
    if (off + n > kArenaBytes) fault(700, strprintf("shared %s past the block's shared memory %s", kind_name(kind), where_of(pc, site).c_str()));
    for (uint32_t i = off; i < off + n; i++) {
        const unsigned char v = b.valid[i];
        if (!(v & kValid))
            fault(700, strprintf("illegal %u-byte shared %s %s: %s", n, kind_name(kind), where_of(pc, site).c_str(),
                                 shared_name(b, i).c_str()));
        if (v & kPending) {
            // Name the copy: the thread whose pending cp.async covers the byte.
            std::string who = "a cp.async";
            for (const Fiber& g : b.fibers) {
                auto covers = [&](const CpAsync& c) { return p + (i - off) >= c.dst && p + (i - off) < c.dst + c.cp_size; };
                for (const CpAsync& c : g.uncommitted)
                    if (covers(c)) who = strprintf("thread %u's uncommitted cp.async %s", g.tid, describe_site(c.site).c_str());
                for (const auto& grp : g.groups)
                    for (const CpAsync& c : grp)
                        if (covers(c)) who = strprintf("thread %u's cp.async %s", g.tid, describe_site(c.site).c_str());
            }
            const std::string tma = tma_load_covering(b, i);
            if (!tma.empty())
                fault(719, strprintf("shared %s %s of %s, which %s is still writing: wait on its mbarrier first",
                                     kind_name(kind), where_of(pc, site).c_str(), shared_name(b, i).c_str(), tma.c_str()));
            fault(719, strprintf("shared %s %s of %s, which %s is still writing: the copy must be completed "
                                 "(cp.async.wait_group) and published (__syncthreads) first",
                                 kind_name(kind), where_of(pc, site).c_str(), shared_name(b, i).c_str(), who.c_str()));
        }
    }
    if (b.shadow) {
        Access now{site ? static_cast<const void*>(site->file) : pc, site ? site->line : -1, b.warps[f->warp].gen,
                   (uint16_t)f->tid, (uint8_t)(kind == 2)};
        track(f, off, n, kind, now);
    }
}

void shared_async_issue(Fiber* f, unsigned char* p, uint32_t n, Site s) {
    shared_access(f, p, n, 1, nullptr, &s);
    Block& b = *f->block;
    std::memset(p, config().poison, n);  // undefined until the copy completes
    std::memset(b.valid + (p - b.arena), kValid | kPending, n);
}

void shared_async_complete(Fiber* f, unsigned char* p, uint32_t n, Site s) {
    Block& b = *f->block;
    std::memset(b.valid + (p - b.arena), kValid, n);
    if (b.shadow) {
        Access now{s.file, s.line, b.warps[f->warp].gen, (uint16_t)f->tid, 0};
        track(f, (uint32_t)(p - b.arena), n, 1, now);
    }
}

// ---- classification of an instrumented access ------------------------------------
static bool in_image(uintptr_t a) {
    for (auto& r : g_image)
        if (a >= r.first && a < r.second) return true;
    return false;
}

__attribute__((always_inline)) static inline void check(const void* addr, uint32_t n, int kind, const void* pc) {
    const void* sp = __builtin_frame_address(0);
    if (!on_fiber_stack(sp)) return;  // host code of the kernel library (registration)
    const auto a = reinterpret_cast<uintptr_t>(addr);
    const auto mine = reinterpret_cast<uintptr_t>(sp) & ~(kFiberBytes - 1);
    if ((a & ~(kFiberBytes - 1)) == mine && ((a + n - 1) & ~(kFiberBytes - 1)) == mine) return;  // its own stack
    Fiber* f = static_cast<Fiber*>(reinterpret_cast<ThreadState*>(mine)->fiber);
    Block& b = *f->block;
    if (a >= reinterpret_cast<uintptr_t>(b.arena) && a < reinterpret_cast<uintptr_t>(b.arena) + kArenaBytes) {
        shared_access(f, reinterpret_cast<unsigned char*>(const_cast<void*>(addr)), n, kind, pc, nullptr);
        return;
    }
    if (a >= g_device.lo && a < g_device.hi) {
        device_access(f, a, n, kind, pc, nullptr);
        return;
    }
    if (a >= g_pinned.lo && a < g_pinned.hi) {
        device_access(f, a, n, kind, pc, nullptr);  // mapped pinned memory: the same rules
        return;
    }
    if (in_image(a)) return;  // the kernels' own static data
    if (on_fiber_stack(addr))
        fault(700, strprintf("illegal %u-byte %s %s: %p is another thread's local memory (or another block's shared "
                             "memory)",
                             n, kind_name(kind), describe_pc(pc).c_str(), addr));
    fault(700, strprintf("illegal %u-byte %s %s: %p is host memory, not device memory", n, kind_name(kind),
                         describe_pc(pc).c_str(), addr));
}

}  // namespace emu

// ---- the hooks GCC's -fsanitize=thread instrumentation calls ----------------------
#define EMU_HOOK(N)                                                                                     \
    extern "C" void __tsan_read##N(void* a) { emu::check(a, N, 0, __builtin_return_address(0)); }          \
    extern "C" void __tsan_write##N(void* a) { emu::check(a, N, 1, __builtin_return_address(0)); }         \
    extern "C" void __tsan_unaligned_read##N(void* a) { emu::check(a, N, 0, __builtin_return_address(0)); } \
    extern "C" void __tsan_unaligned_write##N(void* a) { emu::check(a, N, 1, __builtin_return_address(0)); }
EMU_HOOK(1)
EMU_HOOK(2)
EMU_HOOK(4)
EMU_HOOK(8)
EMU_HOOK(16)
#undef EMU_HOOK
extern "C" void __tsan_read_range(void* a, unsigned long n) {
    emu::check(a, (uint32_t)n, 0, __builtin_return_address(0));
}
extern "C" void __tsan_write_range(void* a, unsigned long n) {
    emu::check(a, (uint32_t)n, 1, __builtin_return_address(0));
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_read(void**) {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __tsan_atomic_signal_fence(int) {}
