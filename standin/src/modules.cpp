// Modules, functions and launches of the stand-in's driver API.
//
// A module image (the fatbin the binary embeds) is matched to the kernel
// family compiled into the stand-in from the same kernels/*.cu by the entry
// points the image names; an image naming a kernel the stand-in lacks, or
// lacking one it has, is refused: the two were built from different sources.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include "driver.h"

namespace emu {

namespace {

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

}  // namespace

}  // namespace emu

using namespace emu;

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

// The stand-in's own: every kernel it has, "family name" a line.
extern "C" __attribute__((visibility("default"))) const char* drEmuKernelList() {
    static std::string s;
    if (s.empty())
        for (Kernel* k : registered_kernels()) s += k->family + " " + k->name + "\n";
    return s.c_str();
}
