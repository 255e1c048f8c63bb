// What a kernel sees when kernels/*.cu is compiled as host C++ for the
// stand-in: CUDA's qualifiers, built-in variables and vector types, and the
// device functions the project's kernels use (CUDA Programming Guide, "C++
// Language Extensions"; PTX ISA for the exact conversions). translate.py puts
// `#include <emu/device.h>` first in every translated family and rewrites
// what a header cannot: __global__ entry points, __shared__ declarations and
// inline PTX (each instruction a call into emu::ptx, see ptx.h).
//
// Anything that touches another thread (barriers, warp collectives, shared
// memory allocation, atomics) is an out-of-line call into the runtime, which
// is compiled without the access instrumentation. Pure functions (bit casts,
// rounding, conversions) are inline here.
#pragma once
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "emu/abi.h"

#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
#define __managed__
#define __grid_constant__

#define EMU_HERE ::emu::Site()

// ---- built-in variables ---------------------------------------------------
#define threadIdx (::emu::self()->thread_idx)
#define blockIdx (::emu::self()->block_idx)
#define blockDim (::emu::self()->block_dim)
#define gridDim (::emu::self()->grid_dim)
#define warpSize 32

// ---- vector types (CUDA's sizes and alignments) ---------------------------
#define EMU_VEC2(T, N, A)                                                                            \
    struct __attribute__((aligned(A))) N##2 { T x, y; };                                             \
    inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define EMU_VEC3(T, N)                                                                               \
    struct N##3 { T x, y, z; };                                                                      \
    inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define EMU_VEC4(T, N, A)                                                                            \
    struct __attribute__((aligned(A))) N##4 { T x, y, z, w; };                                       \
    inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
EMU_VEC2(signed char, char, 2)
EMU_VEC4(signed char, char, 4)
EMU_VEC2(unsigned char, uchar, 2)
EMU_VEC4(unsigned char, uchar, 4)
EMU_VEC2(short, short, 4)
EMU_VEC4(short, short, 8)
EMU_VEC2(unsigned short, ushort, 4)
EMU_VEC4(unsigned short, ushort, 8)
EMU_VEC2(int, int, 8)
EMU_VEC3(int, int)
EMU_VEC4(int, int, 16)
EMU_VEC2(unsigned int, uint, 8)
EMU_VEC4(unsigned int, uint, 16)
EMU_VEC2(float, float, 8)
EMU_VEC3(float, float)
EMU_VEC4(float, float, 16)
EMU_VEC2(long long, longlong, 16)
EMU_VEC2(unsigned long long, ulonglong, 16)
EMU_VEC2(double, double, 16)
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }
#undef EMU_VEC2
#undef EMU_VEC3
#undef EMU_VEC4

namespace emu {

// ---- runtime entry points (src/sched.cpp, src/memory.cpp) -----------------
void syncthreads(Site s);
int syncthreads_reduce(int mode, int pred, Site s);  // 0 count, 1 and, 2 or
void syncwarp(unsigned mask, Site s);
uint32_t shfl(int mode, unsigned mask, uint32_t v, int lane, int width, Site s);  // 0 idx 1 up 2 down 3 xor
unsigned vote(int mode, unsigned mask, int pred, Site s);  // 0 ballot 1 any 2 all
unsigned activemask();
void yield(Site s);
// op: see AtomicOp; returns the old value (CAS: compares with `cmp`).
uint64_t atomic(int op, void* addr, int size, uint64_t v, uint64_t cmp, Site s);
void* shared_alloc(const void* key, std::size_t bytes, std::size_t align, const char* name, Site s);
void* dynamic_shared(std::size_t align, Site s);
uint32_t cvta_to_shared(const void* p, Site s);
void* cvta_from_shared(uint32_t a, Site s);
[[noreturn]] void trap(const char* what, Site s);
long long clock64();

enum AtomicOp { A_ADD, A_SUB, A_MIN, A_MAX, A_SMIN, A_SMAX, A_AND, A_OR, A_XOR, A_EXCH, A_CAS, A_FADD, A_INC, A_DEC };

template <class T>
inline uint64_t to_bits(T v) {
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T>
inline T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

// A __shared__ variable: one per block, the same storage for every thread
// of it (translate.py: `T (&x)[N] = emu::shared_var<T[N]>([]{}, align, "x", site)`;
// the lambda's type makes `key` unique per declaration and instantiation).
template <class T, class Key>
inline T& shared_var(Key, std::size_t align, const char* name, Site s) {
    static const char key = 0;
    const std::size_t a = align > alignof(T) ? align : alignof(T);
    return *static_cast<T*>(shared_alloc(&key, sizeof(T), a, name, s));
}

// ---- kernel entry points (translate.py registers each one) ----------------
template <class T>
using param_t = std::remove_cv_t<std::remove_reference_t<T>>;

template <class Sig>
struct Params;

// Parameters laid out as the driver does: each at its alignment, in order.
template <class... A>
struct Params<void (*)(A...)> {
    static constexpr std::size_t count = sizeof...(A);
    static constexpr std::size_t sizes[count + 1] = {sizeof(param_t<A>)..., 0};
    static constexpr std::size_t aligns[count + 1] = {alignof(param_t<A>)..., 1};
    static constexpr std::size_t offset(std::size_t i) {
        std::size_t at = 0;
        for (std::size_t j = 0;; j++) {
            at = (at + aligns[j] - 1) / aligns[j] * aligns[j];
            if (j == i) return at;
            at += sizes[j];
        }
    }
    static constexpr std::size_t bytes() { return count == 0 ? 0 : offset(count - 1) + sizes[count - 1]; }
    static_assert((std::is_trivially_copyable_v<param_t<A>> && ...), "kernel parameters must be trivially copyable");

    template <std::size_t... I>
    static void pack_impl(void** args, unsigned char* out, std::index_sequence<I...>) {
        ((std::memcpy(out + offset(I), args[I], sizes[I])), ...);
    }
    static void pack(void** args, unsigned char* out) { pack_impl(args, out, std::index_sequence_for<A...>{}); }

    template <class T>
    static T load(const unsigned char* p) {
        T v;
        std::memcpy(&v, p, sizeof(T));
        return v;
    }
    template <auto F, std::size_t... I>
    static void call_impl(const unsigned char* p, std::index_sequence<I...>) {
        F(load<param_t<A>>(p + offset(I))...);
    }
    template <auto F>
    static void call(const unsigned char* p) {
        call_impl<F>(p, std::index_sequence_for<A...>{});
    }
};

struct KernelDesc {
    const char* family;
    const char* name;
    void (*pack)(void** args, unsigned char* out);
    void (*run)(const unsigned char* params);
    std::size_t param_bytes;
    int max_threads;  // __launch_bounds__, 0 if none
    int min_blocks;
    Site site;
};
void register_kernel(const KernelDesc& d);

template <auto F>
void run_kernel(const unsigned char* p) {
    Params<decltype(F)>::template call<F>(p);
}

template <auto F>
struct Registrar {
    Registrar(const char* family, const char* name, int max_threads, int min_blocks, Site s) {
        using P = Params<decltype(F)>;
        static_assert(P::bytes() <= kParamBytes, "kernel parameters over 4 KB");
        register_kernel(KernelDesc{family, name, &P::pack, &run_kernel<F>, P::bytes(), max_threads, min_blocks, s});
    }
};

}  // namespace emu

// ---- synchronization and warp functions -----------------------------------
inline void __syncthreads(emu::Site s = EMU_HERE) { emu::syncthreads(s); }
inline int __syncthreads_count(int p, emu::Site s = EMU_HERE) { return emu::syncthreads_reduce(0, p, s); }
inline int __syncthreads_and(int p, emu::Site s = EMU_HERE) { return emu::syncthreads_reduce(1, p, s); }
inline int __syncthreads_or(int p, emu::Site s = EMU_HERE) { return emu::syncthreads_reduce(2, p, s); }
inline void __syncwarp(unsigned mask = 0xffffffffu, emu::Site s = EMU_HERE) { emu::syncwarp(mask, s); }
inline unsigned __activemask() { return emu::activemask(); }
inline unsigned __ballot_sync(unsigned m, int p, emu::Site s = EMU_HERE) { return emu::vote(0, m, p, s); }
inline int __any_sync(unsigned m, int p, emu::Site s = EMU_HERE) { return (int)emu::vote(1, m, p, s); }
inline int __all_sync(unsigned m, int p, emu::Site s = EMU_HERE) { return (int)emu::vote(2, m, p, s); }
inline void __nanosleep(unsigned, emu::Site s = EMU_HERE) { emu::yield(s); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline long long clock64() { return emu::clock64(); }
inline long clock() { return (long)emu::clock64(); }
[[noreturn]] inline void __trap(emu::Site s = EMU_HERE) { emu::trap("__trap()", s); }
[[noreturn]] inline void __brkpt(emu::Site s = EMU_HERE) { emu::trap("__brkpt()", s); }

#define EMU_SHFL(T)                                                                                   \
    inline T __shfl_sync(unsigned m, T v, int l, int w = 32, emu::Site s = EMU_HERE) {                \
        return emu::from_bits<T>(emu::shfl(0, m, (uint32_t)emu::to_bits(v), l, w, s));                \
    }                                                                                                 \
    inline T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32, emu::Site s = EMU_HERE) {        \
        return emu::from_bits<T>(emu::shfl(1, m, (uint32_t)emu::to_bits(v), (int)d, w, s));           \
    }                                                                                                 \
    inline T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32, emu::Site s = EMU_HERE) {      \
        return emu::from_bits<T>(emu::shfl(2, m, (uint32_t)emu::to_bits(v), (int)d, w, s));           \
    }                                                                                                 \
    inline T __shfl_xor_sync(unsigned m, T v, int l, int w = 32, emu::Site s = EMU_HERE) {            \
        return emu::from_bits<T>(emu::shfl(3, m, (uint32_t)emu::to_bits(v), l, w, s));                \
    }
EMU_SHFL(int)
EMU_SHFL(unsigned int)
EMU_SHFL(float)
#undef EMU_SHFL
// 64-bit shuffles move two halves, as CUDA's headers do.
#define EMU_SHFL64(T, NAME, MODE, LT)                                                                 \
    inline T NAME(unsigned m, T v, LT l, int w = 32, emu::Site s = EMU_HERE) {                        \
        const uint64_t b = emu::to_bits(v);                                                           \
        const uint64_t lo = emu::shfl(MODE, m, (uint32_t)b, (int)l, w, s);                            \
        const uint64_t hi = emu::shfl(MODE, m, (uint32_t)(b >> 32), (int)l, w, s);                    \
        return emu::from_bits<T>(lo | hi << 32);                                                      \
    }
EMU_SHFL64(long long, __shfl_sync, 0, int)
EMU_SHFL64(unsigned long long, __shfl_sync, 0, int)
EMU_SHFL64(double, __shfl_sync, 0, int)
EMU_SHFL64(long long, __shfl_xor_sync, 3, int)
EMU_SHFL64(unsigned long long, __shfl_xor_sync, 3, int)
EMU_SHFL64(double, __shfl_xor_sync, 3, int)
EMU_SHFL64(long long, __shfl_down_sync, 2, unsigned)
EMU_SHFL64(unsigned long long, __shfl_down_sync, 2, unsigned)
EMU_SHFL64(double, __shfl_down_sync, 2, unsigned)
EMU_SHFL64(long long, __shfl_up_sync, 1, unsigned)
EMU_SHFL64(unsigned long long, __shfl_up_sync, 1, unsigned)
EMU_SHFL64(double, __shfl_up_sync, 1, unsigned)
#undef EMU_SHFL64

// ---- atomics (shared or global memory; the runtime checks the address) -----
#define EMU_ATOMIC(NAME, OP, T)                                                                        \
    inline T NAME(T* a, T v, emu::Site s = EMU_HERE) {                                                \
        return emu::from_bits<T>(emu::atomic(emu::OP, a, sizeof(T), emu::to_bits(v), 0, s));          \
    }
#define EMU_ATOMIC_INT(NAME, OP_U, OP_S)                                                               \
    EMU_ATOMIC(NAME, OP_S, int)                                                                        \
    EMU_ATOMIC(NAME, OP_U, unsigned int)                                                               \
    EMU_ATOMIC(NAME, OP_U, unsigned long long)
EMU_ATOMIC_INT(atomicAdd, A_ADD, A_ADD)
EMU_ATOMIC_INT(atomicSub, A_SUB, A_SUB)
EMU_ATOMIC_INT(atomicExch, A_EXCH, A_EXCH)
EMU_ATOMIC_INT(atomicMin, A_MIN, A_SMIN)
EMU_ATOMIC_INT(atomicMax, A_MAX, A_SMAX)
EMU_ATOMIC_INT(atomicAnd, A_AND, A_AND)
EMU_ATOMIC_INT(atomicOr, A_OR, A_OR)
EMU_ATOMIC_INT(atomicXor, A_XOR, A_XOR)
EMU_ATOMIC(atomicMin, A_SMIN, long long)
EMU_ATOMIC(atomicMax, A_SMAX, long long)
EMU_ATOMIC(atomicAdd, A_FADD, float)
EMU_ATOMIC(atomicAdd, A_FADD, double)
EMU_ATOMIC(atomicExch, A_EXCH, float)
EMU_ATOMIC(atomicInc, A_INC, unsigned int)
EMU_ATOMIC(atomicDec, A_DEC, unsigned int)
#undef EMU_ATOMIC_INT
#undef EMU_ATOMIC
#define EMU_CAS(T)                                                                                      \
    inline T atomicCAS(T* a, T c, T v, emu::Site s = EMU_HERE) {                                       \
        return emu::from_bits<T>(emu::atomic(emu::A_CAS, a, sizeof(T), emu::to_bits(v), emu::to_bits(c), s)); \
    }
EMU_CAS(int)
EMU_CAS(unsigned int)
EMU_CAS(unsigned long long)
EMU_CAS(unsigned short)
#undef EMU_CAS

// ---- address spaces ----------------------------------------------------------
inline size_t __cvta_generic_to_shared(const void* p, emu::Site s = EMU_HERE) { return emu::cvta_to_shared(p, s); }
inline void* __cvta_shared_to_generic(size_t a, emu::Site s = EMU_HERE) { return emu::cvta_from_shared((uint32_t)a, s); }
inline size_t __cvta_generic_to_global(const void* p) { return (size_t)p; }

// Cache-hinted loads and stores: plain accesses (the hint changes no value).
#define EMU_LD(NAME)                                                                                  \
    template <class T>                                                                                \
    inline T NAME(const T* p) { return *p; }
EMU_LD(__ldg)
EMU_LD(__ldcs)
EMU_LD(__ldca)
EMU_LD(__ldcg)
EMU_LD(__ldlu)
EMU_LD(__ldcv)
#undef EMU_LD
#define EMU_ST(NAME)                                                                                  \
    template <class T>                                                                                \
    inline void NAME(T* p, T v) { *p = v; }
EMU_ST(__stcs)
EMU_ST(__stcg)
EMU_ST(__stwb)
EMU_ST(__stwt)
#undef EMU_ST

// ---- bit casts -----------------------------------------------------------------
inline unsigned int __float_as_uint(float f) { return emu::from_bits<unsigned int>(emu::to_bits(f)); }
inline int __float_as_int(float f) { return emu::from_bits<int>(emu::to_bits(f)); }
inline float __uint_as_float(unsigned int u) { return emu::from_bits<float>(u); }
inline float __int_as_float(int i) { return emu::from_bits<float>((uint32_t)i); }
inline long long __double_as_longlong(double d) { return (long long)emu::to_bits(d); }
inline double __longlong_as_double(long long l) { return emu::from_bits<double>((uint64_t)l); }
inline double __hiloint2double(int hi, int lo) {
    return emu::from_bits<double>((uint64_t)(uint32_t)hi << 32 | (uint32_t)lo);
}
inline int __double2hiint(double d) { return (int)(emu::to_bits(d) >> 32); }
inline int __double2loint(double d) { return (int)(uint32_t)emu::to_bits(d); }

// ---- arithmetic with the rounding named (round to nearest even is the host
// default; translate.py compiles with -ffp-contract=off so nothing fuses) ----
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fdividef(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN -> 0
// The fast intrinsics: the accurate host function (a GPU's approximation differs).
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }

// ---- conversions (PTX cvt: float to integer saturates, NaN gives 0) ---------
namespace emu {
template <class I, class F>
inline I cvt_sat(F r) {
    if (r != r) return 0;
    if (r <= (F)std::numeric_limits<I>::min()) return std::numeric_limits<I>::min();
    if (r >= (F)std::numeric_limits<I>::max()) return std::numeric_limits<I>::max();
    return (I)r;
}
}  // namespace emu
#define EMU_CVT(T, SUF)                                                                                  \
    inline T __float2##SUF##_rn(float x) { return emu::cvt_sat<T>(std::nearbyint(x)); }                 \
    inline T __float2##SUF##_rz(float x) { return emu::cvt_sat<T>(std::trunc(x)); }                     \
    inline T __float2##SUF##_rd(float x) { return emu::cvt_sat<T>(std::floor(x)); }                     \
    inline T __float2##SUF##_ru(float x) { return emu::cvt_sat<T>(std::ceil(x)); }                      \
    inline T __double2##SUF##_rn(double x) { return emu::cvt_sat<T>(std::nearbyint(x)); }               \
    inline T __double2##SUF##_rz(double x) { return emu::cvt_sat<T>(std::trunc(x)); }                   \
    inline T __double2##SUF##_rd(double x) { return emu::cvt_sat<T>(std::floor(x)); }                   \
    inline T __double2##SUF##_ru(double x) { return emu::cvt_sat<T>(std::ceil(x)); }
EMU_CVT(int, int)
EMU_CVT(unsigned int, uint)
EMU_CVT(long long, ll)
EMU_CVT(unsigned long long, ull)
#undef EMU_CVT
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned int x) { return (float)x; }
inline float __ll2float_rn(long long x) { return (float)x; }
inline float __ull2float_rn(unsigned long long x) { return (float)x; }
inline double __int2double_rn(int x) { return (double)x; }
inline double __uint2double_rn(unsigned int x) { return (double)x; }
inline double __ll2double_rn(long long x) { return (double)x; }
inline double __ull2double_rn(unsigned long long x) { return (double)x; }
inline float __double2float_rn(double x) { return (float)x; }

// ---- integer intrinsics --------------------------------------------------------
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
    x = (x >> 16) | (x << 16);
    x = ((x & 0xff00ff00u) >> 8) | ((x & 0x00ff00ffu) << 8);
    x = ((x & 0xf0f0f0f0u) >> 4) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x & 0xccccccccu) >> 2) | ((x & 0x33333333u) << 2);
    return ((x & 0xaaaaaaaau) >> 1) | ((x & 0x55555555u) << 1);
}
inline unsigned long long __brevll(unsigned long long x) {
    return (unsigned long long)__brev((unsigned)x) << 32 | __brev((unsigned)(x >> 32));
}
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mul24(int a, int b) { return (int)((int64_t)(a << 8 >> 8) * (b << 8 >> 8)); }
inline unsigned int __umul24(unsigned int a, unsigned int b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
    const uint64_t v = (uint64_t)y << 32 | x;
    unsigned int r = 0;
    for (int i = 0; i < 4; i++) r |= (unsigned)((v >> (((s >> (4 * i)) & 7) * 8)) & 0xff) << (8 * i);
    return r;
}
inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int s) {
    return (unsigned)((((uint64_t)hi << 32 | lo) << (s & 31)) >> 32);
}
inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int s) {
    return (unsigned)(((uint64_t)hi << 32 | lo) >> (s & 31));
}

// ---- min / max: CUDA's overloads for every arithmetic pair (a signed and an
// unsigned operand compare as unsigned, as the usual conversions do) ---------
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>)
        return std::fmin((C)a, (C)b);
    else
        return (C)a < (C)b ? (C)a : (C)b;
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>)
        return std::fmax((C)a, (C)b);
    else
        return (C)a > (C)b ? (C)a : (C)b;
}
inline unsigned int umin(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int umax(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }

#include "emu/ptx.h"
