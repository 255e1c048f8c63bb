// The self-test's Hopper cases: mbarrier phases and transaction counts,
// try_wait spinning and a deadlock, setmaxnreg, elect.sync, stmatrix,
// wgmma (fragment positions by hand, every swizzle mode against a plain
// matmul, A from registers, the async landing of D), tensor maps and TMA
// loads and stores, and the warp-specialized GEMM of tests/kernels/gemm_ws.cu.
// The shared-memory layouts here are written from the PTX ISA again,
// independently of src/wgmma.cpp and src/tma.cpp.
#include <cmath>

#include "selftest.h"

namespace selftest {
namespace {

uint16_t bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);  // test values are exact in bf16
}

unsigned g_seed = 777;
float small() {  // a multiple of 1/4 in [-2, 2]: exact in bf16, sums exact in f32
    g_seed = g_seed * 1103515245u + 12345u;
    return (float)((int)(g_seed >> 16) % 17 - 8) / 4.0f;
}

// ---- mbarrier ------------------------------------------------------------------------------
bool mbarrier_phases() {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 64));
    CU(launch("mbarrier_phases", 1, 32, 0, nullptr, out));
    const uint32_t want[12] = {0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1};
    auto got = download<uint32_t>(out, 12);
    for (int i = 0; i < 12; i++) CHECK(got[i] == want[i], "step %d: %u, want %u", i, got[i], want[i]);
    return true;
}

bool mbarrier_misuse(uint32_t bug) {
    const CUresult rc = launch("mbarrier_misuse", 1, 32, 0, nullptr, bug);
    if (!bug) CU(rc);
    else CHECK(rc == CUDA_ERROR_LAUNCH_FAILED, "the misuse returned %d", rc);
    return true;
}

bool pingpong(uint32_t skip) {
    const uint32_t rounds = 8;
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 32 * rounds * 4));
    const CUresult rc = launch("mbarrier_pingpong", 1, 64, 0, nullptr, out, rounds, skip);
    if (skip) return rc == CUDA_ERROR_LAUNCH_FAILED ? true : fail("a barrier never completed returned %d", rc);
    CU(rc);
    auto v = download<uint32_t>(out, 32 * rounds);
    for (uint32_t c = 0; c < 32; c++)
        for (uint32_t r = 0; r < rounds; r++)
            CHECK(v[c * rounds + r] == 100 + r, "consumer %u round %u read %u", c, r, v[c * rounds + r]);
    return true;
}

// ---- fences, setmaxnreg, elect.sync, stmatrix -----------------------------------------------
bool sync_misc() {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 256));
    CU(launch("sync_misc", 1, 128, 0, nullptr, out));
    auto v = download<uint32_t>(out, 64);
    for (uint32_t l = 0; l < 32; l++) {
        CHECK(v[l] == (l == 0 ? 1u : 0u), "elect over all lanes, lane %u: 0x%x", l, v[l]);
        const uint32_t want = l < 4 ? 0xffffu : (4u << 8 | (l == 4));
        CHECK(v[32 + l] == want, "elect over lanes 4..31, lane %u: 0x%x, want 0x%x", l, v[32 + l], want);
    }
    return true;
}

bool stmatrix_values() {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 4 * 256 * 2));
    CU(launch("stmatrix_probe", 1, 32, 0, nullptr, out));
    auto v = download<uint16_t>(out, 4 * 256);
    // Lane L = 4g + t holds (L << 8 | 2q) and (L << 8 | 2q + 1) for matrix q:
    // plain, at (row g, columns 2t, 2t + 1); .trans, at (rows 2t, 2t + 1, column g).
    for (int variant = 0; variant < 4; variant++) {
        const int mats = variant < 2 ? 4 : variant == 2 ? 2 : 1;
        for (int q = 0; q < 4; q++)
            for (int r = 0; r < 8; r++)
                for (int c = 0; c < 8; c++) {
                    uint16_t want = 0;
                    if (q < mats) {
                        const int g = variant == 1 ? c : r, t = (variant == 1 ? r : c) / 2, h = (variant == 1 ? r : c) % 2;
                        want = (uint16_t)((4 * g + t) << 8 | (2 * q + h));
                    }
                    const uint16_t got = v[variant * 256 + q * 64 + r * 8 + c];
                    CHECK(got == want, "variant %d matrix %d (%d, %d): 0x%04x, want 0x%04x", variant, q, r, c, got, want);
                }
    }
    // By hand: x4, matrix 2, row 3, column 5 is lane 14 (g 3, t 2), high half (2q + 1 = 5): 0x0e05.
    CHECK(v[2 * 64 + 3 * 8 + 5] == 0x0e05, "x4 (2, 3, 5) = 0x%04x", v[2 * 64 + 3 * 8 + 5]);
    return true;
}

// ---- wgmma --------------------------------------------------------------------------------
// A K-major bf16 tile of `rows` x `k` (row-major in `m`) at image offset
// `off`. Swizzled (bits 1, 2, 3 = 32B, 64B, 128B): rows of W = 16 << bits
// bytes, one after another, each row's 16-byte chunk c stored at chunk
// c ^ ((row x W / 128) % (W / 16)): the ISA's swizzle figures, whose pattern
// repeats every 8 x 128 bytes (rows 0..7 of 128B, 0..15 of 64B in pairs,
// 0..31 of 32B in fours; the image is placed at a 1024-byte aligned
// address). Not swizzled: 8x8 core matrices of 16-byte
// rows, `lbo` apart along K and `sbo` apart along the rows.
void put_tile(std::vector<uint8_t>& img, uint32_t off, const std::vector<float>& m, int rows, int k, int bits,
              uint32_t lbo, uint32_t sbo) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < k; c++) {
            uint32_t at;
            if (bits == 0) {
                at = off + (r % 8) * 16 + (r / 8) * sbo + (c % 8) * 2 + (c / 8) * lbo;
            } else {
                const uint32_t w = 16u << bits, chunk = (uint32_t)(c * 2) / 16;
                at = off + r * w + ((chunk ^ (r * w / 128 % (w / 16))) * 16) + (c * 2) % 16;
            }
            const uint16_t h = bf(m[r * k + c]);
            memcpy(&img[at], &h, 2);
        }
}

uint64_t desc(uint32_t start, uint32_t lbo, uint32_t sbo, int bits) {
    const uint64_t mode = bits == 0 ? 0 : bits == 3 ? 1 : bits == 2 ? 2 : 3;
    return (uint64_t)(start >> 4) | (uint64_t)(lbo >> 4) << 16 | (uint64_t)(sbo >> 4) << 32 | mode << 62;
}

// Register i of thread t holds D row 16(t/32) + (t%32)/4 + 8((i/2)%2), column 8(i/4) + 2(t%4) + i%2.
int drow(int t, int i) { return 16 * (t / 32) + (t % 32) / 4 + 8 * ((i / 2) % 2); }
int dcol(int t, int i) { return 8 * (i / 4) + 2 * (t % 4) + i % 2; }

struct Wgmma {
    int n = 64, bits = 3, kblock = 0;  // the 16 columns of K the wgmma takes
    bool rs = false;
    uint32_t scale_d = 1;
    uint32_t early = 0, fence = 1;
};

// Runs one wgmma on A (64 x K) and B (N x K) at k-block kb, with C; D out.
bool run_wgmma(const Wgmma& w, const std::vector<float>& A, const std::vector<float>& Bt, int K,
               const std::vector<float>& C, std::vector<float>& D, CUresult* rc_out = nullptr) {
    std::vector<uint8_t> img(32768, 0);
    const uint32_t boff = 16384, w_bytes = 16u << w.bits;
    uint64_t da, db;
    if (w.bits == 0) {  // A: K chunks 1024 bytes apart, row groups 128; B: 2048 and 128
        put_tile(img, 0, A, 64, K, 0, 1024, 128);
        put_tile(img, boff, Bt, w.n, K, 0, 2048, 128);
        da = desc(0 + 2048 * w.kblock, 1024, 128, 0);
        db = desc(boff + 4096 * w.kblock, 2048, 128, 0);
    } else {  // dense rows of W bytes, SBO 8 W, the k-block 32 bytes further
        put_tile(img, 0, A, 64, K, w.bits, 0, 0);
        put_tile(img, boff, Bt, w.n, K, w.bits, 0, 0);
        da = desc(32 * w.kblock, 16, 8 * w_bytes, w.bits);
        db = desc(boff + 32 * w.kblock, 16, 8 * w_bytes, w.bits);
    }
    const CUdeviceptr di = upload(img.data(), img.size()), dc = upload(C.data(), C.size() * 4);
    CUdeviceptr dd;
    CU(cuMemAlloc_v2(&dd, C.size() * 4));
    CUresult rc;
    if (w.rs) {
        std::vector<uint32_t> regs(128 * 4);  // the mma.m16n8k16 A fragment of each warp's 16 rows
        for (int t = 0; t < 128; t++) {
            const int row = 16 * (t / 32) + (t % 32) / 4, c = 2 * (t % 4) + 16 * w.kblock;
            for (int q = 0; q < 4; q++) {
                const int r = row + 8 * (q & 1), cc = c + 8 * (q >> 1);
                regs[t * 4 + q] = bf(A[r * K + cc]) | (uint32_t)bf(A[r * K + cc + 1]) << 16;
            }
        }
        const CUdeviceptr dr = upload(regs.data(), regs.size() * 4);
        rc = launch("wgmma_rs_n64", 1, 128, 0, nullptr, di, dr, db, dc, dd, w.scale_d);
    } else if (w.n == 8) {
        rc = launch("wgmma_ss_n8", 1, 128, 0, nullptr, di, da, db, dc, dd, w.scale_d);
    } else if (w.n == 64) {
        rc = launch("wgmma_ss_n64", 1, 128, 0, nullptr, di, da, db, dc, dd, w.scale_d, w.early, w.fence);
    } else {
        rc = launch("wgmma_ss_n256", 1, 128, 0, nullptr, di, da, db, dc, dd, w.scale_d);
    }
    if (rc_out) return *rc_out = rc, true;
    CU(rc);
    D = download<float>(dd, C.size());
    return true;
}

bool wgmma_hand_positions() {
    // A[m][0] = m, A[m][1] = 1; B[0][n] = 256, B[1][n] = n: D[m][n] = 256 m + n.
    std::vector<float> A(64 * 16, 0), Bt(64 * 16, 0), C(128 * 32, 12345.0f), D;
    for (int m = 0; m < 64; m++) A[m * 16] = (float)m, A[m * 16 + 1] = 1;
    for (int n = 0; n < 64; n++) Bt[n * 16] = 256, Bt[n * 16 + 1] = (float)n;
    Wgmma w;
    w.bits = 0;
    w.scale_d = 0;  // C (12345) is not added
    if (!run_wgmma(w, A, Bt, 16, C, D)) return false;
    const struct {
        int t, i;
        float want;
    } spots[] = {{0, 0, 0},       {0, 1, 1},       {0, 2, 2048},    {0, 3, 2049},
                 {0, 4, 8},       {37, 0, 4354},   {37, 5, 4363},   {127, 31, 16191}};
    for (auto& s : spots)
        CHECK(D[s.t * 32 + s.i] == s.want, "thread %d d%d = %g, want %g", s.t, s.i, D[s.t * 32 + s.i], s.want);
    for (int t = 0; t < 128; t++)
        for (int i = 0; i < 32; i++)
            CHECK(D[t * 32 + i] == 256.0f * drow(t, i) + dcol(t, i), "thread %d d%d = %g", t, i, D[t * 32 + i]);
    return true;
}

// D = A x B + C against a plain matmul (exact: products and sums of quarters).
bool wgmma_product(Wgmma w) {
    const int K = w.bits == 0 ? 16 * (w.kblock + 1) : (16 << w.bits) / 2;
    std::vector<float> A(64 * K), Bt(w.n * K), C(128 * (w.n / 2)), D;
    for (float& x : A) x = small();
    for (float& x : Bt) x = small();
    for (float& x : C) x = small();
    if (!run_wgmma(w, A, Bt, K, C, D)) return false;
    int wrong = 0;
    for (int t = 0; t < 128; t++)
        for (int i = 0; i < w.n / 2; i++) {
            const int m = drow(t, i), n = dcol(t, i);
            double want = w.scale_d ? C[t * (w.n / 2) + i] : 0.0;
            for (int k = 0; k < 16; k++) want += (double)A[m * K + 16 * w.kblock + k] * Bt[n * K + 16 * w.kblock + k];
            const float got = D[t * (w.n / 2) + i];
            if (w.early && i == 0) {
                wrong += !std::isnan(got);
                continue;
            }
            if (got != (float)want && wrong++ < 4) fprintf(stderr, "thread %d d%d = %g, want %g\n", t, i, got, want);
        }
    CHECK(wrong == 0, "%d of %d D values differ from A x B + C", wrong, 64 * w.n);
    return true;
}

bool wgmma_no_fence() {
    std::vector<float> A(64 * 16, 1), Bt(64 * 16, 1), C(128 * 32, 0), D;
    Wgmma w;
    w.fence = 0;
    CUresult rc;
    if (!run_wgmma(w, A, Bt, 16, C, D, &rc)) return false;
    return rc == CUDA_ERROR_LAUNCH_FAILED ? true : fail("a wgmma without wgmma.fence returned %d", rc);
}

}  // namespace

std::vector<Case> tma_cases();

std::vector<Case> hopper_cases() {
    const char* ahead = "DR_EMU_SCHEDULE=warp-ahead";
    const char* reverse = "DR_EMU_SCHEDULE=reverse";
    auto wg = [](int n, int bits, int kblock, bool rs, uint32_t scale_d, uint32_t early) {
        Wgmma w;
        w.n = n, w.bits = bits, w.kblock = kblock, w.rs = rs, w.scale_d = scale_d, w.early = early;
        return [w] { return wgmma_product(w); };
    };
    std::vector<Case> cases = {
        {"mbarrier: phases, arrivals, expect_tx / complete_tx, parity and state waits", {}, mbarrier_phases},
        {"mbarrier: a correct use beside the planted misuses", {}, [] { return mbarrier_misuse(0); }},
        {"PLANTED mbarrier arrival past the expected count is caught", {}, [] { return mbarrier_misuse(1); },
         "more arrivals than the phase expects"},
        {"PLANTED wait on an mbarrier never initialized is caught", {}, [] { return mbarrier_misuse(2); },
         "which mbarrier.init has not initialized"},
        {"mbarrier: producer and 32 consumers spinning on try_wait, 8 rounds", {}, [] { return pingpong(0); }},
        {"mbarrier: the same under warp-ahead", {ahead}, [] { return pingpong(0); }},
        {"mbarrier: the same in reverse order", {reverse}, [] { return pingpong(0); }},
        {"PLANTED mbarrier phase that never completes is reported as a deadlock", {}, [] { return pingpong(1); },
         "an mbarrier that never completes its phase"},
        {"fence.proxy.async, setmaxnreg, elect.sync", {}, sync_misc},
        {"PLANTED setmaxnreg with a count not a multiple of 8 is caught", {},
         [] { return launch("setmaxnreg_bad", 1, 32, 0, nullptr) == CUDA_ERROR_ILLEGAL_INSTRUCTION ? true : fail("accepted"); },
         "a multiple of 8 in [24, 256]"},
        {"stmatrix .x1/.x2/.x4 and .trans: each lane's values", {}, stmatrix_values},
        {"wgmma: D fragment positions by hand (A and B numbered, scale-d 0)", {}, wgmma_hand_positions},
        {"wgmma m64n64k16 no swizzle (LBO, SBO), k-block 1: A x B + C", {}, wg(64, 0, 1, false, 1, 0)},
        {"wgmma m64n64k16 32B swizzle: A x B + C", {}, wg(64, 1, 0, false, 1, 0)},
        {"wgmma m64n64k16 64B swizzle, k-block 1: A x B + C", {}, wg(64, 2, 1, false, 1, 0)},
        {"wgmma m64n64k16 128B swizzle, k-block 3: A x B + C", {}, wg(64, 3, 3, false, 1, 0)},
        {"wgmma m64n8k16 128B swizzle, k-block 2: A x B + C", {}, wg(8, 3, 2, false, 1, 0)},
        {"wgmma m64n256k16 64B swizzle, k-block 1: A x B + C", {}, wg(256, 2, 1, false, 1, 0)},
        {"wgmma m64n64k16 A from registers, B 128B swizzle, k-block 1", {}, wg(64, 3, 1, true, 1, 0)},
        {"wgmma m64n64k16 scale-d 0: D = A x B", {}, wg(64, 3, 0, false, 0, 0)},
        {"wgmma: accumulators read before wgmma.wait_group hold NaN; the rest land at the wait", {},
         wg(64, 3, 0, false, 1, 1)},
        {"PLANTED wgmma without a wgmma.fence is caught", {}, wgmma_no_fence, "before any wgmma.fence"},
    };
    for (Case& c : tma_cases()) cases.push_back(std::move(c));
    return cases;
}

}  // namespace selftest
