// The self-test's TMA cases: cuTensorMapEncodeTiled's argument checks, bulk
// tensor loads (a box hanging past the tensor's edges, 128B swizzle and
// none, 2-D and 3-D) and stores, a read before the mbarrier wait, and the
// warp-specialized GEMM probe (tests/kernels/gemm_ws.cu).
#include "selftest.h"

namespace selftest {
namespace {

// A bf16 tensor of 40 rows x 104 columns (208-byte rows), element (y, x)
// holding the bits y * 104 + x.
constexpr int kRows = 40, kCols = 104;

bool encode_2d(CUtensorMap* m, CUdeviceptr base, uint32_t box0, uint32_t box1, CUtensorMapSwizzle swz) {
    const cuuint64_t dim[2] = {kCols, kRows}, stride[1] = {kCols * 2};
    const cuuint32_t box[2] = {box0, box1}, es[2] = {1, 1};
    CU(cuTensorMapEncodeTiled(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void*)base, dim, stride, box, es,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, swz, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    return true;
}

bool encode_checks() {
    alignas(64) CUtensorMap m;
    CUdeviceptr base;
    CU(cuMemAlloc_v2(&base, 1 << 16));
    cuuint64_t dim[2] = {kCols, kRows}, stride[1] = {kCols * 2};
    cuuint32_t box[2] = {64, 32}, es[2] = {1, 1};
    auto enc = [&](void* addr, CUtensorMapSwizzle swz, cuuint32_t rank = 2, CUtensorMap* map = nullptr) {
        return cuTensorMapEncodeTiled(map ? map : &m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, rank, addr, dim, stride, box, es,
                                      CU_TENSOR_MAP_INTERLEAVE_NONE, swz, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    };
    void* p = (void*)base;
    CU(enc(p, CU_TENSOR_MAP_SWIZZLE_128B));
    CHECK(enc((char*)p + 8, CU_TENSOR_MAP_SWIZZLE_128B) == CUDA_ERROR_INVALID_VALUE, "a global address not 16-aligned passed");
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_64B) == CUDA_ERROR_INVALID_VALUE, "a 128-byte box row under a 64B swizzle passed");
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_128B, 0) == CUDA_ERROR_INVALID_VALUE, "rank 0 passed");
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_128B, 6) == CUDA_ERROR_INVALID_VALUE, "rank 6 passed");
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_128B, 2, (CUtensorMap*)((char*)&m + 8)) == CUDA_ERROR_INVALID_VALUE,
          "a map not 64-byte aligned passed");
    stride[0] = 200;
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_NONE) == CUDA_ERROR_INVALID_VALUE, "a stride not a multiple of 16 passed");
    stride[0] = kCols * 2, box[1] = 257;
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_NONE) == CUDA_ERROR_INVALID_VALUE, "a box of 257 passed");
    box[1] = 32, box[0] = 4;
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_NONE) == CUDA_ERROR_INVALID_VALUE, "an 8-byte inner box passed");
    box[0] = 64, es[1] = 0;
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_NONE) == CUDA_ERROR_INVALID_VALUE, "an element stride of 0 passed");
    es[1] = 9;
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_NONE) == CUDA_ERROR_INVALID_VALUE, "an element stride of 9 passed");
    es[1] = 1, dim[1] = 0;
    CHECK(enc(p, CU_TENSOR_MAP_SWIZZLE_NONE) == CUDA_ERROR_INVALID_VALUE, "a dimension of 0 passed");
    return true;
}

CUdeviceptr numbered_tensor() {
    std::vector<uint16_t> t(kRows * kCols);
    for (int i = 0; i < kRows * kCols; i++) t[i] = (uint16_t)i;
    return upload(t.data(), t.size() * 2);
}

// Box 64 x 32 at (x 64, y 16): columns 104.. and rows 40.. are outside.
// 128B swizzle: element (r, c) of the box at byte r * 128 + ((c / 8) ^ (r % 8)) * 16 + (c % 8) * 2.
bool tma_load_2d_swizzled() {
    const CUdeviceptr base = numbered_tensor();
    alignas(64) CUtensorMap map;
    if (!encode_2d(&map, base, 64, 32, CU_TENSOR_MAP_SWIZZLE_128B)) return false;
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 4096));
    CU(launch("tma_load_probe", 1, 128, 0, nullptr, map, (int32_t)64, (int32_t)16, (int32_t)0, 2u, 4096u, out));
    auto b = download<uint8_t>(out, 4096);
    auto at = [&](uint32_t byte) { return (uint16_t)(b[byte] | b[byte + 1] << 8); };
    // By hand: (r 1, c 0) is chunk 0 ^ 1 = 1: byte 144 holds (y 17, x 64) = 17 * 104 + 64 = 1832;
    // (r 3, c 9): chunk 1 ^ 3 = 2, byte 3 * 128 + 32 + 2 = 418 holds (19, 73) = 2049;
    // (r 30, c 45) is row 46, outside: byte 3840 + (5 ^ 6) * 16 + 10 = 3898 holds 0;
    // (r 2, c 40) is column 104, outside: byte 256 + (5 ^ 2) * 16 + 0 = 368 holds 0.
    CHECK(at(144) == 1832, "byte 144: %u", at(144));
    CHECK(at(418) == 2049, "byte 418: %u", at(418));
    CHECK(at(3898) == 0, "byte 3898: %u", at(3898));
    CHECK(at(368) == 0, "byte 368: %u", at(368));
    for (int r = 0; r < 32; r++)
        for (int c = 0; c < 64; c++) {
            const int y = 16 + r, x = 64 + c;
            const uint16_t want = (y < kRows && x < kCols) ? (uint16_t)(y * kCols + x) : 0;
            const uint32_t byte = r * 128 + ((c / 8) ^ (r % 8)) * 16 + (c % 8) * 2;
            CHECK(at(byte) == want, "box (%d, %d) at byte %u: %u, want %u", r, c, byte, at(byte), want);
        }
    return true;
}

// A 3-D u8 tensor 32 x 5 x 3 (x, y, z), element = x + 32 y + 160 z + 1;
// box 16 x 4 x 2 at (-8, 3, 2), no swizzle: x < 0, y > 4 and z > 2 are zero.
bool tma_load_3d_negative() {
    std::vector<uint8_t> t(32 * 5 * 3);
    for (int i = 0; i < (int)t.size(); i++) t[i] = (uint8_t)(i + 1);
    const CUdeviceptr base = upload(t.data(), t.size());
    alignas(64) CUtensorMap map;
    const cuuint64_t dim[3] = {32, 5, 3}, stride[2] = {32, 160};
    const cuuint32_t box[3] = {16, 4, 2}, es[3] = {1, 1, 1};
    CU(cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, (void*)base, dim, stride, box, es,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                              CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 128));
    CU(launch("tma_load_probe", 1, 32, 0, nullptr, map, (int32_t)-8, (int32_t)3, (int32_t)2, 3u, 128u, out));
    auto b = download<uint8_t>(out, 128);
    for (int z = 0; z < 2; z++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 16; x++) {
                const int gx = x - 8, gy = y + 3, gz = z + 2;
                const uint8_t want = (gx >= 0 && gy < 5 && gz < 3) ? (uint8_t)(gx + 32 * gy + 160 * gz + 1) : 0;
                const uint8_t got = b[(z * 4 + y) * 16 + x];
                CHECK(got == want, "box (%d, %d, %d): %u, want %u", x, y, z, got, want);
            }
    return true;
}

bool tma_no_wait() {
    const CUdeviceptr base = numbered_tensor();
    alignas(64) CUtensorMap map;
    if (!encode_2d(&map, base, 64, 32, CU_TENSOR_MAP_SWIZZLE_128B)) return false;
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 16));
    const CUresult rc = launch("tma_no_wait", 1, 1, 0, nullptr, map, out);
    return rc == CUDA_ERROR_LAUNCH_FAILED ? true : fail("a read before the mbarrier wait returned %d", rc);
}

// The box at (64, 16) stored from a 128B-swizzled shared image: box element
// (r, c) = 0x4000 + 64 r + c where inside the tensor, the rest untouched (0xaaaa).
bool tma_store_2d() {
    std::vector<uint16_t> t(kRows * kCols, 0xaaaa);
    const CUdeviceptr base = upload(t.data(), t.size() * 2);
    alignas(64) CUtensorMap map;
    if (!encode_2d(&map, base, 64, 32, CU_TENSOR_MAP_SWIZZLE_128B)) return false;
    std::vector<uint8_t> img(4096);
    for (int r = 0; r < 32; r++)
        for (int c = 0; c < 64; c++) {
            const uint16_t v = (uint16_t)(0x4000 + 64 * r + c);
            memcpy(&img[r * 128 + ((c / 8) ^ (r % 8)) * 16 + (c % 8) * 2], &v, 2);
        }
    const CUdeviceptr di = upload(img.data(), img.size());
    CU(launch("tma_store_probe", 1, 128, 0, nullptr, map, (int32_t)64, (int32_t)16, di, 4096u));
    auto got = download<uint16_t>(base, t.size());
    for (int y = 0; y < kRows; y++)
        for (int x = 0; x < kCols; x++) {
            const bool in = y >= 16 && x >= 64;
            const uint16_t want = in ? (uint16_t)(0x4000 + 64 * (y - 16) + (x - 64)) : 0xaaaa;
            CHECK(got[y * kCols + x] == want, "tensor (%d, %d): 0x%04x, want 0x%04x", y, x, got[y * kCols + x], want);
        }
    return true;
}

// gemm_ws_64x64 on random quarters (sums exact in f32) against a plain matmul.
bool gemm_ws(uint32_t k, uint32_t wait_full) {
    unsigned seed = 4242 + k;
    auto small = [&] {
        seed = seed * 1103515245u + 12345u;
        return (float)((int)(seed >> 16) % 17 - 8) / 4.0f;
    };
    std::vector<float> A(64 * k), Bt(64 * k);
    std::vector<uint16_t> a16(64 * k), b16(64 * k);
    for (uint32_t i = 0; i < 64 * k; i++) {
        A[i] = small(), Bt[i] = small();
        uint32_t u;
        memcpy(&u, &A[i], 4), a16[i] = (uint16_t)(u >> 16);
        memcpy(&u, &Bt[i], 4), b16[i] = (uint16_t)(u >> 16);
    }
    const CUdeviceptr da = upload(a16.data(), a16.size() * 2), db = upload(b16.data(), b16.size() * 2);
    alignas(64) CUtensorMap ma, mb;
    const cuuint64_t dim[2] = {k, 64}, stride[1] = {k * 2};
    const cuuint32_t box[2] = {64, 64}, es[2] = {1, 1};
    for (int i = 0; i < 2; i++)
        CU(cuTensorMapEncodeTiled(i ? &mb : &ma, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void*)(i ? db : da), dim, stride,
                                  box, es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                  CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    CUdeviceptr dc;
    CU(cuMemAlloc_v2(&dc, 64 * 64 * 4));
    const CUresult rc = launch("gemm_ws_64x64", 1, 256, 0, nullptr, ma, mb, dc, k, wait_full);
    if (!wait_full) return rc == CUDA_ERROR_LAUNCH_FAILED ? true : fail("the GEMM without its full wait returned %d", rc);
    CU(rc);
    auto C = download<float>(dc, 64 * 64);
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < 64; n++) {
            double want = 0;
            for (uint32_t j = 0; j < k; j++) want += (double)A[m * k + j] * Bt[n * k + j];
            CHECK(C[m * 64 + n] == (float)want, "C[%d][%d] = %g, want %g", m, n, C[m * 64 + n], want);
        }
    return true;
}

}  // namespace

std::vector<Case> tma_cases() {
    const char* ahead = "DR_EMU_SCHEDULE=warp-ahead";
    const char* reverse = "DR_EMU_SCHEDULE=reverse";
    return {
        {"cuTensorMapEncodeTiled: a valid map, and each invalid argument refused", {}, encode_checks,
         "cuTensorMapEncodeTiled:"},
        {"TMA load 2-D, 128B swizzle, box past two edges: hand-computed bytes, zero fill", {}, tma_load_2d_swizzled},
        {"TMA load 3-D u8, negative coordinate, box past the edges, no swizzle", {}, tma_load_3d_negative},
        {"PLANTED read of a TMA box before its mbarrier wait is caught", {}, tma_no_wait, "is still writing"},
        {"TMA store 2-D from a 128B-swizzled box past two edges, bulk wait_group", {}, tma_store_2d},
        {"GEMM probe (TMA, 2-stage mbarrier ring, wgmma 128B swizzle): K 64, one tile", {}, [] { return gemm_ws(64, 1); }},
        {"GEMM probe: K 256, the ring wraps twice", {}, [] { return gemm_ws(256, 1); }},
        {"GEMM probe: K 200, the last tile zero-filled past K", {}, [] { return gemm_ws(200, 1); }},
        {"GEMM probe: K 256 under warp-ahead", {ahead}, [] { return gemm_ws(256, 1); }},
        {"GEMM probe: K 200 in reverse order", {reverse}, [] { return gemm_ws(200, 1); }},
        {"PLANTED GEMM consumer without its full-barrier wait is caught", {}, [] { return gemm_ws(256, 0); },
         "is still writing"},
    };
}

}  // namespace selftest
