// The PTX instructions the stand-in emulates, one function per mnemonic
// (translate.py turns `cp.async.commit_group;` into
// `emu::ptx::cp_async_commit_group(site)`), so an instruction without an
// emulation fails the build by its name. Each follows the PTX ISA section
// named beside it; src/ptx.cpp implements them, tests/selftest.cpp checks
// them on hand-computed values.
//
// Operands arrive through the accessors below, which enforce the inline-asm
// constraint letters ("r" .u32, "l" .u64, "h" .u16, "f" .f32, "d" .f64;
// "=" and "+" operands by reference), so an operand of the wrong type or an
// input used as a destination does not compile either.
#pragma once
#include <cstdint>
#include <type_traits>

#include "emu/abi.h"

namespace emu::ptx {

template <class T>
inline uint32_t in_r(T v) {
    static_assert(std::is_integral_v<T> && sizeof(T) <= 4, "asm \"r\" operand must be an integer of at most 32 bits");
    return (uint32_t)v;
}
template <class T>
inline uint16_t in_h(T v) {
    static_assert(std::is_integral_v<T> && sizeof(T) <= 2, "asm \"h\" operand must be an integer of at most 16 bits");
    return (uint16_t)v;
}
template <class T>
inline uint64_t in_l(T v) {
    if constexpr (std::is_pointer_v<T>) {
        return (uint64_t)(uintptr_t)v;
    } else {
        static_assert(std::is_integral_v<T> && sizeof(T) <= 8, "asm \"l\" operand must be a pointer or a 64-bit integer");
        return (uint64_t)v;
    }
}
template <class T>
inline float in_f(T v) {
    static_assert(std::is_same_v<T, float>, "asm \"f\" operand must be a float");
    return v;
}
template <class T>
inline double in_d(T v) {
    static_assert(std::is_same_v<T, double>, "asm \"d\" operand must be a double");
    return v;
}
template <class T>
inline uint32_t& out_r(T& v) {
    static_assert(std::is_integral_v<T> && sizeof(T) == 4, "asm \"=r\" operand must be a 32-bit integer lvalue");
    return reinterpret_cast<uint32_t&>(v);
}
template <class T>
inline uint16_t& out_h(T& v) {
    static_assert(std::is_integral_v<T> && sizeof(T) == 2, "asm \"=h\" operand must be a 16-bit integer lvalue");
    return reinterpret_cast<uint16_t&>(v);
}
template <class T>
inline uint64_t& out_l(T& v) {
    static_assert(std::is_integral_v<T> && sizeof(T) == 8, "asm \"=l\" operand must be a 64-bit integer lvalue");
    return reinterpret_cast<uint64_t&>(v);
}
template <class T>
inline float& out_f(T& v) {
    static_assert(std::is_same_v<T, float>, "asm \"=f\" operand must be a float lvalue");
    return v;
}
template <class T>
inline double& out_d(T& v) {
    static_assert(std::is_same_v<T, double>, "asm \"=d\" operand must be a double lvalue");
    return v;
}

// PTX ISA, Data Movement and Conversion Instructions, cp.async: copy
// cp_size bytes from global `src` to the shared-window address `dst`,
// asynchronously; only `src_size` bytes are read and the rest are zero-
// filled. .cg takes cp_size 16 only, .ca 4, 8 or 16; both addresses are
// aligned to cp_size. The destination is undefined until a wait completes it.
void cp_async_cg_shared_global(Site s, uint32_t dst, uint64_t src, uint32_t cp_size, uint32_t src_size);
void cp_async_cg_shared_global(Site s, uint32_t dst, uint64_t src, uint32_t cp_size);
void cp_async_ca_shared_global(Site s, uint32_t dst, uint64_t src, uint32_t cp_size, uint32_t src_size);
void cp_async_ca_shared_global(Site s, uint32_t dst, uint64_t src, uint32_t cp_size);
// cp.async.commit_group: the thread's uncommitted copies become one group.
void cp_async_commit_group(Site s);
// cp.async.wait_group N: all but the N most recent committed groups complete.
void cp_async_wait_group(Site s, uint32_t n);
// cp.async.wait_all: commit_group then wait_group 0.
void cp_async_wait_all(Site s);

// PTX ISA 9.7.14.5.8, Matrix Fragments for mma.m16n8k16 with floating
// point type (.bf16 operands, .f32 accumulators): D = A x B + C over the warp, A 16x16 row-major in four
// .b32 registers of two bf16 per lane, B 16x8 column-major in two, C and D
// 16x8 in four .f32, each register at the row and column the ISA's
// fragment figures give (see src/ptx.cpp). Every lane of the warp must
// execute the same instruction (.aligned).
void mma_sync_aligned_m16n8k16_row_col_f32_bf16_bf16_f32(Site s, float& d0, float& d1, float& d2, float& d3,
                                                         uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                         uint32_t b0, uint32_t b1, float c0, float c1, float c2,
                                                         float c3);

// PTX ISA, Data Movement and Conversion Instructions, ldmatrix:
// ldmatrix.sync.aligned.m8n8{.x1,.x2,.x4}{.trans}.shared.b16 loads one, two
// or four 8x8 matrices of 16-bit elements from shared memory, collectively
// over the warp. Lanes 8q..8q+7 give the shared-window addresses of rows
// 0..7 of matrix q (each row 16 contiguous bytes, 16-byte aligned; the
// addresses of lanes past 8 x count are ignored). Destination register q of
// lane L holds matrix q's elements (row L/4, columns 2(L%4) and 2(L%4)+1),
// the lower column in the low half; with .trans, (rows 2(L%4) and
// 2(L%4)+1, column L/4): the transposed matrix's fragment.
void ldmatrix_sync_aligned_m8n8_x1_shared_b16(Site s, uint32_t& d0, uint32_t addr);
void ldmatrix_sync_aligned_m8n8_x2_shared_b16(Site s, uint32_t& d0, uint32_t& d1, uint32_t addr);
void ldmatrix_sync_aligned_m8n8_x4_shared_b16(Site s, uint32_t& d0, uint32_t& d1, uint32_t& d2, uint32_t& d3,
                                              uint32_t addr);
void ldmatrix_sync_aligned_m8n8_x1_trans_shared_b16(Site s, uint32_t& d0, uint32_t addr);
void ldmatrix_sync_aligned_m8n8_x2_trans_shared_b16(Site s, uint32_t& d0, uint32_t& d1, uint32_t addr);
void ldmatrix_sync_aligned_m8n8_x4_trans_shared_b16(Site s, uint32_t& d0, uint32_t& d1, uint32_t& d2, uint32_t& d3,
                                                    uint32_t addr);

// PTX ISA, Data Movement and Conversion Instructions, cvt:
// cvt.rn.bf16x2.f32 d, a, b converts two .f32 to .bf16, rounding to nearest
// even, and packs them into the .b32 d: a's conversion in the upper half,
// b's in the lower. Values past the largest bf16 round to infinity (no
// .satfinite); subnormals convert (no .ftz). dr's kernels use it only on
// values that cannot be NaN (kernels/common/bf16.cuh), because a NaN's
// bits are the hardware's and the CPU twins do not model them: a NaN input
// fails the launch, naming the call.
void cvt_rn_bf16x2_f32(Site s, uint32_t& d, float a, float b);
// PTX ISA, Floating-Point Instructions, ex2: ex2.approx.ftz.f32 d, a is
// 2^a to within 2 ulp (the hardware's MUFU.EX2; the stand-in gives the
// correctly rounded std::exp2, one of the values the hardware may give),
// subnormal inputs and results flushed to zero of the same sign;
// ex2(-inf) = +0, ex2(+inf) = +inf, NaN gives NaN.
void ex2_approx_ftz_f32(Site s, float& d, float a);
// PTX ISA, Data Movement and Conversion Instructions, mov: mov.b64 d, a
// copies a's 64 bits (dr's kernels use it to hide a value from ptxas).
void mov_b64(Site s, uint64_t& d, uint64_t a);

}  // namespace emu::ptx
#include "emu/ptx_hopper.h"
