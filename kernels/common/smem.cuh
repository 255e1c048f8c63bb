// The 32-bit shared-window address of a shared-memory pointer, the operand
// form of every shared-memory PTX instruction the kernels write inline
// (cp.async, ldmatrix, mbarrier, wgmma descriptors): one definition for
// mma.cuh and hopper.cuh, which a kernel may include together.
#pragma once
#include <stdint.h>

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
