// The stand-in's self-test: its PTX emulations on hand-computed values, its
// driver semantics, the Hopper instructions (tests/selftest_hopper.cpp, on
// tests/kernels/hopper.cu and gemm_ws.cu), and a suite of planted bugs
// (tests/kernels/planted.cu)
// each of which it must catch, beside the correct twin it must pass. Every
// case runs in a child process of its own (a fault ends a CUDA context, and
// some cases need their own DR_EMU_* settings); the child's stderr is kept
// and a case that expects a report checks it is there.
//
// Prints one line per case and "N passed, M failed"; exits 1 on a failure.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <limits>
#include <vector>

#include "selftest.h"

using namespace selftest;

namespace {

int run_case(const Case& c) {
    char path[] = "/tmp/dr-standin-selftest-XXXXXX";
    const int fd = mkstemp(path);
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 2);
        for (const char* e : c.env) putenv(const_cast<char*>(e));
        const bool ok = setup() && c.body();
        if (!ok) fprintf(stderr, "\nCASE FAILED: %s\n", g_why.c_str());
        fflush(stderr);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    std::string log;
    lseek(fd, 0, SEEK_SET);
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) log.append(buf, (size_t)n);
    close(fd);
    unlink(path);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::string why = ok ? "" : (WIFSIGNALED(status) ? "killed by a signal" : "the case failed");
    if (ok && c.report && log.find(c.report) == std::string::npos) {
        ok = false;
        why = std::string("the stand-in did not report \"") + c.report + "\"";
    }
    if (ok && !c.report && log.find("dr stand-in:") != std::string::npos) {
        ok = false;
        why = "the stand-in reported a problem in a correct kernel";
    }
    printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);
    if (ok && getenv("SELFTEST_VERBOSE") && !log.empty()) printf("%s", log.c_str());
    if (!ok) printf("     %s\n     --- stderr ---\n%s\n     --------------\n", why.c_str(), log.c_str());
    return ok ? 0 : 1;
}

// ---- mma.m16n8k16 fragments, from the PTX ISA's formulas (written here again,
// independently of src/ptx.cpp) -------------------------------------------------------
uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);  // test values are exact in bf16
}

struct Frag {
    uint32_t a[32][4], b[32][2];
    float c[32][4];
};

Frag pack(const float A[16][16], const float B[16][8], const float C[16][8]) {
    Frag f{};
    for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane % 4;
        for (int i = 0; i < 8; i++) {  // a0..a7, two per register
            const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
            const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
            f.a[lane][i / 2] |= (uint32_t)bf16_bits(A[row][col]) << (16 * (i & 1));
        }
        for (int i = 0; i < 4; i++) {  // b0..b3
            const int row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
            f.b[lane][i / 2] |= (uint32_t)bf16_bits(B[row][g]) << (16 * (i & 1));
        }
        for (int i = 0; i < 4; i++) f.c[lane][i] = C[i < 2 ? g : g + 8][t * 2 + (i & 1)];
    }
    return f;
}

bool run_mma(const char* kernel, const Frag& f, float d[32][4]) {
    const CUdeviceptr a = upload(f.a, sizeof f.a), b = upload(f.b, sizeof f.b), c = upload(f.c, sizeof f.c);
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 32 * 4 * 4));
    CU(launch(kernel, 1, 32, 0, nullptr, a, b, c, out));
    auto v = download<float>(out, 128);
    memcpy(d, v.data(), sizeof(float) * 128);
    return true;
}

bool mma_hand_values() {
    // A = I, B[k][n] = 8k + n, C[m][n] = 1000 (8m + n): D[m][n] = 1001 (8m + n).
    float A[16][16] = {}, B[16][8], C[16][8];
    for (int i = 0; i < 16; i++) A[i][i] = 1;
    for (int k = 0; k < 16; k++)
        for (int n = 0; n < 8; n++) B[k][n] = (float)(8 * k + n), C[k][n] = 1000.0f * (8 * k + n);
    float d[32][4];
    if (!run_mma("mma_probe", pack(A, B, C), d)) return false;
    // Lane 0: rows 0 and 8, columns 0, 1; lane 5 (group 1, t 1): rows 1 and 9,
    // columns 2, 3; lane 31 (group 7, t 3): rows 7 and 15, columns 6, 7.
    const struct {
        int lane;
        float want[4];
    } spots[] = {{0, {0, 1001, 64 * 1001, 65 * 1001}},
                 {5, {10 * 1001, 11 * 1001, 74 * 1001, 75 * 1001}},
                 {31, {62 * 1001, 63 * 1001, 126 * 1001, 127 * 1001}}};
    for (auto& s : spots)
        for (int i = 0; i < 4; i++)
            CHECK(d[s.lane][i] == s.want[i], "lane %d d%d = %g, want %g", s.lane, i, d[s.lane][i], s.want[i]);
    for (int lane = 0; lane < 32; lane++)
        for (int i = 0; i < 4; i++) {
            const int row = (lane >> 2) + (i >= 2 ? 8 : 0), col = (lane % 4) * 2 + (i & 1);
            CHECK(d[lane][i] == 1001.0f * (8 * row + col), "lane %d d%d = %g", lane, i, d[lane][i]);
        }
    return true;
}

void random_problem(float A[16][16], float B[16][8], float C[16][8]) {
    unsigned s = 12345;
    auto rnd = [&] {
        s = s * 1103515245u + 12345u;
        return (float)((int)(s >> 16) % 17 - 8) / 4.0f;  // small, exact in bf16
    };
    for (int m = 0; m < 16; m++)
        for (int k = 0; k < 16; k++) A[m][k] = rnd();
    for (int k = 0; k < 16; k++)
        for (int n = 0; n < 8; n++) B[k][n] = rnd(), C[k % 16][n] = rnd();
}

bool mma_matches_product(const char* kernel, bool expect_equal) {
    float A[16][16], B[16][8], C[16][8];
    random_problem(A, B, C);
    float d[32][4];
    if (!run_mma(kernel, pack(A, B, C), d)) return false;
    int wrong = 0;
    for (int lane = 0; lane < 32; lane++)
        for (int i = 0; i < 4; i++) {
            const int row = (lane >> 2) + (i >= 2 ? 8 : 0), col = (lane % 4) * 2 + (i & 1);
            double want = C[row][col];
            for (int k = 0; k < 16; k++) want += (double)A[row][k] * B[k][col];
            wrong += d[lane][i] != (float)want;
        }
    if (expect_equal) CHECK(wrong == 0, "%d of 128 D values differ from A x B + C", wrong);
    if (!expect_equal) CHECK(wrong > 0, "the swapped A fragment gave the right product: a wrong layout went unseen");
    return true;
}

// ---- cp.async ----------------------------------------------------------------------
// ---- ldmatrix: every register of every lane, from the PTX ISA's fragment
// description (written here again, independently of src/ptx.cpp) ------------------
bool ldmatrix_values(uint32_t skew) {
    std::vector<uint16_t> in(256);
    for (int i = 0; i < 256; i++) in[i] = (uint16_t)(1000 + i);  // m[q][r][c] = 1000 + 64q + 8r + c
    const CUdeviceptr src = upload(in.data(), in.size() * 2);
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 32 * 11 * 4));
    const CUresult rc = launch("ldmatrix_probe", 1, 32, 0, nullptr, src, out, skew);
    if (skew) return rc == CUDA_ERROR_MISALIGNED_ADDRESS ? true : fail("a misaligned ldmatrix returned %d", rc);
    CU(rc);
    auto d = download<uint32_t>(out, 32 * 11);
    auto el = [](int q, int r, int c) { return (uint32_t)(1000 + 64 * q + 8 * r + c); };
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        for (int q = 0; q < 4; q++) {
            const uint32_t plain = el(q, g, 2 * t) | el(q, g, 2 * t + 1) << 16;
            const uint32_t trans = el(q, 2 * t, g) | el(q, 2 * t + 1, g) << 16;
            CHECK(d[l * 11 + q] == plain, "x4 lane %d d%d = 0x%08x, want 0x%08x", l, q, d[l * 11 + q], plain);
            CHECK(d[l * 11 + 4 + q] == trans, "x4.trans lane %d d%d = 0x%08x, want 0x%08x", l, q,
                  d[l * 11 + 4 + q], trans);
            if (q < 2) CHECK(d[l * 11 + 8 + q] == plain, "x2 lane %d d%d = 0x%08x", l, q, d[l * 11 + 8 + q]);
            if (q < 1) CHECK(d[l * 11 + 10] == plain, "x1 lane %d d0 = 0x%08x", l, d[l * 11 + 10]);
        }
    }
    return true;
}

// ---- cvt.rn.bf16x2.f32: rounding, ties, overflow, subnormals, signs, packing
// (hand-computed bf16 bits); a NaN input fails the launch (`nan`) ------------------
bool cvt_bf16x2_values(bool nan) {
    const auto bits = [](uint32_t u) {
        float f;
        memcpy(&f, &u, 4);
        return f;
    };
    // {input bits, bf16 bits}
    const uint32_t cases[][2] = {
        {0x3f800000u, 0x3f80u},  // 1
        {0x3f808000u, 0x3f80u},  // 1 + 2^-8: a tie, to the even 1
        {0x3f808001u, 0x3f81u},  // just above the tie: up
        {0x3f818000u, 0x3f82u},  // 1 + 3 x 2^-8: a tie, to the even 1 + 2^-6
        {0xc0200000u, 0xc020u},  // -2.5
        {0x80000000u, 0x8000u},  // -0
        {0x7f7fffffu, 0x7f80u},  // the largest float: rounds to infinity
        {0x7f7f7fffu, 0x7f7fu},  // below the halfway point: the largest bf16
        {0xff800000u, 0xff80u},  // -infinity
        {0x00008000u, 0x0000u},  // a subnormal tie between 0 and 0x0001: 0
        {0x00018000u, 0x0002u},  // a subnormal tie between 0x0001 and 0x0002: 0x0002
        {0x0000c000u, 0x0001u},  // above half of the smallest bf16 subnormal: up
    };
    const int n = sizeof cases / sizeof cases[0];
    std::vector<float> hi(n), lo(n);
    for (int i = 0; i < n; i++) {
        hi[i] = bits(cases[i][0]);
        lo[i] = bits(cases[(i + 5) % n][0]);
    }
    if (nan) lo[3] = bits(0x7fc00001u);
    const CUdeviceptr dh = upload(hi.data(), n * 4), dl = upload(lo.data(), n * 4);
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, n * 4));
    const CUresult rc = launch("cvt_bf16x2_probe", 1, n, 0, nullptr, dh, dl, out);
    if (nan) return rc == CUDA_ERROR_LAUNCH_FAILED ? true : fail("a NaN into cvt returned %d", rc);
    CU(rc);
    auto d = download<uint32_t>(out, n);
    for (int i = 0; i < n; i++) {
        const uint32_t want = cases[i][1] << 16 | cases[(i + 5) % n][1];
        CHECK(d[i] == want, "thread %d: 0x%08x, want 0x%08x", i, d[i], want);
    }
    return true;
}

// ---- ex2.approx.ftz.f32: exact powers, rounding, flushes, infinities -------------
bool ex2_values() {
    const float inf = std::numeric_limits<float>::infinity();
    // {a, 2^a}: subnormal results and inputs flush (1e-40 is subnormal: 2^0).
    const float cases[][2] = {{0.0f, 1.0f},    {1.0f, 2.0f},     {-1.0f, 0.5f},  {10.0f, 1024.0f},
                              {-126.0f, 0x1p-126f}, {-127.0f, 0.0f}, {1e-40f, 1.0f}, {-inf, 0.0f},
                              {inf, inf},      {0.5f, 1.41421356f}};
    const int n = sizeof cases / sizeof cases[0];
    std::vector<float> x(n);
    for (int i = 0; i < n; i++) x[i] = cases[i][0];
    const CUdeviceptr dx = upload(x.data(), n * 4);
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, n * 4));
    CU(launch("ex2_probe", 1, n, 0, nullptr, dx, out));
    auto y = download<float>(out, n);
    for (int i = 0; i < n; i++)
        CHECK(y[i] == cases[i][1] || std::fabs(y[i] - cases[i][1]) <= 2e-7f * cases[i][1], "ex2(%g) = %g, want %g",
              cases[i][0], y[i], cases[i][1]);
    return true;
}

// ---- mov.b64: every bit of each thread's value --------------------------------
bool mov_values() {
    const int n = 32;
    std::vector<uint64_t> x(n);
    for (int i = 0; i < n; i++) x[i] = 0x8000000000000001ull * (i + 1) ^ (0xdeadbeefull << i);
    const CUdeviceptr dx = upload(x.data(), n * 8);
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, n * 8));
    CU(launch("mov_probe", 1, n, 0, nullptr, dx, out));
    auto y = download<uint64_t>(out, n);
    for (int i = 0; i < n; i++) CHECK(y[i] == x[i], "thread %d: 0x%016llx, want 0x%016llx", i, (unsigned long long)y[i], (unsigned long long)x[i]);
    return true;
}

bool cp_async_zero_fill() {
    std::vector<uint8_t> src(512);
    for (int i = 0; i < 512; i++) src[i] = (uint8_t)(i * 7 + 1);
    std::vector<uint32_t> sizes(32);
    for (int t = 0; t < 32; t++) sizes[t] = t % 17;
    const CUdeviceptr s = upload(src.data(), 512), z = upload(sizes.data(), 128);
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 512));
    CU(launch("cp_async_zero_fill", 1, 32, 0, nullptr, s, z, out));
    auto got = download<uint8_t>(out, 512);
    for (int t = 0; t < 32; t++)
        for (int i = 0; i < 16; i++) {
            const uint8_t want = i < (int)sizes[t] ? src[16 * t + i] : 0;
            CHECK(got[16 * t + i] == want, "thread %d byte %d: %d, want %d (src-size %u)", t, i, got[16 * t + i], want,
                  sizes[t]);
        }
    return true;
}

bool cp_async_groups(uint32_t read_second) {
    std::vector<uint8_t> src(32);
    for (int i = 0; i < 32; i++) src[i] = (uint8_t)(100 + i);
    const CUdeviceptr s = upload(src.data(), 32);
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 32));
    const CUresult rc = launch("cp_async_groups", 1, 1, 0, nullptr, s, out, read_second);
    if (read_second) {
        CHECK(rc == CUDA_ERROR_LAUNCH_FAILED, "reading a pending cp.async destination returned %d", rc);
        return true;
    }
    CU(rc);
    auto got = download<uint8_t>(out, 32);
    CHECK(got == src, "wait_group 1 then 0 did not deliver both groups");
    return true;
}

// ---- other device functions ------------------------------------------------------------
bool warp_ops() {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 512));
    CU(launch("warp_ops", 1, 32, 0, nullptr, out));
    auto v = download<uint32_t>(out, 128);
    for (unsigned l = 0; l < 32; l++) {
        CHECK(v[4 * l] == (l ^ 1) * 10, "xor lane %u: %u", l, v[4 * l]);
        CHECK(v[4 * l + 1] == 30, "idx lane %u: %u", l, v[4 * l + 1]);
        CHECK(v[4 * l + 2] == (l + 2 < 32 ? l + 2 : l) * 10, "down lane %u: %u", l, v[4 * l + 2]);
        CHECK(v[4 * l + 3] == 0xaaaaaaaau, "ballot lane %u: %x", l, v[4 * l + 3]);
    }
    return true;
}

bool atomics() {
    const uint32_t zero[3] = {0, 0, 0};
    const CUdeviceptr out = upload(zero, 12);
    CU(launch("atomics", 4, 64, 0, nullptr, out));
    auto v = download<uint32_t>(out, 3);
    CHECK(v[0] == 255 * 256 / 2 && v[1] == 255 && v[2] == 64, "atomics gave %u %u %u", v[0], v[1], v[2]);
    return true;
}

bool dynamic_shared() {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 1024));
    CU(launch("dynamic_smem", 1, 256, 1024, nullptr, out));
    auto v = download<uint32_t>(out, 256);
    for (unsigned t = 0; t < 256; t++) CHECK(v[t] == t, "dynamic shared: out[%u] = %u", t, v[t]);
    CHECK(launch("dynamic_smem", 1, 256, 64 << 10, nullptr, out) == CUDA_ERROR_INVALID_VALUE,
          "64 KB of dynamic shared memory without the attribute was accepted");
    CU(cuFuncSetAttribute(fn("dynamic_smem"), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 64 << 10));
    CU(launch("dynamic_smem", 1, 256, 64 << 10, nullptr, out));
    return true;
}

bool launch_bounds() {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 1024));
    CU(launch("bounded", 1, 64, 0, nullptr, out));
    CHECK(launch("bounded", 1, 128, 0, nullptr, out) == CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES,
          "128 threads for __launch_bounds__(64) were accepted");
    return true;
}

// ---- planted bugs ------------------------------------------------------------------------
bool read_past_end(uint32_t extra) {
    std::vector<float> x(100, 1.5f);
    const CUdeviceptr dx = upload(x.data(), 400);
    CUdeviceptr y;
    CU(cuMemAlloc_v2(&y, 4));
    const CUresult rc = launch("read_last", 1, 32, 0, nullptr, dx, y, 100u, extra);
    if (extra) return rc == CUDA_ERROR_ILLEGAL_ADDRESS ? true : fail("an out-of-bounds read returned %d", rc);
    CU(rc);
    CHECK(download<float>(y, 1)[0] == 1.5f, "the last element read back wrong");
    return true;
}

bool block_sum(uint32_t barrier) {
    std::vector<uint32_t> x(128);
    uint32_t want = 0;
    for (int i = 0; i < 128; i++) want += x[i] = (uint32_t)(i * 3 + 1);
    const CUdeviceptr dx = upload(x.data(), 512);
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 4));
    const CUresult rc = launch("block_sum", 1, 128, 0, nullptr, dx, out, barrier);
    if (!barrier) return rc != CUDA_SUCCESS ? true : fail("a reduction without barriers passed");
    CU(rc);
    CHECK(download<uint32_t>(out, 1)[0] == want, "block sum wrong");
    return true;
}

bool publish(uint32_t barrier) {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 256));
    const CUresult rc = launch("publish", 1, 64, 0, nullptr, out, barrier);
    if (!barrier) return rc != CUDA_SUCCESS ? true : fail("an unsynchronized publish passed");
    CU(rc);
    for (uint32_t v : download<uint32_t>(out, 64)) CHECK(v == 42, "a thread read %u", v);
    return true;
}

bool count_then_read(uint32_t barrier) {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 256));
    const CUresult rc = launch("count_then_read", 1, 64, 0, nullptr, out, barrier);
    if (!barrier) return rc != CUDA_SUCCESS ? true : fail("a read racing with atomics passed");
    CU(rc);
    for (uint32_t v : download<uint32_t>(out, 64)) CHECK(v == 64, "a thread read %u", v);
    return true;
}

bool staged(const char* kernel, uint32_t tiles, uint32_t flag, size_t tile_bytes, unsigned threads) {
    std::vector<uint8_t> src(tiles * tile_bytes);
    for (size_t i = 0; i < src.size(); i++) src[i] = (uint8_t)(i * 13 + 5);
    const CUdeviceptr s = upload(src.data(), src.size());
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, src.size()));
    const CUresult rc = launch(kernel, 1, threads, 0, nullptr, s, out, tiles, flag);
    if (!flag) return rc != CUDA_SUCCESS ? true : fail("%s without its synchronisation passed", kernel);
    CU(rc);
    CHECK(download<uint8_t>(out, src.size()) == src, "%s copied wrong bytes", kernel);
    return true;
}

bool barrier_in_branch(uint32_t all) {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 256));
    const CUresult rc = launch("barrier_in_branch", 1, 64, 0, nullptr, out, all);
    if (!all) return rc != CUDA_SUCCESS ? true : fail("a barrier half the block reached passed");
    CU(rc);
    auto v = download<uint32_t>(out, 64);
    for (unsigned t = 0; t < 64; t++) CHECK(v[t] == 63 - t, "out[%u] = %u", t, v[t]);
    return true;
}

bool shared_overrun() {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 4));
    const CUresult rc = launch("shared_overrun", 1, 33, 0, nullptr, out);
    return rc == CUDA_ERROR_ILLEGAL_ADDRESS ? true : fail("a write past a __shared__ array returned %d", rc);
}

bool too_much_shared() {
    CUdeviceptr out;
    CU(cuMemAlloc_v2(&out, 4));
    return launch("too_much_shared", 1, 32, 0, nullptr, out) != CUDA_SUCCESS ? true : fail("53 KB of static shared memory passed");
}

// Producer on stream 1, consumer on stream 2: with `event` 0 nothing orders
// them. With lazy streams the consumer then runs first and reads poison.
bool cross_stream(uint32_t event, bool async_alloc) {
    const uint32_t n = 1000;
    std::vector<uint32_t> x(n);
    for (uint32_t i = 0; i < n; i++) x[i] = i * 5;
    CUstream s1, s2;
    CU(cuStreamCreate(&s1, CU_STREAM_NON_BLOCKING));
    CU(cuStreamCreate(&s2, CU_STREAM_NON_BLOCKING));
    const CUdeviceptr dx = upload(x.data(), n * 4);
    CUdeviceptr y, z;
    if (async_alloc)
        CU(cuMemAllocAsync(&y, n * 4, s1));
    else
        CU(cuMemAlloc_v2(&y, n * 4));
    CU(cuMemAlloc_v2(&z, n * 4));
    CU(launch("add_one", (n + 127) / 128, 128, 0, s1, dx, y, n));
    if (event) {
        CUevent e;
        CU(cuEventCreate(&e, 0));
        CU(cuEventRecord(e, s1));
        CU(cuStreamWaitEvent(s2, e, 0));
    }
    CU(launch("add_one", (n + 127) / 128, 128, 0, s2, y, z, n));
    std::vector<uint32_t> got(n);
    const CUresult rc = cuMemcpyDtoHAsync_v2(got.data(), z, n * 4, s2);
    int wrong = 0;
    for (uint32_t i = 0; i < n; i++) wrong += got[i] != x[i] + 2;
    if (!event) return (rc != CUDA_SUCCESS || wrong) ? true : fail("unordered streams gave the right answer");
    CU(rc);
    CHECK(wrong == 0, "%d of %u values wrong with the event", wrong, n);
    return true;
}

// ---- graph capture ---------------------------------------------------------------------------
bool capture_replays() {
    CUstream s;
    CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    std::vector<uint32_t> x(256, 7);
    const CUdeviceptr dx = upload(x.data(), 1024);
    CUdeviceptr y;
    CU(cuMemAlloc_v2(&y, 1024));
    CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
    CU(cuMemsetD8Async(y, 0, 1024, s));
    CU(launch("add_one", 2, 128, 0, s, dx, y, 256u));
    CUgraph g;
    CU(cuStreamEndCapture(s, &g));
    CHECK(download<uint32_t>(y, 1)[0] != 8, "captured work ran during the capture");
    CUgraphExec ge;
    CU(cuGraphInstantiateWithFlags(&ge, g, 0));
    CU(cuGraphLaunch(ge, s));
    CU(cuStreamSynchronize(s));
    CHECK(download<uint32_t>(y, 256) == std::vector<uint32_t>(256, 8), "the graph's launch gave wrong values");
    return true;
}

bool capture_refuses(int what) {
    CUstream s, other;
    CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CU(cuStreamCreate(&other, CU_STREAM_NON_BLOCKING));
    CUdeviceptr y;
    CU(cuMemAlloc_v2(&y, 64));
    CUevent outside;
    CU(cuEventCreate(&outside, 0));
    CU(cuEventRecord(outside, other));
    CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
    std::vector<uint8_t> host(64, 1);
    CUresult rc = CUDA_SUCCESS, want = CUDA_SUCCESS;
    switch (what) {
    case 0: rc = cuStreamSynchronize(s), want = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; break;
    case 1: rc = cuMemcpyHtoDAsync_v2(y, host.data(), 64, s), want = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; break;
    case 2: rc = cuStreamWaitEvent(s, outside, 0), want = CUDA_ERROR_STREAM_CAPTURE_ISOLATION; break;
    case 3: rc = cuMemAlloc_v2(&y, 64), want = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; break;
    default: rc = cuCtxSynchronize(), want = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; break;
    }
    CHECK(rc == want, "the refused call returned %d, want %d", rc, want);
    CUgraph g = nullptr;
    CHECK(cuStreamEndCapture(s, &g) == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED && !g,
          "the capture was not invalidated");
    return true;
}

}  // namespace

int main() {
    const char* race = "DR_EMU_RACECHECK=1";
    const char* lazy = "DR_EMU_STREAMS=lazy";
    const char* ahead = "DR_EMU_SCHEDULE=warp-ahead";
    std::vector<Case> cases = {
        // PTX emulations on hand-computed values
        {"mma.m16n8k16: each D register's row and column (A = I, B and C numbered)", {}, mma_hand_values},
        {"mma.m16n8k16: A x B + C on random bf16 operands", {}, [] { return mma_matches_product("mma_probe", true); }},
        {"ldmatrix .x1/.x2/.x4 and .trans: each lane's registers", {}, [] { return ldmatrix_values(0); }},
        {"cp.async: src-size zero-fill, and src-size 0 reads nothing", {}, cp_async_zero_fill},
        {"cvt.rn.bf16x2.f32: ties to even, overflow, subnormals, packing", {}, [] { return cvt_bf16x2_values(false); }},
        {"cvt.rn.bf16x2.f32 of a NaN fails the launch", {}, [] { return cvt_bf16x2_values(true); }, "of a NaN"},
        {"ex2.approx.ftz.f32: powers, flushes, infinities", {}, ex2_values},
        {"mov.b64: each thread's 64 bits", {}, mov_values},
        {"cp.async.wait_group 1 completes all but the newest group", {}, [] { return cp_async_groups(0); }},
        {"shuffles (xor, idx, down) and ballot", {}, warp_ops},
        {"shared and global atomics", {}, atomics},
        {"dynamic shared memory, and its 48 KB limit without the attribute", {}, dynamic_shared, "over the function's limit"},
        {"__launch_bounds__ is enforced at launch", {}, launch_bounds, "exceeds its __launch_bounds__(64)"},
        {"graph capture records, and a launch of the graph replays", {}, capture_replays},
        {"capture: a stream synchronize is refused", {}, [] { return capture_refuses(0); }, "being captured"},
        {"capture: a pageable copy is refused", {}, [] { return capture_refuses(1); }, "pageable host memory"},
        {"capture: a wait on an event from outside is refused", {}, [] { return capture_refuses(2); }, "outside the capture"},
        {"capture: cuMemAlloc in a thread-local capture is refused", {}, [] { return capture_refuses(3); }},
        {"capture: cuCtxSynchronize is refused", {}, [] { return capture_refuses(4); }, "being captured"},
        // planted bugs, each caught, beside the correct twin
        {"correct: the last element of a buffer", {}, [] { return read_past_end(0); }},
        {"PLANTED out-of-bounds read is caught", {}, [] { return read_past_end(1); }, "past the end of a 400-byte device allocation"},
        {"correct: a block reduction with barriers (race detector on)", {race}, [] { return block_sum(1); }},
        {"PLANTED missing barrier in a reduction is caught", {race}, [] { return block_sum(0); }, "shared-memory race"},
        {"correct: a value published through shared memory (race detector on)", {race}, [] { return publish(1); }},
        {"PLANTED shared race (write, read, no barrier) is caught", {race}, [] { return publish(0); }, "read after write"},
        {"correct: atomics into shared memory, a barrier, then reads (race detector on)", {race},
         [] { return count_then_read(1); }},
        {"PLANTED read of a shared atomic counter before the barrier is caught", {race},
         [] { return count_then_read(0); }, "write after read"},
        {"correct: a cp.async double buffer with its waits", {}, [] { return staged("staged_copy", 4, 1, 512, 32); }},
        {"PLANTED missing cp.async.wait_group is caught", {}, [] { return staged("staged_copy", 4, 0, 512, 32); }, "still writing"},
        {"correct: a double buffer with its trailing barrier (warp-ahead, race detector)", {ahead, race},
         [] { return staged("double_buffer", 4, 1, 1024, 64); }},
        {"PLANTED missing trailing barrier of a double buffer is caught (warp-ahead, race detector)", {ahead, race},
         [] { return staged("double_buffer", 4, 0, 1024, 64); }, "dr stand-in:"},
        {"PLANTED ldmatrix row address not 16-byte aligned is caught", {}, [] { return ldmatrix_values(2); },
         "not 16-byte aligned"},
        {"PLANTED wrong mma fragment layout is caught by its product", {}, [] { return mma_matches_product("mma_swapped_a", false); }},
        {"correct: two streams ordered by an event (lazy streams)", {lazy}, [] { return cross_stream(1, false); }},
        {"PLANTED missing cross-stream event is caught (lazy streams)", {lazy}, [] { return cross_stream(0, false); }},
        {"correct: memory allocated on one stream used on another after an event (lazy)", {lazy}, [] { return cross_stream(1, true); }},
        {"PLANTED allocation used on another stream without an event is caught (lazy)", {lazy},
         [] { return cross_stream(0, true); }, "has not made yet"},
        {"correct: a barrier every thread reaches", {}, [] { return barrier_in_branch(1); }},
        {"PLANTED barrier in a branch is caught", {}, [] { return barrier_in_branch(0); }, "__syncthreads"},
        {"PLANTED write past a __shared__ array is caught", {}, shared_overrun, "past the end of __shared__ s"},
        {"PLANTED static shared memory over 48 KB is caught", {}, too_much_shared, "static shared memory"},
    };
    for (Case& c : hopper_cases()) cases.push_back(std::move(c));
    int failed = 0;
    for (const Case& c : cases) failed += run_case(c);
    printf("%d passed, %d failed\n", (int)cases.size() - failed, failed);
    return failed ? 1 : 0;
}
