/* Measuring tuning candidates (see sp_measure.h).
 *
 * Nothing here knows a family by name: a candidate's plan says what its
 * kernels take (sprig_plan.args: names, roles, types, sizes, directions) and
 * how its outputs are checked (sprig_plan.verify). Inputs come by role from
 * the operand store (operands.h: weights, x, generic weights/activations) or
 * from the key's routing (union_ids, union_count, mask, and the down kernels'
 * compact h); outputs get private buffers with a poisoned guard; arguments
 * are bound by name (sp_kargs.h). The references are computed once per key
 * and kind:
 *   gemv       y = W x (+ y as it was, for an inout y) from the bound W and x
 *   router R   scores = W x, the rule R (sigmoid | silu_abs) at the key's
 *              threshold, per-token ids/counts and the union
 *   swiglu     the compact h of the key's routing, from w_gate and w_up
 *   down       y from the compact h input and w_down
 *   mlp        y of the whole MLP (w_gate, w_up, w_down) for the routing
 *   lua        the family's own reference(), run by the generator, over
 *              every input argument (small elementwise kernels) */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "operands.h"
#include "tuner_internal.h"
#include "sp_error.h"
#include "sp_gen_reference.h"
#include "sp_kargs.h"
#include "sp_measure.h"
#include "sp_reference.h"

#define MZ_GUARD 4096            /* poisoned bytes after every output */
#define MZ_POISON 0xFF           /* NaN in fp16, bf16 and f32, -1 as int */

void sp_measure_opts_init(sp_measure_opts *o) {
    memset(o, 0, sizeof *o);
    o->warmup = 3;
    o->reps = 30;
    o->tolerance = 1e-2;
    o->seed = 1;
    o->min_sets = 2;
    o->max_rotation_bytes = (size_t)4 << 30;
}

static void *mz_alloc(size_t bytes) { return malloc(bytes ? bytes : 1); }

/* ---- the key's problem ------------------------------------------------------------------- */

/* A reference output, computed once per key (kind + output name). */
typedef struct mz_ref {
    char kind[24], output[32];
    double *vals;
    size_t count;
} mz_ref;

/* An output buffer of the key's plans, by argument name (sized for the largest). */
typedef struct mz_out {
    char name[32];
    sp_dptr p;
    size_t bytes;
} mz_out;

#define MZ_MAX_REFS 8
#define MZ_MAX_OUTS 16

/* A measured candidate of the key, by what its plan runs (see sp_plan_identity). */
typedef struct mz_seen {
    uint64_t hash;
    sp_measurement m;
    char params[96];
} mz_seen;

typedef struct mz_problem {
    int valid;
    char family[32], dtype[8], fixed[256];
    int d, f, B, g, E, bf16;
    double sparsity;
    /* routing: every token has round((1 - sparsity/100) E) experts */
    unsigned char *mask;         /* [B][E] */
    int *ids, *counts, *uids, U;
    uint16_t *hin;               /* down kernels' input: compact h [B][f], NaN past the union */
    double *hin_vals;            /* the same in dense neuron order, 0 where masked [B][f] */
    double *scores;              /* router: float64 scores [B][E] of the bound weights */
    float thr[2];                /* threshold per rule (sigmoid, silu_abs) */
    int have_thr[2];
    mz_ref refs[MZ_MAX_REFS];
    int n_refs;
    mz_out outs[MZ_MAX_OUTS];
    int n_outs;
    sp_dptr duids, ducount, dmask, dhin;
    mz_seen *seen;               /* the key's measured candidates */
    size_t n_seen, cap_seen;
} mz_problem;

struct sp_measure {
    sp_exec *e;
    sprig_gen *gen;
    sp_measure_opts o;
    sp_operands *ops;
    mz_problem p;
    sp_measure_stats stats;
};

static void mz_problem_free(sp_measure *m) {
    mz_problem *p = &m->p;
    for (int i = 0; i < p->n_outs; ++i) sp_exec_free(m->e, p->outs[i].p);
    sp_dptr dev[] = {p->duids, p->ducount, p->dmask, p->dhin};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; ++i) sp_exec_free(m->e, dev[i]);
    for (int i = 0; i < p->n_refs; ++i) free(p->refs[i].vals);
    free(p->mask), free(p->ids), free(p->counts), free(p->uids), free(p->hin), free(p->hin_vals), free(p->scores);
    free(p->seen);
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
    if (m->o.reps < 1 || m->o.warmup < 0 || m->o.tolerance <= 0 || m->o.min_sets < 1 ||
        m->o.min_sets > SP_OPS_MAX_SETS) {
        free(m);
        return sp_fail(SPRIG_E_INVALID, "sp_measure_open: reps >= 1, warmup >= 0, tolerance > 0, min_sets 1..%d",
                       SP_OPS_MAX_SETS);
    }
    sprig_status s = sp_operands_open(exec, m->o.seed, &m->ops);
    if (s != SPRIG_OK) {
        free(m);
        return s;
    }
    *out = m;
    return SPRIG_OK;
}

void sp_measure_close(sp_measure *m) {
    if (!m) return;
    mz_problem_free(m);
    sp_operands_close(m->ops);
    free(m);
}

void sp_measure_get_stats(const sp_measure *m, sp_measure_stats *out) { *out = m->stats; }

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
    SP_TRY(sp_operands_set(m->ops, p->d, p->f, p->g, p->bf16, p->B));
    SP_TRY(mz_routing(m));
    p->valid = 1;
    ++m->stats.problems_built;
    return SPRIG_OK;
}

/* ---- what a plan asks for ---------------------------------------------------------------- */

typedef enum mz_kind { MZ_GEMV, MZ_ROUTER, MZ_SWIGLU, MZ_DOWN, MZ_MLP, MZ_LUA } mz_kind;

typedef struct mz_verify {
    mz_kind kind;
    int silu;                    /* router: rule silu_abs (else sigmoid) */
    char name[24];               /* the plan's verify string, for the reference cache */
} mz_verify;

/* The plan's verify kind; SPRIG_E_INVALID for a plan the tuner cannot check. */
static sprig_status mz_verify_of(const sprig_plan *plan, mz_verify *v) {
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", plan->verify);
    char kind[24] = "", rule[24] = "";
    sscanf(plan->verify, "%23s %23s", kind, rule);
    static const struct {
        const char *name;
        mz_kind kind;
    } kinds[] = {{"gemv", MZ_GEMV}, {"router", MZ_ROUTER}, {"swiglu", MZ_SWIGLU},
                 {"down", MZ_DOWN}, {"mlp", MZ_MLP},       {"lua", MZ_LUA}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; ++i)
        if (!strcmp(kind, kinds[i].name)) {
            v->kind = kinds[i].kind;
            v->silu = !strcmp(rule, "silu_abs");
            return SPRIG_OK;
        }
    return sp_fail(SPRIG_E_INVALID, "the tuner cannot check family '%s' (its spec names no reference%s%s)",
                   plan->family, kind[0] ? ": unknown kind " : "", kind);
}

static const sprig_arg *mz_arg_role(const sprig_plan *plan, const char *role, int output) {
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        const int out = a->dir == SPRIG_ARG_OUT || a->dir == SPRIG_ARG_INOUT;
        if (out == output && !strcmp(a->role, role)) return a;
    }
    return NULL;
}

/* The input weight and activation of a GEMV-shaped plan (gemv, router). */
static sprig_status mz_gemv_inputs(const sprig_plan *plan, const sprig_arg **W, const sprig_arg **x) {
    *W = *x = NULL;
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        if (a->dir != SPRIG_ARG_IN || !a->pointer) continue;
        if (sp_operands_is_weight(a) && !*W) *W = a;
        else if (!sp_operands_is_weight(a) && !*x) *x = a;
    }
    if (!*W || !*x || !(*W)->cols || (*x)->count % (*W)->cols)
        return sp_fail(SPRIG_E_INVALID, "%s: a GEMV check needs a weight and an input it multiplies", plan->family);
    return SPRIG_OK;
}

/* ---- references (each once per key) ---------------------------------------------------------- */

static mz_ref *mz_find_ref(mz_problem *p, const char *kind, const char *output) {
    for (int i = 0; i < p->n_refs; ++i)
        if (!strcmp(p->refs[i].kind, kind) && !strcmp(p->refs[i].output, output)) return &p->refs[i];
    return NULL;
}

static sprig_status mz_new_ref(sp_measure *m, const char *kind, const char *output, size_t n, mz_ref **out) {
    mz_problem *p = &m->p;
    if (p->n_refs == MZ_MAX_REFS) return sp_fail(SPRIG_E_INTERNAL, "measure: too many references for one key");
    mz_ref *r = &p->refs[p->n_refs];
    memset(r, 0, sizeof *r);
    r->vals = mz_alloc(sizeof(double) * n);
    SP_CHECK_ALLOC(r->vals);
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    snprintf(r->output, sizeof r->output, "%s", output);
    r->count = n;
    ++p->n_refs;
    ++m->stats.references_computed;
    *out = r;
    return SPRIG_OK;
}

/* A logical MLP operand (for the references of the swiglu/down/mlp kinds). */
static sprig_status mz_logical(sp_measure *m, const char *role, sp_operand *out) {
    const mz_problem *p = &m->p;
    sprig_arg a = {0};
    snprintf(a.name, sizeof a.name, "%s", role);
    snprintf(a.role, sizeof a.role, "%s", role);
    snprintf(a.type, sizeof a.type, "T");
    a.pointer = 1;
    if (!strcmp(role, "x")) a.rows = (size_t)p->B, a.cols = (size_t)p->d;
    else if (!strcmp(role, "w_down")) a.rows = (size_t)p->d, a.cols = (size_t)p->f;
    else a.rows = (size_t)p->f, a.cols = (size_t)p->d;
    a.count = a.rows * a.cols;
    a.fan_in = !strcmp(role, "x") ? 0 : (int)a.cols;
    return sp_operands_host(m->ops, &a, out);
}

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

/* h with the key's mask applied, in dense neuron order [B][f] (caller frees). */
static sprig_status mz_masked_h(sp_measure *m, double **out) {
    mz_problem *p = &m->p;
    sp_operand wg, wu, x;
    SP_TRY(mz_logical(m, "w_gate", &wg));
    SP_TRY(mz_logical(m, "w_up", &wu));
    SP_TRY(mz_logical(m, "x", &x));
    double *h = mz_alloc(sizeof(double) * (size_t)p->B * p->f);
    SP_CHECK_ALLOC(h);
    sp_ref_swiglu(wg.vals, wu.vals, x.vals, p->mask, p->B, p->d, p->f, p->g, h);
    *out = h;
    return SPRIG_OK;
}

/* The down kernels' input: random values for each token's active experts,
 * exactly 0 for its inactive ones, NaN past the union (never to be read). */
static sprig_status mz_down_input(sp_measure *m) {
    mz_problem *p = &m->p;
    if (p->hin) return SPRIG_OK;
    size_t bf = (size_t)p->B * p->f;
    p->hin = mz_alloc(2 * bf);
    p->hin_vals = calloc(bf, sizeof(double));
    if (!p->hin || !p->hin_vals) return sp_fail(SPRIG_E_NOMEM, "out of host memory for the down kernels' input");
    sp_rng r = sp_rng_make(m->o.seed, 5, (uint64_t)p->B << 32 | (uint64_t)p->f, (uint64_t)p->U);
    for (size_t i = 0; i < bf; ++i) p->hin[i] = 0xFFFF;
    for (int t = 0; t < p->B; ++t)
        for (int c = 0; c < p->U * p->g; ++c) {
            int e = p->uids[c / p->g], n = e * p->g + c % p->g;
            uint16_t b = p->mask[(size_t)t * p->E + e] ? sp_ref_to_bits(p->bf16, (float)sp_rng_uniform(&r)) : 0;
            p->hin[(size_t)t * p->f + c] = b;
            p->hin_vals[(size_t)t * p->f + n] = sp_ref_from_bits(p->bf16, b);
        }
    return SPRIG_OK;
}

/* Host values of every input argument, for the Lua reference. */
static sprig_status mz_lua_reference(sp_measure *m, const sprig_plan *plan, const char *params, mz_ref **refs,
                                     int *n_refs) {
    mz_problem *p = &m->p;
    const char *in_names[SPRIG_MAX_ARGS], *out_names[SPRIG_MAX_ARGS];
    const float *in_vals[SPRIG_MAX_ARGS];
    size_t in_counts[SPRIG_MAX_ARGS], out_counts[SPRIG_MAX_ARGS];
    double *out_vals[SPRIG_MAX_ARGS];
    int n_in = 0, n_out = 0;
    *n_refs = 0;
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        if (!a->pointer) return sp_fail(SPRIG_E_INVALID, "%s: the Lua reference takes no value arguments ('%s')",
                                        plan->family, a->name);
        if (a->dir == SPRIG_ARG_IN) {
            sp_operand op;
            SP_TRY(sp_operands_host(m->ops, a, &op));
            in_names[n_in] = a->name, in_vals[n_in] = op.vals, in_counts[n_in++] = op.count;
        } else if (a->dir == SPRIG_ARG_OUT) {
            mz_ref *r = mz_find_ref(p, "lua", a->name);
            if (!r) SP_TRY(mz_new_ref(m, "lua", a->name, a->count, &r));
            refs[(*n_refs)++] = r;
            out_names[n_out] = a->name, out_vals[n_out] = r->vals, out_counts[n_out++] = a->count;
        } else if (a->dir == SPRIG_ARG_INOUT) {
            return sp_fail(SPRIG_E_INVALID, "%s: the Lua reference takes no inout arguments ('%s')", plan->family,
                           a->name);
        }
    }
    sprig_request req = {p->family, p->d, p->f, p->dtype, p->B, p->g, params};
    return sp_gen_reference(m->gen, &req, n_in, in_names, in_vals, in_counts, n_out, out_names, out_vals,
                            out_counts);
}

/* Computes (once per key) what the candidate's outputs are checked against. */
static sprig_status mz_reference(sp_measure *m, const sprig_plan *plan, const char *params, const mz_verify *v) {
    mz_problem *p = &m->p;
    mz_ref *r = NULL;
    switch (v->kind) {
    case MZ_GEMV: {
        const sprig_arg *W, *x;
        SP_TRY(mz_gemv_inputs(plan, &W, &x));
        if (mz_find_ref(p, v->name, "y")) return SPRIG_OK;
        sp_operand wo, xo;
        SP_TRY(sp_operands_host(m->ops, W, &wo));
        SP_TRY(sp_operands_host(m->ops, x, &xo));
        const int N = (int)W->rows, K = (int)W->cols, B = (int)(x->count / W->cols);
        SP_TRY(mz_new_ref(m, v->name, "y", (size_t)B * N, &r));
        sp_ref_gemv(wo.vals, xo.vals, r->vals, N, K, B);
        return SPRIG_OK;
    }
    case MZ_ROUTER: {
        if (!p->scores) {
            const sprig_arg *W, *x;
            SP_TRY(mz_gemv_inputs(plan, &W, &x));
            sp_operand wo, xo;
            SP_TRY(sp_operands_host(m->ops, W, &wo));
            SP_TRY(sp_operands_host(m->ops, x, &xo));
            p->scores = mz_alloc(sizeof(double) * (size_t)p->B * p->E);
            SP_CHECK_ALLOC(p->scores);
            ++m->stats.references_computed;
            sp_ref_router_scores(wo.vals, xo.vals, p->scores, p->E, p->d, p->B);
        }
        return mz_threshold(m, v->silu);
    }
    case MZ_SWIGLU:
        if (!mz_find_ref(p, "swiglu", "h")) {
            double *hm = NULL;
            SP_TRY(mz_masked_h(m, &hm));
            sprig_status st = mz_new_ref(m, "swiglu", "h", (size_t)p->B * p->f, &r);
            if (st == SPRIG_OK) sp_ref_compact_h(hm, p->uids, p->U, p->B, p->f, p->g, r->vals);
            free(hm);
            return st;
        }
        return SPRIG_OK;
    case MZ_MLP:
        if (!mz_find_ref(p, "mlp", "y")) {
            double *hm = NULL;
            sp_operand wd;
            SP_TRY(mz_logical(m, "w_down", &wd));
            SP_TRY(mz_masked_h(m, &hm));
            sprig_status st = mz_new_ref(m, "mlp", "y", (size_t)p->B * p->d, &r);
            if (st == SPRIG_OK) sp_ref_down(wd.vals, hm, p->mask, p->B, p->d, p->f, p->g, r->vals);
            free(hm);
            return st;
        }
        return SPRIG_OK;
    case MZ_DOWN:
        SP_TRY(mz_down_input(m));
        if (!mz_find_ref(p, "down", "y")) {
            sp_operand wd;
            SP_TRY(mz_logical(m, "w_down", &wd));
            SP_TRY(mz_new_ref(m, "down", "y", (size_t)p->B * p->d, &r));
            sp_ref_down(wd.vals, p->hin_vals, p->mask, p->B, p->d, p->f, p->g, r->vals);
        }
        return SPRIG_OK;
    case MZ_LUA: {
        for (int i = 0; i < plan->n_args; ++i)
            if (plan->args[i].dir == SPRIG_ARG_OUT && !mz_find_ref(p, "lua", plan->args[i].name)) {
                mz_ref *refs[SPRIG_MAX_ARGS];
                int n = 0;
                return mz_lua_reference(m, plan, params, refs, &n);
            }
        return SPRIG_OK;
    }
    }
    return SPRIG_OK;
}

/* ---- device buffers and argument lists ------------------------------------------------------ */

static size_t mz_elem(const sprig_arg *a) {
    return !strcmp(a->type, "T") ? 2 : !strcmp(a->type, "u8") ? 1 : 4;
}

static sprig_status mz_upload_new(sp_exec *e, sp_dptr *d, const void *src, size_t bytes) {
    if (*d) return SPRIG_OK;
    SP_TRY(sp_exec_alloc(e, d, bytes ? bytes : 16));
    return sp_exec_upload(e, *d, src, bytes);
}

/* The output buffer of an argument (bytes + guard), shared by the key's plans. */
static sprig_status mz_output(sp_measure *m, const sprig_arg *a, sp_dptr *out) {
    mz_problem *p = &m->p;
    const size_t bytes = a->count * mz_elem(a) + MZ_GUARD;
    for (int i = 0; i < p->n_outs; ++i) {
        mz_out *o = &p->outs[i];
        if (strcmp(o->name, a->name) != 0) continue;
        if (o->bytes < bytes) {
            sp_exec_free(m->e, o->p);
            o->p = 0;
            SP_TRY(sp_exec_alloc(m->e, &o->p, bytes));
            o->bytes = bytes;
        }
        return *out = o->p, SPRIG_OK;
    }
    if (p->n_outs == MZ_MAX_OUTS) return sp_fail(SPRIG_E_INTERNAL, "measure: too many outputs for one key");
    mz_out *o = &p->outs[p->n_outs];
    snprintf(o->name, sizeof o->name, "%s", a->name);
    SP_TRY(sp_exec_alloc(m->e, &o->p, bytes));
    o->bytes = bytes;
    ++p->n_outs;
    *out = o->p;
    return SPRIG_OK;
}

/* Device input of a non-weight, non-store argument: the key's routing or compact h. */
static sprig_status mz_routing_input(sp_measure *m, const sprig_arg *a, sp_dptr *out) {
    mz_problem *p = &m->p;
    sp_exec *e = m->e;
    if (!strcmp(a->role, "union_ids")) {
        SP_TRY(mz_upload_new(e, &p->duids, p->uids, sizeof(int) * (size_t)p->E));
        *out = p->duids;
    } else if (!strcmp(a->role, "union_count")) {
        SP_TRY(mz_upload_new(e, &p->ducount, &p->U, sizeof(int)));
        *out = p->ducount;
    } else if (!strcmp(a->role, "mask")) {
        SP_TRY(mz_upload_new(e, &p->dmask, p->mask, (size_t)p->B * p->E));
        *out = p->dmask;
    } else if (!strcmp(a->role, "h")) {
        SP_TRY(mz_down_input(m));
        SP_TRY(mz_upload_new(e, &p->dhin, p->hin, 2 * (size_t)p->B * p->f));
        *out = p->dhin;
    } else {
        return sp_fail(SPRIG_E_INVALID, "argument '%s': the tuner has no input for role '%s'", a->name, a->role);
    }
    return SPRIG_OK;
}

/* A plan's argument lists, one per rotation set. */
typedef struct mz_args {
    int n_sets;
    sp_kargs sets[SP_OPS_MAX_SETS];
    void **lists[SP_OPS_MAX_SETS];
} mz_args;

/* Rotation sets whose weights together exceed twice the L2 cache. */
static sprig_status mz_rotation(sp_measure *m, const sprig_plan *plan, int *n_sets) {
    size_t per_set = 0;
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        if (a->dir != SPRIG_ARG_IN || !a->pointer || !sp_operands_is_weight(a) || a->optional) continue;
        per_set += a->count * mz_elem(a);
    }
    *n_sets = sp_operands_rotation(m->e, per_set, m->o.min_sets, m->o.max_rotation_bytes);
    return SPRIG_OK;
}

/* Binds every argument of the plan for set s. */
static sprig_status mz_bind(sp_measure *m, const sprig_plan *plan, const mz_verify *v, int s, sp_dptr ws,
                            sp_kargs *k) {
    sp_kargs_init(k, plan);
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        sp_dptr d = 0;
        if (!a->pointer) {
            if (strcmp(a->role, "threshold") != 0)
                return sp_fail(SPRIG_E_INVALID, "argument '%s': the tuner has no value for role '%s'", a->name, a->role);
            sp_kargs_f32(k, a->name, m->p.thr[v->silu]);
            continue;
        }
        if (a->dir == SPRIG_ARG_SCRATCH) d = ws;
        else if (a->dir != SPRIG_ARG_IN) SP_TRY(mz_output(m, a, &d));
        else if (sp_operands_knows(a)) SP_TRY(sp_operands_device(m->ops, a, s, &d));
        else if (a->optional) d = 0;
        else SP_TRY(mz_routing_input(m, a, &d));
        sp_kargs_ptr(k, a->name, d);
    }
    return SPRIG_OK;
}

static sprig_status mz_build_args(sp_measure *m, const sprig_plan *plan, const mz_verify *v, sp_dptr ws,
                                  mz_args *A) {
    SP_TRY(mz_rotation(m, plan, &A->n_sets));
    for (int s = 0; s < A->n_sets; ++s) {
        SP_TRY(mz_bind(m, plan, v, s, ws, &A->sets[s]));
        SP_TRY(sp_kargs_finish(&A->sets[s], &A->lists[s]));
    }
    return SPRIG_OK;
}

/* Poisons every output (guards included); an inout output gets its own
 * starting values instead (a seeded activation of its size), which the gemv
 * reference adds. */
static sprig_status mz_prepare_outputs(sp_measure *m, const sprig_plan *plan) {
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        if (!a->pointer || (a->dir != SPRIG_ARG_OUT && a->dir != SPRIG_ARG_INOUT)) continue;
        sp_dptr d = 0;
        SP_TRY(mz_output(m, a, &d));
        SP_TRY(sp_exec_fill(m->e, d, MZ_POISON, a->count * mz_elem(a) + MZ_GUARD));
        if (a->dir == SPRIG_ARG_INOUT) {
            sprig_arg init = *a;
            snprintf(init.role, sizeof init.role, "activation");
            sp_operand op;
            SP_TRY(sp_operands_host(m->ops, &init, &op));
            SP_TRY(sp_exec_upload(m->e, d, op.bits, op.bytes));
        }
    }
    return SPRIG_OK;
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

/* Downloads an output argument (+ MZ_GUARD) and checks the guard. Caller frees. */
static sprig_status mz_fetch(sp_measure *m, const sprig_arg *a, unsigned char **out, mz_check *c) {
    const size_t bytes = a->count * mz_elem(a);
    sp_dptr d = 0;
    SP_TRY(mz_output(m, a, &d));
    *out = mz_alloc(bytes + MZ_GUARD);
    SP_CHECK_ALLOC(*out);
    SP_TRY(sp_exec_download(m->e, *out, d, bytes + MZ_GUARD));
    if (!mz_all_poison(*out + bytes, MZ_GUARD)) mz_wrong(c, "wrote past the end of %s", a->name);
    return SPRIG_OK;
}

/* A 16-bit output against a reference: [rows][cols] of which the first `cols_checked` columns. */
static sprig_status mz_check_t(sp_measure *m, const sprig_arg *a, const double *ref, int cols_checked, mz_check *c,
                               uint16_t **keep) {
    unsigned char *raw = NULL;
    sprig_status st = mz_fetch(m, a, &raw, c);
    if (st == SPRIG_OK)
        mz_compare(m->p.bf16, (const uint16_t *)raw, a->cols, ref, a->cols, (int)a->rows, cols_checked,
                   m->o.tolerance, a->name, c);
    if (keep && st == SPRIG_OK) *keep = (uint16_t *)raw;
    else free(raw);
    return st;
}

static sprig_status mz_check_gemv(sp_measure *m, const sprig_plan *plan, const mz_verify *v, mz_check *c) {
    const sprig_arg *y = mz_arg_role(plan, "output", 1);
    const mz_ref *r = mz_find_ref(&m->p, v->name, "y");
    if (!y || !r || r->count != y->count)
        return sp_fail(SPRIG_E_INVALID, "%s: its output does not have the shape W x has", plan->family);
    if (y->dir != SPRIG_ARG_INOUT) return mz_check_t(m, y, r->vals, (int)y->cols, c, NULL);
    /* y = W x + y as it was */
    sprig_arg init = *y;
    snprintf(init.role, sizeof init.role, "activation");
    sp_operand y0;
    SP_TRY(sp_operands_host(m->ops, &init, &y0));
    double *want = mz_alloc(sizeof(double) * y->count);
    SP_CHECK_ALLOC(want);
    for (size_t i = 0; i < y->count; ++i) want[i] = r->vals[i] + (double)y0.vals[i];
    sprig_status st = mz_check_t(m, y, want, (int)y->cols, c, NULL);
    free(want);
    return st;
}

static sprig_status mz_check_h(sp_measure *m, const sprig_plan *plan, mz_check *c) {
    const mz_problem *p = &m->p;
    const sprig_arg *a = mz_arg_role(plan, "h", 1);
    const mz_ref *r = mz_find_ref(&m->p, "swiglu", "h");
    if (!a || !r || a->count != (size_t)p->B * p->f)
        return sp_fail(SPRIG_E_INVALID, "%s: swiglu check needs an output h [B][f]", plan->family);
    uint16_t *h = NULL;
    const int cols = p->U * p->g;
    SP_TRY(mz_check_t(m, a, r->vals, cols, c, &h));
    long nonzero = 0, tail = 0;
    for (int t = 0; t < p->B; ++t) {
        for (int j = 0; j < cols; ++j)
            if (!p->mask[(size_t)t * p->E + p->uids[j / p->g]] && (h[(size_t)t * p->f + j] & 0x7FFF)) ++nonzero;
        for (int j = cols; j < p->f; ++j) tail += h[(size_t)t * p->f + j] != 0xFFFF;
    }
    if (nonzero) mz_wrong(c, "h: %ld entries of inactive experts are not exactly 0", nonzero);
    if (tail) mz_wrong(c, "h: %ld entries past the union were written", tail);
    free(h);
    return SPRIG_OK;
}

static sprig_status mz_check_y(sp_measure *m, const sprig_plan *plan, const char *kind, mz_check *c) {
    const sprig_arg *a = mz_arg_role(plan, "y", 1);
    const mz_ref *r = mz_find_ref(&m->p, kind, "y");
    if (!a || !r || a->count != r->count)
        return sp_fail(SPRIG_E_INVALID, "%s: %s check needs an output y [B][d]", plan->family, kind);
    return mz_check_t(m, a, r->vals, (int)a->cols, c, NULL);
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
static void mz_router_decisions(const mz_problem *p, const mz_verify *v, const mz_router_out *o, double tol,
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

static sprig_status mz_check_router(sp_measure *m, const sprig_plan *plan, const mz_verify *v, mz_check *c) {
    static const char *const roles[] = {"scores", "ids", "counts", "union_ids", "union_count", "mask"};
    mz_router_out o = {0};
    unsigned char **slots[] = {&o.scores, &o.ids, &o.counts, &o.uids, &o.ucount, &o.mask};
    sprig_status st = SPRIG_OK;
    for (size_t i = 0; i < 6 && st == SPRIG_OK; ++i) {
        const sprig_arg *a = mz_arg_role(plan, roles[i], 1);
        if (!a) st = sp_fail(SPRIG_E_INVALID, "%s: a router check needs an output of role %s", plan->family, roles[i]);
        else st = mz_fetch(m, a, slots[i], c);
    }
    if (st == SPRIG_OK && !c->wrong) mz_router_decisions(&m->p, v, &o, m->o.tolerance, c);
    mz_router_out_free(&o);
    return st;
}

/* The Lua reference's outputs, each as a 16-bit or f32 array. */
static sprig_status mz_check_lua(sp_measure *m, const sprig_plan *plan, mz_check *c) {
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        if (a->dir != SPRIG_ARG_OUT) continue;
        const mz_ref *r = mz_find_ref(&m->p, "lua", a->name);
        if (!r) return sp_fail(SPRIG_E_INTERNAL, "%s: no reference for %s", plan->family, a->name);
        if (!strcmp(a->type, "T")) {
            SP_TRY(mz_check_t(m, a, r->vals, (int)a->cols, c, NULL));
            continue;
        }
        unsigned char *raw = NULL;
        sprig_status st = mz_fetch(m, a, &raw, c);
        double d2 = 0, r2 = 0;
        long bad = 0;
        for (size_t k = 0; st == SPRIG_OK && k < a->count; ++k) {
            double o = !strcmp(a->type, "f32") ? ((const float *)raw)[k]
                       : !strcmp(a->type, "i32") ? ((const int *)raw)[k] : raw[k];
            if (!isfinite(o)) ++bad;
            else d2 += (o - r->vals[k]) * (o - r->vals[k]), r2 += r->vals[k] * r->vals[k];
        }
        free(raw);
        SP_TRY(st);
        const double rel = r2 > 0 ? sqrt(d2 / r2) : d2 > 0 ? INFINITY : 0;
        if (rel > c->rel) c->rel = rel;
        if (bad) mz_wrong(c, "%s: %ld values NaN/inf", a->name, bad);
        else if (!(rel < m->o.tolerance)) mz_wrong(c, "%s: rel_err %.3g", a->name, rel);
    }
    return SPRIG_OK;
}

static sprig_status mz_verify_outputs(sp_measure *m, const sprig_plan *plan, const mz_verify *v, mz_check *c) {
    memset(c, 0, sizeof *c);
    switch (v->kind) {
    case MZ_GEMV: return mz_check_gemv(m, plan, v, c);
    case MZ_ROUTER: return mz_check_router(m, plan, v, c);
    case MZ_SWIGLU: return mz_check_h(m, plan, c);
    case MZ_MLP: return mz_check_y(m, plan, "mlp", c);
    case MZ_DOWN: return mz_check_y(m, plan, "down", c);
    case MZ_LUA: return mz_check_lua(m, plan, c);
    }
    return SPRIG_OK;
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

/* Launches set 0 once and checks the outputs. *launched is 0 when the driver
 * refused the launch (the candidate's failure; the context lives). */
static sprig_status mz_run_once(sp_measure *m, const sprig_plan *plan, sp_exec_module *mod, const mz_verify *v,
                                mz_args *A, int *launched, mz_check *c) {
    *launched = 0;
    SP_TRY(mz_prepare_outputs(m, plan));
    if (sp_exec_launch(m->e, mod, plan, A->lists[0]) != SPRIG_OK) return SPRIG_OK;
    *launched = 1;
    SP_TRY(sp_exec_sync(m->e)); /* a fault here has lost the context: stop */
    return mz_verify_outputs(m, plan, v, c);
}

/* Verify, time, verify again. Non-OK only for errors that stop the run. */
static sprig_status mz_run(sp_measure *m, const sprig_plan *plan, const char *params, sp_exec_module *mod,
                           const mz_verify *v, sp_measurement *out) {
    SP_TRY(mz_reference(m, plan, params, v));
    sp_dptr ws = 0;
    if (plan->workspace_bytes) { /* the ABI: zeroed once when allocated */
        SP_TRY(sp_exec_alloc(m->e, &ws, plan->workspace_bytes));
        sprig_status st = sp_exec_fill(m->e, ws, 0, plan->workspace_bytes);
        if (st != SPRIG_OK) {
            sp_exec_free(m->e, ws);
            return st;
        }
    }
    mz_args *A = calloc(1, sizeof *A);
    if (!A) {
        sp_exec_free(m->e, ws);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    mz_check c;
    int launched = 0;
    sprig_status st = mz_build_args(m, plan, v, ws, A);
    if (st == SPRIG_E_INVALID) { /* the plan asks for what the tuner cannot give: its own failure */
        mz_note(out, SP_VERDICT_LAUNCH_FAILED, "", sprig_last_error());
        st = SPRIG_OK;
        goto done;
    }
    if (st == SPRIG_OK) st = mz_run_once(m, plan, mod, v, A, &launched, &c);
    if (st != SPRIG_OK) goto done;
    if (!launched) {
        mz_note(out, SP_VERDICT_LAUNCH_FAILED, "launch: ", sprig_last_error());
        goto done;
    }
    out->rel_err = c.rel;
    if (c.wrong) {
        mz_note(out, SP_VERDICT_WRONG, "", c.note);
        goto done;
    }
    sp_timing t;
    st = mz_prepare_outputs(m, plan);
    if (st == SPRIG_OK) st = sp_exec_time(m->e, mod, plan, A->lists, A->n_sets, m->o.warmup, m->o.reps, &t);
    /* once more from fresh outputs: an inout output accumulated over the timed runs, and a workspace
       the plan should have left zeroed shows here */
    if (st == SPRIG_OK) st = mz_run_once(m, plan, mod, v, A, &launched, &c);
    if (st != SPRIG_OK) goto done;
    if (!launched || c.wrong) {
        mz_note(out, launched ? SP_VERDICT_WRONG : SP_VERDICT_LAUNCH_FAILED, "after timing: ",
                launched ? c.note : sprig_last_error());
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

static const mz_seen *mz_find_seen(const mz_problem *p, uint64_t hash) {
    for (size_t i = 0; i < p->n_seen; ++i)
        if (p->seen[i].hash == hash) return &p->seen[i];
    return NULL;
}

/* Records a measured candidate (advisory: out of memory forgets it). */
static void mz_remember(mz_problem *p, uint64_t hash, const char *params, const sp_measurement *m) {
    if (p->n_seen == p->cap_seen) {
        size_t cap = p->cap_seen ? 2 * p->cap_seen : 32;
        mz_seen *grown = realloc(p->seen, sizeof *grown * cap);
        if (!grown) return;
        p->seen = grown, p->cap_seen = cap;
    }
    mz_seen *s = &p->seen[p->n_seen++];
    s->hash = hash, s->m = *m;
    snprintf(s->params, sizeof s->params, "%s", params);
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
    const uint64_t hash = sp_plan_identity(plan);
    const mz_seen *twin = mz_find_seen(&m->p, hash);
    if (twin) { /* the same kernels as a candidate already measured: nothing to run */
        *out = twin->m;
        char note[sizeof out->note];
        snprintf(note, sizeof note, "same kernels as [%.96s]%s%.40s", twin->params, twin->m.note[0] ? "; " : "",
                 twin->m.note);
        snprintf(out->note, sizeof out->note, "%s", note);
        ++m->stats.duplicates;
        sprig_plan_free(plan);
        return SPRIG_OK;
    }
    mz_verify v;
    if (mz_verify_of(plan, &v) != SPRIG_OK) {
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
        st = mz_run(m, plan, params, mod, &v, out);
        sp_exec_unload(m->e, mod);
    }
    if (st == SPRIG_OK) mz_remember(&m->p, hash, params, out);
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
