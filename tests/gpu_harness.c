/* GPU test machinery (see gpu_harness.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpu_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "test_util.h"
#ifdef GH_EMU
#include <signal.h>
#include <sys/mman.h>

#include "emu_runtime.h"
static void gh_catch_faults(void);
static const char *volatile gh_running; /* the kernel being emulated, for the fault message */
#endif

static void gh_fill_bytes(CUdeviceptr p, unsigned char byte, size_t bytes);

static void gh_die(const char *what) {
    fprintf(stderr, "FATAL: %s: %s\n", what, sprig_last_error());
    exit(1);
}

#ifndef GH_EMU
/* The device's own arch when NVRTC knows it; else PTX for the newest arch
 * below it, which the driver JIT-compiles (a GPU newer than the toolkit). */
static void gh_pick_arch(gh_ctx *h) {
    int want = h->dev->props.cc_major * 10 + h->dev->props.cc_minor;
    int archs[64];
    int n = sprig_supported_archs(archs, 64);
    int best = 0;
    for (int i = 0; i < n && i < 64; ++i) {
        if (archs[i] == want) {
            snprintf(h->arch, sizeof h->arch, "sm_%d", want);
            return;
        }
        if (archs[i] < want && archs[i] > best) best = archs[i];
    }
    if (!best) {
        fprintf(stderr, "FATAL: NVRTC cannot target sm_%d or anything older\n", want);
        exit(1);
    }
    snprintf(h->arch, sizeof h->arch, "compute_%d", best);
}

#endif

static uint64_t gh_seed(void) {
    const char *env = getenv("SPRIG_TEST_SEED");
    if (env && *env) return strtoull(env, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    return s ? s : 1;
}

#ifdef GH_EMU
void gh_open(gh_ctx *h, const char *test) {
    memset(h, 0, sizeof *h);
    h->test = test;
    h->emu = h->quick = 1;
    gh_catch_faults();
    /* SPRIG_TEST_TEMPLATE_DIR: test templates being edited without rebuilding. */
    if (sprig_gen_open(&h->gen, getenv("SPRIG_TEST_TEMPLATE_DIR")) != SPRIG_OK) gh_die("starting the generator");
    snprintf(h->arch, sizeof h->arch, "emulator");
    h->seed = gh_seed();
    h->rng = h->seed;
    printf("%s: CPU emulator (quick cases only); seed %llu (set SPRIG_TEST_SEED=%llu to repeat)\n", test,
           (unsigned long long)h->seed, (unsigned long long)h->seed);
    fflush(stdout);
}
#else
static int gh_env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

void gh_open(gh_ctx *h, const char *test) {
    memset(h, 0, sizeof *h);
    h->test = test;
    h->quick = gh_env_flag("SPRIG_TEST_QUICK");
    sprig_status s = sp_device_open(&h->dev, 0);
    if (s == SPRIG_E_NO_DRIVER || s == SPRIG_E_NO_DEVICE) {
        printf("%s: skipped: %s: %s\n", test, sprig_status_name(s), sprig_last_error());
        exit(77);
    }
    if (s != SPRIG_OK) gh_die("opening GPU 0");
    /* SPRIG_TEST_TEMPLATE_DIR: test templates being edited without rebuilding. */
    if (sprig_gen_open(&h->gen, getenv("SPRIG_TEST_TEMPLATE_DIR")) != SPRIG_OK) gh_die("starting the generator");
    gh_pick_arch(h);
    h->seed = gh_seed();
    h->rng = h->seed;
    const sp_device_props *p = &h->dev->props;
    printf("%s: %s (sm_%d%d, %d SMs), compiling for %s%s; seed %llu (set SPRIG_TEST_SEED=%llu to repeat)\n",
           test, p->name, p->cc_major, p->cc_minor, p->sm_count, h->arch, h->quick ? ", quick cases only" : "",
           (unsigned long long)h->seed, (unsigned long long)h->seed);
    fflush(stdout);
}
#endif

int gh_finish(gh_ctx *h) {
    sprig_gen_close(h->gen);
#ifndef GH_EMU
    sp_device_close(h->dev);
#endif
    printf("%s: %d cases\n", h->test, h->cases);
    return sp_test_finish(h->test, h->cases);
}

/* ---- kernels ----------------------------------------------------------------------- */

int gh_build(gh_ctx *h, const char *family, int d, int f, const char *dtype, int batch, int g,
             const char *params, int allow_invalid, gh_kernel *k) {
    memset(k, 0, sizeof *k);
    snprintf(k->params, sizeof k->params, "%s", params ? params : "");
    k->req = (sprig_request){family, d, f, dtype, batch, g, k->params};
    /* SPRIG_TEST_FILTER: run only the kernels whose description contains it. */
    const char *filter = getenv("SPRIG_TEST_FILTER");
    if (filter && *filter) {
        char desc[512];
        snprintf(desc, sizeof desc, "%s d=%d f=%d %s B=%d g=%d [%s]", family, d, f, dtype, batch, g, k->params);
        if (!strstr(desc, filter)) return 0;
    }
    sprig_status s = sprig_gen_render(h->gen, &k->req, &k->plan);
    if (s == SPRIG_E_INVALID && allow_invalid) {
        printf("  skip  %s d=%d f=%d %s B=%d g=%d [%s]: %s\n", family, d, f, dtype, batch, g, k->params,
               sprig_last_error());
        return 0;
    }
    const char *stage = "rendering";
#ifdef GH_EMU
    if (s == SPRIG_OK) {
        stage = "compiling for the emulator";
        s = sp_emu_module_load(k->plan, (sp_emu_module **)&k->emu);
    }
#else
    if (s == SPRIG_OK) {
        stage = "compiling";
        sprig_compile_opts opts = {h->arch, 0, NULL, 0};
        if (!strncmp(h->arch, "compute_", 8)) opts.want_ptx = 1;
        s = sprig_compile(k->plan, &opts, &k->bin);
    }
    if (s == SPRIG_OK) {
        stage = "loading";
        s = sp_module_load(h->dev, k->bin, &k->mod);
    }
#endif
    if (s == SPRIG_OK && k->plan->workspace_bytes) {
        /* The ABI: zeroed once when allocated. */
        k->ws = gh_alloc(k->plan->workspace_bytes);
        gh_fill_bytes(k->ws, 0, k->plan->workspace_bytes);
    }
    if (s != SPRIG_OK) {
        fprintf(stderr, "FAIL  %s d=%d f=%d %s B=%d g=%d [%s]: %s: %s: %s\n", family, d, f, dtype, batch, g,
                k->params, stage, sprig_status_name(s), sprig_last_error());
        ++sp_test_failures;
        h->fail_mark = sp_test_failures; /* counted here: not again against the next case */
        gh_kernel_free(k);
        return 0;
    }
    return 1;
}

void gh_kernel_free(gh_kernel *k) {
    gh_free(k->ws);
#ifdef GH_EMU
    sp_emu_module_free(k->emu);
#else
    sp_module_unload(k->mod);
#endif
    sprig_binary_free(k->bin);
    sprig_plan_free(k->plan);
    memset(k, 0, sizeof *k);
}

void gh_launch(gh_ctx *h, gh_kernel *k, sp_kargs *bound) {
    void **args = NULL;
    if (sp_kargs_finish(bound, &args) != SPRIG_OK) {
        fprintf(stderr, "FATAL: binding %s: %s\n", k->plan->key, sprig_last_error());
        exit(1);
    }
#ifdef GH_EMU
    (void)h;
    gh_running = k->plan->key;
    sprig_status s = sp_emu_plan_launch(k->emu, k->plan, args); /* synchronous */
    gh_running = NULL;
#else
    (void)h;
    sprig_status s = sp_plan_launch(k->mod, k->plan, args, NULL);
#endif
    if (s != SPRIG_OK) {
        fprintf(stderr, "FATAL: running %s: %s: %s\n", k->plan->key, sprig_status_name(s), sprig_last_error());
        exit(1);
    }
}

void gh_sync(gh_ctx *h) {
#ifndef GH_EMU
    if (sp_device_sync(h->dev) != SPRIG_OK) gh_die("a kernel failed (asynchronous error)");
#else
    (void)h;
#endif
}

void gh_run(gh_ctx *h, gh_kernel *k, sp_kargs *args) {
    gh_launch(h, k, args);
#ifndef GH_EMU
    if (sp_device_sync(h->dev) != SPRIG_OK) {
        fprintf(stderr, "FATAL: running %s: %s: %s\n", k->plan->key, "kernel failed", sprig_last_error());
        exit(1);
    }
#endif
}

/* ---- random operands ---------------------------------------------------------------- */

uint64_t gh_next(gh_ctx *h) {
    uint64_t x = h->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double gh_unit(gh_ctx *h) { return (double)(gh_next(h) >> 11) * 0x1p-53; }
double gh_uniform(gh_ctx *h) { return 2.0 * gh_unit(h) - 1.0; }

void gh_fill(gh_ctx *h, int bf16, double scale, size_t n, float *vals, uint16_t *bits) {
    for (size_t i = 0; i < n; ++i) {
        uint16_t b = sp_ref_to_bits(bf16, (float)(scale * gh_uniform(h)));
        if (bits) bits[i] = b;
        if (vals) vals[i] = sp_ref_from_bits(bf16, b);
    }
}

void *gh_xalloc(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FATAL: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* ---- device buffers ------------------------------------------------------------------ */

#ifdef GH_EMU
/* The emulator's device memory is host memory: a CUdeviceptr holds the address.
 * Each buffer ends (16-byte aligned) right before an inaccessible page, so a
 * kernel reading or writing past the end faults at once instead of silently
 * corrupting its neighbour; the fault handler names the kernel. */
static void *gh_host(CUdeviceptr p) { return (void *)(uintptr_t)p; }

typedef struct gh_map { void *base; size_t len; } gh_map; /* stored just below the buffer */

CUdeviceptr gh_alloc(size_t bytes) {
    if (!bytes) return 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (bytes + 15) & ~(size_t)15;
    size_t data = (body + sizeof(gh_map) + 15 + page - 1) / page * page;
    char *base = mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(base + data, page, PROT_NONE) != 0) {
        fprintf(stderr, "FATAL: cannot map %zu bytes for an emulated buffer\n", bytes);
        exit(1);
    }
    char *start = base + data - body;
    gh_map m = {base, data + page};
    memcpy(start - sizeof m, &m, sizeof m);
    return (CUdeviceptr)(uintptr_t)start;
}

void gh_free(CUdeviceptr p) {
    if (!p) return;
    gh_map m;
    memcpy(&m, (char *)gh_host(p) - sizeof m, sizeof m);
    munmap(m.base, m.len);
}

void gh_upload(CUdeviceptr dst, const void *src, size_t bytes) { if (bytes) memcpy(gh_host(dst), src, bytes); }
void gh_download(void *dst, CUdeviceptr src, size_t bytes) { if (bytes) memcpy(dst, gh_host(src), bytes); }
static void gh_fill_bytes(CUdeviceptr p, unsigned char byte, size_t bytes) { if (bytes) memset(gh_host(p), byte, bytes); }

static void gh_on_fault(int sig, siginfo_t *info, void *uc) {
    (void)uc;
    char msg[512];
    int n = snprintf(msg, sizeof msg, "FATAL: signal %d at address %p while emulating %s "
                     "(an access past the end of a buffer lands on a guard page)\n",
                     sig, info->si_addr, gh_running ? gh_running : "(no kernel)");
    if (n > 0) (void)!write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    _exit(1);
}

static void gh_catch_faults(void) {
    static char alt[1 << 16];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = gh_on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}
#else
CUdeviceptr gh_alloc(size_t bytes) {
    CUdeviceptr p = 0;
    if (sp_buf_alloc(&p, bytes) != SPRIG_OK) gh_die("allocating a GPU buffer");
    return p;
}

void gh_upload(CUdeviceptr dst, const void *src, size_t bytes) {
    if (sp_buf_upload(dst, src, bytes) != SPRIG_OK) gh_die("uploading");
}

void gh_download(void *dst, CUdeviceptr src, size_t bytes) {
    if (sp_buf_download(dst, src, bytes) != SPRIG_OK) gh_die("downloading");
}

static void gh_fill_bytes(CUdeviceptr p, unsigned char byte, size_t bytes) {
    if (sp_buf_fill(p, byte, bytes) != SPRIG_OK) gh_die("filling a GPU buffer");
}

void gh_free(CUdeviceptr p) { sp_buf_free(p); }
#endif

CUdeviceptr gh_upload_new(const void *src, size_t bytes) {
    CUdeviceptr p = gh_alloc(bytes);
    gh_upload(p, src, bytes);
    return p;
}

void gh_poison(CUdeviceptr p, size_t bytes) { gh_fill_bytes(p, 0xFF, bytes); }

CUdeviceptr gh_alloc_out(size_t bytes) { return gh_alloc(bytes + GH_GUARD); }
void gh_poison_out(CUdeviceptr p, size_t bytes) { gh_poison(p, bytes + GH_GUARD); }
int gh_guard_intact(CUdeviceptr p, size_t bytes) { return gh_still_poisoned(p, bytes, bytes + GH_GUARD); }

int gh_still_poisoned(CUdeviceptr p, size_t from, size_t to) {
    if (to <= from) return 1;
    unsigned char *buf = gh_xalloc(to - from);
    gh_download(buf, p + from, to - from);
    size_t i = 0;
    while (i < to - from && buf[i] == 0xFF) ++i;
    free(buf);
    return i == to - from;
}

/* ---- checking ---------------------------------------------------------------------- */

gh_cmp gh_compare(int bf16, const uint16_t *out, size_t ld_out, const double *ref, size_t ld_ref, int rows,
                  int cols) {
    gh_cmp c = {0, 0, 0};
    double diff2 = 0, ref2 = 0, out2 = 0;
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < cols; ++j) {
            double o = sp_ref_from_bits(bf16, out[(size_t)r * ld_out + j]);
            double want = ref[(size_t)r * ld_ref + j];
            ++c.n;
            if (!isfinite(o)) {
                ++c.nan;
                continue;
            }
            diff2 += (o - want) * (o - want);
            ref2 += want * want;
            out2 += o * o;
        }
    if (ref2 > 0) c.rel = sqrt(diff2 / ref2);
    else c.rel = out2 > 0 ? INFINITY : 0.0;
    return c;
}

gh_cmp gh_worse(gh_cmp a, gh_cmp b) {
    gh_cmp c = a;
    if (b.rel > c.rel || isnan(b.rel)) c.rel = b.rel;
    if (b.nan > c.nan) c.nan = b.nan;
    if (b.n > c.n) c.n = b.n;
    return c;
}

static void gh_case_prefix(FILE *to, const char *tag, const gh_kernel *k, const char *what) {
    const sprig_request *r = &k->req;
    fprintf(to, "%-5s %s%s%s d=%d f=%d %s B=%d g=%d [%s]", tag, r->family, what && *what ? " " : "",
            what ? what : "", r->d, r->f, r->dtype, r->batch, r->g, r->params);
}

int gh_report(gh_ctx *h, const gh_kernel *k, const char *what, double active, gh_cmp c) {
    int norm_ok = c.nan == 0 && c.rel < GH_TOL;
    int ok = norm_ok && sp_test_failures == h->fail_mark;
    ++h->cases;
    FILE *to = ok ? stdout : stderr;
    gh_case_prefix(to, ok ? "ok" : "FAIL", k, what);
    fprintf(to, " active=%.2f rel=%.2e", active, c.rel);
    if (c.nan) fprintf(to, " nan=%ld/%ld (unwritten or overflowed)", c.nan, c.n);
    fprintf(to, "\n");
    fflush(to);
    if (!norm_ok) ++sp_test_failures;
    h->fail_mark = sp_test_failures;
    return ok;
}

void gh_fail_case(gh_ctx *h, const gh_kernel *k, const char *fmt, ...) {
    (void)h;
    gh_case_prefix(stderr, "FAIL", k, "");
    fprintf(stderr, ": ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    ++sp_test_failures;
}

/* ---- MLP fixtures ------------------------------------------------------------------ */

void gh_mlp_open(gh_ctx *h, gh_mlp *w, int d, int f, int bf16) {
    memset(w, 0, sizeof *w);
    w->d = d, w->f = f, w->bf16 = bf16;
    size_t n = (size_t)d * f;
    w->Wg = gh_xalloc(n * sizeof(float)), w->Wu = gh_xalloc(n * sizeof(float));
    w->Wd = gh_xalloc(n * sizeof(float));
    w->Wgb = gh_xalloc(n * 2), w->Wub = gh_xalloc(n * 2), w->Wdb = gh_xalloc(n * 2);
    /* Scaled like a real layer: uniform in ±1/sqrt(fan-in). */
    gh_fill(h, bf16, 1.0 / sqrt((double)d), n, w->Wg, w->Wgb);
    gh_fill(h, bf16, 1.0 / sqrt((double)d), n, w->Wu, w->Wub);
    gh_fill(h, bf16, 1.0 / sqrt((double)f), n, w->Wd, w->Wdb);
    w->dWg = gh_upload_new(w->Wgb, n * 2);
    w->dWu = gh_upload_new(w->Wub, n * 2);
    w->dWd_n = gh_upload_new(w->Wdb, n * 2);
    uint16_t *t = gh_xalloc(n * 2);
    sp_ref_transpose(w->Wdb, t, d, f, 2);
    w->dWd_t = gh_upload_new(t, n * 2);
    free(t);
}

CUdeviceptr gh_mlp_interleaved(gh_mlp *w, int g) {
    if (w->dWgu_il && w->il_g == g) return w->dWgu_il;
    gh_free(w->dWgu_il);
    size_t n = (size_t)w->d * w->f;
    uint16_t *il = gh_xalloc(2 * n * 2);
    sp_ref_interleave_gate_up(w->Wgb, w->Wub, il, w->f, w->d, g, 2);
    w->dWgu_il = gh_upload_new(il, 2 * n * 2);
    free(il);
    w->il_g = g;
    return w->dWgu_il;
}

void gh_mlp_close(gh_mlp *w) {
    free(w->Wg), free(w->Wu), free(w->Wd), free(w->Wgb), free(w->Wub), free(w->Wdb);
    gh_free(w->dWg), gh_free(w->dWu), gh_free(w->dWd_n), gh_free(w->dWd_t), gh_free(w->dWgu_il);
    memset(w, 0, sizeof *w);
}

void gh_batch_open(gh_ctx *h, gh_batch *b, const gh_mlp *w, int B) {
    memset(b, 0, sizeof *b);
    b->B = B;
    size_t bd = (size_t)B * w->d, bf = (size_t)B * w->f;
    b->x = gh_xalloc(sizeof(float) * bd);
    b->xb = gh_xalloc(2 * bd);
    gh_fill(h, w->bf16, 1.0, bd, b->x, b->xb);
    b->h_dense = gh_xalloc(sizeof(double) * bf);
    sp_ref_swiglu(w->Wg, w->Wu, b->x, NULL, B, w->d, w->f, 1, b->h_dense);
    b->dx = gh_upload_new(b->xb, 2 * bd);
    b->dh = gh_alloc_out(2 * bf);
    b->dh_in = gh_alloc(2 * bf);
    b->dy = gh_alloc_out(2 * bd);
    b->duids = gh_alloc(sizeof(int) * (size_t)w->f); /* E <= f */
    b->ducount = gh_alloc(sizeof(int));
    b->dmask = gh_alloc(bf);
    b->dids = gh_alloc(sizeof(int) * bf);
    b->dcounts = gh_alloc(sizeof(int) * (size_t)B);
}

void gh_batch_close(gh_batch *b) {
    free(b->x), free(b->xb), free(b->h_dense);
    gh_free(b->dx), gh_free(b->dh), gh_free(b->dh_in), gh_free(b->dy);
    gh_free(b->duids), gh_free(b->ducount), gh_free(b->dmask), gh_free(b->dids), gh_free(b->dcounts);
    memset(b, 0, sizeof *b);
}

/* Every reference and device array of a route, once r->mask is set. */
static void gh_route_finish(gh_route *r, const gh_mlp *w, gh_batch *b) {
    int B = b->B, d = w->d, f = w->f, g = r->g;
    r->ids = gh_xalloc(sizeof(int) * (size_t)B * r->E);
    r->counts = gh_xalloc(sizeof(int) * (size_t)B);
    r->uids = gh_xalloc(sizeof(int) * (size_t)r->E);
    sp_ref_routing(r->mask, B, r->E, r->ids, r->counts, r->uids, &r->U);
    long on = 0;
    for (size_t i = 0; i < (size_t)B * r->E; ++i) on += r->mask[i];
    r->frac = (double)on / ((double)B * r->E);

    /* Reference h: the dense SwiGLU with masked experts exactly 0. */
    double *hm = gh_xalloc(sizeof(double) * (size_t)B * f);
    for (int t = 0; t < B; ++t)
        for (int n = 0; n < f; ++n)
            hm[(size_t)t * f + n] = r->mask[(size_t)t * r->E + n / g] ? b->h_dense[(size_t)t * f + n] : 0.0;
    r->hc = gh_xalloc(sizeof(double) * (size_t)B * f);
    sp_ref_compact_h(hm, r->uids, r->U, B, f, g, r->hc);
    r->y = gh_xalloc(sizeof(double) * (size_t)B * d);
    sp_ref_down(w->Wd, hm, r->mask, B, d, f, g, r->y);

    /* An isolated down kernel's input: h rounded to the storage type, and NaN
     * past the union, where the ABI says nothing was written (never read it). */
    r->hin = gh_xalloc(2 * (size_t)B * f);
    for (size_t i = 0; i < (size_t)B * f; ++i) r->hin[i] = 0xFFFF;
    for (int t = 0; t < B; ++t)
        for (int c = 0; c < r->U * g; ++c) {
            size_t i = (size_t)t * f + c;
            r->hin[i] = sp_ref_to_bits(w->bf16, (float)r->hc[i]);
            hm[(size_t)t * f + (size_t)r->uids[c / g] * g + c % g] = sp_ref_from_bits(w->bf16, r->hin[i]);
        }
    r->y_from_hin = gh_xalloc(sizeof(double) * (size_t)B * d);
    sp_ref_down(w->Wd, hm, r->mask, B, d, f, g, r->y_from_hin);
    free(hm);

    gh_upload(b->duids, r->uids, sizeof(int) * (size_t)r->E);
    gh_upload(b->ducount, &r->U, sizeof(int));
    gh_upload(b->dmask, r->mask, (size_t)B * r->E);
    gh_upload(b->dids, r->ids, sizeof(int) * (size_t)B * r->E);
    gh_upload(b->dcounts, r->counts, sizeof(int) * (size_t)B);
    gh_upload(b->dh_in, r->hin, 2 * (size_t)B * f);
}

void gh_route_random(gh_ctx *h, gh_route *r, const gh_mlp *w, gh_batch *b, int g, double frac) {
    memset(r, 0, sizeof *r);
    r->g = g, r->E = w->f / g;
    r->mask = gh_xalloc((size_t)b->B * r->E);
    int *perm = gh_xalloc(sizeof(int) * (size_t)r->E);
    int n_on = (int)lround(frac * r->E);
    for (int t = 0; t < b->B; ++t) {
        for (int e = 0; e < r->E; ++e) perm[e] = e;
        for (int i = 0; i < n_on; ++i) { /* partial Fisher-Yates */
            int j = i + (int)(gh_next(h) % (uint64_t)(r->E - i));
            int tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
        }
        for (int i = 0; i < n_on; ++i) r->mask[(size_t)t * r->E + perm[i]] = 1;
    }
    free(perm);
    gh_route_finish(r, w, b);
}

void gh_route_from_mask(gh_route *r, const gh_mlp *w, gh_batch *b, int g, const unsigned char *mask) {
    memset(r, 0, sizeof *r);
    r->g = g, r->E = w->f / g;
    r->mask = gh_xalloc((size_t)b->B * r->E);
    memcpy(r->mask, mask, (size_t)b->B * r->E);
    gh_route_finish(r, w, b);
}

void gh_route_close(gh_route *r) {
    free(r->mask), free(r->ids), free(r->counts), free(r->uids);
    free(r->hc), free(r->y), free(r->y_from_hin), free(r->hin);
    memset(r, 0, sizeof *r);
}

/* The up/gate argument list for the batch (routing NULL with all_active;
 * Wu NULL with interleave, where the ABI says it is unused). */
void gh_run_upgate(gh_ctx *h, gh_kernel *k, gh_mlp *w, gh_batch *b, int g, int interleave, int all_active) {
    sp_kargs a;
    sp_kargs_init(&a, k->plan);
    sp_kargs_ptr(&a, "Wg", interleave ? gh_mlp_interleaved(w, g) : w->dWg);
    sp_kargs_ptr(&a, "Wu", interleave ? 0 : w->dWu);
    sp_kargs_ptr(&a, "x", b->dx);
    sp_kargs_ptr(&a, "union_ids", all_active ? 0 : b->duids);
    sp_kargs_ptr(&a, "union_count", all_active ? 0 : b->ducount);
    sp_kargs_ptr(&a, "mask", all_active ? 0 : b->dmask);
    sp_kargs_ptr(&a, "h", b->dh);
    gh_poison_out(b->dh, 2 * (size_t)b->B * w->f);
    gh_run(h, k, &a);
}

void gh_check_upgate(gh_ctx *h, gh_kernel *k, gh_mlp *w, gh_batch *b, const gh_route *r, int interleave,
                     int all_active) {
    int B = b->B, f = w->f, cols = all_active ? f : r->U * r->g;
    size_t bytes = 2 * (size_t)B * f;
    uint16_t *out = gh_xalloc(bytes);
    gh_cmp worst = {0, 0, 0};
    long nonzero_masked = 0, tail_written = 0;
    int guard = 1;
    for (int rep = 0; rep < 2; ++rep) {
        gh_run_upgate(h, k, w, b, r->g, interleave, all_active);
        gh_download(out, b->dh, bytes);
        worst = gh_worse(worst, gh_compare(w->bf16, out, f, all_active ? b->h_dense : r->hc, f, B, cols));
        for (int t = 0; t < B; ++t) {
            for (int c = 0; c < cols && !all_active; ++c) {
                uint16_t v = out[(size_t)t * f + c];
                if (!r->mask[(size_t)t * r->E + r->uids[c / r->g]] && (v & 0x7FFF) != 0) ++nonzero_masked;
            }
            for (int c = cols; c < f; ++c) tail_written += out[(size_t)t * f + c] != 0xFFFF;
        }
        guard &= gh_guard_intact(b->dh, bytes);
    }
    if (nonzero_masked) gh_fail_case(h, k, "%ld h entries of masked experts are not exactly 0", nonzero_masked);
    if (tail_written) gh_fail_case(h, k, "%ld h entries past the union were written", tail_written);
    if (!guard) gh_fail_case(h, k, "wrote past the end of h");
    gh_report(h, k, "h", all_active ? 1.0 : r->frac, worst);
    free(out);
}

void gh_check_down(gh_ctx *h, gh_kernel *k, const gh_mlp *w, gh_batch *b, const gh_route *r, int layout_t,
                   int all_active, CUdeviceptr h_in, const double *ref, const char *what) {
    int B = b->B, d = w->d;
    size_t bytes = 2 * (size_t)B * d;
    uint16_t *out = gh_xalloc(bytes);
    CUdeviceptr Wd = layout_t ? w->dWd_t : w->dWd_n;
    CUdeviceptr uids = all_active ? 0 : b->duids, ucount = all_active ? 0 : b->ducount;
    gh_cmp worst = {0, 0, 0};
    int guard = 1;
    for (int rep = 0; rep < 2; ++rep) {
        gh_poison_out(b->dy, bytes);
        sp_kargs a;
        sp_kargs_init(&a, k->plan);
        sp_kargs_ptr(&a, "Wd", Wd), sp_kargs_ptr(&a, "h", h_in), sp_kargs_ptr(&a, "union_ids", uids);
        sp_kargs_ptr(&a, "union_count", ucount), sp_kargs_ptr(&a, "ws", k->ws), sp_kargs_ptr(&a, "y", b->dy);
        gh_run(h, k, &a);
        gh_download(out, b->dy, bytes);
        worst = gh_worse(worst, gh_compare(w->bf16, out, d, ref, d, B, d));
        guard &= gh_guard_intact(b->dy, bytes);
    }
    if (!guard) gh_fail_case(h, k, "wrote past the end of y");
    gh_report(h, k, what, all_active ? 1.0 : r->frac, worst);
    free(out);
}
