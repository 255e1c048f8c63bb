// Objects behind the driver API's handles: contexts, streams and the work
// queued on them, events, captures and graphs, modules and functions.
//
// Every API call holds one lock for its whole length, and the work of every
// stream runs under it too, one operation at a time: the stand-in's device
// executes one thing at a time (a kernel's blocks run in parallel on the
// worker threads). A stream's work runs at once when it is queued (eager,
// the default) or only when something waits for it (DR_EMU_STREAMS=lazy:
// a stream synchronize, an event synchronize, another stream's wait on an
// event of it, a pageable download), so work that is not ordered before
// what needs it shows up as the wrong data or an access to memory that is
// not allocated yet.
#pragma once
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "emu/cuda_api.h"
#include "runtime.h"

namespace emu {

struct Stream;
struct Capture;

// A point in a stream that an event stands for: done once the stream's work
// before it has run.
struct Record {
    bool done = false;
    double ms = 0;
    Stream* stream = nullptr;
    Capture* capture = nullptr;  // recorded into an active capture
    bool queried = false;
};

struct Op {
    enum Kind { Kernel, CopyHtoD, CopyDtoH, CopyDtoD, Memset, RecordEvent, WaitEvent, HostFn, Alloc, Free } kind;
    explicit Op(Kind k) : kind(k) {}
    Launch launch;
    uint64_t dst = 0, src = 0, bytes = 0;
    std::vector<unsigned char> staged;  // pageable upload: its bytes, taken when queued
    uint32_t value = 0, elem = 1;       // memset
    std::shared_ptr<Record> rec;
    CUhostFn fn = nullptr;
    void* arg = nullptr;
    Allocation* alloc = nullptr;
    std::string what;  // for reports: "cuMemcpyHtoDAsync on stream 3"
};

struct Context;

struct Stream {
    unsigned flags = 0;
    int id = 0;
    Context* ctx = nullptr;
    std::deque<Op> queue;
    Capture* capture = nullptr;
    bool queried = false;
};

struct Capture {
    int mode = 0;
    std::thread::id thread;
    Stream* origin = nullptr;
    std::vector<Op> nodes;
    bool invalidated = false;
    // Streams that joined through an event of the capture, and whether the
    // origin has waited for each after its last captured work.
    std::vector<std::pair<Stream*, bool>> joined;
};

struct Event {
    unsigned flags = 0;
    std::shared_ptr<Record> last;
};

struct Graph {
    std::vector<Op> nodes;
};

struct GraphExec {
    std::vector<Op> nodes;
};

struct Module;
struct Function {
    Module* module = nullptr;
    Kernel* k = nullptr;
    int max_dynamic_shared = 48 << 10;
};

struct Module {
    std::string family;
    std::vector<std::unique_ptr<Function>> functions;
    bool unloaded = false;
};

struct Context {
    int device = 0;
    int refs = 0;
    int sticky = 0;  // the error that ended the context (a kernel fault)
    int next_stream_id = 1;
    Stream legacy;   // the NULL stream
    std::vector<Stream*> streams;
    std::vector<Capture*> captures;
};

// The one lock (recursive: a host function queued with cuLaunchHostFunc may
// call the API, which CUDA forbids but a stand-in need not deadlock on).
std::recursive_mutex& api_lock();
Context* current_context();
Stream* resolve_stream(CUstream s, CUresult* err);

// Queues `op` on `s` (or records it into the stream's capture). Returns the
// error a real driver returns at that call.
CUresult enqueue(Stream* s, Op op);
// Runs `s`'s queued work, up to and including `until` when given.
void drain(Stream* s, const Record* until = nullptr);
void drain_context(Context* c);
// The capture the calling thread may not make unsafe calls in, if any
// (CUDA's capture modes: global and thread-local captures forbid them).
Capture* capture_forbidding_unsafe_calls();
void invalidate(Capture* c);

}  // namespace emu

// For the API's definitions: an exported entry point, the one lock held
// for its length, and the current context (or the error without one).
#define API extern "C" __attribute__((visibility("default"))) CUresult
#define LOCK std::lock_guard<std::recursive_mutex> lk_(::emu::api_lock())
#define NEED_CONTEXT                                  \
    ::emu::Context* ctx = ::emu::current_context(); \
    if (!ctx) return CUDA_ERROR_INVALID_CONTEXT
