// What device code and the stand-in's runtime agree on: the CUDA built-in
// index types, where a CUDA thread finds its own state, and a source site.
//
// Every CUDA thread runs on a fiber whose stack block is kFiberBytes long
// and aligned to that size; the block starts with the thread's ThreadState.
// Device code finds it by masking its own frame address (no TLS, no call),
// and the access checks know an address in the caller's own block is its
// private (local) memory.
#pragma once
#include <cstddef>
#include <cstdint>

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

namespace emu {

// A CUDA thread's stack block: ThreadState, a guard page, then the stack.
constexpr std::uintptr_t kFiberBytes = std::uintptr_t(128) << 10;
// Kernel parameters, copied into each thread's state at block start (CUDA
// allows 4 KB on every driver the project supports; the launch refuses more).
constexpr std::size_t kParamBytes = 4096;

// A place in the kernel source, for reports. As a default argument,
// `Site()` is the caller's file and line (GCC evaluates __builtin_FILE and
// __builtin_LINE at the call site there).
struct Site {
    const char* file;
    int line;
    Site(const char* f = __builtin_FILE(), int l = __builtin_LINE()) : file(f), line(l) {}
};

struct ThreadState {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    void* fiber;        // the runtime's Fiber
    void* alloc_cache;  // the access checks' last device allocation
    alignas(16) unsigned char params[kParamBytes];
};

inline ThreadState* self() {
    const auto sp = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    return reinterpret_cast<ThreadState*>(sp & ~(kFiberBytes - 1));
}

}  // namespace emu
