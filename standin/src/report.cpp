// Configuration (DR_EMU_* variables) and reports: what the stand-in says on
// stderr, and source lines for code addresses (addr2line on this library,
// which is built with line tables).
#include <dlfcn.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime.h"

namespace emu {

namespace {

long env_long(const char* name, long dflt, long lo, long hi) {
    const char* v = getenv(name);
    if (!v || !*v) return dflt;
    char* end = nullptr;
    const long x = strtol(v, &end, 0);
    if (*end || x < lo || x > hi) fatal("%s=%s: expected an integer from %ld to %ld", name, v, lo, hi);
    return x;
}

bool env_flag(const char* name) {
    const char* v = getenv(name);
    if (!v || !*v || !strcmp(v, "0")) return false;
    if (!strcmp(v, "1")) return true;
    fatal("%s=%s: expected 0 or 1", name, v);
}

Config load() {
    Config c;
    if (const char* cc = getenv("DR_EMU_CC"); cc && *cc) {
        if (sscanf(cc, "%d.%d", &c.cc_major, &c.cc_minor) != 2) fatal("DR_EMU_CC=%s: expected major.minor, e.g. 9.0", cc);
    }
    c.sm_count = (int)env_long("DR_EMU_SMS", 4, 1, 1024);
    c.total_mem = (uint64_t)env_long("DR_EMU_MEMORY_MB", 16 << 10, 1, 1 << 24) << 20;
    // KiB, for a test that places the cap between two allocations of one job
    // (a MiB is coarser than a small teacher's batch).
    if (const char* kb = getenv("DR_EMU_MEMORY_KB"); kb && *kb) {
        if (const char* mb = getenv("DR_EMU_MEMORY_MB"); mb && *mb) fatal("DR_EMU_MEMORY_KB and DR_EMU_MEMORY_MB are both set: set one");
        c.total_mem = (uint64_t)env_long("DR_EMU_MEMORY_KB", 0, 1, 1L << 34) << 10;
    }
    c.workers = (int)env_long("DR_EMU_WORKERS", std::max(1L, std::min(8L, sysconf(_SC_NPROCESSORS_ONLN))), 1, 64);
    c.poison = (unsigned char)env_long("DR_EMU_POISON", 0xff, 0, 255);
    c.racecheck = env_flag("DR_EMU_RACECHECK");
    c.memory_pools = !env_flag("DR_EMU_NO_POOLS");
    c.verbose = env_flag("DR_EMU_VERBOSE");
    c.fail_kernel = (uint64_t)env_long("DR_EMU_FAIL_KERNEL", 0, 0, 1L << 62);
    if (const char* s = getenv("DR_EMU_STREAMS"); s && *s) {
        if (!strcmp(s, "lazy"))
            c.lazy_streams = true;
        else if (strcmp(s, "eager"))
            fatal("DR_EMU_STREAMS=%s: expected eager or lazy", s);
    }
    if (const char* s = getenv("DR_EMU_SCHEDULE"); s && *s) {
        if (!strcmp(s, "warp-ahead"))
            c.schedule = Schedule::WarpAhead;
        else if (!strcmp(s, "reverse"))
            c.schedule = Schedule::Reverse;
        else if (strcmp(s, "lockstep"))
            fatal("DR_EMU_SCHEDULE=%s: expected lockstep, warp-ahead or reverse", s);
    }
    if (const char* s = getenv("DR_EMU_BLOCK_ORDER"); s && *s) {
        if (!strcmp(s, "reverse"))
            c.reverse_blocks = true;
        else if (strcmp(s, "forward"))
            fatal("DR_EMU_BLOCK_ORDER=%s: expected forward or reverse", s);
    }
    return c;
}

std::mutex g_report_lock;

}  // namespace

const Config& config() {
    static const Config c = load();
    return c;
}

std::string strprintf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    const int n = vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    std::string s(n > 0 ? (size_t)n : 0, '\0');
    vsnprintf(s.data(), s.size() + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

void note(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::lock_guard<std::mutex> lk(g_report_lock);
    fputs("dr stand-in: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

void fatal(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("dr stand-in: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

std::string describe_site(Site s) {
    if (!s.file) return "(unknown place)";
    if (s.line <= 0) return strprintf("(%s)", s.file);
    return strprintf("at %s:%d", s.file, s.line);
}

std::string describe_pc(const void* pc) {
    if (!pc) return "(unknown place)";
    static std::mutex lock;
    static std::map<const void*, std::string> cache;
    std::lock_guard<std::mutex> lk(lock);
    auto it = cache.find(pc);
    if (it != cache.end()) return it->second;
    std::string out = strprintf("at %p", pc);
    Dl_info info{};
    if (dladdr(pc, &info) && info.dli_fname) {
        const uintptr_t off = reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase) - 1;
        out = strprintf("at %s+0x%lx", info.dli_fname, (unsigned long)off);
        const std::string cmd = strprintf("addr2line -C -i -f -e '%s' 0x%lx 2>/dev/null", info.dli_fname, (unsigned long)off);
        if (FILE* p = popen(cmd.c_str(), "r")) {
            // With -i, the inline chain innermost first: the first frame
            // outside the stand-in's own headers is the kernel's line
            // (a load in emu::__ldcs is reported where the kernel calls it).
            std::vector<std::pair<std::string, std::string>> frames;
            char func[4096] = {}, line[4096] = {};
            while (fgets(func, sizeof func, p) && fgets(line, sizeof line, p)) {
                func[strcspn(func, "\n")] = 0;
                line[strcspn(line, "\n")] = 0;
                if (line[0] != '?') frames.emplace_back(func, line);
            }
            pclose(p);
            size_t pick = 0;
            while (pick + 1 < frames.size() && frames[pick].second.find("/include/emu/") != std::string::npos) pick++;
            if (!frames.empty()) {
                std::string l = frames[pick].second;
                if (size_t d = l.find(" (discriminator"); d != std::string::npos) l.resize(d);
                std::string f = frames[pick].first;
                if (f.size() > 60) f = f.substr(0, 57) + "...";
                // A kernel inlined into its launcher thunk: the line says enough.
                out = f.find("emu::") != std::string::npos ? strprintf("at %s", l.c_str())
                                                           : strprintf("at %s (%s)", l.c_str(), f.c_str());
            }
        }
    }
    cache.emplace(pc, out);
    return out;
}

}  // namespace emu
