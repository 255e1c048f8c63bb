// What the Hopper emulations (hopper_sync.cpp, wgmma.cpp, tma.cpp) share:
// mbarrier state, the async proxy's view of shared memory, and the swizzle
// of shared addresses that both TMA and wgmma use.
#pragma once
#include "runtime.h"

namespace emu {

Fiber& hopper_me(const char* what, Site s);
void hopper_park(Fiber& f);

// The initialized mbarrier at shared address `addr` (faults otherwise: not
// 8-byte aligned, outside shared memory, never initialized).
MBarrier& mbar_at(Fiber& f, uint32_t addr, Site s, const char* what);
// Transaction bytes completed on the barrier (by a TMA load); may complete its phase.
void mbar_complete_tx(Block& b, uint32_t addr, uint32_t bytes);
// Lets the threads waiting on `addr` look again (something changed there).
void mbar_wake(Block& b, uint32_t addr);
// TMA loads on barrier `addr` still in flight: written and completed now (tma.cpp).
void tma_deliver(Block& b, uint32_t addr);

// An async-proxy read of shared memory (wgmma, a TMA store): bounds, a byte
// no variable covers, or one a TMA load is still writing, fault. The race
// detector does not see these accesses (mbarriers order them, which it does
// not model).
void async_read_check(Fiber& f, uint32_t off, uint32_t n, const char* who, Site s);

// The 16-byte-chunk swizzle of PTX ISA "Shared Memory Matrix Layout" and the
// tensor map's CU_TENSOR_MAP_SWIZZLE_*: on the shared address, bits [4, 4+k)
// XOR bits [7, 7+k), k = 1, 2, 3 for 32B, 64B, 128B (k = 0: none).
inline uint32_t swizzle(uint32_t addr, int k) {
    const uint32_t mask = (1u << k) - 1;
    return addr ^ (((addr >> 7) & mask) << 4);
}

}  // namespace emu
