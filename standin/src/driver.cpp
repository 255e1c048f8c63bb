// The CUDA driver API of the stand-in (libcuda.so.1): initialization, the
// device and its attributes, contexts, modules and functions, kernel
// launches and memory. Streams, events and graphs are in streams.cpp.
//
// The device is a CPU pretending to be one GPU (DR_EMU_DEVICES for more) of
// compute capability 9.0 (DR_EMU_CC), named "dr CPU stand-in ..." so that no
// one mistakes it for hardware. A module image (the fatbin the binary embeds)
// is matched to the kernel family compiled into the stand-in from the same
// kernels/*.cu by the entry points the image names; an image naming a kernel
// the stand-in lacks, or lacking one it has, is refused: the two were built
// from different sources.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>

#include "driver.h"

namespace emu {

namespace {

constexpr const char* kName = "dr CPU stand-in (emulates sm_%d%d; not a GPU)";

int device_count() {
    static const int n = [] {
        const char* v = getenv("DR_EMU_DEVICES");
        return v && *v ? std::max(0, atoi(v)) : 1;
    }();
    return n;
}

bool g_initialized = false;
std::vector<Context*> g_primary;  // per device
thread_local std::vector<Context*> t_ctx_stack;
thread_local Context* t_current = nullptr;
thread_local Stream* t_per_thread = nullptr;
int g_alloc_serial = 0;

Context* primary(int dev) {
    if (g_primary.empty())
        for (int i = 0; i < device_count(); i++) {
            auto* c = new Context;
            c->device = i;
            c->legacy.ctx = c;
            c->legacy.id = 0;
            g_primary.push_back(c);
        }
    return g_primary[dev];
}

const char* error_string(CUresult e) {
    switch (e) {
    case CUDA_SUCCESS: return "no error";
    case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
    case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
    case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
    case CUDA_ERROR_NO_DEVICE: return "no CUDA-capable device is detected";
    case CUDA_ERROR_INVALID_DEVICE: return "invalid device ordinal";
    case CUDA_ERROR_INVALID_IMAGE: return "device kernel image is invalid";
    case CUDA_ERROR_INVALID_CONTEXT: return "invalid device context";
    case CUDA_ERROR_NO_BINARY_FOR_GPU: return "no kernel image is available for execution on the device";
    case CUDA_ERROR_INVALID_HANDLE: return "invalid resource handle";
    case CUDA_ERROR_ILLEGAL_STATE: return "the operation cannot be performed in the present state";
    case CUDA_ERROR_NOT_FOUND: return "named symbol not found";
    case CUDA_ERROR_NOT_READY: return "device not ready";
    case CUDA_ERROR_ILLEGAL_ADDRESS: return "an illegal memory access was encountered";
    case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "too many resources requested for launch";
    case CUDA_ERROR_ASSERT: return "device-side assert triggered";
    case CUDA_ERROR_ILLEGAL_INSTRUCTION: return "an illegal instruction was encountered";
    case CUDA_ERROR_MISALIGNED_ADDRESS: return "misaligned address";
    case CUDA_ERROR_INVALID_ADDRESS_SPACE: return "operation not supported on global/shared address space";
    case CUDA_ERROR_LAUNCH_FAILED: return "unspecified launch failure";
    case CUDA_ERROR_NOT_PERMITTED: return "operation not permitted";
    case CUDA_ERROR_NOT_SUPPORTED: return "operation not supported";
    case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: return "operation not permitted when stream is capturing";
    case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: return "operation failed due to a previous error during capture";
    case CUDA_ERROR_STREAM_CAPTURE_UNMATCHED: return "capture was not initiated in this stream";
    case CUDA_ERROR_STREAM_CAPTURE_UNJOINED: return "capturing stream has unjoined work";
    case CUDA_ERROR_STREAM_CAPTURE_ISOLATION: return "dependency created on uncaptured work in another stream";
    case CUDA_ERROR_STREAM_CAPTURE_IMPLICIT: return "operation would make the legacy stream depend on a capturing blocking stream";
    case CUDA_ERROR_CAPTURED_EVENT: return "operation not permitted on an event last recorded in a capturing stream";
    case CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return nullptr;
    }
}

// ---- module images ------------------------------------------------------------------
struct Image {
    const unsigned char* p = nullptr;
    size_t n = 0;
    bool fatbin = false;
};

Image measure(const void* data) {
    Image im;
    im.p = static_cast<const unsigned char*>(data);
    uint32_t magic;
    std::memcpy(&magic, im.p, 4);
    if (magic == 0xBA55ED50u) {
        uint16_t hs;
        uint64_t fs;
        std::memcpy(&hs, im.p + 6, 2);
        std::memcpy(&fs, im.p + 8, 8);
        im.n = hs + fs;
        im.fatbin = true;
    } else if (!std::memcmp(im.p, "\x7f" "ELF", 4)) {
        uint64_t shoff;
        uint16_t shentsize, shnum;
        std::memcpy(&shoff, im.p + 0x28, 8);
        std::memcpy(&shentsize, im.p + 0x3a, 2);
        std::memcpy(&shnum, im.p + 0x3c, 2);
        im.n = shoff + (size_t)shentsize * shnum;
    } else {
        im.n = strlen(reinterpret_cast<const char*>(im.p));  // PTX text, or the self-tests' "DRSTANDIN:family"
    }
    return im;
}

// Whether the fatbin has code this device runs: SASS of its exact number
// (an sm_XYa only on that number), SASS of the same major and a lower minor,
// or PTX of at most its number (the driver's JIT).
bool has_code_for_device(const Image& im) {
    const uint32_t dev = (uint32_t)(config().cc_major * 10 + config().cc_minor);
    uint16_t hs;
    std::memcpy(&hs, im.p + 4 + 2, 2);
    size_t off = hs;
    while (off + 32 <= im.n) {
        uint16_t kind;
        uint32_t ehs, arch, flags;
        uint64_t size;
        std::memcpy(&kind, im.p + off, 2);
        std::memcpy(&ehs, im.p + off + 4, 4);
        std::memcpy(&size, im.p + off + 8, 8);
        std::memcpy(&arch, im.p + off + 28, 4);
        std::memcpy(&flags, im.p + off + 40, 4);
        const bool arch_specific = flags & 0x100000;
        if (kind == 2 && (arch == dev || (!arch_specific && arch / 10 == dev / 10 && arch <= dev))) return true;
        if (kind == 1 && arch <= dev) return true;
        if (ehs == 0) break;
        off += ehs + size;
    }
    return false;
}

bool contains(const Image& im, const std::string& needle) {
    return std::search(im.p, im.p + im.n, needle.begin(), needle.end()) != im.p + im.n;
}

// Every ".text.<name>\0" in the image: the kernels its ELF sections hold.
std::set<std::string> text_sections(const Image& im) {
    std::set<std::string> out;
    static const std::string tag = ".text.";
    for (const unsigned char* q = im.p; (q = std::search(q, im.p + im.n, tag.begin(), tag.end())) != im.p + im.n;) {
        q += tag.size();
        const unsigned char* e = q;
        while (e < im.p + im.n && (isalnum(*e) || *e == '_')) e++;
        if (e < im.p + im.n && *e == 0 && e > q) out.insert(std::string(q, e));
    }
    return out;
}

CUresult load_module(const void* data, Module** out) {
    const Image im = measure(data);
    static const std::string tag = "DRSTANDIN:";
    std::string family;
    if (im.n > tag.size() && !std::memcmp(im.p, tag.data(), tag.size())) {
        family.assign(reinterpret_cast<const char*>(im.p) + tag.size(), im.n - tag.size());
    } else {
        if (im.fatbin && !has_code_for_device(im)) {
            note("cuModuleLoadData: the image has no code for sm_%d%d", config().cc_major, config().cc_minor);
            return CUDA_ERROR_NO_BINARY_FOR_GPU;
        }
        const std::set<std::string> names = im.fatbin || im.p[0] == 0x7f ? text_sections(im) : std::set<std::string>{};
        std::set<std::string> families;
        for (Kernel* k : registered_kernels())
            if (names.count(k->name) || (names.empty() && contains(im, ".entry " + k->name))) families.insert(k->family);
        if (families.size() != 1) {
            note("cuModuleLoadData: the image's kernels (%zu) match %zu of the stand-in's kernel families; rebuild the "
                 "stand-in from the same kernels/ (scripts/emu-build.sh)",
                 names.size(), families.size());
            return CUDA_ERROR_INVALID_IMAGE;
        }
        family = *families.begin();
        for (const std::string& n : names) {
            const bool known = std::any_of(registered_kernels().begin(), registered_kernels().end(),
                                           [&](Kernel* k) { return k->name == n && k->family == family; });
            if (!known) {
                note("cuModuleLoadData: the image has kernel %s, which the stand-in's %s family does not: it was "
                     "built from other kernels/ sources (rebuild it: scripts/emu-build.sh)",
                     n.c_str(), family.c_str());
                return CUDA_ERROR_INVALID_IMAGE;
            }
        }
        for (Kernel* k : registered_kernels())
            if (k->family == family && !names.empty() && !names.count(k->name)) {
                note("cuModuleLoadData: the stand-in's %s family has kernel %s, which the image does not: they were "
                     "built from different kernels/ sources (rebuild the stand-in: scripts/emu-build.sh)",
                     family.c_str(), k->name.c_str());
                return CUDA_ERROR_INVALID_IMAGE;
            }
    }
    auto* m = new Module;
    m->family = family;
    for (Kernel* k : registered_kernels())
        if (k->family == family) {
            auto f = std::make_unique<Function>();
            f->module = m;
            f->k = k;
            m->functions.push_back(std::move(f));
        }
    if (m->functions.empty()) {
        delete m;
        note("cuModuleLoadData: the stand-in has no kernel family `%s`", family.c_str());
        return CUDA_ERROR_INVALID_IMAGE;
    }
    *out = m;
    return CUDA_SUCCESS;
}

int attribute(int a, int dev) {
    const Config& c = config();
    (void)dev;
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return (int)kStaticSharedLimit;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return 1000000;  // kHz; nothing here runs at any clock
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return c.sm_count;
    case CU_DEVICE_ATTRIBUTE_INTEGRATED: return 0;
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 1;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: return 0;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: return 0xee;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: return dev;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: return 0xffff;  // no such PCI domain: nothing in sysfs matches
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 1000000;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 64;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 4 << 20;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 2;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return c.cc_major;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return c.cc_minor;
    case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return 228 << 10;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: return 0;
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: return 0;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return (int)kOptinSharedLimit;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return 32;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return c.memory_pools ? 1 : 0;
    default: return -1;
    }
}

}  // namespace

Context* current_context() { return t_current; }

Stream* resolve_stream(CUstream h, CUresult* err) {
    Context* c = t_current;
    if (!c) {
        *err = CUDA_ERROR_INVALID_CONTEXT;
        return nullptr;
    }
    if (h == nullptr || h == EMU_STREAM_LEGACY) return &c->legacy;
    if (h == EMU_STREAM_PER_THREAD) {
        // Per-thread default stream: a blocking stream of this thread's own.
        if (!t_per_thread) {
            t_per_thread = new Stream;
            t_per_thread->ctx = c;
            t_per_thread->id = c->next_stream_id++;
            c->streams.push_back(t_per_thread);
        }
        return t_per_thread;
    }
    auto* s = reinterpret_cast<Stream*>(h);
    if (std::find(c->streams.begin(), c->streams.end(), s) == c->streams.end()) {
        *err = CUDA_ERROR_INVALID_HANDLE;
        return nullptr;
    }
    return s;
}

}  // namespace emu

using namespace emu;

#define NEED_DEVICE(d) \
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED; \
    if ((d) < 0 || (d) >= device_count()) return CUDA_ERROR_INVALID_DEVICE

// ---- initialization and devices ----------------------------------------------------
API cuInit(unsigned flags) {
    LOCK;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    g_initialized = true;
    return CUDA_SUCCESS;
}

API cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = 13000;
    return CUDA_SUCCESS;
}

API cuDeviceGetCount(int* n) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *n = device_count();
    return CUDA_SUCCESS;
}

API cuDeviceGet(CUdevice* d, int ordinal) {
    NEED_DEVICE(ordinal);
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    *d = ordinal;
    return CUDA_SUCCESS;
}

API cuDeviceGetName(char* name, int len, CUdevice d) {
    NEED_DEVICE(d);
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(name, (size_t)len, kName, config().cc_major, config().cc_minor);
    return CUDA_SUCCESS;
}

API cuDeviceTotalMem_v2(size_t* bytes, CUdevice d) {
    NEED_DEVICE(d);
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    *bytes = config().total_mem;
    return CUDA_SUCCESS;
}

API cuDeviceGetAttribute(int* v, int a, CUdevice d) {
    NEED_DEVICE(d);
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    const int x = attribute(a, d);
    if (x < 0) {
        note("cuDeviceGetAttribute(%d): this attribute is not emulated", a);
        return CUDA_ERROR_INVALID_VALUE;
    }
    *v = x;
    return CUDA_SUCCESS;
}

API cuGetErrorString(CUresult e, const char** s) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = error_string(e);
    return *s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

API cuGetErrorName(CUresult e, const char** s) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = error_string(e);
    return *s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// ---- contexts -------------------------------------------------------------------------
API cuDevicePrimaryCtxRetain(CUcontext* out, CUdevice d) {
    LOCK;
    NEED_DEVICE(d);
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    Context* c = primary(d);
    c->refs++;
    *out = reinterpret_cast<CUcontext>(c);
    return CUDA_SUCCESS;
}

API cuDevicePrimaryCtxRelease_v2(CUdevice d) {
    LOCK;
    NEED_DEVICE(d);
    Context* c = primary(d);
    if (c->refs == 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (--c->refs == 0) {
        // The primary context ends: its work is done and a fault is forgotten.
        drain_context(c);
        c->sticky = 0;
    }
    return CUDA_SUCCESS;
}

API cuCtxSetCurrent(CUcontext c) {
    t_current = reinterpret_cast<Context*>(c);
    return CUDA_SUCCESS;
}

API cuCtxGetCurrent(CUcontext* c) {
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    *c = reinterpret_cast<CUcontext>(t_current);
    return CUDA_SUCCESS;
}

API cuCtxPushCurrent_v2(CUcontext c) {
    t_ctx_stack.push_back(t_current);
    t_current = reinterpret_cast<Context*>(c);
    return CUDA_SUCCESS;
}

API cuCtxPopCurrent_v2(CUcontext* c) {
    if (c) *c = reinterpret_cast<CUcontext>(t_current);
    if (t_ctx_stack.empty()) {
        t_current = nullptr;
        return CUDA_SUCCESS;
    }
    t_current = t_ctx_stack.back();
    t_ctx_stack.pop_back();
    return CUDA_SUCCESS;
}

API cuCtxGetDevice(CUdevice* d) {
    NEED_CONTEXT;
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    *d = ctx->device;
    return CUDA_SUCCESS;
}

API cuCtxSynchronize() {
    LOCK;
    NEED_CONTEXT;
    // Unsafe in a capture of this thread (or a global-mode capture of any
    // thread); another thread's thread-local capture only holds recorded
    // work, which a synchronize does not wait for.
    if (Capture* cap = capture_forbidding_unsafe_calls()) {
        note("cuCtxSynchronize while a stream of the context is being captured into a graph");
        invalidate(cap);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    drain_context(ctx);
    return ctx->sticky;
}

// ---- modules and functions ----------------------------------------------------------
API cuModuleLoadData(CUmodule* out, const void* image) {
    LOCK;
    NEED_CONTEXT;
    if (!out || !image) return CUDA_ERROR_INVALID_VALUE;
    Module* m = nullptr;
    const CUresult rc = load_module(image, &m);
    if (rc == CUDA_SUCCESS) *out = reinterpret_cast<CUmodule>(m);
    return rc;
}

API cuModuleUnload(CUmodule m) {
    LOCK;
    if (!m) return CUDA_ERROR_INVALID_HANDLE;
    reinterpret_cast<Module*>(m)->unloaded = true;  // kept: a launch through it is refused
    return CUDA_SUCCESS;
}

API cuModuleGetFunction(CUfunction* out, CUmodule hm, const char* name) {
    LOCK;
    if (!out || !hm || !name) return CUDA_ERROR_INVALID_VALUE;
    auto* m = reinterpret_cast<Module*>(hm);
    if (m->unloaded) return CUDA_ERROR_INVALID_HANDLE;
    for (auto& f : m->functions)
        if (f->k->name == name) {
            *out = reinterpret_cast<CUfunction>(f.get());
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}

API cuFuncGetAttribute(int* v, int a, CUfunction hf) {
    LOCK;
    if (!v || !hf) return CUDA_ERROR_INVALID_VALUE;
    auto* f = reinterpret_cast<Function*>(hf);
    switch (a) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = f->k->d.max_threads > 0 ? f->k->d.max_threads : 1024; break;
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *v = (int)f->k->static_shared.load(); break;
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *v = 0; break;
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *v = 0; break;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *v = 0; break;  // no registers here: ptxas's report says
    case CU_FUNC_ATTRIBUTE_PTX_VERSION:
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *v = config().cc_major * 10 + config().cc_minor; break;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *v = f->max_dynamic_shared; break;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

API cuFuncSetAttribute(CUfunction hf, int a, int v) {
    LOCK;
    if (!hf) return CUDA_ERROR_INVALID_HANDLE;
    auto* f = reinterpret_cast<Function*>(hf);
    if (a == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
        if (v < 0 || (uint32_t)v > kOptinSharedLimit) return CUDA_ERROR_INVALID_VALUE;
        f->max_dynamic_shared = v;
        return CUDA_SUCCESS;
    }
    if (a == CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT) return v >= -1 && v <= 100 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    return CUDA_ERROR_INVALID_VALUE;
}

// ---- launches ---------------------------------------------------------------------------
API cuLaunchKernel(CUfunction hf, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared, CUstream h, void** params, void** extra) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!hf) return CUDA_ERROR_INVALID_HANDLE;
    auto* f = reinterpret_cast<Function*>(hf);
    if (f->module->unloaded) return CUDA_ERROR_INVALID_HANDLE;
    Kernel* k = f->k;
    if (extra) {
        note("cuLaunchKernel(%s): `extra` (a packed parameter buffer) is not emulated; pass kernelParams", k->name.c_str());
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (!params && k->d.param_bytes) return CUDA_ERROR_INVALID_VALUE;
    const uint64_t threads = (uint64_t)bx * by * bz;
    if (!gx || !gy || !gz || !bx || !by || !bz || bx > 1024 || by > 1024 || bz > 64 || threads > 1024 || gy > 65535 ||
        gz > 65535 || gx > 2147483647u)
        return CUDA_ERROR_INVALID_VALUE;
    if (k->d.max_threads > 0 && threads > (uint64_t)k->d.max_threads) {
        note("cuLaunchKernel(%s): a block of %llu threads exceeds its __launch_bounds__(%d)", k->name.c_str(),
             (unsigned long long)threads, k->d.max_threads);
        return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    }
    if ((int)shared > f->max_dynamic_shared) {
        note("cuLaunchKernel(%s): %u bytes of dynamic shared memory, over the function's limit of %d (raise it with "
             "cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES))",
             k->name.c_str(), shared, f->max_dynamic_shared);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (k->static_shared.load() + shared > kOptinSharedLimit + 1024)
        return CUDA_ERROR_INVALID_VALUE;
    Op op(Op::Kernel);
    op.launch.k = k;
    op.launch.grid = uint3{gx, gy, gz};
    op.launch.block = dim3(bx, by, bz);
    op.launch.dyn_shared = shared;
    op.launch.params.resize(k->d.param_bytes);
    if (k->d.param_bytes) k->d.pack(params, op.launch.params.data());
    op.what = strprintf("kernel %s on stream %d", k->name.c_str(), s->id);
    return enqueue(s, std::move(op));
}

// ---- memory -------------------------------------------------------------------------------
static CUresult check_device_range(uint64_t p, uint64_t n, const char* call) {
    Allocation* a = mem_find(p);
    if (!a || a->kind != MemKind::Device || a->state.load() == MEM_FREED || p + n > a->base + a->size) {
        note("%s: %s", call, mem_problem(p, n, false).c_str());
        return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

static std::string origin(const char* call, Stream* s) {
    return s ? strprintf("%s #%d on stream %d", call, ++g_alloc_serial, s->id) : strprintf("%s #%d", call, ++g_alloc_serial);
}

API cuMemAllocAsync(CUdeviceptr* out, size_t bytes, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    if (!config().memory_pools) return CUDA_ERROR_NOT_SUPPORTED;
    if (s->capture) {
        note("cuMemAllocAsync inside a graph capture: allocation nodes are not emulated by the stand-in");
        invalidate(s->capture);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    Allocation* a = mem_reserve(MemKind::Device, bytes, origin("cuMemAllocAsync", s));
    if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
    Op op(Op::Alloc);
    op.alloc = a;
    op.what = a->origin;
    const CUresult rc = enqueue(s, std::move(op));
    if (rc == CUDA_SUCCESS) *out = a->base;
    return rc;
}

API cuMemFreeAsync(CUdeviceptr p, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    Allocation* a = mem_find(p);
    if (!a || a->base != p || a->kind != MemKind::Device || a->state.load() == MEM_FREED) {
        note("cuMemFreeAsync(0x%llx): not the start of a device allocation that is not freed", (unsigned long long)p);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (s->capture) {
        note("cuMemFreeAsync inside a graph capture: free nodes are not emulated by the stand-in");
        invalidate(s->capture);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    Op op(Op::Free);
    op.alloc = a;
    op.what = strprintf("cuMemFreeAsync on stream %d", s->id);
    return enqueue(s, std::move(op));
}

API cuMemAlloc_v2(CUdeviceptr* out, size_t bytes) {
    LOCK;
    NEED_CONTEXT;
    if (!out || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (Capture* cap = capture_forbidding_unsafe_calls()) {
        invalidate(cap);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    Allocation* a = mem_reserve(MemKind::Device, bytes, origin("cuMemAlloc", nullptr));
    if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
    mem_make_live(a);
    *out = a->base;
    return ctx->sticky;
}

API cuMemFree_v2(CUdeviceptr p) {
    LOCK;
    NEED_CONTEXT;
    if (Capture* cap = capture_forbidding_unsafe_calls()) {
        invalidate(cap);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    Allocation* a = mem_find(p);
    if (!a || a->base != p || a->kind != MemKind::Device || a->state.load() == MEM_FREED) return CUDA_ERROR_INVALID_VALUE;
    drain_context(ctx);  // cuMemFree waits for the device
    mem_free(a);
    return ctx->sticky;
}

API cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    NEED_CONTEXT;
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = config().total_mem;
    *free_bytes = config().total_mem - std::min<uint64_t>(config().total_mem, device_bytes_reserved());
    return CUDA_SUCCESS;
}

API cuMemHostAlloc(void** out, size_t bytes, unsigned flags) {
    LOCK;
    NEED_CONTEXT;
    if (!out || flags > 7) return CUDA_ERROR_INVALID_VALUE;
    Allocation* a = mem_reserve(MemKind::Pinned, bytes, origin("cuMemHostAlloc", nullptr));
    if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
    mem_make_live(a);
    *out = reinterpret_cast<void*>(a->base);
    return CUDA_SUCCESS;
}

API cuMemAllocHost_v2(void** out, size_t bytes) { return cuMemHostAlloc(out, bytes, 0); }

API cuMemFreeHost(void* p) {
    LOCK;
    NEED_CONTEXT;
    Allocation* a = mem_find(reinterpret_cast<uint64_t>(p));
    if (!a || a->kind != MemKind::Pinned || a->base != reinterpret_cast<uint64_t>(p) || a->state.load() == MEM_FREED)
        return CUDA_ERROR_INVALID_VALUE;
    drain_context(ctx);  // copies still queued on it run first
    mem_free(a);
    return CUDA_SUCCESS;
}

API cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (n == 0) return CUDA_SUCCESS;
    if (!src) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult rc = check_device_range(dst, n, "cuMemcpyHtoDAsync")) return rc;
    Op op(Op::CopyHtoD);
    op.dst = dst;
    op.src = reinterpret_cast<uint64_t>(src);
    op.bytes = n;
    op.what = strprintf("cuMemcpyHtoDAsync of %zu bytes on stream %d", n, s->id);
    // Pageable memory: the driver takes the bytes now, the caller may reuse it at once.
    if (!is_pinned(src) && !s->capture) op.staged.assign(static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + n);
    return enqueue(s, std::move(op));
}

API cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (n == 0) return CUDA_SUCCESS;
    if (!dst) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult rc = check_device_range(src, n, "cuMemcpyDtoHAsync")) return rc;
    Op op(Op::CopyDtoH);
    op.dst = reinterpret_cast<uint64_t>(dst);
    op.src = src;
    op.bytes = n;
    op.what = strprintf("cuMemcpyDtoHAsync of %zu bytes on stream %d", n, s->id);
    const bool pageable = !is_pinned(dst);
    const CUresult rc = enqueue(s, std::move(op));
    // Pageable memory: the call returns once the bytes are there.
    if (rc == CUDA_SUCCESS && pageable) drain(s);
    return rc ? rc : (CUresult)s->ctx->sticky;
}

API cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream h) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (n == 0) return CUDA_SUCCESS;
    if (CUresult rc = check_device_range(src, n, "cuMemcpyDtoDAsync")) return rc;
    if (CUresult rc = check_device_range(dst, n, "cuMemcpyDtoDAsync")) return rc;
    Op op(Op::CopyDtoD);
    op.dst = dst;
    op.src = src;
    op.bytes = n;
    op.what = strprintf("cuMemcpyDtoDAsync of %zu bytes on stream %d", n, s->id);
    return enqueue(s, std::move(op));
}

static CUresult memset_async(CUdeviceptr dst, uint32_t v, size_t n, uint32_t elem, CUstream h, const char* call) {
    LOCK;
    CUresult err;
    Stream* s = resolve_stream(h, &err);
    if (!s) return err;
    if (n == 0) return CUDA_SUCCESS;
    if (dst % elem) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult rc = check_device_range(dst, n * elem, call)) return rc;
    Op op(Op::Memset);
    op.dst = dst;
    op.bytes = n;
    op.elem = elem;
    op.value = v;
    op.what = strprintf("%s of %zu x %u bytes on stream %d", call, n, elem, s->id);
    return enqueue(s, std::move(op));
}

API cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream h) {
    return memset_async(dst, v, n, 1, h, "cuMemsetD8Async");
}
API cuMemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, CUstream h) {
    return memset_async(dst, v, n, 2, h, "cuMemsetD16Async");
}
API cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream h) {
    return memset_async(dst, v, n, 4, h, "cuMemsetD32Async");
}

// Synchronous copies: on the legacy stream, returning when done; unsafe in a capture.
static CUresult sync_call(CUresult queued) {
    if (queued) return queued;
    Context* c = current_context();
    drain(&c->legacy);
    return c->sticky;
}
#define UNSAFE_IN_CAPTURE                                                   \
    if (Capture* cap = capture_forbidding_unsafe_calls()) {                 \
        invalidate(cap);                                                    \
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;                       \
    }
API cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    LOCK;
    UNSAFE_IN_CAPTURE;
    return sync_call(cuMemcpyHtoDAsync_v2(dst, src, n, nullptr));
}
API cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    LOCK;
    UNSAFE_IN_CAPTURE;
    return sync_call(cuMemcpyDtoHAsync_v2(dst, src, n, nullptr));
}
API cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    LOCK;
    UNSAFE_IN_CAPTURE;
    return sync_call(cuMemcpyDtoDAsync_v2(dst, src, n, nullptr));
}
API cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    LOCK;
    UNSAFE_IN_CAPTURE;
    return sync_call(cuMemsetD8Async(dst, v, n, nullptr));
}

// The stand-in's own: every kernel it has, "family name" a line.
extern "C" __attribute__((visibility("default"))) const char* drEmuKernelList() {
    static std::string s;
    if (s.empty())
        for (Kernel* k : registered_kernels()) s += k->family + " " + k->name + "\n";
    return s.c_str();
}
