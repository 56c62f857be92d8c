/* The problem parameters the SliceGPT decode step needs from rmsnorm and
 * dense_gemv (model/sp_slicegpt.h, docs/kernel-abi.md):
 *   rmsnorm   mode=set (x = src), norm_dim (the divisor: the ORIGINAL hidden
 *             size D over a sliced width d), weightless (no w, w may be NULL),
 *             raw_out (an extra trailing T *raw = the new residual in T);
 *   dense_gemv accumulate (y = T(W x + y)), op=up and op=down.
 * Checked: the defaults keep their keys' values and source, the options reach
 * the source, bad values are SPRIG_E_INVALID with a reason, the tuner never
 * varies them, NVRTC compiles the variants for sm_80/sm_90 without spills, and
 * the kernels run on the CPU emulator (tests/emu) against float64 references
 * with poisoned outputs. Each emulated case also measures the error against
 * the reference of a planted bug (divisor d instead of D, w multiplied in,
 * y ignored) and requires it to be large, so the checks can fail. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_runtime.h"
#include "family_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "sp_space.h"
#include "sprig.h"
#include "test_util.h"

static sprig_plan *render(sprig_gen *gen, const char *family, int d, int f, const char *dtype, int batch,
                          const char *params, sprig_status *st) {
    sprig_request req = {family, d, f, dtype, batch, 1, params};
    sprig_plan *plan = NULL;
    *st = sprig_gen_render(gen, &req, &plan);
    return plan;
}

/* ---- render: keys, source, refusals, tuning space -------------------------------------- */

static void test_render(sprig_gen *gen) {
    sprig_status st;
    sprig_plan *def = render(gen, "rmsnorm", 3072, 3072, "fp16", 1, NULL, &st);
    sprig_plan *opt = render(gen, "rmsnorm", 3072, 3072, "fp16", 1, "mode=set,norm_dim=4096,weightless=1,raw_out=1", &st);
    CHECK_MSG(def && opt, "rmsnorm: %s", sprig_last_error());
    if (def && opt) {
        CHECK_MSG(sp_contains(def->key, "|mode=add,norm_dim=0,weightless=0,raw_out=0,threads=256"), "%s", def->key);
        CHECK_MSG(sp_contains(opt->key, "|mode=set,norm_dim=4096,weightless=1,raw_out=1,"), "%s", opt->key);
        /* the signature gains exactly one trailing argument */
        CHECK(sp_contains(def->source, "T *__restrict__ out, float eps) {"));
        CHECK(sp_contains(opt->source, "T *__restrict__ out, float eps, T *__restrict__ raw) {"));
        /* the row is sp_rmsnorm_row (common.cuh.lua): raw, the divisor and the weight are its arguments */
        CHECK(sp_contains(def->source, "out + (size_t)t * D_COLS, nullptr,") &&
              sp_contains(opt->source, "out + (size_t)t * D_COLS, raw + (size_t)t * D_COLS,"));
        CHECK(sp_contains(def->source, "(float)D_COLS, eps);") && sp_contains(opt->source, "(float)4096, eps);"));
        CHECK(sp_contains(def->source, "sp_rmsnorm_row<THREADS, D_COLS, true, SP_ROW_ADD>(") &&
              sp_contains(opt->source, "sp_rmsnorm_row<THREADS, D_COLS, false, SP_ROW_SET>("));
    }
    sprig_plan_free(def);
    sprig_plan_free(opt);

    def = render(gen, "dense_gemv", 3072, 4096, "bf16", 4, "op=down", &st);
    opt = render(gen, "dense_gemv", 3072, 4096, "bf16", 4, "op=down,accumulate=1", &st);
    CHECK_MSG(def && opt, "dense_gemv: %s", sprig_last_error());
    if (def && opt) {
        CHECK_MSG(sp_contains(def->key, "|op=down,accumulate=0,bias=0,norm=none,norm_dim=0,norm_weightless=0,norm_raw=0,threads=256"), "%s", def->key);
        CHECK_MSG(sp_contains(opt->key, "|op=down,accumulate=1,bias=0,norm=none,norm_dim=0,norm_weightless=0,norm_raw=0,threads=256"), "%s", opt->key);
        CHECK(sp_contains(def->source, "= SP_FROM_F(s);") && !sp_contains(def->source, "SP_TO_F(y["));
        CHECK(sp_contains(opt->source, "SP_FROM_F(s + SP_TO_F(y[(size_t)b * N_ROWS + row0 + r]))"));
        CHECK(sp_contains(opt->params_json, "\"accumulate\":1"));
    }
    sprig_plan_free(def);
    sprig_plan_free(opt);

    /* norm_dim = d is allowed (the same divisor as 0) */
    opt = render(gen, "rmsnorm", 200, 200, "fp16", 2, "norm_dim=200", &st);
    CHECK_MSG(st == SPRIG_OK, "norm_dim=d: %s", sprig_last_error());
    sprig_plan_free(opt);

    static const struct {
        const char *family, *params, *msg;
    } bad[] = {
        {"rmsnorm", "norm_dim=199", "norm_dim=199 is smaller than d=200"},
        {"rmsnorm", "norm_dim=8", "0 means d"},
        {"rmsnorm", "norm_dim=-1", "norm_dim=-1 is out of range"},
        {"rmsnorm", "norm_dim=x", "norm_dim=x is out of range"},
        {"rmsnorm", "weightless=2", "weightless=2 is out of range (allowed: 0, 1)"},
        {"rmsnorm", "raw_out=yes", "raw_out=yes is out of range"},
        {"rmsnorm", "mode=sub", "allowed: add, embed, none, set"},
        {"dense_gemv", "accumulate=2", "accumulate=2 is out of range (allowed: 0, 1)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        sprig_plan *p = render(gen, bad[i].family, 200, 200, "fp16", 1, bad[i].params, &st);
        CHECK_MSG(!p && st == SPRIG_E_INVALID && sp_contains(sprig_last_error(), bad[i].msg), "%s %s: %s (%s)",
                  bad[i].family, bad[i].params, p ? "rendered" : "refused", sprig_last_error());
        sprig_plan_free(p);
    }

    /* The tuner varies only threads for rmsnorm and keeps the caller's values; dense_gemv's
     * accumulate is never a dimension. */
    sprig_request rq = {"rmsnorm", 3072, 3072, "fp16", 1, 1, "mode=set,norm_dim=4096,weightless=1,raw_out=1"};
    sp_space *s = NULL;
    CHECK_MSG(sp_space_build(gen, &rq, &s) == SPRIG_OK && s, "%s", sprig_last_error());
    if (s) {
        CHECK_MSG(s->n_dims == 1 && !strcmp(s->dims[0].name, "threads") && s->n == 6, "dims %d n %zu", s->n_dims, s->n);
        for (size_t i = 0; i < s->n; ++i)
            CHECK_MSG(sp_contains(s->params[i], "mode=set,norm_dim=4096,weightless=1,raw_out=1,"), "%s", s->params[i]);
    }
    sp_space_free(s);
    s = NULL;
    rq.params = NULL; /* defaults: the same single dimension */
    CHECK(sp_space_build(gen, &rq, &s) == SPRIG_OK && s && s->n_dims == 1);
    sp_space_free(s);
    s = NULL;
    sprig_request gq = {"dense_gemv", 3072, 4096, "fp16", 1, 1, "op=up,accumulate=1"};
    CHECK_MSG(sp_space_build(gen, &gq, &s) == SPRIG_OK && s, "%s", sprig_last_error());
    if (s) {
        CHECK_MSG(s->n_dims == 4, "dims %d", s->n_dims); /* threads, rows_per_warp, vec, unroll */
        for (int k = 0; k < s->n_dims; ++k) CHECK(strcmp(s->dims[k].name, "accumulate") != 0);
        for (size_t i = 0; i < s->n; ++i) CHECK(sp_contains(s->params[i], "op=up,accumulate=1,"));
    }
    sp_space_free(s);
}

/* ---- NVRTC ------------------------------------------------------------------------------ */

static void test_compile(sprig_gen *gen) {
    static const struct {
        const char *family, *params, *dtype;
        int d, f, batch;
    } cases[] = {
        {"rmsnorm", "mode=set,norm_dim=4096,weightless=1,raw_out=1", "fp16", 3072, 3072, 1},
        {"rmsnorm", "mode=add,norm_dim=4096,weightless=1", "bf16", 2864, 2864, 1},
        {"rmsnorm", "mode=embed,raw_out=1", "bf16", 3272, 3272, 4},
        {"dense_gemv", "op=up,accumulate=1", "fp16", 4096, 3072, 1},
        {"dense_gemv", "op=down,accumulate=1", "fp16", 3272, 11008, 1},
        {"dense_gemv", "op=up,accumulate=1,rows_per_warp=2", "bf16", 2864, 4096, 8},
    };
    static const char *const archs[] = {"sm_80", "sm_90"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        sprig_status st;
        sprig_plan *p = render(gen, cases[i].family, cases[i].d, cases[i].f, cases[i].dtype, cases[i].batch,
                               cases[i].params, &st);
        CHECK_MSG(p, "%s %s: %s", cases[i].family, cases[i].params, sprig_last_error());
        for (int a = 0; p && a < 2; ++a) {
            sprig_compile_opts o = {archs[a], 0, NULL, 0}; /* cache: $SPRIG_CACHE_DIR */
            sprig_binary *b = NULL;
            CHECK_MSG(sprig_compile(p, &o, &b) == SPRIG_OK, "%s %s %s: %s", cases[i].family, cases[i].params,
                      archs[a], sprig_last_error());
            if (!b) continue;
            const sprig_resources *r = &b->res[0];
            CHECK_MSG(b->n_kernels == 1 && r->registers > 0 && r->spill_store_bytes == 0 && r->spill_load_bytes == 0 &&
                          r->stack_bytes == 0,
                      "%s %s %s: registers %d, spills %d/%d, stack %d", cases[i].family, cases[i].params, archs[a],
                      r->registers, r->spill_store_bytes, r->spill_load_bytes, r->stack_bytes);
            sprig_binary_free(b);
        }
        sprig_plan_free(p);
    }
}

/* ---- the CPU emulator ------------------------------------------------------------------- */

static uint32_t rng_state = 20240611u;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

/* n values uniform in [lo, hi), rounded to the storage type; bits too. */
static void random_operand(float *v, uint16_t *bits, size_t n, float lo, float hi, int bf16) {
    for (size_t i = 0; i < n; ++i) {
        bits[i] = sp_ref_to_bits(bf16, lo + (frand() + 1.0f) * 0.5f * (hi - lo));
        v[i] = sp_ref_from_bits(bf16, bits[i]);
    }
}

/* ‖y − ref‖ / ‖ref‖ (y in storage bits); a NaN gives INFINITY. */
static double rel_error(const uint16_t *y, const double *ref, size_t n, int bf16) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        const double v = sp_ref_from_bits(bf16, y[i]);
        if (isnan(v)) return INFINITY;
        num += (v - ref[i]) * (v - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double tolerance(int bf16) { return bf16 ? 1e-2 : 2e-3; }

typedef struct rms_case {
    int d, B, bf16, threads;
    const char *mode; /* add, set, embed, none */
    int norm_dim;     /* the param; 0 = d */
    int weightless, raw_out;
    int w_null;       /* weightless: pass w = NULL (it must not be read) */
} rms_case;

/* float64 out from x_ref: divisor div, times w unless w is NULL. */
static void rms_ref(const double *xr, int B, int d, double div, const float *w, double eps, double *out) {
    for (int t = 0; t < B; ++t) {
        double ss = 0;
        for (int i = 0; i < d; ++i) ss += xr[t * d + i] * xr[t * d + i];
        const double scale = 1.0 / sqrt(ss / div + eps);
        for (int i = 0; i < d; ++i) out[t * d + i] = xr[t * d + i] * scale * (w ? w[i] : 1.0);
    }
}

static void emu_rmsnorm(sprig_gen *gen, const rms_case *c) {
    const int d = c->d, B = c->B, bf16 = c->bf16, rows = 7, N = B * d;
    const int D = c->norm_dim ? c->norm_dim : d;
    char params[160], what[256];
    snprintf(params, sizeof params, "mode=%s,norm_dim=%d,weightless=%d,raw_out=%d,threads=%d", c->mode, c->norm_dim,
             c->weightless, c->raw_out, c->threads);
    snprintf(what, sizeof what, "emu rmsnorm d=%d B=%d %s [%s]%s", d, B, bf16 ? "bf16" : "fp16", params,
             c->w_null ? " w=NULL" : "");
    sprig_status st;
    sprig_plan *plan = render(gen, "rmsnorm", d, d, bf16 ? "bf16" : "fp16", B, params, &st);
    CHECK_MSG(plan, "%s: %s", what, sprig_last_error());
    if (!plan) return;
    sp_emu_module *m = NULL;
    CHECK_MSG(sp_emu_module_load(plan, &m) == SPRIG_OK, "%s: emulator compile: %s", what, sprig_last_error());
    const int set = !strcmp(c->mode, "set"), embed = !strcmp(c->mode, "embed"), add = !strcmp(c->mode, "add");
    float *x0 = malloc(sizeof(float) * N), *x = malloc(sizeof(float) * N), *src = malloc(sizeof(float) * rows * d);
    float *w = malloc(sizeof(float) * d);
    uint16_t *src_b = malloc(2 * (size_t)rows * d), *w_b = malloc(2 * (size_t)d);
    uint16_t *out = malloc(2 * (size_t)N), *raw = malloc(2 * (size_t)N);
    double *xr = malloc(sizeof(double) * N), *ref = malloc(sizeof(double) * N), *bug = malloc(sizeof(double) * N);
    int row[64];
    for (int i = 0; i < N; ++i) x0[i] = 3 * frand();
    random_operand(src, src_b, (size_t)rows * d, -2, 2, bf16);
    random_operand(w, w_b, d, 0.5f, 1.5f, bf16);
    for (int t = 0; t < B; ++t) row[t] = (3 * t + 2) % rows;
    /* set and embed must not read x: poison it */
    for (int i = 0; i < N; ++i) x[i] = set || embed ? NAN : x0[i];
    for (int i = 0; i < N; ++i) out[i] = raw[i] = 0xffff; /* NaN in both types */
    for (int t = 0; t < B; ++t)
        for (int i = 0; i < d; ++i) {
            const int k = t * d + i;
            xr[k] = set ? src[k] : embed ? src[row[t] * d + i] : add ? (double)x0[k] + src[k] : x0[k];
        }
    const float eps = 1e-5f;
    if (m) {
        sp_kargs k;
        sp_kargs_init(&k, plan);
        fh_ptr(&k, "x", x), fh_ptr(&k, "src", src_b), fh_ptr(&k, "row", row);
        fh_ptr(&k, "w", c->w_null ? NULL : w_b), fh_ptr(&k, "out", out);
        sp_kargs_f32(&k, "eps", eps);
        if (sp_kargs_has(&k, "raw")) fh_ptr(&k, "raw", raw); /* raw_out=1 plans only */
        void **args = NULL;
        CHECK_MSG(sp_kargs_finish(&k, &args) == SPRIG_OK && sp_emu_plan_launch(m, plan, args) == SPRIG_OK, "%s: %s",
                  what, sprig_last_error());
        /* the residual: exact for set/embed/none, one float rounding for add */
        double xerr = 0;
        int raw_exact = 1, raw_untouched = 1;
        for (int k = 0; k < N; ++k) {
            xerr = fmax(xerr, isnan(x[k]) ? INFINITY : fabs(x[k] - xr[k]) / (fabs(xr[k]) + 1e-30));
            raw_exact &= raw[k] == sp_ref_to_bits(bf16, x[k]);
            raw_untouched &= raw[k] == 0xffff;
        }
        CHECK_MSG(add ? xerr <= 6e-8 : xerr == 0, "%s: residual max rel err %g", what, xerr);
        if (c->raw_out) CHECK_MSG(raw_exact, "%s: raw is not T(x)", what);
        else CHECK_MSG(raw_untouched, "%s: raw_out=0 wrote a seventh argument", what);
        rms_ref(xr, B, d, D, c->weightless ? NULL : w, eps, ref);
        const double err = rel_error(out, ref, N, bf16);
        printf("%s: out rel err %.2g", what, err);
        CHECK_MSG(err < tolerance(bf16), "%s: out relative error %g", what, err);
        /* planted bugs: the sliced width as the divisor; w multiplied in although weightless */
        if (D != d) {
            rms_ref(xr, B, d, d, c->weightless ? NULL : w, eps, bug);
            const double e = rel_error(out, bug, N, bf16);
            printf(", vs divisor d %.2g", e);
            CHECK_MSG(e > 10 * tolerance(bf16), "%s: the divisor-d reference also matches (%g)", what, e);
        }
        if (c->weightless) {
            rms_ref(xr, B, d, D, w, eps, bug);
            const double e = rel_error(out, bug, N, bf16);
            printf(", vs weighted %.2g", e);
            CHECK_MSG(e > 10 * tolerance(bf16), "%s: the weighted reference also matches (%g)", what, e);
        }
        printf("\n");
    }
    sp_emu_module_free(m);
    sprig_plan_free(plan);
    free(x0), free(x), free(src), free(w), free(src_b), free(w_b), free(out), free(raw), free(xr), free(ref),
        free(bug);
}

/* dense_gemv with y pre-filled (accumulate=1: the reference adds it; 0: NaN, never read). */
static void emu_gemv(sprig_gen *gen, int d, int f, int B, int bf16, const char *params) {
    char what[256];
    snprintf(what, sizeof what, "emu dense_gemv d=%d f=%d B=%d %s [%s]", d, f, B, bf16 ? "bf16" : "fp16", params);
    sprig_status st;
    sprig_plan *plan = render(gen, "dense_gemv", d, f, bf16 ? "bf16" : "fp16", B, params, &st);
    CHECK_MSG(plan, "%s: %s", what, sprig_last_error());
    if (!plan) return;
    const int up = !sp_contains(plan->key, "op=down"), acc = sp_contains(plan->key, "accumulate=1");
    const int N = up ? f : d, K = up ? d : f;
    float *W = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * B * K), *y0 = malloc(sizeof(float) * B * N);
    uint16_t *W_b = malloc(2 * (size_t)N * K), *x_b = malloc(2 * (size_t)B * K), *y = malloc(2 * (size_t)B * N);
    double *ref = malloc(sizeof(double) * B * N), *bug = malloc(sizeof(double) * B * N);
    random_operand(W, W_b, (size_t)N * K, -0.25f, 0.25f, bf16);
    random_operand(x, x_b, (size_t)B * K, -1, 1, bf16);
    random_operand(y0, y, (size_t)B * N, -2, 2, bf16); /* y as it was before the call */
    if (!acc)
        for (int i = 0; i < B * N; ++i) y[i] = 0xffff;
    sp_ref_gemv(W, x, bug, N, K, B); /* W x alone */
    for (int i = 0; i < B * N; ++i) ref[i] = bug[i] + (acc ? y0[i] : 0);
    sp_emu_module *m = NULL;
    CHECK_MSG(sp_emu_module_load(plan, &m) == SPRIG_OK, "%s: emulator compile: %s", what, sprig_last_error());
    if (m) {
        sp_kargs k;
        sp_kargs_init(&k, plan);
        fh_ptr(&k, "W", W_b), fh_ptr(&k, "x", x_b), fh_ptr(&k, "y", y);
        void **args = NULL;
        CHECK_MSG(sp_kargs_finish(&k, &args) == SPRIG_OK && sp_emu_plan_launch(m, plan, args) == SPRIG_OK, "%s: %s",
                  what, sprig_last_error());
        const double err = rel_error(y, ref, (size_t)B * N, bf16);
        printf("%s: rel err %.2g", what, err);
        CHECK_MSG(err < tolerance(bf16), "%s: relative error %g", what, err);
        if (acc) { /* planted bug: y ignored */
            const double e = rel_error(y, bug, (size_t)B * N, bf16);
            printf(", vs W x alone %.2g", e);
            CHECK_MSG(e > 10 * tolerance(bf16), "%s: the reference without y also matches (%g)", what, e);
        }
        printf("\n");
    }
    sp_emu_module_free(m);
    sprig_plan_free(plan);
    free(W), free(x), free(y0), free(W_b), free(x_b), free(y), free(ref), free(bug);
}

static void test_emulated(sprig_gen *gen) {
    /* d = 200 is a multiple of 8 only: a partial stride for every thread count. */
    static const rms_case rms[] = {
        /* SliceGPT's attention-side norm after o_proj + shortcut: x = src, weightless over D, raw out */
        {200, 3, 0, 64, "set", 264, 1, 1, 1},
        {200, 2, 1, 32, "set", 264, 1, 1, 1},
        /* mode=add with weightless + norm_dim; w passed but must be ignored */
        {200, 3, 0, 64, "add", 4096, 1, 0, 0},
        {200, 2, 1, 128, "add", 264, 1, 1, 0},
        /* raw_out with the ordinary weighted norm; norm_dim = d spelled out */
        {200, 2, 0, 64, "embed", 0, 0, 1, 0},
        {200, 2, 1, 64, "none", 200, 0, 1, 0},
        /* the defaults, through the same harness */
        {200, 3, 0, 64, "add", 0, 0, 0, 0},
        /* d = 1160 at 32 threads: 38 columns a thread, more than sp_rmsnorm_row holds in
         * registers: its two-pass path (chunks of 8, a partial last one) */
        {1160, 2, 0, 32, "add", 0, 0, 1, 0},
        {1160, 2, 1, 32, "set", 1600, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof rms / sizeof rms[0]; ++i) emu_rmsnorm(gen, &rms[i]);
    /* d = 520: two full 256-wide chunks and a tail at vec=8 (op=up's K); f = 264 for op=down's K. */
    emu_gemv(gen, 520, 96, 1, 0, "op=up,accumulate=1,threads=64");
    emu_gemv(gen, 520, 96, 5, 1, "op=up,accumulate=1,threads=64,rows_per_warp=2,vec=4,unroll=1");
    emu_gemv(gen, 200, 264, 1, 0, "op=down,accumulate=1,threads=64,unroll=1");
    emu_gemv(gen, 200, 264, 3, 1, "op=down,accumulate=1,threads=64,rows_per_warp=4,vec=2,unroll=4");
    emu_gemv(gen, 200, 264, 3, 0, "op=down,accumulate=0,threads=64"); /* y poisoned: not read */
}

int main(void) {
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    if (!gen) return sp_test_finish("test_slicegpt_options", 0);
    test_render(gen);
    test_compile(gen);
    test_emulated(gen);
    sprig_gen_close(gen);
    return sp_test_finish("test_slicegpt_options", 0);
}
