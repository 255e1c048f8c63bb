// The tensor memory accelerator: cuTensorMapEncodeTiled (CUDA Driver API,
// Tensor Map Object Management) and the bulk tensor copies of
// emu/ptx_hopper.h (PTX ISA 9.7.9.25, cp.async.bulk.tensor, tile mode).
//
// The map is the stand-in's own encoding inside the opaque 128 bytes. A load
// is checked and its shared destination poisoned and marked pending at issue
// (a read before its mbarrier phase completes is reported, as a read of a
// pending cp.async is); the global source is read and the bytes completed on
// the mbarrier when a thread next waits on that barrier, the latest a GPU
// may do it. A store is checked at issue and done at its bulk wait_group.
// Box layout in shared memory: element (j0..j4) at byte
// ((((j4 n3 + j3) n2 + j2) n1 + j1) n0 + j0) x element size, nK the box's
// element count along dimension K (boxDim / elementStride, rounded up), at
// the map's swizzle of the absolute shared address (hopper.h swizzle()).
#include <cstring>

#include "driver.h"
#include "hopper.h"

namespace emu {

namespace {

constexpr uint32_t kMagic = 0x544d4150;  // "TMAP"

struct TensorMap {
    uint32_t magic;
    uint8_t dtype, rank, swizzle, esize;
    uint64_t addr;
    uint64_t dim[5];
    uint64_t stride[5];  // bytes; stride[0] is the element size
    uint16_t box[5];
    uint8_t estride[5];
    uint8_t interleave, l2, oob;
};
static_assert(sizeof(TensorMap) <= sizeof(CUtensorMap), "the map fits the opaque CUtensorMap");

const uint8_t kElementSize[13] = {1, 2, 4, 4, 8, 8, 2, 4, 8, 2, 4, 4, 4};

TensorMap read_map(uint64_t p, Site s, const char* what) {
    TensorMap m;
    if (!p || p % 64)
        fault(716, strprintf("%s %s: tensor map address 0x%llx is not 64-byte aligned", what, describe_site(s).c_str(),
                             (unsigned long long)p));
    std::memcpy(&m, reinterpret_cast<const void*>(p), sizeof m);
    if (m.magic != kMagic)
        fault(719, strprintf("%s %s: 0x%llx is not a tensor map made by cuTensorMapEncodeTiled", what,
                             describe_site(s).c_str(), (unsigned long long)p));
    return m;
}

// Elements of the box along each dimension.
void extent(const TensorMap& m, unsigned n[5]) {
    for (int i = 0; i < 5; i++) n[i] = i < m.rank ? (m.box[i] + m.estride[i] - 1) / m.estride[i] : 1;
}

uint32_t box_bytes(const TensorMap& m) {
    unsigned n[5];
    extent(m, n);
    return n[0] * n[1] * n[2] * n[3] * n[4] * m.esize;
}

int swizzle_bits(const TensorMap& m) { return m.swizzle; }  // NONE 0, 32B 1, 64B 2, 128B 3

// Calls `fn(smem address, global address or 0 when outside the tensor)`
// for every element of the box at coordinates c.
template <class F>
void each_element(const TensorMap& m, const int32_t* c, uint32_t smem, F fn) {
    unsigned n[5];
    extent(m, n);
    uint32_t lin = 0;
    for (unsigned j4 = 0; j4 < n[4]; j4++)
        for (unsigned j3 = 0; j3 < n[3]; j3++)
            for (unsigned j2 = 0; j2 < n[2]; j2++)
                for (unsigned j1 = 0; j1 < n[1]; j1++)
                    for (unsigned j0 = 0; j0 < n[0]; j0++, lin += m.esize) {
                        const unsigned j[5] = {j0, j1, j2, j3, j4};
                        uint64_t g = m.addr;
                        for (int i = 0; i < m.rank && g; i++) {
                            const int64_t x = (int64_t)c[i] + (int64_t)j[i] * m.estride[i];
                            g = (x < 0 || (uint64_t)x >= m.dim[i]) ? 0 : g + (uint64_t)x * m.stride[i];
                        }
                        fn(swizzle(smem + lin, swizzle_bits(m)), g);
                    }
}

void check_common(Fiber& f, const TensorMap& m, int dims, uint32_t smem, Site s, const char* what) {
    if (dims != m.rank)
        fault(719, strprintf("%s %s: a %dd copy with a tensor map of rank %d", what, describe_site(s).c_str(), dims, m.rank));
    if (smem % 128)
        fault(716, strprintf("%s %s: shared address 0x%x is not 128-byte aligned", what, describe_site(s).c_str(), smem));
    if (smem + box_bytes(m) > kArenaBytes)
        fault(700, strprintf("%s %s: the %u-byte box at shared 0x%x is past shared memory", what,
                             describe_site(s).c_str(), box_bytes(m), smem));
}

void mark(Block& b, uint32_t at, uint32_t n, unsigned char v) { std::memset(b.valid + at, v, n); }

void store_now(Fiber& f, const BulkCopy& c) {
    TensorMap m;
    std::memcpy(&m, c.map, sizeof m);
    Block& b = *f.block;
    each_element(m, c.c, c.smem, [&](uint32_t sa, uint64_t g) {
        async_read_check(f, sa, m.esize, "TMA store source", c.site);
        if (g) std::memcpy(reinterpret_cast<void*>(g), b.arena + sa, m.esize);
    });
}

}  // namespace

void async_read_check(Fiber& f, uint32_t off, uint32_t n, const char* who, Site s) {
    Block& b = *f.block;
    if (off + n > kArenaBytes) fault(700, strprintf("%s %s reads past the block's shared memory", who, describe_site(s).c_str()));
    for (uint32_t i = off; i < off + n; i++) {
        if (!(b.valid[i] & kValid))
            fault(700, strprintf("illegal shared read by %s %s at 0x%x: no __shared__ variable or dynamic shared memory "
                                 "is there",
                                 who, describe_site(s).c_str(), i));
        if (b.valid[i] & kPending) {
            const std::string tma = tma_load_covering(b, i);
            fault(719, strprintf("%s %s reads shared 0x%x, which %s is still writing: wait on its mbarrier (or "
                                 "cp.async.wait_group) first",
                                 who, describe_site(s).c_str(), i, tma.empty() ? "a cp.async" : tma.c_str()));
        }
    }
}

std::string tma_load_covering(const Block& b, uint32_t off) {
    for (const BulkCopy& c : b.bulk_loads)
        if (off >= c.smem && off < c.smem + c.bytes)
            return strprintf("thread %u's TMA load (cp.async.bulk.tensor) %s", c.tid, describe_site(c.site).c_str());
    return "";
}

void tma_deliver(Block& b, uint32_t mbar) {
    for (size_t i = 0; i < b.bulk_loads.size();) {
        if (b.bulk_loads[i].mbar != mbar) {
            i++;
            continue;
        }
        const BulkCopy c = b.bulk_loads[i];
        b.bulk_loads.erase(b.bulk_loads.begin() + (long)i);
        TensorMap m;
        std::memcpy(&m, c.map, sizeof m);
        each_element(m, c.c, c.smem, [&](uint32_t sa, uint64_t g) {
            if (g)
                std::memcpy(b.arena + sa, reinterpret_cast<const void*>(g), m.esize);
            else
                std::memset(b.arena + sa, m.oob ? 0xff : 0, m.esize);  // NaN request: all-ones bits
            mark(b, sa, m.esize, kValid);
        });
        mbar_complete_tx(b, mbar, box_bytes(m));
    }
}

namespace ptx {

void tma_load(Site s, int dims, uint32_t dst, uint64_t map, const int32_t* c, uint32_t mbar) {
    const char* what = "cp.async.bulk.tensor (load)";
    Fiber& f = hopper_me(what, s);
    Block& b = *f.block;
    const TensorMap m = read_map(map, s, what);
    check_common(f, m, dims, dst, s, what);
    mbar_at(f, mbar, s, what);
    BulkCopy bc{};
    std::memcpy(bc.map, &m, sizeof m);
    bc.dims = dims;
    for (int i = 0; i < dims; i++) bc.c[i] = c[i];
    bc.smem = dst;
    bc.mbar = mbar;
    bc.bytes = box_bytes(m);
    bc.tid = f.tid;
    bc.site = s;
    each_element(m, c, dst, [&](uint32_t sa, uint64_t g) {
        for (uint32_t i = sa; i < sa + m.esize; i++)
            if (!(b.valid[i] & kValid) || (b.valid[i] & kPending))
                fault(b.valid[i] & kValid ? 719 : 700,
                      strprintf("%s %s writes shared 0x%x, which is %s", what, describe_site(s).c_str(), i,
                                b.valid[i] & kValid ? "still being written by an earlier copy"
                                                    : "in no __shared__ variable or dynamic shared memory"));
        if (g) {
            Site site = s;
            device_access(&f, g, m.esize, 0, nullptr, &site);
        }
    });
    each_element(m, c, dst, [&](uint32_t sa, uint64_t) {
        std::memset(b.arena + sa, config().poison, m.esize);  // undefined until the copy completes
        mark(b, sa, m.esize, kValid | kPending);
    });
    b.bulk_loads.push_back(bc);
    mbar_wake(b, mbar);  // a thread waiting there takes the bytes on its next look
}

void tma_store(Site s, int dims, uint64_t map, const int32_t* c, uint32_t src) {
    const char* what = "cp.async.bulk.tensor (store)";
    Fiber& f = hopper_me(what, s);
    const TensorMap m = read_map(map, s, what);
    check_common(f, m, dims, src, s, what);
    BulkCopy bc{};
    std::memcpy(bc.map, &m, sizeof m);
    bc.dims = dims;
    for (int i = 0; i < dims; i++) bc.c[i] = c[i];
    bc.smem = src;
    bc.tid = f.tid;
    bc.site = s;
    each_element(m, c, src, [&](uint32_t, uint64_t g) {
        if (g) {
            Site site = s;
            device_access(&f, g, m.esize, 1, nullptr, &site);
        }
    });
    f.bulk_uncommitted.push_back(bc);
}

void cp_async_bulk_commit_group(Site s) {
    Fiber& f = hopper_me("cp.async.bulk.commit_group", s);
    f.bulk_groups.push_back(std::move(f.bulk_uncommitted));
    f.bulk_uncommitted.clear();
}

void cp_async_bulk_wait_group(Site s, uint32_t n) {
    Fiber& f = hopper_me("cp.async.bulk.wait_group", s);
    while (f.bulk_groups.size() > n) {
        for (const BulkCopy& c : f.bulk_groups.front()) store_now(f, c);
        f.bulk_groups.pop_front();
    }
}

// .read: the sources are read; the stand-in writes the destination then too.
void cp_async_bulk_wait_group_read(Site s, uint32_t n) { cp_async_bulk_wait_group(s, n); }

void prefetch_tensormap(Site s, uint64_t map) { read_map(map, s, "prefetch.tensormap"); }

}  // namespace ptx
}  // namespace emu

// ---- the driver call ---------------------------------------------------------------------
// CUDA Driver API, cuTensorMapEncodeTiled: each requirement it lists is
// checked, and CUDA_ERROR_INVALID_VALUE returned when one is not met.
API cuTensorMapEncodeTiled(CUtensorMap* map, CUtensorMapDataType dtype, cuuint32_t rank, void* addr,
                           const cuuint64_t* dim, const cuuint64_t* strides, const cuuint32_t* box,
                           const cuuint32_t* estrides, CUtensorMapInterleave interleave, CUtensorMapSwizzle swz,
                           CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob) {
    using namespace emu;
    auto bad = [](const std::string& why) {
        note("cuTensorMapEncodeTiled: %s", why.c_str());
        return CUDA_ERROR_INVALID_VALUE;
    };
    if (!map || (uintptr_t)map % 64) return bad("the map must be 64-byte aligned");
    if (dtype < 0 || dtype > CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ) return bad(strprintf("data type %d", dtype));
    if (interleave < 0 || interleave > CU_TENSOR_MAP_INTERLEAVE_32B) return bad(strprintf("interleave %d", interleave));
    if (rank < 1 || rank > 5 || (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE && rank < 3))
        return bad(strprintf("rank %u (1 to 5; 3 to 5 when interleaved)", rank));
    const unsigned align = interleave == CU_TENSOR_MAP_INTERLEAVE_32B ? 32 : 16;
    if (!addr || (uintptr_t)addr % align) return bad(strprintf("global address %p is not %u-byte aligned", addr, align));
    if (!dim || !box || !estrides || (rank > 1 && !strides)) return bad("a null array");
    const unsigned es = kElementSize[dtype];
    for (unsigned i = 0; i < rank; i++) {
        if (dim[i] == 0 || dim[i] > (1ull << 32)) return bad(strprintf("globalDim[%u] = %llu (1 to 2^32)", i, (unsigned long long)dim[i]));
        if (box[i] == 0 || box[i] > 256) return bad(strprintf("boxDim[%u] = %u (1 to 256)", i, box[i]));
        if (estrides[i] == 0 || estrides[i] > 8) return bad(strprintf("elementStrides[%u] = %u (1 to 8)", i, estrides[i]));
    }
    for (unsigned i = 0; i + 1 < rank; i++)
        if (strides[i] % align || strides[i] >= (1ull << 40))
            return bad(strprintf("globalStrides[%u] = %llu (a multiple of %u below 2^40)", i,
                                 (unsigned long long)strides[i], align));
    if (swz < 0 || swz > CU_TENSOR_MAP_SWIZZLE_128B) return bad(strprintf("swizzle %d", swz));
    if (interleave == CU_TENSOR_MAP_INTERLEAVE_NONE) {
        if (box[0] * es % 16) return bad(strprintf("boxDim[0] x element size = %u bytes, not a multiple of 16", box[0] * es));
        if (swz != CU_TENSOR_MAP_SWIZZLE_NONE && box[0] * es > (16u << swz))
            return bad(strprintf("the box's inner dimension (%u bytes) is wider than the %u-byte swizzle", box[0] * es,
                                 16u << swz));
    } else {
        if (interleave == CU_TENSOR_MAP_INTERLEAVE_32B && swz != CU_TENSOR_MAP_SWIZZLE_32B)
            return bad("32-byte interleave needs the 32-byte swizzle");
        note("cuTensorMapEncodeTiled: interleaved layouts are not emulated by the stand-in");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (l2 < 0 || l2 > CU_TENSOR_MAP_L2_PROMOTION_L2_256B) return bad(strprintf("L2 promotion %d", l2));
    if (oob < 0 || oob > CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA) return bad(strprintf("OOB fill %d", oob));
    if (oob == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA && dtype < CU_TENSOR_MAP_DATA_TYPE_FLOAT16)
        return bad("NaN fill needs a floating-point type");
    TensorMap m{};
    m.magic = kMagic;
    m.dtype = (uint8_t)dtype;
    m.rank = (uint8_t)rank;
    m.swizzle = (uint8_t)swz;
    m.esize = (uint8_t)es;
    m.addr = (uint64_t)(uintptr_t)addr;
    m.stride[0] = es;
    for (unsigned i = 0; i < rank; i++) {
        m.dim[i] = dim[i];
        m.box[i] = (uint16_t)box[i];
        m.estride[i] = (uint8_t)estrides[i];
        if (i > 0) m.stride[i] = strides[i - 1];
    }
    m.interleave = (uint8_t)interleave;
    m.l2 = (uint8_t)l2;
    m.oob = (uint8_t)oob;
    std::memset(map, 0, sizeof *map);
    std::memcpy(map, &m, sizeof m);
    return CUDA_SUCCESS;
}
