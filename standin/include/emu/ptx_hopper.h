// The Hopper (sm_90a) PTX instructions a warp-specialized GEMM needs:
// mbarrier, proxy fences, setmaxnreg, elect.sync, stmatrix, wgmma and the
// bulk tensor copies (TMA), each named after its mnemonic as in ptx.h and
// following the PTX ISA section named beside it. src/hopper_sync.cpp,
// src/wgmma.cpp and src/tma.cpp implement them; tests/selftest_hopper.cpp
// checks them on hand-computed values.
#pragma once
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emu/abi.h"

// cuda.h's opaque tensor map (CUDA Driver API, cuTensorMapEncodeTiled): 128
// bytes, 64-byte aligned, passed to kernels by value as a
// `const __grid_constant__ CUtensorMap` parameter.
#ifndef EMU_CUTENSORMAP_DEFINED
#define EMU_CUTENSORMAP_DEFINED
typedef struct CUtensorMap_st {
    alignas(64) unsigned long long opaque[16];
} CUtensorMap;
#endif

namespace emu::ptx {

// The `_` sink operand of PTX (`mbarrier.arrive... _, [addr]`).
inline uint64_t& sink() {
    static uint64_t s;
    return s;
}

// ---- plain register moves a { } block of CUTLASS-style asm uses ----------------
void setp_ne_b32(Site s, bool& p, uint32_t a, uint32_t b);
void setp_eq_b32(Site s, bool& p, uint32_t a, uint32_t b);
void selp_b32(Site s, uint32_t& d, uint32_t a, uint32_t b, bool p);
void selp_u32(Site s, uint32_t& d, uint32_t a, uint32_t b, bool p);
void mov_s32(Site s, uint32_t& d, uint32_t a);
void mov_u32(Site s, uint32_t& d, uint32_t a);
void mov_b32(Site s, uint32_t& d, uint32_t a);
inline void mov_s32(Site s, int32_t& d, uint32_t a) { mov_s32(s, reinterpret_cast<uint32_t&>(d), a); }

// ---- mbarrier (PTX ISA 9.7.13.15, Parallel Synchronization and Communication
// Instructions: mbarrier) ----------------------------------------------------------
// An 8-byte aligned object in shared memory with a phase, a pending arrival
// count (reset to the expected count when a phase completes) and a
// transaction count; a phase completes when both reach zero. `state` is an
// opaque token naming the phase an arrive happened in.
void mbarrier_init_shared__cta_b64(Site s, uint32_t addr, uint32_t count);
void mbarrier_init_shared_b64(Site s, uint32_t addr, uint32_t count);
void mbarrier_inval_shared__cta_b64(Site s, uint32_t addr);
void mbarrier_arrive_shared__cta_b64(Site s, uint64_t& state, uint32_t addr);
void mbarrier_arrive_shared__cta_b64(Site s, uint64_t& state, uint32_t addr, uint32_t count);
void mbarrier_arrive_shared_b64(Site s, uint64_t& state, uint32_t addr);
void mbarrier_arrive_expect_tx_shared__cta_b64(Site s, uint64_t& state, uint32_t addr, uint32_t tx);
void mbarrier_expect_tx_relaxed_cta_shared__cta_b64(Site s, uint32_t addr, uint32_t tx);
void mbarrier_expect_tx_shared__cta_b64(Site s, uint32_t addr, uint32_t tx);
void mbarrier_complete_tx_shared__cta_b64(Site s, uint32_t addr, uint32_t tx);
// try_wait parks the thread until the barrier changes (a thread spinning on
// it lets the others run; a barrier that can never complete is a deadlock,
// reported); test_wait only yields.
void mbarrier_try_wait_parity_shared__cta_b64(Site s, bool& done, uint32_t addr, uint32_t parity);
void mbarrier_try_wait_parity_shared__cta_b64(Site s, bool& done, uint32_t addr, uint32_t parity, uint32_t ns);
void mbarrier_try_wait_shared__cta_b64(Site s, bool& done, uint32_t addr, uint64_t state);
void mbarrier_test_wait_parity_shared__cta_b64(Site s, bool& done, uint32_t addr, uint32_t parity);
void mbarrier_test_wait_shared__cta_b64(Site s, bool& done, uint32_t addr, uint64_t state);

// ---- fences and register reallocation --------------------------------------------
// fence.proxy.async: orders generic-proxy shared writes before async-proxy
// reads (wgmma, TMA). The stand-in's proxies are one memory: accepted.
void fence_proxy_async_shared__cta(Site s);
void fence_proxy_async(Site s);
void fence_mbarrier_init_release_cluster(Site s);
// setmaxnreg.{inc,dec}.sync.aligned.u32 N: N a multiple of 8 in [24, 256].
void setmaxnreg_inc_sync_aligned_u32(Site s, uint32_t n);
void setmaxnreg_dec_sync_aligned_u32(Site s, uint32_t n);
// elect.sync d|p, membermask: the lowest lane of the mask is elected; every
// lane gets its index in d and p = (this lane is it).
void elect_sync(Site s, uint32_t& d, bool& p, uint32_t mask);

// ---- stmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16 (PTX ISA, Data
// Movement: stmatrix): the store twin of ldmatrix (ptx.h): lanes 8q..8q+7 give
// the row addresses of matrix q; register q of lane L holds (row L/4, columns
// 2(L%4), 2(L%4)+1), the lower column in the low half; .trans stores the
// transposed matrix (rows 2(L%4), 2(L%4)+1 of column L/4). ----------------------
void stmatrix_sync_aligned_m8n8_x1_shared_b16(Site s, uint32_t addr, uint32_t r0);
void stmatrix_sync_aligned_m8n8_x2_shared_b16(Site s, uint32_t addr, uint32_t r0, uint32_t r1);
void stmatrix_sync_aligned_m8n8_x4_shared_b16(Site s, uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3);
void stmatrix_sync_aligned_m8n8_x1_trans_shared_b16(Site s, uint32_t addr, uint32_t r0);
void stmatrix_sync_aligned_m8n8_x2_trans_shared_b16(Site s, uint32_t addr, uint32_t r0, uint32_t r1);
void stmatrix_sync_aligned_m8n8_x4_trans_shared_b16(Site s, uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2,
                                                    uint32_t r3);

// ---- wgmma (PTX ISA 9.7.15, Asynchronous Warpgroup Level Matrix Multiply-
// Accumulate) --------------------------------------------------------------------------
// wgmma.fence orders register accesses before a wgmma; the stand-in reads
// registers at issue, so it is accepted. commit_group / wait_group N: the
// thread's uncommitted wgmmas become a group; all but the N newest groups
// complete, and only then do their accumulator registers hold D (they hold
// NaN from the issue on: reading them before the wait is the bug it is on a
// GPU).
void wgmma_fence_sync_aligned(Site s);
void wgmma_commit_group_sync_aligned(Site s);
void wgmma_wait_group_sync_aligned(Site s, uint32_t n);

// What the operand forms below reduce to (src/wgmma.cpp).
struct WgmmaArgs {
    unsigned n;               // N of m64nNk16
    float* d[128];            // the thread's N/2 accumulator registers
    bool a_regs;              // A from registers (a) or a descriptor (desc_a)
    uint32_t a[4];
    uint64_t desc_a, desc_b;
    int scale_d, scale_a, scale_b, tnsp_a, tnsp_b;
};
void wgmma_issue(Site s, WgmmaArgs& w);

namespace detail {
template <class T>
int as_int(T v) {
    static_assert(std::is_integral_v<T>, "wgmma scale and transpose operands are predicates or integers");
    return (int)v;
}
template <unsigned N, class Tup, std::size_t... I>
void wgmma_forms(Site s, Tup t, std::index_sequence<I...>) {
    constexpr std::size_t R = N / 2, rest = sizeof...(I) - R;
    static_assert(((I >= R || std::is_same_v<std::tuple_element_t<I, Tup>, float&>) && ...),
                  "wgmma .f32 accumulators: the first N/2 operands are \"+f\" registers");
    static_assert(rest == 7 || rest == 9,
                  "wgmma m64nNk16: d, a-desc, b-desc, scale-d, imm-scale-a, imm-scale-b, imm-trans-a, imm-trans-b "
                  "or d, {a0..a3}, b-desc, scale-d, imm-scale-a, imm-scale-b, imm-trans-b");
    WgmmaArgs w{};
    w.n = N;
    ((I < R ? (void)(w.d[I] = reinterpret_cast<float*>(&std::get<I>(t))) : (void)0), ...);
    auto at = [&](std::size_t k) -> uint64_t {
        uint64_t v = 0;
        ((I == R + k ? (void)(v = (uint64_t)std::get<I>(t)) : (void)0), ...);
        return v;
    };
    if constexpr (rest == 7) {
        w.a_regs = false;
        w.desc_a = at(0), w.desc_b = at(1);
        w.scale_d = (int)at(2), w.scale_a = (int)(int64_t)at(3), w.scale_b = (int)(int64_t)at(4);
        w.tnsp_a = (int)at(5), w.tnsp_b = (int)at(6);
    } else {
        w.a_regs = true;
        for (int k = 0; k < 4; k++) w.a[k] = (uint32_t)at(k);
        w.desc_b = at(4);
        w.scale_d = (int)at(5), w.scale_a = (int)(int64_t)at(6), w.scale_b = (int)(int64_t)at(7);
        w.tnsp_a = 0, w.tnsp_b = (int)at(8);
    }
    wgmma_issue(s, w);
}
template <unsigned N, class... T>
void wgmma(Site s, T&&... a) {
    static_assert(sizeof...(T) > N / 2, "wgmma: too few operands");
    wgmma_forms<N>(s, std::forward_as_tuple(std::forward<T>(a)...), std::index_sequence_for<T...>{});
}
}  // namespace detail

// wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16, N = 8, 16, ..., 256.
#define EMU_WGMMA(N)                                                                      \
    template <class... T>                                                                 \
    void wgmma_mma_async_sync_aligned_m64n##N##k16_f32_bf16_bf16(Site s, T&&... a) {      \
        detail::wgmma<N>(s, std::forward<T>(a)...);                                       \
    }
EMU_WGMMA(8) EMU_WGMMA(16) EMU_WGMMA(24) EMU_WGMMA(32) EMU_WGMMA(40) EMU_WGMMA(48) EMU_WGMMA(56) EMU_WGMMA(64)
EMU_WGMMA(72) EMU_WGMMA(80) EMU_WGMMA(88) EMU_WGMMA(96) EMU_WGMMA(104) EMU_WGMMA(112) EMU_WGMMA(120)
EMU_WGMMA(128) EMU_WGMMA(136) EMU_WGMMA(144) EMU_WGMMA(152) EMU_WGMMA(160) EMU_WGMMA(168) EMU_WGMMA(176)
EMU_WGMMA(184) EMU_WGMMA(192) EMU_WGMMA(200) EMU_WGMMA(208) EMU_WGMMA(216) EMU_WGMMA(224) EMU_WGMMA(232)
EMU_WGMMA(240) EMU_WGMMA(248) EMU_WGMMA(256)
#undef EMU_WGMMA

// ---- bulk tensor copies (PTX ISA 9.7.9.25, cp.async.bulk.tensor) ------------------
// Load: the box at the coordinates (elements, innermost first) of the map's
// tensor into shared memory at dst, laid out row after row with the map's
// swizzle; elements outside the tensor are zero. Its bytes complete as
// transactions on the mbarrier at mbar, when a thread waits on it.
void tma_load(Site s, int dims, uint32_t dst, uint64_t map, const int32_t* c, uint32_t mbar);
// Store: the box from shared memory at src to the tensor (elements outside it
// skipped), in the thread's bulk async-group.
void tma_store(Site s, int dims, uint64_t map, const int32_t* c, uint32_t src);
// Each with and without the optional `.tile` (the default load mode) and
// `.L2::cache_hint` (a 64-bit policy, ignored).
#define EMU_TMA_LOAD(D, NAME, ...)                                                                     \
    inline void NAME(Site s, uint32_t dst, uint64_t map, EMU_TMA_PARAMS_##D, uint32_t mbar) {          \
        const int32_t c[] = {__VA_ARGS__};                                                             \
        tma_load(s, D, dst, map, c, mbar);                                                             \
    }                                                                                                  \
    inline void NAME##_L2__cache_hint(Site s, uint32_t dst, uint64_t map, EMU_TMA_PARAMS_##D, uint32_t mbar, \
                                      uint64_t) {                                                      \
        const int32_t c[] = {__VA_ARGS__};                                                             \
        tma_load(s, D, dst, map, c, mbar);                                                             \
    }
#define EMU_TMA_STORE(D, NAME, ...)                                                                    \
    inline void NAME(Site s, uint64_t map, EMU_TMA_PARAMS_##D, uint32_t src) {                         \
        const int32_t c[] = {__VA_ARGS__};                                                             \
        tma_store(s, D, map, c, src);                                                                  \
    }
#define EMU_TMA(D, ...)                                                                                               \
    EMU_TMA_LOAD(D, cp_async_bulk_tensor_##D##d_shared__cluster_global_tile_mbarrier__complete_tx__bytes, __VA_ARGS__) \
    EMU_TMA_LOAD(D, cp_async_bulk_tensor_##D##d_shared__cluster_global_mbarrier__complete_tx__bytes, __VA_ARGS__)      \
    EMU_TMA_STORE(D, cp_async_bulk_tensor_##D##d_global_shared__cta_tile_bulk_group, __VA_ARGS__)                      \
    EMU_TMA_STORE(D, cp_async_bulk_tensor_##D##d_global_shared__cta_bulk_group, __VA_ARGS__)
#define EMU_TMA_PARAMS_1 uint32_t c0
#define EMU_TMA_PARAMS_2 uint32_t c0, uint32_t c1
#define EMU_TMA_PARAMS_3 uint32_t c0, uint32_t c1, uint32_t c2
#define EMU_TMA_PARAMS_4 uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3
#define EMU_TMA_PARAMS_5 uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t c4
EMU_TMA(1, (int32_t)c0)
EMU_TMA(2, (int32_t)c0, (int32_t)c1)
EMU_TMA(3, (int32_t)c0, (int32_t)c1, (int32_t)c2)
EMU_TMA(4, (int32_t)c0, (int32_t)c1, (int32_t)c2, (int32_t)c3)
EMU_TMA(5, (int32_t)c0, (int32_t)c1, (int32_t)c2, (int32_t)c3, (int32_t)c4)
#undef EMU_TMA
#undef EMU_TMA_LOAD
#undef EMU_TMA_STORE
// cp.async.bulk.commit_group / wait_group[.read] N: the thread's bulk stores
// (their shared source read and global destination written at the wait).
void cp_async_bulk_commit_group(Site s);
void cp_async_bulk_wait_group(Site s, uint32_t n);
void cp_async_bulk_wait_group_read(Site s, uint32_t n);
// prefetch.tensormap [map]: a hint, accepted (the map is checked).
void prefetch_tensormap(Site s, uint64_t map);

}  // namespace emu::ptx
