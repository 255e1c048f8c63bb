// Streams, events, graph capture and graphs of the driver API, and the
// execution of queued work (see driver.h for the model).
//
// Semantics followed (CUDA Driver API reference, "Stream synchronization
// behavior" and "Graph management"): the legacy NULL stream waits for all
// blocking streams and they for it; non-blocking streams are ordered only
// by events; a wait on an event that was never recorded is a no-op; an
// upload from pageable memory takes the host bytes when it is queued, a
// download to pageable memory returns after it is done; pinned copies run
// in stream order. A capture records work instead of running it, and
// refuses what a real capture refuses: synchronizing a capturing stream or
// the context, copies with pageable memory, waits on events recorded
// outside the capture, and the unsafe calls of its mode (cuMemAlloc,
// cuMemFree, synchronous copies) from the capturing thread; a refused call
// invalidates the capture, and cuStreamEndCapture then fails.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "driver.h"

namespace emu {

namespace {

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

bool lazy() { return config().lazy_streams; }

// A copy or memset touching memory that is not live: the context faults, as
// a GPU would on an illegal address.
void copy_fault(Context* c, const Op& op, const std::string& why) {
    if (c->sticky) return;
    note("illegal address in %s: %s", op.what.c_str(), why.c_str());
    c->sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
}

void execute(Stream* s, Op& op) {
    Context* c = s->ctx;
    if (c->sticky && op.kind != Op::RecordEvent && op.kind != Op::Free) return;
    switch (op.kind) {
    case Op::Kernel: {
        static std::atomic<uint64_t> ran{0};
        if (const uint64_t n = ++ran; n == config().fail_kernel) {
            note("%s: kernel %llu of the process fails, as DR_EMU_FAIL_KERNEL asks (a faulting kernel: the context "
                 "is unusable from here)",
                 op.what.c_str(), (unsigned long long)n);
            c->sticky = CUDA_ERROR_LAUNCH_FAILED;
            break;
        }
        const int rc = run_launch(op.launch);
        if (rc) c->sticky = rc;
        break;
    }
    case Op::CopyHtoD: {
        std::string why = mem_problem(op.dst, op.bytes, false);
        if (why.empty() && op.staged.empty() && op.bytes) why = mem_problem(op.src, op.bytes, true);
        if (!why.empty()) return copy_fault(c, op, why);
        std::memcpy(reinterpret_cast<void*>(op.dst), op.staged.empty() ? reinterpret_cast<void*>(op.src) : op.staged.data(),
                    op.bytes);
        break;
    }
    case Op::CopyDtoH: {
        std::string why = mem_problem(op.src, op.bytes, false);
        if (why.empty() && is_pinned(reinterpret_cast<void*>(op.dst))) why = mem_problem(op.dst, op.bytes, true);
        if (!why.empty()) return copy_fault(c, op, why);
        std::memcpy(reinterpret_cast<void*>(op.dst), reinterpret_cast<void*>(op.src), op.bytes);
        break;
    }
    case Op::CopyDtoD: {
        std::string why = mem_problem(op.src, op.bytes, false);
        if (why.empty()) why = mem_problem(op.dst, op.bytes, false);
        if (!why.empty()) return copy_fault(c, op, why);
        std::memmove(reinterpret_cast<void*>(op.dst), reinterpret_cast<void*>(op.src), op.bytes);
        break;
    }
    case Op::Memset: {
        const std::string why = mem_problem(op.dst, op.bytes * op.elem, false);
        if (!why.empty()) return copy_fault(c, op, why);
        auto* p = reinterpret_cast<unsigned char*>(op.dst);
        for (uint64_t i = 0; i < op.bytes; i++) std::memcpy(p + i * op.elem, &op.value, op.elem);
        break;
    }
    case Op::RecordEvent:
        if (op.rec && !op.rec->capture) {
            op.rec->done = true;
            op.rec->ms = now_ms();
        }
        break;
    case Op::WaitEvent:
        if (op.rec && !op.rec->done && !op.rec->capture) drain(op.rec->stream, op.rec.get());
        break;
    case Op::HostFn:
        op.fn(op.arg);
        break;
    case Op::Alloc:
        mem_make_live(op.alloc);
        break;
    case Op::Free:
        mem_free(op.alloc);
        break;
    }
}

bool touches_pageable(const Op& op) {
    if (op.kind == Op::CopyHtoD) return !op.staged.empty() || (op.bytes && !is_pinned(reinterpret_cast<void*>(op.src)));
    if (op.kind == Op::CopyDtoH) return !is_pinned(reinterpret_cast<void*>(op.dst));
    return false;
}

}  // namespace

void drain(Stream* s, const Record* until) {
    while (!s->queue.empty()) {
        Op op = std::move(s->queue.front());
        s->queue.pop_front();
        execute(s, op);
        if (until && op.kind == Op::RecordEvent && op.rec.get() == until) return;
    }
}

void drain_context(Context* c) {
    // Newest stream first: an order the program did not ask for, so a missing
    // dependency shows (the dependencies it did ask for are followed anyway).
    for (auto it = c->streams.rbegin(); it != c->streams.rend(); ++it) drain(*it);
    drain(&c->legacy);
}

void invalidate(Capture* c) {
    if (c) c->invalidated = true;
}

Capture* capture_forbidding_unsafe_calls() {
    Context* c = current_context();
    if (!c) return nullptr;
    for (Capture* cap : c->captures) {
        if (cap->mode == CU_STREAM_CAPTURE_MODE_GLOBAL) return cap;
        if (cap->mode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL && cap->thread == std::this_thread::get_id()) return cap;
    }
    return nullptr;
}

CUresult enqueue(Stream* s, Op op) {
    Context* c = s->ctx;
    if (Capture* cap = s->capture) {
        if (cap->invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        if (touches_pageable(op)) {
            note("%s: a copy with pageable host memory cannot be captured into a graph (use pinned memory)",
                 op.what.c_str());
            invalidate(cap);
            return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        }
        for (auto& j : cap->joined)
            if (j.first == s) j.second = false;  // new work: it must be joined again
        cap->nodes.push_back(std::move(op));
        return CUDA_SUCCESS;
    }
    if (c->sticky) return c->sticky;
    if (s == &c->legacy) {
        for (Stream* t : c->streams)
            if (!(t->flags & CU_STREAM_NON_BLOCKING)) drain(t);
    } else if (!(s->flags & CU_STREAM_NON_BLOCKING)) {
        drain(&c->legacy);
    }
    if (lazy()) {
        s->queue.push_back(std::move(op));
    } else {
        drain(s);
        execute(s, op);
    }
    return c->sticky ? (CUresult)c->sticky : CUDA_SUCCESS;
}

std::recursive_mutex& api_lock() {
    static std::recursive_mutex m;
    return m;
}

}  // namespace emu

using namespace emu;


// ---- streams -------------------------------------------------------------------
API cuStreamCreate(CUstream* out, unsigned flags) {
    LOCK;
    NEED_CONTEXT;
    if (!out || flags > CU_STREAM_NON_BLOCKING) return CUDA_ERROR_INVALID_VALUE;
    auto* s = new Stream;
    s->flags = flags;
    s->ctx = ctx;
    s->id = ctx->next_stream_id++;
    ctx->streams.push_back(s);
    *out = reinterpret_cast<CUstream>(s);
    return CUDA_SUCCESS;
}

API cuStreamCreateWithPriority(CUstream* out, unsigned flags, int) { return cuStreamCreate(out, flags); }

API cuStreamDestroy_v2(CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (s == &s->ctx->legacy || h == EMU_STREAM_PER_THREAD) return CUDA_ERROR_INVALID_HANDLE;
    if (s->capture) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    // Its queued work still runs (CUDA releases the stream once it is done).
    drain(s);
    auto& v = s->ctx->streams;
    v.erase(std::remove(v.begin(), v.end(), s), v.end());
    delete s;
    return CUDA_SUCCESS;
}

API cuStreamSynchronize(CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (s->capture) {
        note("cuStreamSynchronize on stream %d while it is being captured into a graph", s->id);
        invalidate(s->capture);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    if (Capture* cap = capture_forbidding_unsafe_calls(); cap && s == &s->ctx->legacy) {
        invalidate(cap);
        return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
    }
    drain(s);
    return s->ctx->sticky;
}

API cuStreamQuery(CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (s->capture) {
        invalidate(s->capture);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    if (s->ctx->sticky) return s->ctx->sticky;
    if (s->queue.empty()) return CUDA_SUCCESS;
    // Lazy: not ready the first time it is asked, then done (a poll loop ends).
    if (!s->queried) {
        s->queried = true;
        return CUDA_ERROR_NOT_READY;
    }
    s->queried = false;
    drain(s);
    return s->ctx->sticky;
}

API cuStreamWaitEvent(CUstream h, CUevent e, unsigned flags) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!e || flags > 1) return CUDA_ERROR_INVALID_VALUE;
    auto* ev = reinterpret_cast<Event*>(e);
    const std::shared_ptr<Record> rec = ev->last;
    if (!rec) return CUDA_SUCCESS;  // never recorded: nothing to wait for
    if (s->capture) {
        if (rec->capture != s->capture) {
            note("stream %d, being captured, waits on an event recorded outside the capture (a capture is isolated "
                 "from work outside it)",
                 s->id);
            invalidate(s->capture);
            return CUDA_ERROR_STREAM_CAPTURE_ISOLATION;
        }
        if (s == s->capture->origin)
            for (auto& j : s->capture->joined)
                if (j.first == rec->stream) j.second = true;
        return CUDA_SUCCESS;
    }
    if (rec->capture) {
        // A stream waiting on an event of an active capture joins it.
        Capture* cap = rec->capture;
        s->capture = cap;
        cap->joined.emplace_back(s, false);
        return CUDA_SUCCESS;
    }
    Op op(Op::WaitEvent);
    op.rec = rec;
    op.what = strprintf("cuStreamWaitEvent on stream %d", s->id);
    return enqueue(s, std::move(op));
}

API cuLaunchHostFunc(CUstream h, CUhostFn fn, void* arg) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!fn) return CUDA_ERROR_INVALID_VALUE;
    Op op(Op::HostFn);
    op.fn = fn;
    op.arg = arg;
    op.what = strprintf("cuLaunchHostFunc on stream %d", s->id);
    return enqueue(s, std::move(op));
}

// ---- events ----------------------------------------------------------------------
API cuEventCreate(CUevent* out, unsigned flags) {
    LOCK;
    NEED_CONTEXT;
    if (!out || flags > 7) return CUDA_ERROR_INVALID_VALUE;
    auto* e = new Event;
    e->flags = flags;
    *out = reinterpret_cast<CUevent>(e);
    return CUDA_SUCCESS;
}

API cuEventDestroy_v2(CUevent e) {
    LOCK;
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    delete reinterpret_cast<Event*>(e);
    return CUDA_SUCCESS;
}

API cuEventRecordWithFlags(CUevent e, CUstream h, unsigned) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    auto* ev = reinterpret_cast<Event*>(e);
    auto rec = std::make_shared<Record>();
    rec->stream = s;
    rec->capture = s->capture;
    Op op(Op::RecordEvent);
    op.rec = rec;
    op.what = strprintf("cuEventRecord on stream %d", s->id);
    const CUresult rc = enqueue(s, std::move(op));
    if (rc == CUDA_SUCCESS || rc == s->ctx->sticky) ev->last = rec;
    return rc;
}

API cuEventRecord(CUevent e, CUstream h) { return cuEventRecordWithFlags(e, h, 0); }

API cuEventSynchronize(CUevent e) {
    LOCK;
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    auto* ev = reinterpret_cast<Event*>(e);
    const std::shared_ptr<Record> rec = ev->last;
    if (!rec) return CUDA_SUCCESS;
    if (rec->capture) return CUDA_ERROR_CAPTURED_EVENT;
    if (!rec->done) drain(rec->stream, rec.get());
    return rec->stream->ctx->sticky;
}

API cuEventQuery(CUevent e) {
    LOCK;
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    auto* ev = reinterpret_cast<Event*>(e);
    const std::shared_ptr<Record> rec = ev->last;
    if (!rec) return CUDA_SUCCESS;
    if (rec->capture) return CUDA_ERROR_CAPTURED_EVENT;
    if (rec->stream->ctx->sticky) return rec->stream->ctx->sticky;
    if (rec->done) return CUDA_SUCCESS;
    if (!rec->queried) {
        rec->queried = true;
        return CUDA_ERROR_NOT_READY;
    }
    drain(rec->stream, rec.get());
    return rec->stream->ctx->sticky;
}

API cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) {
    LOCK;
    if (!ms || !a || !b) return CUDA_ERROR_INVALID_VALUE;
    auto *ea = reinterpret_cast<Event*>(a), *eb = reinterpret_cast<Event*>(b);
    if ((ea->flags | eb->flags) & CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_HANDLE;
    if (!ea->last || !eb->last) return CUDA_ERROR_INVALID_HANDLE;
    if (!ea->last->done || !eb->last->done) return CUDA_ERROR_NOT_READY;
    // Host time between the two records' execution: emulation time, not GPU time.
    *ms = (float)(eb->last->ms - ea->last->ms);
    return CUDA_SUCCESS;
}

API cuEventElapsedTime(float* ms, CUevent a, CUevent b) { return cuEventElapsedTime_v2(ms, a, b); }

// ---- capture ----------------------------------------------------------------------
API cuStreamBeginCapture_v2(CUstream h, int mode) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (s == &s->ctx->legacy) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (s->capture) return CUDA_ERROR_ILLEGAL_STATE;
    if (mode < 0 || mode > 2) return CUDA_ERROR_INVALID_VALUE;
    auto* cap = new Capture;
    cap->mode = mode;
    cap->thread = std::this_thread::get_id();
    cap->origin = s;
    s->capture = cap;
    s->ctx->captures.push_back(cap);
    return CUDA_SUCCESS;
}

API cuStreamBeginCapture(CUstream h, int mode) { return cuStreamBeginCapture_v2(h, mode); }

API cuStreamIsCapturing(CUstream h, int* status) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!status) return CUDA_ERROR_INVALID_VALUE;
    *status = !s->capture                 ? CU_STREAM_CAPTURE_STATUS_NONE
              : s->capture->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                        : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    return CUDA_SUCCESS;
}

API cuStreamEndCapture(CUstream h, CUgraph* out) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    *out = nullptr;
    Capture* cap = s->capture;
    if (!cap) return CUDA_ERROR_ILLEGAL_STATE;
    if (cap->origin != s) return CUDA_ERROR_STREAM_CAPTURE_UNMATCHED;
    if (cap->mode != CU_STREAM_CAPTURE_MODE_RELAXED && cap->thread != std::this_thread::get_id())
        return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    Context* c = s->ctx;
    bool unjoined = false;
    for (auto& j : cap->joined) {
        unjoined |= !j.second;
        j.first->capture = nullptr;
    }
    s->capture = nullptr;
    c->captures.erase(std::remove(c->captures.begin(), c->captures.end(), cap), c->captures.end());
    for (Op& op : cap->nodes)
        if (op.kind == Op::RecordEvent && op.rec) {
            // Events last recorded in the capture stand for nothing that will run: complete.
            op.rec->capture = nullptr;
            op.rec->done = true;
            op.rec->ms = now_ms();
        }
    const bool invalid = cap->invalidated;
    std::vector<Op> nodes = std::move(cap->nodes);
    delete cap;
    if (invalid) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    if (unjoined) {
        note("a stream that joined the capture of stream %d was not joined back before cuStreamEndCapture", s->id);
        return CUDA_ERROR_STREAM_CAPTURE_UNJOINED;
    }
    auto* g = new Graph;
    g->nodes = std::move(nodes);
    for (Op& op : g->nodes)
        if (op.kind == Op::RecordEvent || op.kind == Op::WaitEvent) op.rec.reset();  // order inside the graph
    *out = reinterpret_cast<CUgraph>(g);
    return CUDA_SUCCESS;
}

// ---- graphs -------------------------------------------------------------------------
API cuGraphInstantiateWithFlags(CUgraphExec* out, CUgraph g, unsigned long long flags) {
    LOCK;
    if (!out || !g) return CUDA_ERROR_INVALID_VALUE;
    if (flags & ~3ull) return CUDA_ERROR_INVALID_VALUE;  // auto-free-on-launch, upload: accepted
    auto* x = new GraphExec;
    x->nodes = reinterpret_cast<Graph*>(g)->nodes;
    *out = reinterpret_cast<CUgraphExec>(x);
    return CUDA_SUCCESS;
}

API cuGraphLaunch(CUgraphExec x, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!x) return CUDA_ERROR_INVALID_VALUE;
    for (const Op& node : reinterpret_cast<GraphExec*>(x)->nodes) {
        Op op = node;
        op.what += strprintf(" (a node of a graph launched on stream %d)", s->id);
        const CUresult rc = enqueue(s, std::move(op));
        if (rc) return rc;
    }
    return CUDA_SUCCESS;
}

API cuGraphUpload(CUgraphExec x, CUstream) { return x ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE; }

API cuGraphExecDestroy(CUgraphExec x) {
    LOCK;
    if (!x) return CUDA_ERROR_INVALID_VALUE;
    delete reinterpret_cast<GraphExec*>(x);
    return CUDA_SUCCESS;
}

API cuGraphDestroy(CUgraph g) {
    LOCK;
    if (!g) return CUDA_ERROR_INVALID_VALUE;
    delete reinterpret_cast<Graph*>(g);
    return CUDA_SUCCESS;
}
