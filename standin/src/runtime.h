// The stand-in's runtime, shared by its parts: configuration, reports, the
// kernel registry, memory (device, pinned, shared) with its access checks,
// and the execution of one launch (blocks on worker threads, threads on
// fibers). The driver API (driver.cpp) is built on these.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "emu/device.h"

namespace emu {

// ---- configuration: DR_EMU_* environment variables, read once ---------------
enum class Schedule { Lockstep, WarpAhead, Reverse };
struct Config {
    int cc_major = 9, cc_minor = 0;
    int sm_count = 4;
    uint64_t total_mem = uint64_t(16) << 30;
    bool lazy_streams = false;
    Schedule schedule = Schedule::Lockstep;
    bool reverse_blocks = false;
    bool racecheck = false;
    bool memory_pools = true;
    int workers = 2;
    unsigned char poison = 0xff;
    bool verbose = false;
    // DR_EMU_FAIL_KERNEL: the Nth kernel to run in the process (1-based; 0:
    // none) fails as a faulting kernel does, CUDA_ERROR_LAUNCH_FAILED on its
    // context from then on (tests of a worker's failure mid-job).
    uint64_t fail_kernel = 0;
};
const Config& config();

// ---- reports (report.cpp) ------------------------------------------------------
// "kernels/conv.cu:137 (conv_body<...>)" for a code address of a kernel.
std::string describe_pc(const void* pc);
std::string describe_site(Site s);
// A line on stderr, prefixed "dr stand-in: ".
void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// The stand-in cannot go on (its own limits): says why and aborts.
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- kernel registry (filled by the translated families' static constructors) --
struct Kernel {
    KernelDesc d;
    std::string family, name;
    // Static shared memory, learned on the first block that runs (0 until then).
    std::atomic<uint32_t> static_shared{0};
};
const std::vector<Kernel*>& registered_kernels();

// ---- memory (memory.cpp) ---------------------------------------------------------
enum class MemKind { Device, Pinned };
enum MemState : int { MEM_PENDING, MEM_LIVE, MEM_FREED };
struct Allocation {
    uint64_t base = 0, size = 0;
    MemKind kind = MemKind::Device;
    std::atomic<int> state{MEM_PENDING};
    uint64_t serial = 0;
    std::string origin;  // "cuMemAllocAsync #12 on stream 3"
};
// A new allocation (pending until made live), or null when out of memory.
Allocation* mem_reserve(MemKind kind, uint64_t bytes, const std::string& origin);
void mem_make_live(Allocation* a);  // poisons it
void mem_free(Allocation* a);
// The allocation containing `addr` (any state), or null.
Allocation* mem_find(uint64_t addr);
uint64_t device_bytes_reserved();
// Why [addr, addr + n) cannot be used by a copy or kernel, or "" if it can.
std::string mem_problem(uint64_t addr, uint64_t n, bool pinned_ok);
bool is_pinned(const void* p);

// ---- execution (sched.cpp) -------------------------------------------------------
struct Launch {
    Kernel* k = nullptr;
    uint3 grid{1, 1, 1};
    dim3 block;
    uint32_t dyn_shared = 0;
    std::vector<unsigned char> params;
};
// Runs every block of `l`; CUDA_SUCCESS, or the error (report on stderr).
int run_launch(const Launch& l);

struct CpAsync {
    unsigned char* dst;
    uint64_t src;
    uint32_t cp_size, src_size;
    Site site;
};

// Hopper's asynchronous work (ptx_hopper.h). An in-flight wgmma result: the
// register it lands in at its wait_group, and the value.
struct WgmmaResult {
    float* reg;
    float value;
};
// A bulk tensor copy (TMA) in flight: the map as it was at issue, the box's
// coordinates, the shared address and, for a load, its mbarrier.
struct BulkCopy {
    unsigned char map[128];
    int dims;
    int32_t c[5];
    uint32_t smem, mbar, bytes;
    unsigned tid;
    Site site;
};
// An mbarrier object's state, kept beside the shared memory it lives in.
struct MBarrier {
    uint64_t phase = 0;  // completed phases; the current one's parity is phase & 1
    uint32_t expected = 0, pending = 0;
    int64_t tx = 0;
};

// F_GROUP: at a warpgroup collective (wgmma); F_MBAR: in mbarrier.try_wait
// until the barrier changes.
enum FiberState { F_RUN, F_BARRIER, F_WARP, F_DONE, F_GROUP, F_MBAR };

struct Block;
struct Fiber {
    ThreadState* ts = nullptr;
    void* sp = nullptr;
    Block* block = nullptr;
    int state = F_RUN;
    Site wait_site{};
    unsigned tid = 0, warp = 0, lane = 0;
    std::vector<CpAsync> uncommitted;
    std::deque<std::vector<CpAsync>> groups;
    uint64_t in[16] = {};
    uint64_t out[4] = {};
    // wgmma: results not yet landed, by commit group, and the newest value
    // of each register in flight (a later wgmma on the same accumulators
    // reads it) with how many results target it.
    std::vector<WgmmaResult> wg_uncommitted;
    std::deque<std::vector<WgmmaResult>> wg_groups;
    std::unordered_map<float*, std::pair<float, int>> wg_latest;
    // Bulk tensor stores by bulk async-group; the mbarrier try_wait waits on.
    std::vector<BulkCopy> bulk_uncommitted;
    std::deque<std::vector<BulkCopy>> bulk_groups;
    uint32_t wait_mbar = 0;
    void* wg_args = nullptr;  // this thread's WgmmaArgs while at a wgmma
    bool wg_fenced = false;   // a wgmma.fence came before its first wgmma
};

struct SharedVar {
    const void* key;
    uint32_t offset, size;
    const char* name;
    Site site;
};

// Race-detector state of one shared byte: its last write and its reads
// since, within the current barrier interval (stamp = block serial << 32 |
// barrier generation), each with the warp's collective generation.
struct Access {
    const void* where;  // a code address (line < 0) or a file name
    int32_t line;
    uint32_t wgen;
    uint16_t tid;  // 0xffff for reads: several threads read it
    uint8_t atomic;
};
struct ShadowCell {
    uint64_t w_stamp, r_stamp;
    Access w, r;
};
// Bits of Block::valid, per shared byte.
constexpr unsigned char kValid = 1, kPending = 2;

struct WarpState {
    unsigned arrived = 0;
    int kind = 0;
    unsigned mask = 0;
    Site site{};
    uint32_t gen = 0;
};

struct LaunchRun;

// The block a worker is running.
struct Block {
    LaunchRun* run = nullptr;
    const Launch* launch = nullptr;
    uint3 idx{};
    unsigned nthreads = 0, nwarps = 0, live = 0, at_barrier = 0, exited = 0;
    uint64_t serial = 0;
    uint32_t bar_gen = 0;
    Site bar_site{};
    bool bar_diverged = false;
    std::vector<Fiber> fibers;
    WarpState warps[32];
    unsigned char* arena = nullptr;  // shared memory, kArenaBytes
    unsigned char* valid = nullptr;  // per arena byte: kValid inside a variable, kPending under a cp.async
    ShadowCell* shadow = nullptr;    // race detector (DR_EMU_RACECHECK=1)
    uint32_t arena_used = 0, dyn_offset = 0, dyn_size = 0;
    std::vector<SharedVar> vars;
    void* sched_sp = nullptr;
    bool aborted = false;
    // Races reported in this block, by the two places: each pair once.
    std::vector<std::pair<Access, Access>> races;
    // Hopper: mbarriers by shared offset, TMA loads in flight, and the
    // arrivals at each warpgroup's collective (wgmma).
    std::vector<std::pair<uint32_t, MBarrier>> mbarriers;
    std::vector<BulkCopy> bulk_loads;
    unsigned group_arrived[8] = {};
    Site group_site[8] = {};
    uint64_t stamp() const { return serial << 32 | bar_gen; }
};

constexpr uint32_t kArenaBytes = 256 << 10;  // 227 KB opt-in limit plus red zones
constexpr uint32_t kStaticSharedLimit = 48 << 10;
constexpr uint32_t kOptinSharedLimit = 227 << 10;

// The fiber running on this worker, from the stack pointer (null on a host thread).
Fiber* current_fiber();
bool on_fiber_stack(const void* p);
// Stops the calling CUDA thread's block with `code` (first error of the
// launch wins), after printing `what` with the thread's coordinates.
[[noreturn]] void fault(int code, const std::string& what);
// Records a problem that does not stop the thread (a race): the launch fails.
void report(int code, const std::string& what);
std::string thread_where(const Fiber* f);

// Shared-memory checks and race detection, for the access hooks and ptx.cpp.
// `kind`: 0 read, 1 write, 2 atomic read-modify-write.
void shared_access(Fiber* f, unsigned char* p, uint32_t n, int kind, const void* pc, Site* site);
// A cp.async destination: written now (poisoned), pending until completed.
void shared_async_issue(Fiber* f, unsigned char* p, uint32_t n, Site s);
void shared_async_complete(Fiber* f, unsigned char* p, uint32_t n, Site s);
// The allocation behind a device access of a kernel, checked (faults otherwise).
void device_access(Fiber* f, uint64_t addr, uint32_t n, int kind, const void* pc, Site* site);
// Collectives of a warp: every lane in `mask` arrives with `kind` and `site`;
// the last one runs `complete` over the arrived fibers, then all resume.
using WarpComplete = void (*)(Block& b, unsigned warp, unsigned mask);
void warp_collective(int kind, unsigned mask, Site s, WarpComplete complete);
// Hopper state at block start and thread end (hopper_sync.cpp).
void hopper_block_start(Block& b);
void hopper_thread_end(Fiber& f);
// "thread 0's TMA load at kernels/x.cu:12" if one in flight covers shared byte `off`, else "".
std::string tma_load_covering(const Block& b, uint32_t off);

}  // namespace emu
