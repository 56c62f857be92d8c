/* Measuring tuning candidates (see sp_measure.h).
 *
 * Three caches, each rebuilt only when what it depends on changes:
 *   weights (d, f, dtype):  W_gate, W_up, W_down and their packed layouts,
 *                           the router for the current g;
 *   tokens  (batch, d, f):  x [B][d], x_f [B][f] (dense_gemv op=down), and the
 *                           dense float64 SwiGLU h of every neuron (lazily);
 *   problem (the key):      routing, the down kernels' input h, the float64
 *                           references (each computed once, when first needed)
 *                           and every device buffer.
 * A candidate is a "variant" of its family (which layout, which op), read
 * from the rendered plan's parameters; the variant decides the argument list,
 * the weight slots it reads and how its output is checked. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sp_error.h"
#include "sp_measure.h"
#include "sp_operands.h"
#include "sp_reference.h"

#define MZ_MAX_SETS 64
#define MZ_MAX_ARGS 10
#define MZ_GUARD 4096            /* poisoned bytes after every output */
#define MZ_POISON 0xFF           /* NaN in fp16 and bf16, -1 as int */

void sp_measure_opts_init(sp_measure_opts *o) {
    memset(o, 0, sizeof *o);
    o->warmup = 3;
    o->reps = 30;
    o->tolerance = 1e-2;
    o->seed = 1;
    o->min_sets = 2;
    o->max_rotation_bytes = (size_t)4 << 30;
}

/* ---- operands: seeded per shape (sp_operands.h) ----------------------------------------- */

static void *mz_alloc(size_t bytes) { return malloc(bytes ? bytes : 1); }

/* ---- the caches ----------------------------------------------------------------------- */

typedef struct mz_weights {
    int d, f, bf16;              /* valid when f > 0 */
    float *Wg, *Wu, *Wd;         /* [f][d], [f][d], W_down [d][f]: values rounded to the dtype */
    uint16_t *Wgb, *Wub, *Wdb;
    uint16_t *WdTb;              /* W_downᵀ [f][d] (lazily) */
    uint16_t *il;                /* gate/up interleaved [E][2][g][d] for il_g (lazily) */
    int il_g;
    float *Wr;                   /* router [E][d] for wr_g (lazily) */
    uint16_t *Wrb;
    int wr_g;
} mz_weights;

typedef struct mz_tokens {
    int B, d, f, bf16;           /* valid when B > 0 */
    float *x, *xf;               /* [B][d], [B][f] */
    uint16_t *xb, *xfb;
    double *h64;                 /* [B][f]: SwiGLU of every neuron (lazily) */
} mz_tokens;

/* Weight slots a variant may read; each has up to MZ_MAX_SETS device copies. */
enum { SLOT_G, SLOT_U, SLOT_IL, SLOT_DN, SLOT_DT, SLOT_R, MZ_SLOTS };

typedef struct mz_problem {
    int valid;
    char family[32], dtype[8], fixed[256];
    int d, f, B, g, E, bf16;
    double sparsity;
    /* routing: every token has round((1 - sparsity/100) E) experts */
    unsigned char *mask;         /* [B][E] */
    int *ids, *counts, *uids, U;
    uint16_t *hin;               /* down kernels' input: compact h [B][f], NaN past the union */
    /* references, each computed once */
    double *ref_up, *ref_down;   /* dense_gemv: [B][f], [B][d] */
    double *scores;              /* router: [B][E] */
    float thr[2];                /* router threshold per rule (sigmoid, silu_abs) */
    int have_thr[2];
    double *hc;                  /* compact h [B][f] (first U*g columns) */
    double *y_mlp;               /* y of the whole MLP [B][d] */
    double *y_down;              /* y from hin [B][d] */
    /* device */
    sp_dptr w[MZ_SLOTS][MZ_MAX_SETS];
    int w_have[MZ_SLOTS];
    sp_dptr dx, dxf, duids, ducount, dmask, dhin, dout;
    sp_dptr r_scores, r_ids, r_counts, r_uids, r_ucount, r_mask;
} mz_problem;

struct sp_measure {
    sp_exec *e;
    sprig_gen *gen;
    sp_measure_opts o;
    mz_weights w;
    mz_tokens t;
    mz_problem p;
    sp_measure_stats stats;
};

static void mz_weights_free(mz_weights *w) {
    free(w->Wg), free(w->Wu), free(w->Wd), free(w->Wgb), free(w->Wub), free(w->Wdb);
    free(w->WdTb), free(w->il), free(w->Wr), free(w->Wrb);
    memset(w, 0, sizeof *w);
}

static void mz_tokens_free(mz_tokens *t) {
    free(t->x), free(t->xf), free(t->xb), free(t->xfb), free(t->h64);
    memset(t, 0, sizeof *t);
}

static void mz_problem_free(sp_measure *m) {
    mz_problem *p = &m->p;
    for (int s = 0; s < MZ_SLOTS; ++s)
        for (int i = 0; i < p->w_have[s]; ++i) sp_exec_free(m->e, p->w[s][i]);
    sp_dptr dev[] = {p->dx, p->dxf, p->duids, p->ducount, p->dmask, p->dhin, p->dout,
                     p->r_scores, p->r_ids, p->r_counts, p->r_uids, p->r_ucount, p->r_mask};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; ++i) sp_exec_free(m->e, dev[i]);
    free(p->mask), free(p->ids), free(p->counts), free(p->uids), free(p->hin);
    free(p->ref_up), free(p->ref_down), free(p->scores), free(p->hc), free(p->y_mlp), free(p->y_down);
    memset(p, 0, sizeof *p);
}

sprig_status sp_measure_open(sp_measure **out, sp_exec *exec, sprig_gen *gen, const sp_measure_opts *opts) {
    if (!out || !exec || !gen) return sp_fail(SPRIG_E_INVALID, "sp_measure_open: NULL argument");
    *out = NULL;
    sp_measure *m = calloc(1, sizeof *m);
    SP_CHECK_ALLOC(m);
    m->e = exec, m->gen = gen;
    if (opts) m->o = *opts;
    else sp_measure_opts_init(&m->o);
    if (m->o.reps < 1 || m->o.warmup < 0 || m->o.tolerance <= 0 || m->o.min_sets < 1 || m->o.min_sets > MZ_MAX_SETS) {
        free(m);
        return sp_fail(SPRIG_E_INVALID, "sp_measure_open: reps >= 1, warmup >= 0, tolerance > 0, min_sets 1..%d",
                       MZ_MAX_SETS);
    }
    *out = m;
    return SPRIG_OK;
}

void sp_measure_close(sp_measure *m) {
    if (!m) return;
    mz_problem_free(m);
    mz_weights_free(&m->w);
    mz_tokens_free(&m->t);
    free(m);
}

void sp_measure_get_stats(const sp_measure *m, sp_measure_stats *out) { *out = m->stats; }

/* ---- building the caches ---------------------------------------------------------------- */

static sprig_status mz_weights_for(sp_measure *m, int d, int f, int bf16) {
    mz_weights *w = &m->w;
    if (w->f == f && w->d == d && w->bf16 == bf16) return SPRIG_OK;
    mz_weights_free(w);
    size_t n = (size_t)d * f;
    sp_rng r = sp_rng_make(m->o.seed, 1, (uint64_t)d << 32 | (uint64_t)f, (uint64_t)bf16);
    /* Scaled like a real layer: uniform in ±1/sqrt(fan-in). */
    SP_TRY(sp_rng_fill(&r, bf16, 1.0 / sqrt((double)d), n, &w->Wg, &w->Wgb));
    SP_TRY(sp_rng_fill(&r, bf16, 1.0 / sqrt((double)d), n, &w->Wu, &w->Wub));
    SP_TRY(sp_rng_fill(&r, bf16, 1.0 / sqrt((double)f), n, &w->Wd, &w->Wdb));
    w->d = d, w->f = f, w->bf16 = bf16;
    return SPRIG_OK;
}

static sprig_status mz_router_weights(sp_measure *m, int g) {
    mz_weights *w = &m->w;
    if (w->Wr && w->wr_g == g) return SPRIG_OK;
    free(w->Wr), free(w->Wrb);
    w->Wr = NULL, w->Wrb = NULL;
    int E = w->f / g;
    sp_rng r = sp_rng_make(m->o.seed, 2, (uint64_t)w->d << 32 | (uint64_t)E, (uint64_t)w->bf16);
    SP_TRY(sp_rng_fill(&r, w->bf16, 1.0 / sqrt((double)w->d), (size_t)E * w->d, &w->Wr, &w->Wrb));
    w->wr_g = g;
    return SPRIG_OK;
}

static sprig_status mz_tokens_for(sp_measure *m, int B, int d, int f, int bf16) {
    mz_tokens *t = &m->t;
    if (t->B == B && t->d == d && t->f == f && t->bf16 == bf16) return SPRIG_OK;
    mz_tokens_free(t);
    sp_rng r = sp_rng_make(m->o.seed, 3, (uint64_t)d << 32 | (uint64_t)f, (uint64_t)B << 1 | (uint64_t)bf16);
    SP_TRY(sp_rng_fill(&r, bf16, 1.0, (size_t)B * d, &t->x, &t->xb));
    SP_TRY(sp_rng_fill(&r, bf16, 1.0, (size_t)B * f, &t->xf, &t->xfb));
    t->B = B, t->d = d, t->f = f, t->bf16 = bf16;
    return SPRIG_OK;
}

static sprig_status mz_dense_h(sp_measure *m) {
    mz_tokens *t = &m->t;
    if (t->h64) return SPRIG_OK;
    t->h64 = mz_alloc(sizeof(double) * (size_t)t->B * t->f);
    SP_CHECK_ALLOC(t->h64);
    sp_ref_swiglu(m->w.Wg, m->w.Wu, t->x, NULL, t->B, t->d, t->f, 1, t->h64);
    return SPRIG_OK;
}

/* Every token gets exactly n_on experts, a seeded random subset. */
static sprig_status mz_routing(sp_measure *m) {
    mz_problem *p = &m->p;
    size_t be = (size_t)p->B * p->E;
    p->mask = calloc(be, 1);
    p->ids = mz_alloc(sizeof(int) * be);
    p->counts = mz_alloc(sizeof(int) * (size_t)p->B);
    p->uids = mz_alloc(sizeof(int) * (size_t)p->E);
    int *perm = mz_alloc(sizeof(int) * (size_t)p->E);
    if (!p->mask || !p->ids || !p->counts || !p->uids || !perm) {
        free(perm);
        return sp_fail(SPRIG_E_NOMEM, "out of host memory for routing");
    }
    int n_on = (int)lround((1.0 - p->sparsity / 100.0) * p->E);
    if (n_on < 1) n_on = 1;
    if (n_on > p->E) n_on = p->E;
    sp_rng r = sp_rng_make(m->o.seed, 4, (uint64_t)p->B << 32 | (uint64_t)p->E, (uint64_t)n_on);
    for (int t = 0; t < p->B; ++t) {
        for (int e = 0; e < p->E; ++e) perm[e] = e;
        for (int i = 0; i < n_on; ++i) { /* partial Fisher-Yates */
            int j = i + (int)(sp_rng_next(&r) % (uint64_t)(p->E - i));
            int tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
            p->mask[(size_t)t * p->E + perm[i]] = 1;
        }
    }
    free(perm);
    sp_ref_routing(p->mask, p->B, p->E, p->ids, p->counts, p->uids, &p->U);
    return SPRIG_OK;
}

static int mz_same_key(const mz_problem *p, const sp_tune_key *k) {
    const char *fixed = k->fixed ? k->fixed : "";
    return p->valid && !strcmp(p->family, k->family) && !strcmp(p->dtype, k->dtype) && !strcmp(p->fixed, fixed) &&
           p->d == k->d && p->f == k->f && p->B == k->batch && p->g == k->g && p->sparsity == k->sparsity;
}

/* Makes m->p the problem of key (building it when the key changed). */
static sprig_status mz_problem_for(sp_measure *m, const sp_tune_key *k) {
    if (mz_same_key(&m->p, k)) return SPRIG_OK;
    mz_problem_free(m);
    if (!k->family || !k->dtype || (strcmp(k->dtype, "fp16") && strcmp(k->dtype, "bf16")))
        return sp_fail(SPRIG_E_INVALID, "tuning key: dtype must be fp16 or bf16");
    if (k->d <= 0 || k->f <= 0 || k->batch < 1 || k->g < 1 || k->f % k->g || k->sparsity < 0 || k->sparsity >= 100)
        return sp_fail(SPRIG_E_INVALID, "tuning key: bad shape d=%d f=%d batch=%d g=%d sparsity=%g", k->d, k->f,
                       k->batch, k->g, k->sparsity);
    mz_problem *p = &m->p;
    snprintf(p->family, sizeof p->family, "%s", k->family);
    snprintf(p->dtype, sizeof p->dtype, "%s", k->dtype);
    snprintf(p->fixed, sizeof p->fixed, "%s", k->fixed ? k->fixed : "");
    p->d = k->d, p->f = k->f, p->B = k->batch, p->g = k->g, p->E = k->f / k->g, p->sparsity = k->sparsity;
    p->bf16 = !strcmp(k->dtype, "bf16");
    SP_TRY(mz_weights_for(m, p->d, p->f, p->bf16));
    SP_TRY(mz_tokens_for(m, p->B, p->d, p->f, p->bf16));
    SP_TRY(mz_routing(m));
    p->valid = 1;
    ++m->stats.problems_built;
    return SPRIG_OK;
}

/* ---- variants --------------------------------------------------------------------------- */

typedef enum mz_kind { MZ_GEMV, MZ_ROUTER, MZ_UPGATE, MZ_DOWN, MZ_FUSED } mz_kind;

typedef struct mz_variant {
    mz_kind kind;
    int op_up;        /* dense_gemv */
    int silu;         /* router: score=silu_abs */
    int interleave;   /* gate/up layout [E][2][g][d] */
    int all_active;   /* routing arguments NULL */
    int layout_t;     /* down: W_downᵀ [f][d] */
} mz_variant;

static const char *mz_json_str(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int mz_json_int(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valueint : cJSON_IsString(v) ? atoi(v->valuestring) : 0;
}

/* Reads the variant from the plan's resolved parameters. SPRIG_E_INVALID
 * for a family the tuner cannot measure. */
static sprig_status mz_variant_of(const sprig_plan *plan, mz_variant *v) {
    memset(v, 0, sizeof *v);
    cJSON *p = cJSON_Parse(plan->params_json ? plan->params_json : "{}");
    if (!p) return sp_fail(SPRIG_E_INTERNAL, "plan %s: params_json is not JSON", plan->key);
    const char *fam = plan->family;
    sprig_status st = SPRIG_OK;
    if (!strcmp(fam, "dense_gemv")) {
        v->kind = MZ_GEMV, v->op_up = strcmp(mz_json_str(p, "op"), "down") != 0;
    } else if (!strcmp(fam, "router")) {
        v->kind = MZ_ROUTER, v->silu = !strcmp(mz_json_str(p, "score"), "silu_abs");
    } else if (!strcmp(fam, "gather_upgate") || !strcmp(fam, "fused_mlp")) {
        v->kind = fam[0] == 'g' ? MZ_UPGATE : MZ_FUSED;
        v->interleave = mz_json_int(p, "interleave"), v->all_active = mz_json_int(p, "all_active");
        v->layout_t = 1;
    } else if (!strcmp(fam, "gather_down")) {
        v->kind = MZ_DOWN, v->all_active = mz_json_int(p, "all_active");
        v->layout_t = strcmp(mz_json_str(p, "layout"), "n") != 0;
    } else if (!strcmp(fam, "gather_gemm")) {
        /* stage=upgate: the gather_upgate ABI (not interleaved); down: gather_down with layout n. */
        v->kind = strcmp(mz_json_str(p, "stage"), "down") ? MZ_UPGATE : MZ_DOWN;
    } else {
        st = sp_fail(SPRIG_E_INVALID, "the tuner cannot measure family '%s' (no reference for it)", fam);
    }
    cJSON_Delete(p);
    return st;
}

/* ---- references (each once per key) ------------------------------------------------------- */

static int mz_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double mz_rule_value(int silu, double score) { return silu ? fabs(sp_ref_silu(score)) : score; }

/* The threshold that leaves the key's sparsity inactive: between the two
 * sorted rule values at that quantile (so no value sits on it). */
static sprig_status mz_threshold(sp_measure *m, int silu) {
    mz_problem *p = &m->p;
    if (p->have_thr[silu]) return SPRIG_OK;
    size_t n = (size_t)p->B * p->E;
    double *q = mz_alloc(sizeof(double) * n);
    SP_CHECK_ALLOC(q);
    for (size_t i = 0; i < n; ++i) q[i] = mz_rule_value(silu, p->scores[i]);
    qsort(q, n, sizeof *q, mz_cmp_double);
    size_t off = (size_t)floor(p->sparsity / 100.0 * (double)n);
    double thr = off == 0 ? q[0] - 1.0 : off >= n ? q[n - 1] + 1.0 : 0.5 * (q[off - 1] + q[off]);
    free(q);
    p->thr[silu] = (float)thr;
    p->have_thr[silu] = 1;
    return SPRIG_OK;
}

static sprig_status mz_new_ref(sp_measure *m, double **out, size_t n) {
    *out = mz_alloc(sizeof(double) * n);
    SP_CHECK_ALLOC(*out);
    ++m->stats.references_computed;
    return SPRIG_OK;
}

/* h with the key's mask applied, in dense neuron order [B][f] (caller frees). */
static sprig_status mz_masked_h(sp_measure *m, double **out) {
    mz_problem *p = &m->p;
    SP_TRY(mz_dense_h(m));
    double *hm = mz_alloc(sizeof(double) * (size_t)p->B * p->f);
    SP_CHECK_ALLOC(hm);
    for (int t = 0; t < p->B; ++t)
        for (int n = 0; n < p->f; ++n)
            hm[(size_t)t * p->f + n] = p->mask[(size_t)t * p->E + n / p->g] ? m->t.h64[(size_t)t * p->f + n] : 0.0;
    *out = hm;
    return SPRIG_OK;
}

/* The down kernels' input: random values for each token's active experts,
 * exactly 0 for its inactive ones, NaN past the union (never to be read). */
static sprig_status mz_down_input(sp_measure *m) {
    mz_problem *p = &m->p;
    size_t bf = (size_t)p->B * p->f;
    p->hin = mz_alloc(2 * bf);
    double *hd = calloc(bf, sizeof(double));
    if (!p->hin || !hd) {
        free(hd);
        return sp_fail(SPRIG_E_NOMEM, "out of host memory for the down kernels' input");
    }
    sp_rng r = sp_rng_make(m->o.seed, 5, (uint64_t)p->B << 32 | (uint64_t)p->f, (uint64_t)p->U);
    for (size_t i = 0; i < bf; ++i) p->hin[i] = 0xFFFF;
    for (int t = 0; t < p->B; ++t)
        for (int c = 0; c < p->U * p->g; ++c) {
            int e = p->uids[c / p->g], n = e * p->g + c % p->g;
            uint16_t b = p->mask[(size_t)t * p->E + e] ? sp_ref_to_bits(p->bf16, (float)sp_rng_uniform(&r)) : 0;
            p->hin[(size_t)t * p->f + c] = b;
            hd[(size_t)t * p->f + n] = sp_ref_from_bits(p->bf16, b);
        }
    sprig_status st = mz_new_ref(m, &p->y_down, (size_t)p->B * p->d);
    if (st == SPRIG_OK) sp_ref_down(m->w.Wd, hd, p->mask, p->B, p->d, p->f, p->g, p->y_down);
    free(hd);
    return st;
}

static sprig_status mz_reference(sp_measure *m, const mz_variant *v) {
    mz_problem *p = &m->p;
    const mz_weights *w = &m->w;
    const mz_tokens *t = &m->t;
    switch (v->kind) {
    case MZ_GEMV:
        if (v->op_up && !p->ref_up) {
            SP_TRY(mz_new_ref(m, &p->ref_up, (size_t)p->B * p->f));
            sp_ref_gemv(w->Wg, t->x, p->ref_up, p->f, p->d, p->B);
        } else if (!v->op_up && !p->ref_down) {
            SP_TRY(mz_new_ref(m, &p->ref_down, (size_t)p->B * p->d));
            sp_ref_gemv(w->Wd, t->xf, p->ref_down, p->d, p->f, p->B);
        }
        return SPRIG_OK;
    case MZ_ROUTER:
        SP_TRY(mz_router_weights(m, p->g));
        if (!p->scores) {
            SP_TRY(mz_new_ref(m, &p->scores, (size_t)p->B * p->E));
            sp_ref_router_scores(m->w.Wr, t->x, p->scores, p->E, p->d, p->B);
        }
        return mz_threshold(m, v->silu);
    case MZ_UPGATE:
        if (!p->hc) {
            double *hm = NULL;
            SP_TRY(mz_masked_h(m, &hm));
            sprig_status st = mz_new_ref(m, &p->hc, (size_t)p->B * p->f);
            if (st == SPRIG_OK) sp_ref_compact_h(hm, p->uids, p->U, p->B, p->f, p->g, p->hc);
            free(hm);
            return st;
        }
        return SPRIG_OK;
    case MZ_FUSED:
        if (!p->y_mlp) {
            double *hm = NULL;
            SP_TRY(mz_masked_h(m, &hm));
            sprig_status st = mz_new_ref(m, &p->y_mlp, (size_t)p->B * p->d);
            if (st == SPRIG_OK) sp_ref_down(w->Wd, hm, p->mask, p->B, p->d, p->f, p->g, p->y_mlp);
            free(hm);
            return st;
        }
        return SPRIG_OK;
    case MZ_DOWN:
        return p->hin ? SPRIG_OK : mz_down_input(m);
    }
    return SPRIG_OK;
}

/* ---- device buffers ------------------------------------------------------------------------ */

static sprig_status mz_upload_new(sp_exec *e, sp_dptr *d, const void *src, size_t bytes) {
    if (*d) return SPRIG_OK;
    SP_TRY(sp_exec_alloc(e, d, bytes));
    return sp_exec_upload(e, *d, src, bytes);
}

static sprig_status mz_alloc_new(sp_exec *e, sp_dptr *d, size_t bytes) {
    return *d ? SPRIG_OK : sp_exec_alloc(e, d, bytes);
}

/* Host bits of a weight slot (packing the layouts on first use) and their size. */
static sprig_status mz_slot_host(sp_measure *m, int slot, const uint16_t **bits, size_t *bytes) {
    mz_weights *w = &m->w;
    const mz_problem *p = &m->p;
    size_t fd = (size_t)w->f * w->d;
    *bytes = 2 * fd;
    switch (slot) {
    case SLOT_G: *bits = w->Wgb; break;
    case SLOT_U: *bits = w->Wub; break;
    case SLOT_DN: *bits = w->Wdb; break;
    case SLOT_DT:
        if (!w->WdTb) {
            w->WdTb = mz_alloc(2 * fd);
            SP_CHECK_ALLOC(w->WdTb);
            sp_ref_transpose(w->Wdb, w->WdTb, w->d, w->f, 2);
        }
        *bits = w->WdTb;
        break;
    case SLOT_IL:
        if (!w->il || w->il_g != p->g) {
            free(w->il);
            w->il = mz_alloc(4 * fd);
            SP_CHECK_ALLOC(w->il);
            sp_ref_interleave_gate_up(w->Wgb, w->Wub, w->il, w->f, w->d, p->g, 2);
            w->il_g = p->g;
        }
        *bits = w->il;
        *bytes = 4 * fd;
        break;
    default:
        SP_TRY(mz_router_weights(m, p->g));
        *bits = w->Wrb;
        *bytes = 2 * (size_t)p->E * w->d;
        break;
    }
    return SPRIG_OK;
}

/* The weight slots a variant reads, in argument order of their use. */
static int mz_slots(const mz_variant *v, int *slots) {
    int n = 0;
    switch (v->kind) {
    case MZ_GEMV: slots[n++] = v->op_up ? SLOT_G : SLOT_DN; break;
    case MZ_ROUTER: slots[n++] = SLOT_R; break;
    case MZ_UPGATE:
    case MZ_FUSED:
        if (v->interleave) slots[n++] = SLOT_IL;
        else slots[n++] = SLOT_G, slots[n++] = SLOT_U;
        if (v->kind == MZ_FUSED) slots[n++] = SLOT_DT;
        break;
    case MZ_DOWN: slots[n++] = v->layout_t ? SLOT_DT : SLOT_DN; break;
    }
    return n;
}

/* Rotation sets: enough weight copies to exceed twice the L2 cache (so each
 * run reads DRAM), at least min_sets, within max_rotation_bytes; makes sure
 * every used slot has that many copies on the device. */
static sprig_status mz_weight_sets(sp_measure *m, const mz_variant *v, int *n_sets) {
    int slots[4], ns = mz_slots(v, slots);
    size_t per_set = 0;
    for (int i = 0; i < ns; ++i) {
        const uint16_t *bits;
        size_t bytes;
        SP_TRY(mz_slot_host(m, slots[i], &bits, &bytes));
        per_set += bytes;
    }
    size_t want = per_set ? (2 * m->e->l2_bytes + per_set) / per_set : 1;
    if (want < (size_t)m->o.min_sets) want = (size_t)m->o.min_sets;
    if (want > MZ_MAX_SETS) want = MZ_MAX_SETS;
    while (want > 1 && want * per_set > m->o.max_rotation_bytes) --want;
    mz_problem *p = &m->p;
    for (int i = 0; i < ns; ++i) {
        int s = slots[i];
        const uint16_t *bits;
        size_t bytes;
        SP_TRY(mz_slot_host(m, s, &bits, &bytes));
        for (; p->w_have[s] < (int)want; ++p->w_have[s]) {
            sp_dptr d = 0;
            SP_TRY(sp_exec_alloc(m->e, &d, bytes));
            p->w[s][p->w_have[s]] = d;
            SP_TRY(sp_exec_upload(m->e, d, bits, bytes));
        }
    }
    *n_sets = (int)want;
    return SPRIG_OK;
}

/* Inputs and outputs a variant needs (weights aside), allocated once per key. */
static sprig_status mz_device_inputs(sp_measure *m, const mz_variant *v) {
    mz_problem *p = &m->p;
    const mz_tokens *t = &m->t;
    sp_exec *e = m->e;
    size_t B = (size_t)p->B, be = B * p->E, wide = (size_t)(p->d > p->f ? p->d : p->f);
    SP_TRY(mz_upload_new(e, &p->dx, t->xb, 2 * B * p->d));
    SP_TRY(mz_alloc_new(e, &p->dout, 2 * B * wide + MZ_GUARD));
    if (v->kind == MZ_GEMV && !v->op_up) SP_TRY(mz_upload_new(e, &p->dxf, t->xfb, 2 * B * p->f));
    if (v->kind == MZ_ROUTER) {
        SP_TRY(mz_alloc_new(e, &p->r_scores, be * sizeof(float) + MZ_GUARD));
        SP_TRY(mz_alloc_new(e, &p->r_ids, be * sizeof(int) + MZ_GUARD));
        SP_TRY(mz_alloc_new(e, &p->r_counts, B * sizeof(int) + MZ_GUARD));
        SP_TRY(mz_alloc_new(e, &p->r_uids, (size_t)p->E * sizeof(int) + MZ_GUARD));
        SP_TRY(mz_alloc_new(e, &p->r_ucount, sizeof(int) + MZ_GUARD));
        SP_TRY(mz_alloc_new(e, &p->r_mask, be + MZ_GUARD));
    }
    if (v->kind == MZ_UPGATE || v->kind == MZ_DOWN || v->kind == MZ_FUSED) {
        SP_TRY(mz_upload_new(e, &p->duids, p->uids, sizeof(int) * (size_t)p->E));
        SP_TRY(mz_upload_new(e, &p->ducount, &p->U, sizeof(int)));
        SP_TRY(mz_upload_new(e, &p->dmask, p->mask, be));
    }
    if (v->kind == MZ_DOWN) SP_TRY(mz_upload_new(e, &p->dhin, p->hin, 2 * B * p->f));
    return SPRIG_OK;
}

/* ---- argument lists ------------------------------------------------------------------------- */

typedef struct mz_args {
    int n_sets, n_args;
    uint64_t vals[MZ_MAX_SETS][MZ_MAX_ARGS];
    float thr;
    void *ptrs[MZ_MAX_SETS][MZ_MAX_ARGS];
    void **sets[MZ_MAX_SETS];
} mz_args;

/* Argument list of set s (docs/kernel-abi.md order); -1 in vals marks the
 * router's float threshold. Returns the count. */
static int mz_arg_values(const mz_problem *p, const mz_variant *v, int s, sp_dptr ws, uint64_t *a) {
    const sp_dptr uids = v->all_active ? 0 : p->duids, ucount = v->all_active ? 0 : p->ducount;
    const sp_dptr mask = v->all_active ? 0 : p->dmask;
    switch (v->kind) {
    case MZ_GEMV:
        a[0] = v->op_up ? p->w[SLOT_G][s] : p->w[SLOT_DN][s];
        a[1] = v->op_up ? p->dx : p->dxf;
        a[2] = p->dout;
        return 3;
    case MZ_ROUTER:
        a[0] = p->w[SLOT_R][s], a[1] = p->dx, a[2] = p->r_scores, a[3] = (uint64_t)-1, a[4] = p->r_ids;
        a[5] = p->r_counts, a[6] = p->r_uids, a[7] = p->r_ucount, a[8] = p->r_mask;
        return 9;
    case MZ_UPGATE:
    case MZ_FUSED: {
        int n = 0;
        a[n++] = v->interleave ? p->w[SLOT_IL][s] : p->w[SLOT_G][s];
        a[n++] = v->interleave ? 0 : p->w[SLOT_U][s];
        if (v->kind == MZ_FUSED) a[n++] = p->w[SLOT_DT][s];
        a[n++] = p->dx, a[n++] = uids, a[n++] = ucount, a[n++] = mask;
        if (v->kind == MZ_FUSED) a[n++] = ws;
        a[n++] = p->dout;
        return n;
    }
    case MZ_DOWN:
        a[0] = v->layout_t ? p->w[SLOT_DT][s] : p->w[SLOT_DN][s];
        a[1] = p->dhin, a[2] = uids, a[3] = ucount, a[4] = ws, a[5] = p->dout;
        return 6;
    }
    return 0;
}

static void mz_build_args(const mz_problem *p, const mz_variant *v, int n_sets, sp_dptr ws, mz_args *A) {
    A->n_sets = n_sets;
    A->thr = p->thr[v->silu];
    for (int s = 0; s < n_sets; ++s) {
        A->n_args = mz_arg_values(p, v, s, ws, A->vals[s]);
        for (int i = 0; i < A->n_args; ++i)
            A->ptrs[s][i] = A->vals[s][i] == (uint64_t)-1 ? (void *)&A->thr : (void *)&A->vals[s][i];
        A->sets[s] = A->ptrs[s];
    }
}

/* ---- checking --------------------------------------------------------------------------------- */

typedef struct mz_check {
    int wrong;
    double rel;
    char note[160];
} mz_check;

static void mz_wrong(mz_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mz_wrong(mz_check *c, const char *fmt, ...) {
    if (c->wrong) return; /* the first reason is the one reported */
    c->wrong = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->note, sizeof c->note, fmt, ap);
    va_end(ap);
}

/* ‖out − ref‖/‖ref‖ over rows × cols (row strides ld_out, ld_ref) of dtype
 * values; non-finite outputs (unwritten: still poison) are counted apart. */
static void mz_compare(int bf16, const uint16_t *out, size_t ld_out, const double *ref, size_t ld_ref, int rows,
                       int cols, double tol, const char *what, mz_check *c) {
    double d2 = 0, r2 = 0, o2 = 0;
    long bad = 0, n = 0;
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < cols; ++j, ++n) {
            double o = sp_ref_from_bits(bf16, out[(size_t)r * ld_out + j]), want = ref[(size_t)r * ld_ref + j];
            if (!isfinite(o)) {
                ++bad;
                continue;
            }
            d2 += (o - want) * (o - want), r2 += want * want, o2 += o * o;
        }
    double rel = r2 > 0 ? sqrt(d2 / r2) : o2 > 0 ? INFINITY : 0.0;
    if (rel > c->rel || isnan(rel)) c->rel = rel;
    if (bad) mz_wrong(c, "%s: %ld of %ld values NaN/inf (unwritten or overflowed)", what, bad, n);
    else if (!(rel < tol)) mz_wrong(c, "%s: rel_err %.3g >= %.3g", what, rel, tol);
}

static int mz_all_poison(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (p[i] != MZ_POISON) return 0;
    return 1;
}

/* Downloads bytes + MZ_GUARD of an output; checks the guard. Caller frees. */
static sprig_status mz_fetch(sp_measure *m, sp_dptr d, size_t bytes, const char *what, unsigned char **out,
                             mz_check *c) {
    *out = mz_alloc(bytes + MZ_GUARD);
    SP_CHECK_ALLOC(*out);
    SP_TRY(sp_exec_download(m->e, *out, d, bytes + MZ_GUARD));
    if (!mz_all_poison(*out + bytes, MZ_GUARD)) mz_wrong(c, "wrote past the end of %s", what);
    return SPRIG_OK;
}

static sprig_status mz_check_gemv(sp_measure *m, const mz_variant *v, mz_check *c) {
    const mz_problem *p = &m->p;
    int N = v->op_up ? p->f : p->d;
    unsigned char *y = NULL;
    sprig_status st = mz_fetch(m, p->dout, 2 * (size_t)p->B * N, "y", &y, c);
    if (st == SPRIG_OK)
        mz_compare(p->bf16, (const uint16_t *)y, N, v->op_up ? p->ref_up : p->ref_down, N, p->B, N, m->o.tolerance,
                   "y", c);
    free(y);
    return st;
}

static sprig_status mz_check_h(sp_measure *m, mz_check *c) {
    const mz_problem *p = &m->p;
    unsigned char *raw = NULL;
    SP_TRY(mz_fetch(m, p->dout, 2 * (size_t)p->B * p->f, "h", &raw, c));
    const uint16_t *h = (const uint16_t *)raw;
    int cols = p->U * p->g;
    mz_compare(p->bf16, h, p->f, p->hc, p->f, p->B, cols, m->o.tolerance, "h", c);
    long nonzero = 0, tail = 0;
    for (int t = 0; t < p->B; ++t) {
        for (int j = 0; j < cols; ++j)
            if (!p->mask[(size_t)t * p->E + p->uids[j / p->g]] && (h[(size_t)t * p->f + j] & 0x7FFF)) ++nonzero;
        for (int j = cols; j < p->f; ++j) tail += h[(size_t)t * p->f + j] != 0xFFFF;
    }
    if (nonzero) mz_wrong(c, "h: %ld entries of inactive experts are not exactly 0", nonzero);
    if (tail) mz_wrong(c, "h: %ld entries past the union were written", tail);
    free(raw);
    return SPRIG_OK;
}

static sprig_status mz_check_y(sp_measure *m, const double *ref, mz_check *c) {
    const mz_problem *p = &m->p;
    unsigned char *y = NULL;
    sprig_status st = mz_fetch(m, p->dout, 2 * (size_t)p->B * p->d, "y", &y, c);
    if (st == SPRIG_OK) mz_compare(p->bf16, (const uint16_t *)y, p->d, ref, p->d, p->B, p->d, m->o.tolerance, "y", c);
    free(y);
    return st;
}

/* Router outputs, downloaded. */
typedef struct mz_router_out {
    unsigned char *scores, *ids, *counts, *uids, *ucount, *mask; /* raw bytes (+ guard) */
} mz_router_out;

static void mz_router_out_free(mz_router_out *o) {
    free(o->scores), free(o->ids), free(o->counts), free(o->uids), free(o->ucount), free(o->mask);
}

/* ids / counts / union against the kernel's own mask. */
static void mz_check_lists(const mz_problem *p, const mz_router_out *o, mz_check *c) {
    const int *ids = (const int *)o->ids, *counts = (const int *)o->counts, *uids = (const int *)o->uids;
    const unsigned char *mask = o->mask;
    int B = p->B, E = p->E;
    for (int t = 0; t < B; ++t) {
        int want = 0;
        for (int e = 0; e < E; ++e) want += mask[(size_t)t * E + e];
        if (counts[t] != want) {
            mz_wrong(c, "router: counts[%d] = %d, its mask has %d", t, counts[t], want);
            return;
        }
        for (int i = 0; i < want; ++i) {
            int e = ids[(size_t)t * E + i];
            if (e < 0 || e >= E || !mask[(size_t)t * E + e] || (i && e <= ids[(size_t)t * E + i - 1])) {
                mz_wrong(c, "router: ids[%d][%d] = %d is not ascending, in range and in the mask", t, i, e);
                return;
            }
        }
    }
    int u = 0;
    for (int e = 0; e < E; ++e) {
        int any = 0;
        for (int t = 0; t < B && !any; ++t) any = mask[(size_t)t * E + e];
        if (!any) continue;
        if (u >= *(const int *)o->ucount || uids[u] != e) {
            mz_wrong(c, "router: the union lists differ from the mask's union at slot %d", u);
            return;
        }
        ++u;
    }
    if (u != *(const int *)o->ucount)
        mz_wrong(c, "router: union_count = %d, the mask's union has %d", *(const int *)o->ucount, u);
}

static double mz_rms(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += v[i] * v[i];
    return n ? sqrt(s / (double)n) : 0.0;
}

/* Scores within the tolerance; decisions follow the kernel's own scores and
 * match float64 except within 1e-3 rms of the threshold; lists consistent. */
static void mz_router_decisions(const mz_problem *p, const mz_variant *v, const mz_router_out *o, double tol,
                                mz_check *c) {
    size_t be = (size_t)p->B * p->E;
    const float *sc = (const float *)o->scores;
    float thr = p->thr[v->silu];
    double d2 = 0, r2 = 0, band = 1e-3 * mz_rms(p->scores, be);
    long bad = 0, unfollowed = 0, differ = 0, flags = 0;
    for (size_t i = 0; i < be; ++i) {
        if (!isfinite(sc[i])) {
            ++bad;
            continue;
        }
        d2 += (sc[i] - p->scores[i]) * (sc[i] - p->scores[i]), r2 += p->scores[i] * p->scores[i];
        unsigned char on = o->mask[i];
        if (on > 1) {
            ++flags;
            continue;
        }
        double own = mz_rule_value(v->silu, (double)sc[i]);
        if (on != (own > (double)thr) && !(v->silu && fabs(own - thr) <= 1e-5 * fmax(fabs(thr), 1e-30)))
            ++unfollowed;
        double want = mz_rule_value(v->silu, p->scores[i]);
        if (on != (want > (double)thr) && fabs(want - thr) >= band) ++differ;
    }
    double rel = r2 > 0 ? sqrt(d2 / r2) : 0;
    c->rel = rel;
    if (bad) {
        mz_wrong(c, "router: %ld scores NaN/inf (unwritten?)", bad);
        return;
    }
    if (!(rel < tol)) {
        mz_wrong(c, "router: scores rel_err %.3g >= %.3g", rel, tol);
        return;
    }
    if (flags) {
        mz_wrong(c, "router: %ld mask bytes are neither 0 nor 1", flags);
        return;
    }
    if (unfollowed) {
        mz_wrong(c, "router: %ld mask entries disagree with the kernel's own scores", unfollowed);
        return;
    }
    if (differ) {
        mz_wrong(c, "router: %ld decisions differ from float64 away from the threshold", differ);
        return;
    }
    mz_check_lists(p, o, c);
}

static sprig_status mz_check_router(sp_measure *m, const mz_variant *v, mz_check *c) {
    const mz_problem *p = &m->p;
    size_t B = (size_t)p->B, be = B * p->E;
    mz_router_out o = {0};
    sprig_status st = mz_fetch(m, p->r_scores, be * sizeof(float), "scores", &o.scores, c);
    if (st == SPRIG_OK) st = mz_fetch(m, p->r_ids, be * sizeof(int), "ids", &o.ids, c);
    if (st == SPRIG_OK) st = mz_fetch(m, p->r_counts, B * sizeof(int), "counts", &o.counts, c);
    if (st == SPRIG_OK) st = mz_fetch(m, p->r_uids, (size_t)p->E * sizeof(int), "union_ids", &o.uids, c);
    if (st == SPRIG_OK) st = mz_fetch(m, p->r_ucount, sizeof(int), "union_count", &o.ucount, c);
    if (st == SPRIG_OK) st = mz_fetch(m, p->r_mask, be, "mask", &o.mask, c);
    if (st == SPRIG_OK && !c->wrong) mz_router_decisions(p, v, &o, m->o.tolerance, c);
    mz_router_out_free(&o);
    return st;
}

static sprig_status mz_verify(sp_measure *m, const mz_variant *v, mz_check *c) {
    memset(c, 0, sizeof *c);
    switch (v->kind) {
    case MZ_GEMV: return mz_check_gemv(m, v, c);
    case MZ_ROUTER: return mz_check_router(m, v, c);
    case MZ_UPGATE: return mz_check_h(m, c);
    case MZ_FUSED: return mz_check_y(m, m->p.y_mlp, c);
    case MZ_DOWN: return mz_check_y(m, m->p.y_down, c);
    }
    return SPRIG_OK;
}

/* Poisons every output of the variant, guards included. */
static sprig_status mz_poison(sp_measure *m, const mz_variant *v) {
    const mz_problem *p = &m->p;
    sp_exec *e = m->e;
    size_t B = (size_t)p->B, be = B * p->E, wide = (size_t)(p->d > p->f ? p->d : p->f);
    if (v->kind != MZ_ROUTER) return sp_exec_fill(e, p->dout, MZ_POISON, 2 * B * wide + MZ_GUARD);
    SP_TRY(sp_exec_fill(e, p->r_scores, MZ_POISON, be * sizeof(float) + MZ_GUARD));
    SP_TRY(sp_exec_fill(e, p->r_ids, MZ_POISON, be * sizeof(int) + MZ_GUARD));
    SP_TRY(sp_exec_fill(e, p->r_counts, MZ_POISON, B * sizeof(int) + MZ_GUARD));
    SP_TRY(sp_exec_fill(e, p->r_uids, MZ_POISON, (size_t)p->E * sizeof(int) + MZ_GUARD));
    SP_TRY(sp_exec_fill(e, p->r_ucount, MZ_POISON, sizeof(int) + MZ_GUARD));
    return sp_exec_fill(e, p->r_mask, MZ_POISON, be + MZ_GUARD);
}

/* ---- one candidate ----------------------------------------------------------------------------- */

static void mz_note(sp_measurement *out, sp_verdict v, const char *prefix, const char *msg) {
    out->verdict = v;
    char line[sizeof out->note];
    snprintf(line, sizeof line, "%s%s", prefix, msg ? msg : "");
    char *nl = strchr(line, '\n');
    /* The first line of a compile log that names an error, else the first line. */
    const char *err = strstr(msg ? msg : "", "error");
    if (nl && err) {
        const char *start = err;
        while (start > msg && start[-1] != '\n') --start;
        snprintf(line, sizeof line, "%s%.*s", prefix, (int)strcspn(start, "\n"), start);
    } else if (nl) {
        *nl = '\0';
    }
    snprintf(out->note, sizeof out->note, "%s", line);
}

/* Verify, time, verify again. Non-OK only for errors that stop the run. */
static sprig_status mz_run(sp_measure *m, const sprig_plan *plan, sp_exec_module *mod, const mz_variant *v,
                           sp_measurement *out) {
    SP_TRY(mz_reference(m, v));
    SP_TRY(mz_device_inputs(m, v));
    int n_sets = 1;
    SP_TRY(mz_weight_sets(m, v, &n_sets));
    sp_dptr ws = 0;
    if (plan->workspace_bytes) { /* the ABI: zeroed once when allocated */
        SP_TRY(sp_exec_alloc(m->e, &ws, plan->workspace_bytes));
        sprig_status st = sp_exec_fill(m->e, ws, 0, plan->workspace_bytes);
        if (st != SPRIG_OK) {
            sp_exec_free(m->e, ws);
            return st;
        }
    }
    mz_args *A = malloc(sizeof *A);
    if (!A) {
        sp_exec_free(m->e, ws);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    mz_build_args(&m->p, v, n_sets, ws, A);
    mz_check c;
    sprig_status st = mz_poison(m, v);
    if (st == SPRIG_OK) {
        st = sp_exec_launch(m->e, mod, plan, A->sets[0]);
        if (st != SPRIG_OK) { /* refused at launch: the candidate's failure; the context lives */
            mz_note(out, SP_VERDICT_LAUNCH_FAILED, "launch: ", sprig_last_error());
            st = SPRIG_OK;
            goto done;
        }
        st = sp_exec_sync(m->e); /* a fault here has lost the context: stop */
    }
    if (st == SPRIG_OK) st = mz_verify(m, v, &c);
    if (st != SPRIG_OK) goto done;
    if (c.wrong) {
        out->rel_err = c.rel;
        mz_note(out, SP_VERDICT_WRONG, "", c.note);
        goto done;
    }
    out->rel_err = c.rel;
    sp_timing t;
    st = mz_poison(m, v);
    if (st == SPRIG_OK) st = sp_exec_time(m->e, mod, plan, A->sets, n_sets, m->o.warmup, m->o.reps, &t);
    if (st == SPRIG_OK) st = mz_verify(m, v, &c);
    if (st != SPRIG_OK) goto done;
    if (c.wrong) {
        mz_note(out, SP_VERDICT_WRONG, "after timing: ", c.note);
        goto done;
    }
    out->verdict = SP_VERDICT_OK;
    out->median_us = t.median_us, out->min_us = t.min_us, out->runs = t.runs;
    out->sm_clock_mhz = t.sm_clock_mhz, out->mem_clock_mhz = t.mem_clock_mhz;
done:
    free(A);
    sp_exec_free(m->e, ws);
    return st;
}

sprig_status sp_measure_candidate(void *ctx, const sp_tune_key *key, const char *params, sp_measurement *out) {
    sp_measure *m = ctx;
    memset(out, 0, sizeof *out);
    out->verdict = SP_VERDICT_LAUNCH_FAILED;
    ++m->stats.measured;
    sprig_status st = mz_problem_for(m, key);
    if (st == SPRIG_E_INVALID) {
        mz_note(out, SP_VERDICT_LAUNCH_FAILED, "", sprig_last_error());
        return SPRIG_OK;
    }
    SP_TRY(st);
    sprig_request req = {key->family, key->d, key->f, key->dtype, key->batch, key->g, params};
    sprig_plan *plan = NULL;
    st = sprig_gen_render(m->gen, &req, &plan);
    if (st != SPRIG_OK) {
        mz_note(out, SP_VERDICT_COMPILE_FAILED, "render: ", sprig_last_error());
        return st == SPRIG_E_NOMEM ? st : SPRIG_OK;
    }
    mz_variant v;
    if (mz_variant_of(plan, &v) != SPRIG_OK) {
        mz_note(out, SP_VERDICT_LAUNCH_FAILED, "", sprig_last_error());
        sprig_plan_free(plan);
        return SPRIG_OK;
    }
    sp_exec_module *mod = NULL;
    st = sp_exec_load(m->e, plan, &mod);
    if (st == SPRIG_E_COMPILE || st == SPRIG_E_TEMPLATE) {
        mz_note(out, SP_VERDICT_COMPILE_FAILED, "", sprig_last_error());
        st = SPRIG_OK;
    } else if (st != SPRIG_OK && st != SPRIG_E_NOMEM) { /* refused by the driver (resources) */
        mz_note(out, SP_VERDICT_LAUNCH_FAILED, "load: ", sprig_last_error());
        st = SPRIG_OK;
    } else if (st == SPRIG_OK) {
        st = mz_run(m, plan, mod, &v, out);
        sp_exec_unload(m->e, mod);
    }
    sprig_plan_free(plan);
    return st == SPRIG_OK ? SPRIG_OK : sp_wrap(st, "measuring %s [%s]", key->family, params);
}

/* ---- compiling ahead ---------------------------------------------------------------------------- */

typedef struct mz_pool {
    sprig_plan **plans;
    size_t n, next;
    const char *arch;
    long compiled;
    pthread_mutex_t lock;
} mz_pool;

static void *mz_worker(void *arg) {
    mz_pool *pool = arg;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        size_t i = pool->next < pool->n ? pool->next++ : pool->n;
        pthread_mutex_unlock(&pool->lock);
        if (i >= pool->n) return NULL;
        if (!pool->plans[i]) continue;
        sprig_compile_opts co = {pool->arch, strncmp(pool->arch, "compute_", 8) == 0, NULL, 0};
        sprig_binary *bin = NULL;
        /* A failure is reported again, with its verdict, when the candidate is measured. */
        if (sprig_compile(pool->plans[i], &co, &bin) == SPRIG_OK) {
            pthread_mutex_lock(&pool->lock);
            ++pool->compiled;
            pthread_mutex_unlock(&pool->lock);
        }
        sprig_binary_free(bin);
    }
}

static int mz_threads(int jobs, size_t n) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int t = jobs > 0 ? jobs : cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus;
    return (size_t)t > n ? (int)(n ? n : 1) : t;
}

sprig_status sp_measure_prepare(void *ctx, const sp_tune_key *key, const char *const *params, size_t n) {
    sp_measure *m = ctx;
    const char *arch = m->o.compile_arch;
    if (!arch && !strcmp(m->e->kind, "cuda")) arch = m->e->arch;
    if (!arch || n == 0) return SPRIG_OK;
    sprig_plan **plans = calloc(n, sizeof *plans);
    SP_CHECK_ALLOC(plans);
    for (size_t i = 0; i < n; ++i) { /* rendering stays on this thread: a generator is single-threaded */
        sprig_request req = {key->family, key->d, key->f, key->dtype, key->batch, key->g, params[i]};
        if (sprig_gen_render(m->gen, &req, &plans[i]) != SPRIG_OK) plans[i] = NULL;
    }
    mz_pool pool = {plans, n, 0, arch, 0, PTHREAD_MUTEX_INITIALIZER};
    int threads = mz_threads(m->o.jobs, n);
    pthread_t tids[64];
    int started = 0;
    for (int t = 1; t < threads && t <= 64; ++t)
        if (pthread_create(&tids[started], NULL, mz_worker, &pool) == 0) ++started;
    mz_worker(&pool);
    for (int t = 0; t < started; ++t) pthread_join(tids[t], NULL);
    m->stats.compiled_ahead += pool.compiled;
    for (size_t i = 0; i < n; ++i) sprig_plan_free(plans[i]);
    free(plans);
    return SPRIG_OK;
}
