#include "emu_compile.h"

#include <vector>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

extern "C" sprig_status sp_fail(sprig_status status, const char *fmt, ...);

bool sp_emu_read_file(const std::string &path, std::string *out) {
    FILE *f = fopen(path.c_str(), "rb");
    if (!f) return false;
    std::vector<char> buf(65536); /* on the heap: the trap path may run on the signal stack */
    size_t n;
    out->clear();
    while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out->append(buf.data(), n);
    const bool ok = !ferror(f);
    fclose(f);
    return ok;
}

namespace {

/* The target architecture the kernels' #if branches see (SPRIG_EMU_ARCH,
 * e.g. 90 for sm_90's vector reductions, 80 for the scalar atomics):
 * $SPRIG_EMU_ARCH, default 90. */
std::string emu_arch(void) {
    const char *a = getenv("SPRIG_EMU_ARCH");
    if (a && *a) {
        char *end = nullptr;
        long v = strtol(a, &end, 10);
        if (*end == 0 && v >= 50 && v < 1000) return std::to_string(v);
        fprintf(stderr, "emu: ignoring SPRIG_EMU_ARCH=%s (want e.g. 80 or 90)\n", a);
    }
    return "90";
}

/* -fsanitize=thread instruments every load and store with a call the
 * emulator answers, -fsanitize=alignment every typed access (emu_check.h);
 * neither sanitizer's runtime is linked: the emulator is that runtime. */
std::string compile_flags(void) {
    return std::string("-std=c++17 -O1 -g -fPIC -DSPRIG_EMU -DSPRIG_EMU_ARCH=") + emu_arch() +
           " -w -fsanitize=thread --param=tsan-instrument-func-entry-exit=0 -fdata-sections"
           " -fsanitize=alignment -fno-sanitize-recover=alignment"
           /* each module keeps its own statics (__shared__ arrays in inline functions
            * would otherwise be one GNU-unique symbol across every loaded module) */
           " -fno-gnu-unique -fvisibility=hidden -include " SPRIG_EMU_DIR "/sp_emu.h";
}


bool write_file(const std::string &path, const std::string &data) {
    FILE *f = fopen(path.c_str(), "wb");
    if (!f) return false;
    const bool ok = fwrite(data.data(), 1, data.size(), f) == data.size();
    return fclose(f) == 0 && ok;
}

/* Shared by every build tree of the user (the plain and the sanitizer builds
 * compile kernels alike): $SPRIG_EMU_CACHE_DIR, else $XDG_CACHE_HOME/sprig/emu,
 * else ~/.cache/sprig/emu; "" when none can be named. */
std::string cache_dir(void) {
    const char *d = getenv("SPRIG_EMU_CACHE_DIR");
    if (d) return d;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    std::string base = xdg && *xdg ? xdg : (home && *home ? std::string(home) + "/.cache" : "");
    if (base.empty()) return "";
    mkdir(base.c_str(), 0755);
    mkdir((base + "/sprig").c_str(), 0755);
    return base + "/sprig/emu";
}

/* XXH3-128 of everything that decides the build, as 32 hex digits. */
std::string build_key(const std::string &text, const std::string &flags) {
    static std::string header; /* sp_emu.h and the link script: editing them must miss the cache */
    if (header.empty()) {
        std::string script;
        if (!sp_emu_read_file(SPRIG_EMU_DIR "/sp_emu.h", &header) || !sp_emu_read_file(SPRIG_EMU_DIR "/emu_shared.ld", &script))
            header = "?";
        header += script;
    }
    XXH3_state_t *st = XXH3_createState();
    XXH3_128bits_reset(st);
    const std::string parts[] = {SPRIG_EMU_CXX, flags, header, text};
    for (const std::string &p : parts) {
        const uint64_t n = p.size();
        XXH3_128bits_update(st, &n, sizeof n);
        XXH3_128bits_update(st, p.data(), p.size());
    }
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    char hex[33];
    snprintf(hex, sizeof hex, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
    return hex;
}

} // namespace

std::string sp_emu_run_capture(const std::string &cmd, int *rc) {
    std::string out;
    FILE *p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) {
        *rc = -1;
        return "popen failed";
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

sprig_status sp_emu_compile(const std::string &text, const std::string &dir, std::string *so_path) {
    const std::string src = dir + "/kernel.cpp", obj = dir + "/kernel.o", so = dir + "/kernel.so";
    *so_path = so;
    if (!write_file(src, text)) return sp_fail(SPRIG_E_IO, "emu: cannot write %s", src.c_str());
    const std::string flags = compile_flags(), cache = cache_dir();
    const std::string cached = cache.empty() ? "" : cache + "/" + build_key(text, flags) + ".so";
    std::string bytes;
    if (!cached.empty() && sp_emu_read_file(cached, &bytes) && !bytes.empty()) {
        /* a copy per module: dlopen of one path twice would share its statics */
        if (write_file(so, bytes)) return SPRIG_OK;
    }
    int rc = 0;
    std::string log = sp_emu_run_capture(std::string(SPRIG_EMU_CXX) + " " + flags + " -c -o " + obj + " " + src, &rc);
    if (rc == 0) log += sp_emu_run_capture(std::string(SPRIG_EMU_CXX) + " -shared -Wl,-T," SPRIG_EMU_DIR "/emu_shared.ld -o " + so + " " + obj, &rc);
    if (rc != 0) return sp_fail(SPRIG_E_COMPILE, "emu: compiling %s failed:\n%s", src.c_str(), log.c_str());
    if (!cached.empty() && sp_emu_read_file(so, &bytes)) {
        /* written under a unique name, then renamed: concurrent tests share the cache */
        mkdir(cache.c_str(), 0755);
        char tmp_suffix[48];
        snprintf(tmp_suffix, sizeof tmp_suffix, ".tmp.%ld.%p", (long)getpid(), (void *)&bytes);
        const std::string tmp = cached + tmp_suffix;
        if (write_file(tmp, bytes) && rename(tmp.c_str(), cached.c_str()) == 0) return SPRIG_OK;
        unlink(tmp.c_str()); /* a cache that cannot be written only costs time */
    }
    return SPRIG_OK;
}
