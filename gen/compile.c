/* sprig_compile: a rendered plan -> NVRTC -> cubin (or PTX), through the
 * on-disk cache, with the per-kernel resource report ptxas prints for -v.
 * Thread-safe: no shared mutable state besides the once-initialised list of
 * architectures; NVRTC programs are per call, errors are thread-local. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nvrtc.h>

#include "cache_internal.h"
#include "sp_cache.h"
#include "sp_error.h"

/* NVRTC results: the message carries nvrtcGetErrorString, the statement, file and line. */
#define SP_CHECK_NVRTC(stmt) SP_CHECK_RESULT(SPRIG_E_COMPILE, "NVRTC", nvrtcResult, NVRTC_SUCCESS, nvrtcGetErrorString, stmt)

#define CP_MAX_ARCHS 64

/* ---- architectures --------------------------------------------------------- */

static struct {
    pthread_once_t once;
    int archs[CP_MAX_ARCHS];
    int n_archs;
    int major, minor;
} cp_nvrtc = {PTHREAD_ONCE_INIT, {0}, 0, 0, 0};

static void cp_query_nvrtc(void) {
    int n = 0;
    if (nvrtcGetNumSupportedArchs(&n) == NVRTC_SUCCESS && n > 0 && n <= CP_MAX_ARCHS &&
        nvrtcGetSupportedArchs(cp_nvrtc.archs) == NVRTC_SUCCESS)
        cp_nvrtc.n_archs = n;
    if (nvrtcVersion(&cp_nvrtc.major, &cp_nvrtc.minor) != NVRTC_SUCCESS) cp_nvrtc.major = cp_nvrtc.minor = 0;
}

int sprig_supported_archs(int *archs, int max) {
    pthread_once(&cp_nvrtc.once, cp_query_nvrtc);
    for (int i = 0; i < cp_nvrtc.n_archs && i < max; ++i) archs[i] = cp_nvrtc.archs[i];
    return cp_nvrtc.n_archs;
}

/* "sm_75, sm_80, ..." for messages. */
static void cp_arch_list(char *out, size_t cap) {
    int archs[CP_MAX_ARCHS];
    int n = sprig_supported_archs(archs, CP_MAX_ARCHS);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && used < cap; ++i)
        used += (size_t)snprintf(out + used, cap - used, "%ssm_%d", i ? ", " : "", archs[i]);
}

sprig_status sprig_parse_arch(const char *text, int *arch, int *is_ptx, char *suffix) {
    if (arch) *arch = 0;
    if (!text) return sp_fail(SPRIG_E_INVALID, "architecture is NULL");
    const char *p = text;
    int ptx = 0;
    if (!strncmp(p, "sm_", 3)) p += 3;
    else if (!strncmp(p, "compute_", 8)) p += 8, ptx = 1;
    int num = 0, digits = 0;
    while (isdigit((unsigned char)*p) && digits < 4) num = num * 10 + (*p++ - '0'), ++digits;
    /* "a": arch-specific features (sm_90a ...); "f": family-portable (CUDA 12.9+). */
    char suf = (*p == 'a' || *p == 'f') ? *p++ : '\0';
    int archs[CP_MAX_ARCHS];
    int n = sprig_supported_archs(archs, CP_MAX_ARCHS);
    int known = 0;
    for (int i = 0; i < n; ++i) known |= archs[i] == num;
    if (!digits || *p || !known || (suf == 'a' && num < 90) || (suf == 'f' && num < 100)) {
        char list[512];
        cp_arch_list(list, sizeof list);
        return sp_fail(SPRIG_E_INVALID,
                       "unknown architecture '%s' (NVRTC %d.%d supports: %s; write sm_90, 90, "
                       "compute_90 for PTX, or sm_90a)",
                       text, cp_nvrtc.major, cp_nvrtc.minor, list);
    }
    if (arch) *arch = num;
    if (is_ptx) *is_ptx = ptx;
    if (suffix) suffix[0] = suf, suffix[1] = '\0';
    return SPRIG_OK;
}

/* ---- the ptxas -v report ------------------------------------------------- */

/* Index of name among the binary's kernels, or -1. */
static int cp_kernel_index(const sprig_binary *bin, const char *name, size_t len) {
    for (int k = 0; k < bin->n_kernels; ++k)
        if (strlen(bin->kernel_names[k]) == len && !strncmp(bin->kernel_names[k], name, len)) return k;
    return -1;
}

/* The number just before `unit` in line (e.g. "34" for " registers"), or -1. */
static int cp_number_before(const char *line, const char *unit) {
    const char *at = strstr(line, unit);
    if (!at || at == line) return -1;
    const char *q = at;
    while (q > line && isdigit((unsigned char)q[-1])) --q;
    return q == at ? -1 : atoi(q);
}

/* Copies the text after `prefix` up to one of `stops` (exclusive) into name. */
static size_t cp_name_after(const char *line, const char *prefix, const char *stops, const char **name) {
    const char *at = strstr(line, prefix);
    if (!at) return 0;
    at += strlen(prefix);
    *name = at;
    return strcspn(at, stops);
}

static void cp_parse_line(sprig_binary *bin, const char *line, int *entry, int *props) {
    const char *name = NULL;
    size_t len;
    if ((len = cp_name_after(line, "Compiling entry function '", "'\n", &name)) > 0) {
        *entry = cp_kernel_index(bin, name, len);
    } else if ((len = cp_name_after(line, "Function properties for ", " \n", &name)) > 0) {
        *props = cp_kernel_index(bin, name, len); /* may be a device function: -1 */
    } else if (strstr(line, "bytes stack frame") && *props >= 0) {
        sprig_resources *r = &bin->res[*props];
        r->stack_bytes = cp_number_before(line, " bytes stack frame");
        r->spill_store_bytes = cp_number_before(line, " bytes spill stores");
        r->spill_load_bytes = cp_number_before(line, " bytes spill loads");
    } else if (strstr(line, "Used ") && strstr(line, " registers") && *entry >= 0) {
        sprig_resources *r = &bin->res[*entry];
        r->registers = cp_number_before(line, " registers");
        int smem = cp_number_before(line, " bytes smem");
        r->static_smem_bytes = smem < 0 ? 0 : smem;
    }
}

/* Fills bin->res from the ptxas lines of the log ("Compiling entry function
 * 'K' for 'sm_90'", "Function properties for K", "N bytes stack frame, N bytes
 * spill stores, N bytes spill loads", "Used N registers, ..., N bytes smem"). */
static void cp_parse_resources(sprig_binary *bin) {
    for (int k = 0; k < bin->n_kernels; ++k) {
        bin->res[k] = (sprig_resources){-1, 0, 0, 0, 0};
    }
    int entry = -1, props = -1;
    for (const char *line = bin->log; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), line);
        cp_parse_line(bin, buf, &entry, &props);
        line = nl ? nl + 1 : line + len;
    }
}

/* ptxas's report where the log has it; else what the cubin's tables say
 * (NVRTC can return a cubin with an empty log: gen/cubin_info.c). */
static void cp_read_resources(sprig_binary *bin) {
    cp_parse_resources(bin);
    for (int k = 0; k < bin->n_kernels; ++k)
        if (bin->res[k].registers < 0)
            sprig_cubin_kernel_info(bin->image, bin->image_size, bin->kernel_names[k], &bin->res[k]);
}

/* ---- NVRTC ---------------------------------------------------------------- */

static double cp_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char *cp_program_log(nvrtcProgram prog) {
    size_t n = 0;
    if (nvrtcGetProgramLogSize(prog, &n) != NVRTC_SUCCESS) n = 0;
    char *log = malloc(n + 1);
    if (!log) return NULL;
    log[0] = '\0';
    if (n && nvrtcGetProgramLog(prog, log) != NVRTC_SUCCESS) log[0] = '\0';
    log[n] = '\0';
    return log;
}

static sprig_status cp_take_image(nvrtcProgram prog, sprig_binary *bin) {
    size_t n = 0;
    if (bin->is_ptx) SP_CHECK_NVRTC(nvrtcGetPTXSize(prog, &n));
    else SP_CHECK_NVRTC(nvrtcGetCUBINSize(prog, &n));
    if (n == 0) return sp_fail(SPRIG_E_COMPILE, "NVRTC produced an empty %s", bin->is_ptx ? "PTX" : "cubin");
    bin->image = malloc(n + 1);
    SP_CHECK_ALLOC(bin->image);
    ((char *)bin->image)[n] = '\0';
    bin->image_size = n;
    if (bin->is_ptx) SP_CHECK_NVRTC(nvrtcGetPTX(prog, bin->image));
    else SP_CHECK_NVRTC(nvrtcGetCUBIN(prog, bin->image));
    return SPRIG_OK;
}

/* Runs NVRTC on the plan's source; on failure the message holds the log. */
static sprig_status cp_run_nvrtc(const sprig_plan *plan, const char *const *opts, int n_opts,
                                 sprig_binary *bin) {
    char name[128];
    snprintf(name, sizeof name, "%s.cu", plan->family);
    nvrtcProgram prog;
    SP_CHECK_NVRTC(nvrtcCreateProgram(&prog, plan->source, name, 0, NULL, NULL));
    nvrtcResult rc = nvrtcCompileProgram(prog, n_opts, opts);
    bin->log = cp_program_log(prog);
    sprig_status s = SPRIG_OK;
    if (!bin->log) s = sp_fail(SPRIG_E_NOMEM, "out of memory reading the NVRTC log");
    else if (rc == NVRTC_ERROR_INVALID_OPTION)
        s = sp_fail(SPRIG_E_INVALID, "NVRTC rejected the options for %s (%s):\n%s", bin->arch,
                    nvrtcGetErrorString(rc), bin->log);
    else if (rc != NVRTC_SUCCESS)
        s = sp_fail(SPRIG_E_COMPILE, "compiling %s (%s) for %s failed (%s):\n%s", name, plan->key, bin->arch,
                    nvrtcGetErrorString(rc), bin->log);
    else s = cp_take_image(prog, bin);
    nvrtcDestroyProgram(&prog);
    return s;
}

/* Every kernel the plan launches must exist in the image: a template that
 * renames or drops one would otherwise only fail at launch, on a GPU. A cubin
 * is asked through its ELF symbol table, not the log, which can be empty. */
static sprig_status cp_check_entries(const sprig_plan *plan, const sprig_binary *bin) {
    for (int k = 0; k < bin->n_kernels; ++k) {
        int found;
        if (bin->is_ptx) {
            char needle[96];
            snprintf(needle, sizeof needle, ".entry %s(", bin->kernel_names[k]);
            found = strstr(bin->image, needle) != NULL;
        } else {
            found = sprig_cubin_kernel_info(bin->image, bin->image_size, bin->kernel_names[k], NULL);
            if (found < 0) return sp_fail(SPRIG_E_COMPILE, "%s: NVRTC's cubin is not an ELF image", plan->key);
        }
        if (!found) {
            const char *log = bin->log ? bin->log : "";
            size_t n = strlen(log);
            return sp_fail(SPRIG_E_COMPILE, "%s: the plan launches kernel '%s' but the compiled %s "
                           "defines no such entry (is it extern \"C\" __global__?); NVRTC's log%s:\n%s",
                           plan->key, bin->kernel_names[k], bin->is_ptx ? "PTX" : "cubin",
                           n > 1500 ? " (its last 1500 bytes)" : "", log + (n > 1500 ? n - 1500 : 0));
        }
    }
    return SPRIG_OK;
}

/* Puts a cached entry's kernels into the plan's order (the family's Lua may
 * list them differently than when the entry was written). 0 if one is missing. */
static int cp_match_cached(const sprig_plan *plan, sprig_binary *bin) {
    sprig_resources res[SPRIG_MAX_KERNELS];
    for (int k = 0; k < plan->n_kernels; ++k) {
        int at = cp_kernel_index(bin, plan->kernels[k].name, strlen(plan->kernels[k].name));
        if (at < 0) return 0;
        res[k] = bin->res[at];
    }
    bin->n_kernels = plan->n_kernels;
    for (int k = 0; k < plan->n_kernels; ++k) {
        bin->res[k] = res[k];
        snprintf(bin->kernel_names[k], sizeof bin->kernel_names[k], "%s", plan->kernels[k].name);
    }
    return 1;
}

void sprig_binary_free(sprig_binary *bin) {
    if (!bin) return;
    free(bin->image);
    free(bin->log);
    free(bin);
}

/* The option list for one compile; out holds up to 6 pointers into arch_opt
 * and string literals. */
static int cp_options(const sprig_compile_opts *opts, int is_ptx, const char *arch_opt, const char **out) {
    int n = 0;
    out[n++] = arch_opt;
    out[n++] = "--std=c++17";
    out[n++] = "-default-device";
    if (!is_ptx) out[n++] = "--ptxas-options=-v";
    if (opts->line_info) out[n++] = "-lineinfo";
    return n;
}

/* Caller owns *out (sprig_binary_free). */
sprig_status sprig_compile(const sprig_plan *plan, const sprig_compile_opts *opts, sprig_binary **out) {
    if (!plan || !opts || !out || !plan->source || !plan->family)
        return sp_fail(SPRIG_E_INVALID, "sprig_compile: NULL argument");
    *out = NULL;
    if (plan->n_kernels < 1 || plan->n_kernels > SPRIG_MAX_KERNELS)
        return sp_fail(SPRIG_E_INVALID, "sprig_compile: plan has %d kernels", plan->n_kernels);
    int num = 0, ptx = 0;
    char suffix[2] = "";
    SP_TRY(sprig_parse_arch(opts->arch ? opts->arch : "sm_90", &num, &ptx, suffix));
    ptx |= opts->want_ptx != 0;

    sprig_binary *bin = calloc(1, sizeof *bin);
    SP_CHECK_ALLOC(bin);
    bin->is_ptx = ptx;
    snprintf(bin->arch, sizeof bin->arch, "%s_%d%s", ptx ? "compute" : "sm", num, suffix);
    bin->n_kernels = plan->n_kernels;
    for (int k = 0; k < plan->n_kernels; ++k)
        snprintf(bin->kernel_names[k], sizeof bin->kernel_names[k], "%s", plan->kernels[k].name);
    char arch_opt[40];
    snprintf(arch_opt, sizeof arch_opt, "-arch=%s", bin->arch);
    const char *nv_opts[8];
    int n_opts = cp_options(opts, ptx, arch_opt, nv_opts);
    sp_cache_key(plan->source, plan->source_len, nv_opts, n_opts, bin->arch, cp_nvrtc.major, cp_nvrtc.minor,
                 bin->cache_key);

    char dir[4096];
    int cached = sp_cache_dir(opts->cache_dir, dir, sizeof dir);
    sprig_status s = SPRIG_OK;
    if (cached && sp_cache_load(dir, bin->cache_key, bin) && cp_match_cached(plan, bin)) {
        bin->cache_hit = 1;
    } else {
        free(bin->image);
        free(bin->log);
        bin->image = NULL;
        bin->log = NULL;
        bin->n_kernels = plan->n_kernels;
        for (int k = 0; k < plan->n_kernels; ++k)
            snprintf(bin->kernel_names[k], sizeof bin->kernel_names[k], "%s", plan->kernels[k].name);
        double t0 = cp_now_ms();
        s = cp_run_nvrtc(plan, nv_opts, n_opts, bin);
        bin->compile_ms = cp_now_ms() - t0;
        if (s == SPRIG_OK && !ptx) cp_read_resources(bin);
        if (s == SPRIG_OK && ptx)
            for (int k = 0; k < bin->n_kernels; ++k) bin->res[k] = (sprig_resources){-1, -1, -1, -1, -1};
        if (s == SPRIG_OK) s = cp_check_entries(plan, bin);
        if (s == SPRIG_OK && cached) sp_cache_store(dir, bin->cache_key, bin); /* best effort */
    }
    if (s != SPRIG_OK) {
        sprig_binary_free(bin);
        return s;
    }
    *out = bin;
    return SPRIG_OK;
}
