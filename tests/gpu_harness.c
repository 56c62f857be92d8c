/* GPU test machinery (see gpu_harness.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpu_harness.h"
#include "ref.h"
#include "test_util.h"

static void gh_die(const char *what) {
    fprintf(stderr, "FATAL: %s: %s\n", what, sprig_last_error());
    exit(1);
}

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

static uint64_t gh_seed(void) {
    const char *env = getenv("SPRIG_TEST_SEED");
    if (env && *env) return strtoull(env, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    return s ? s : 1;
}

void gh_open(gh_ctx *h, const char *test) {
    memset(h, 0, sizeof *h);
    h->test = test;
    sprig_status s = sp_device_open(&h->dev, 0);
    if (s == SPRIG_E_NO_DRIVER || s == SPRIG_E_NO_DEVICE) {
        printf("%s: skipped: %s: %s\n", test, sprig_status_name(s), sprig_last_error());
        exit(77);
    }
    if (s != SPRIG_OK) gh_die("opening GPU 0");
    if (sprig_gen_open(&h->gen, NULL) != SPRIG_OK) gh_die("starting the generator");
    gh_pick_arch(h);
    h->seed = gh_seed();
    h->rng = h->seed;
    const sp_device_props *p = &h->dev->props;
    printf("%s: %s (sm_%d%d, %d SMs), compiling for %s; seed %llu (set SPRIG_TEST_SEED=%llu to repeat)\n", test,
           p->name, p->cc_major, p->cc_minor, p->sm_count, h->arch, (unsigned long long)h->seed,
           (unsigned long long)h->seed);
    fflush(stdout);
}

int gh_finish(gh_ctx *h) {
    sprig_gen_close(h->gen);
    sp_device_close(h->dev);
    printf("%s: %d cases\n", h->test, h->cases);
    return sp_test_finish(h->test, h->cases);
}

/* ---- kernels ----------------------------------------------------------------------- */

int gh_build(gh_ctx *h, const char *family, int d, int f, const char *dtype, int batch, int g,
             const char *params, int allow_invalid, gh_kernel *k) {
    memset(k, 0, sizeof *k);
    snprintf(k->params, sizeof k->params, "%s", params ? params : "");
    k->req = (sprig_request){family, d, f, dtype, batch, g, k->params};
    sprig_status s = sprig_gen_render(h->gen, &k->req, &k->plan);
    if (s == SPRIG_E_INVALID && allow_invalid) {
        printf("  skip  %s d=%d f=%d %s B=%d g=%d [%s]: %s\n", family, d, f, dtype, batch, g, k->params,
               sprig_last_error());
        return 0;
    }
    const char *stage = "rendering";
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
    if (s == SPRIG_OK && k->plan->workspace_bytes) {
        stage = "allocating the workspace";
        s = sp_buf_alloc(&k->ws, k->plan->workspace_bytes);
        if (s == SPRIG_OK) s = sp_buf_zero(k->ws, k->plan->workspace_bytes);
    }
    if (s != SPRIG_OK) {
        fprintf(stderr, "FAIL  %s d=%d f=%d %s B=%d g=%d [%s]: %s: %s: %s\n", family, d, f, dtype, batch, g,
                k->params, stage, sprig_status_name(s), sprig_last_error());
        ++sp_test_failures;
        gh_kernel_free(k);
        return 0;
    }
    return 1;
}

void gh_kernel_free(gh_kernel *k) {
    gh_free(k->ws);
    sp_module_unload(k->mod);
    sprig_binary_free(k->bin);
    sprig_plan_free(k->plan);
    memset(k, 0, sizeof *k);
}

void gh_run(gh_ctx *h, gh_kernel *k, void **args) {
    sprig_status s = sp_plan_launch(k->mod, k->plan, args, NULL);
    if (s == SPRIG_OK) s = sp_device_sync(h->dev);
    if (s != SPRIG_OK) {
        fprintf(stderr, "FATAL: running %s: %s: %s\n", k->plan->key, sprig_status_name(s), sprig_last_error());
        exit(1);
    }
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
        uint16_t b = ref_to_bits(bf16, (float)(scale * gh_uniform(h)));
        if (bits) bits[i] = b;
        if (vals) vals[i] = ref_from_bits(bf16, b);
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

CUdeviceptr gh_alloc(size_t bytes) {
    CUdeviceptr p = 0;
    if (sp_buf_alloc(&p, bytes) != SPRIG_OK) gh_die("allocating a GPU buffer");
    return p;
}

CUdeviceptr gh_upload_new(const void *src, size_t bytes) {
    CUdeviceptr p = gh_alloc(bytes);
    gh_upload(p, src, bytes);
    return p;
}

void gh_upload(CUdeviceptr dst, const void *src, size_t bytes) {
    if (sp_buf_upload(dst, src, bytes) != SPRIG_OK) gh_die("uploading");
}

void gh_download(void *dst, CUdeviceptr src, size_t bytes) {
    if (sp_buf_download(dst, src, bytes) != SPRIG_OK) gh_die("downloading");
}

void gh_poison(CUdeviceptr p, size_t bytes) {
    if (sp_buf_fill(p, 0xFF, bytes) != SPRIG_OK) gh_die("poisoning an output");
}

void gh_free(CUdeviceptr p) { sp_buf_free(p); }

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
            double o = ref_from_bits(bf16, out[(size_t)r * ld_out + j]);
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
    int ok = c.nan == 0 && c.rel < GH_TOL;
    ++h->cases;
    FILE *to = ok ? stdout : stderr;
    gh_case_prefix(to, ok ? "ok" : "FAIL", k, what);
    fprintf(to, " active=%.2f rel=%.2e", active, c.rel);
    if (c.nan) fprintf(to, " nan=%ld/%ld (unwritten or overflowed)", c.nan, c.n);
    fprintf(to, "\n");
    fflush(to);
    if (!ok) ++sp_test_failures;
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
