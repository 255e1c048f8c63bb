// bf16 as uint16_t bits, shared by the teacher's kernel families (conv,
// pool, eltwise): no cuda_bf16.h, so the conversions are spelled out and
// the Rust twins (teacher/gpu/conv.rs `bf16`, `f32_of`) match them exactly.
#pragma once
#include <stdint.h>

// Exact: a bf16 is the top half of a float32.
__device__ __forceinline__ float bf16_to_f32(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

// Round to nearest, ties to even; a NaN stays a (quiet) NaN.
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
    const uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Two values known not to be NaN (after fmaxf(v, 0)) as bf16 bits, `lo` in
// the low half: f32_to_bf16_not_nan of each, in one instruction
// (cvt.rn.bf16x2.f32, sm_80+, a single F2FP in SASS, where the integer
// rounding costs five per value). Not for a value that may be NaN: the
// hardware's NaN bits are not f32_to_bf16's, which the twins follow.
__device__ __forceinline__ uint32_t bf16x2_not_nan(float lo, float hi) {
    uint32_t d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
}

// f32_to_bf16 for a value known not to be NaN (after fmaxf(v, 0), which
// returns 0 for a NaN v): the same bits, without the NaN test.
__device__ __forceinline__ uint16_t f32_to_bf16_not_nan(float f) {
    const uint32_t u = __float_as_uint(f);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
