/* sp_bench_run: the MLP pipelines with looked-up params, verified and timed
 * on an executor, next to a dense baseline and the measured roof (see
 * sp_bench.h). The fixed kernels (streaming read, SwiGLU) live here too. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "tuner_internal.h"
#include "sp_analyze.h"
#include "sp_bench.h"
#include "sp_tuning_hook.h"
#include "sp_error.h"
#include "sp_mlp_keys.h"
#include "operands.h"
#include "sp_gen_mlp.h"
#include "sp_kargs.h"
#include "sp_reference.h"

#define BN_MAX_SETS SP_OPS_MAX_SETS
#define BN_MAX_STAGES 3
#define BN_GUARD 4096

void sp_bench_opts_init(sp_bench_opts *o) {
    memset(o, 0, sizeof *o);
    o->dtype = "fp16";
    o->g = 32;
    o->warmup = 3;
    o->reps = 50;
    o->tolerance = 1e-2;
    o->seed = 1;
    o->read_bytes = (size_t)1 << 30;
    o->min_sets = 2;
    o->max_rotation_bytes = (size_t)4 << 30;
}

/* ---- fixed kernels ------------------------------------------------------------------------ */

static sprig_status bn_fixed_plan(const char *family, const char *source, const char *kernel, sprig_plan **out) {
    *out = NULL;
    sprig_plan *p = calloc(1, sizeof *p);
    SP_CHECK_ALLOC(p);
    p->family = strdup(family);
    p->source = strdup(source);
    p->key = strdup(family);
    p->params_json = strdup("{}");
    if (!p->family || !p->source || !p->key || !p->params_json) {
        sprig_plan_free(p);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    p->source_len = strlen(source);
    p->n_kernels = 1;
    snprintf(p->kernels[0].name, sizeof p->kernels[0].name, "%s", kernel);
    p->kernels[0].block[0] = 256, p->kernels[0].block[1] = p->kernels[0].block[2] = 1;
    p->kernels[0].grid[0] = p->kernels[0].grid[1] = p->kernels[0].grid[2] = 1;
    *out = p;
    return SPRIG_OK;
}

/* Four independent 16-byte loads in flight per thread per step; the XOR of
 * everything is stored only if it equals a constant, so no load is dead. */
static const char BN_READ_SRC[] =
    "extern \"C\" __global__ void __launch_bounds__(256)\n"
    "sprig_stream_read(const uint4 *__restrict__ p, unsigned long long n, unsigned int *sink) {\n"
    "    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;\n"
    "    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    unsigned int acc = 0;\n"
    "    for (; i + 3 * stride < n; i += 4 * stride) {\n"
    "        const uint4 a = p[i], b = p[i + stride], c = p[i + 2 * stride], d = p[i + 3 * stride];\n"
    "        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;\n"
    "    }\n"
    "    for (; i < n; i += stride) {\n"
    "        const uint4 a = p[i];\n"
    "        acc ^= a.x ^ a.y ^ a.z ^ a.w;\n"
    "    }\n"
    "    if (acc == 0x9E3779B9u) sink[0] = acc;\n"
    "}\n";

static sprig_status sp_bench_read_plan(size_t n16, sprig_plan **out) {
    SP_TRY(bn_fixed_plan("stream_read", BN_READ_SRC, "sprig_stream_read", out));
    size_t ctas = (n16 + 255) / 256;
    (*out)->kernels[0].grid[0] = (unsigned)(ctas > 1024 ? 1024 : ctas ? ctas : 1);
    return SPRIG_OK;
}

/* ---- the roof ------------------------------------------------------------------------------- */

/* Times one grid size; *gbs gets the bandwidth. The grid is read at
 * launch, so one loaded module serves every size. */
static sprig_status bn_read_once(sp_exec *e, sp_exec_module *mod, sprig_plan *plan, unsigned grid, sp_dptr buf,
                                 size_t n16, sp_dptr sink, int warmup, int reps, double *gbs) {
    plan->kernels[0].grid[0] = grid;
    unsigned long long n = n16;
    void *args[] = {&buf, &n, &sink};
    void **sets[] = {args};
    sp_timing t;
    SP_TRY(sp_exec_time(e, mod, plan, sets, 1, warmup, reps, &t));
    *gbs = t.median_us > 0 ? (double)n16 * 16 / (t.median_us * 1e3) : 0;
    return SPRIG_OK;
}

sprig_status sp_bench_read_bandwidth(sp_exec *e, size_t bytes, int warmup, int reps, double *gbs) {
    *gbs = 0;
    size_t n16 = bytes / 16;
    if (n16 == 0) return sp_fail(SPRIG_E_INVALID, "the roof kernel needs at least 16 bytes to read");
    sprig_plan *plan = NULL;
    SP_TRY(sp_bench_read_plan(n16, &plan));
    sp_exec_module *mod = NULL;
    sp_dptr buf = 0, sink = 0;
    sprig_status st = sp_exec_load(e, plan, &mod);
    if (st == SPRIG_OK) st = sp_exec_alloc(e, &buf, n16 * 16);
    if (st == SPRIG_OK) st = sp_exec_alloc(e, &sink, 16);
    if (st == SPRIG_OK) st = sp_exec_fill(e, buf, 0, n16 * 16);
    /* The best of a few grid sizes: the roof is what the memory can do. */
    const unsigned per_sm[] = {4, 8, 16, 32};
    for (size_t i = 0; i < sizeof per_sm / sizeof per_sm[0] && st == SPRIG_OK; ++i) {
        size_t grid = e->sm_count > 0 ? (size_t)e->sm_count * per_sm[i] : 4 * (i + 1);
        size_t most = (n16 + 255) / 256;
        if (grid > most) grid = most ? most : 1;
        double bw = 0;
        st = bn_read_once(e, mod, plan, (unsigned)grid, buf, n16, sink, warmup, reps, &bw);
        if (st == SPRIG_OK && bw > *gbs) *gbs = bw;
    }
    sp_exec_unload(e, mod);
    sp_exec_free(e, buf);
    sp_exec_free(e, sink);
    sprig_plan_free(plan);
    return st == SPRIG_OK ? SPRIG_OK : sp_wrap(st, "measuring the streaming-read bandwidth");
}

/* ---- operands ------------------------------------------------------------------------------ */

/* The weights and x come from the tuner's operand store (operands.h) by role;
 * the activations that pass between stages (routing lists, h, y) live in
 * buffers of the bench's own, which a producing stage writes and the next
 * one reads. */
typedef struct bn_batch {
    int B;
    double *h64;                   /* [B][f]: SwiGLU of every neuron */
    double *scores;                /* [B][E]: router scores */
    double *y_dense;               /* [B][d]: the dense MLP (lazily) */
    unsigned char *ref_mask;       /* the mask y_ref was computed for */
    double *y_ref;
} bn_batch;

typedef struct bn_dev {
    sp_dptr h, y, scores, ids, counts, uids, ucount, mask;
} bn_dev;

typedef struct bn_ctx {
    sp_exec *e;
    sprig_gen *gen;
    const sp_bench_opts *o;
    sp_operands *ops;
    int d, f, g, E, bf16;
    bn_batch b;
    bn_dev dev;
    int max_batch;
    sp_gen_pipelines pipes;        /* lua/sprig/mlp.lua */
} bn_ctx;

static void bn_log(const bn_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bn_log(const bn_ctx *c, const char *fmt, ...) {
    if (!c->o->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->o->log(c->o->log_ctx, line);
}

/* A logical MLP operand of the current problem (w_gate, w_up, w_down, w_router, x). */
static sprig_status bn_operand(bn_ctx *c, const char *role, sp_operand *out) {
    sprig_arg a = {0};
    snprintf(a.name, sizeof a.name, "%s", role);
    snprintf(a.role, sizeof a.role, "%s", role);
    snprintf(a.type, sizeof a.type, "T");
    a.pointer = 1;
    a.rows = !strcmp(role, "x") ? (size_t)c->b.B : !strcmp(role, "w_down") ? (size_t)c->d
             : !strcmp(role, "w_router") ? (size_t)c->E : (size_t)c->f;
    a.cols = !strcmp(role, "w_down") ? (size_t)c->f : (size_t)c->d;
    a.count = a.rows * a.cols;
    return sp_operands_host(c->ops, &a, out);
}

static void bn_batch_free(bn_batch *b) {
    free(b->h64), free(b->scores), free(b->y_dense), free(b->ref_mask), free(b->y_ref);
    memset(b, 0, sizeof *b);
}

static sprig_status bn_batch_build(bn_ctx *c, int B) {
    bn_batch_free(&c->b);
    bn_batch *b = &c->b;
    b->B = B;
    SP_TRY(sp_operands_set(c->ops, c->d, c->f, c->g, c->bf16, B));
    sp_operand wg, wu, wr, x;
    SP_TRY(bn_operand(c, "w_gate", &wg));
    SP_TRY(bn_operand(c, "w_up", &wu));
    SP_TRY(bn_operand(c, "w_router", &wr));
    SP_TRY(bn_operand(c, "x", &x));
    b->h64 = malloc(sizeof(double) * (size_t)B * c->f);
    b->scores = malloc(sizeof(double) * (size_t)B * c->E);
    SP_CHECK_ALLOC(b->h64);
    SP_CHECK_ALLOC(b->scores);
    sp_ref_swiglu(wg.vals, wu.vals, x.vals, NULL, B, c->d, c->f, 1, b->h64);
    sp_ref_router_scores(wr.vals, x.vals, b->scores, c->E, c->d, B);
    return SPRIG_OK;
}

/* The float64 MLP output for a mask [B][E] (NULL: dense), cached per mask. */
static sprig_status bn_reference(bn_ctx *c, const unsigned char *mask, const double **out) {
    bn_batch *b = &c->b;
    size_t be = (size_t)b->B * c->E, bf = (size_t)b->B * c->f;
    if (!mask && b->y_dense) return *out = b->y_dense, SPRIG_OK;
    if (mask && b->ref_mask && !memcmp(mask, b->ref_mask, be)) return *out = b->y_ref, SPRIG_OK;
    sp_operand wd;
    SP_TRY(bn_operand(c, "w_down", &wd));
    double *y = malloc(sizeof(double) * (size_t)b->B * c->d), *hm = malloc(sizeof(double) * bf);
    if (!y || !hm) {
        free(y), free(hm);
        return sp_fail(SPRIG_E_NOMEM, "out of host memory for the reference");
    }
    for (size_t i = 0; i < bf; ++i) {
        size_t t = i / (size_t)c->f, n = i % (size_t)c->f;
        hm[i] = !mask || mask[t * c->E + n / c->g] ? b->h64[i] : 0.0;
    }
    sp_ref_down(wd.vals, hm, mask, b->B, c->d, c->f, c->g, y);
    free(hm);
    if (!mask) return *out = b->y_dense = y, SPRIG_OK;
    free(b->y_ref), free(b->ref_mask);
    b->y_ref = y;
    b->ref_mask = malloc(be);
    SP_CHECK_ALLOC(b->ref_mask);
    memcpy(b->ref_mask, mask, be);
    *out = y;
    return SPRIG_OK;
}

static sprig_status bn_dev_alloc(bn_ctx *c) {
    bn_dev *d = &c->dev;
    sp_exec *e = c->e;
    size_t B = (size_t)c->max_batch, be = B * c->E;
    SP_TRY(sp_exec_alloc(e, &d->h, 2 * B * c->f + BN_GUARD));
    SP_TRY(sp_exec_alloc(e, &d->y, 2 * B * c->d + BN_GUARD));
    SP_TRY(sp_exec_alloc(e, &d->scores, sizeof(float) * be));
    SP_TRY(sp_exec_alloc(e, &d->ids, sizeof(int) * be));
    SP_TRY(sp_exec_alloc(e, &d->counts, sizeof(int) * B));
    SP_TRY(sp_exec_alloc(e, &d->uids, sizeof(int) * (size_t)c->E));
    SP_TRY(sp_exec_alloc(e, &d->ucount, sizeof(int)));
    SP_TRY(sp_exec_alloc(e, &d->mask, be));
    return SPRIG_OK;
}

static void bn_dev_free(bn_ctx *c) {
    bn_dev *d = &c->dev;
    sp_dptr all[] = {d->h, d->y, d->scores, d->ids, d->counts, d->uids, d->ucount, d->mask};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) sp_exec_free(c->e, all[i]);
    memset(d, 0, sizeof *d);
}

/* Every expert active for every token: what the dense gather_gemm reads. */
static sprig_status bn_route_all(bn_ctx *c) {
    size_t be = (size_t)c->b.B * c->E;
    int *ids = malloc(sizeof(int) * (size_t)c->E);
    unsigned char *mask = malloc(be);
    if (!ids || !mask) {
        free(ids), free(mask);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    for (int e = 0; e < c->E; ++e) ids[e] = e;
    memset(mask, 1, be);
    sprig_status st = sp_exec_upload(c->e, c->dev.uids, ids, sizeof(int) * (size_t)c->E);
    if (st == SPRIG_OK) st = sp_exec_upload(c->e, c->dev.ucount, &c->E, sizeof(int));
    if (st == SPRIG_OK) st = sp_exec_upload(c->e, c->dev.mask, mask, be);
    free(ids), free(mask);
    return st;
}

/* ---- pipelines ---------------------------------------------------------------------------------- */

typedef struct bn_stage {
    const char *family;
    int v;                        /* variant (sp_mlp_fixed) */
    sp_lookup_source source;
    sprig_plan *plan;
    sp_exec_module *mod;
    sp_dptr ws;
    sp_kargs sets[BN_MAX_SETS];   /* bound per rotation set */
    void **lists[BN_MAX_SETS];
} bn_stage;

typedef struct bn_pipe {
    char name[96];
    char sources[192];
    int n;
    bn_stage st[BN_MAX_STAGES];
    float thr;                    /* router threshold (logit space) */
} bn_pipe;

static void bn_pipe_free(bn_ctx *c, bn_pipe *p) {
    for (int i = 0; i < p->n; ++i) {
        sp_exec_unload(c->e, p->st[i].mod);
        sp_exec_free(c->e, p->st[i].ws);
        sprig_plan_free(p->st[i].plan);
    }
    p->n = 0;
}

/* Looks the stage's params up, renders, compiles and loads it. A failure
 * that belongs to the pipeline (cannot serve, does not compile) is written
 * to why and returns SPRIG_OK with st->mod NULL. */
static sprig_status bn_stage_open(bn_ctx *c, bn_stage *st, const char *family, int v, const char *extra,
                                  double sparsity, int batch, char *why, size_t cap) {
    memset(st, 0, sizeof *st);
    st->family = family, st->v = v;
    sp_lookup_result lr;
    sprig_status s = sp_mlp_lookup(c->gen, c->o->dbs, c->o->gpu, family, v, c->d, c->f, c->o->dtype, batch, c->g,
                                   sparsity, &lr);
    if (s == SPRIG_E_INVALID) {
        snprintf(why, cap, "%s: %s", family, sprig_last_error());
        return SPRIG_OK;
    }
    SP_TRY(s);
    st->source = lr.source;
    char params[512];
    SP_TRY(sp_tuning_merge_params(extra, lr.params, params, sizeof params)); /* the pipeline's own over the tuned */
    sprig_request req = {family, c->d, c->f, c->o->dtype, batch, c->g, params};
    s = sprig_gen_render(c->gen, &req, &st->plan);
    if (s == SPRIG_OK) s = sp_exec_load(c->e, st->plan, &st->mod);
    if (s == SPRIG_OK && st->plan->workspace_bytes) { /* the ABI: zeroed once */
        s = sp_exec_alloc(c->e, &st->ws, st->plan->workspace_bytes);
        if (s == SPRIG_OK) s = sp_exec_fill(c->e, st->ws, 0, st->plan->workspace_bytes);
        if (s != SPRIG_OK) return s;
    }
    if (s == SPRIG_E_NOMEM) return s;
    if (s != SPRIG_OK) {
        snprintf(why, cap, "%.40s [%.96s]: %.100s", family, lr.params, sprig_last_error());
        char *nl = strchr(why, '\n');
        if (nl) *nl = '\0';
        st->mod = NULL;
    }
    return SPRIG_OK;
}

/* The bench's own buffer for an argument that passes between stages. */
static int bn_shared(const bn_ctx *c, const char *role, sp_dptr *out) {
    const bn_dev *d = &c->dev;
    static const char *const roles[] = {"h", "y", "scores", "ids", "counts", "union_ids", "union_count", "mask"};
    const sp_dptr bufs[] = {d->h, d->y, d->scores, d->ids, d->counts, d->uids, d->ucount, d->mask};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; ++i)
        if (!strcmp(role, roles[i])) return *out = bufs[i], 1;
    return 0;
}

/* Binds every argument of stage s for rotation set k (the store's weights and
 * x, the shared activations, the stage's workspace, the router's threshold). */
static sprig_status bn_bind(bn_ctx *c, bn_pipe *p, bn_stage *s, int k) {
    sp_kargs *a = &s->sets[k];
    sp_kargs_init(a, s->plan);
    for (int i = 0; i < s->plan->n_args; ++i) {
        const sprig_arg *arg = &s->plan->args[i];
        sp_dptr dp = 0;
        if (!arg->pointer) {
            if (strcmp(arg->role, "threshold") != 0)
                return sp_fail(SPRIG_E_INVALID, "%s: no value for argument '%s'", s->family, arg->name);
            sp_kargs_f32(a, arg->name, p->thr);
            continue;
        }
        if (arg->dir == SPRIG_ARG_SCRATCH) dp = s->ws;
        else if (bn_shared(c, arg->role, &dp)) (void)0;
        else if (arg->dir == SPRIG_ARG_IN && sp_operands_knows(arg)) SP_TRY(sp_operands_device(c->ops, arg, k, &dp));
        else if (!arg->optional)
            return sp_fail(SPRIG_E_INVALID, "%s: no operand for argument '%s' (role %s)", s->family, arg->name,
                           arg->role);
        sp_kargs_ptr(a, arg->name, dp);
    }
    return sp_kargs_finish(a, &s->lists[k]);
}

/* Weight copies so that one set of the pipeline's weights times n_sets
 * exceeds twice the L2; then every stage's argument lists. */
static sprig_status bn_pipe_args(bn_ctx *c, bn_pipe *p, int *n_sets) {
    size_t per_set = 0;
    const sprig_arg *seen[BN_MAX_STAGES * SPRIG_MAX_ARGS];
    int n_seen = 0;
    for (int i = 0; i < p->n; ++i)
        for (int j = 0; j < p->st[i].plan->n_args; ++j) {
            const sprig_arg *a = &p->st[i].plan->args[j];
            if (a->dir != SPRIG_ARG_IN || !a->pointer || a->optional || !sp_operands_is_weight(a)) continue;
            int dup = 0;
            for (int k = 0; k < n_seen && !dup; ++k) dup = !strcmp(seen[k]->role, a->role) && seen[k]->count == a->count;
            if (dup) continue;
            seen[n_seen++] = a;
            per_set += a->count * 2;
        }
    *n_sets = sp_operands_rotation(c->e, per_set, c->o->min_sets, c->o->max_rotation_bytes);
    for (int i = 0; i < p->n; ++i)
        for (int k = 0; k < *n_sets; ++k) SP_TRY(bn_bind(c, p, &p->st[i], k));
    return SPRIG_OK;
}

static int bn_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The router's threshold leaving `sparsity` percent of the batch's (token,
 * expert) scores below it, between two neighbouring float64 scores. */
static sprig_status bn_threshold(const bn_ctx *c, double sparsity, float *thr) {
    size_t n = (size_t)c->b.B * c->E;
    double *q = malloc(sizeof(double) * n);
    SP_CHECK_ALLOC(q);
    memcpy(q, c->b.scores, sizeof(double) * n);
    qsort(q, n, sizeof *q, bn_cmp_double);
    size_t off = (size_t)floor(sparsity / 100.0 * (double)n);
    *thr = (float)(off == 0 ? q[0] - 1.0 : off >= n ? q[n - 1] + 1.0 : 0.5 * (q[off - 1] + q[off]));
    free(q);
    return SPRIG_OK;
}

/* ---- verify and time one pipeline --------------------------------------------------------------- */

typedef struct bn_result {
    int ok;
    double us, rel;
    double active_frac;
    double bytes;
    char why[256];
} bn_result;

static sprig_status bn_launch_all(bn_ctx *c, bn_pipe *p, char *why, size_t cap, int *launched) {
    *launched = 0;
    for (int i = 0; i < p->n; ++i) {
        sprig_status s = sp_exec_launch(c->e, p->st[i].mod, p->st[i].plan, p->st[i].lists[0]);
        if (s != SPRIG_OK) {
            snprintf(why, cap, "%s: launch refused: %s", p->st[i].family, sprig_last_error());
            return SPRIG_OK;
        }
    }
    *launched = 1;
    return sp_exec_sync(c->e);
}

/* Checks y against the float64 MLP for the mask the pipeline routed with. */
static sprig_status bn_check(bn_ctx *c, int routed, double *rel, double *active, double *bytes, char *why,
                             size_t cap) {
    int B = c->b.B;
    size_t be = (size_t)B * c->E, ybytes = 2 * (size_t)B * c->d;
    unsigned char *mask = routed ? malloc(be) : NULL;
    uint16_t *y = malloc(ybytes + BN_GUARD);
    sprig_status st = (routed && !mask) || !y ? sp_fail(SPRIG_E_NOMEM, "out of memory") : SPRIG_OK;
    if (st == SPRIG_OK && routed) st = sp_exec_download(c->e, mask, c->dev.mask, be);
    if (st == SPRIG_OK) st = sp_exec_download(c->e, y, c->dev.y, ybytes + BN_GUARD);
    const double *ref = NULL;
    if (st == SPRIG_OK) st = bn_reference(c, mask, &ref);
    if (st == SPRIG_OK) {
        double d2 = 0, r2 = 0;
        long bad = 0;
        for (size_t i = 0; i < (size_t)B * c->d; ++i) {
            double o = sp_ref_from_bits(c->bf16, y[i]);
            if (!isfinite(o)) ++bad;
            else d2 += (o - ref[i]) * (o - ref[i]), r2 += ref[i] * ref[i];
        }
        *rel = r2 > 0 ? sqrt(d2 / r2) : INFINITY;
        const unsigned char *guard = (const unsigned char *)y + ybytes;
        int guard_ok = 1;
        for (int i = 0; i < BN_GUARD; ++i) guard_ok &= guard[i] == 0xFF;
        if (bad) snprintf(why, cap, "wrong: %ld of %zu outputs NaN/inf", bad, (size_t)B * c->d);
        else if (!(*rel < c->o->tolerance)) snprintf(why, cap, "wrong: rel_err %.3g", *rel);
        else if (!guard_ok) snprintf(why, cap, "wrong: wrote past the end of y");
        /* The union of active experts and the bytes the MLP must read. */
        int U = c->E;
        if (mask) {
            U = 0;
            for (int e = 0; e < c->E; ++e) {
                int any = 0;
                for (int t = 0; t < B && !any; ++t) any = mask[(size_t)t * c->E + e];
                U += any;
            }
        }
        *active = (double)U / c->E;
        *bytes = 3.0 * U * c->g * c->d * 2 + (routed ? 2.0 * c->E * c->d : 0) + 2.0 * B * c->d;
    }
    free(mask), free(y);
    return st;
}

static sprig_status bn_run_pipe(bn_ctx *c, bn_pipe *p, int routed, bn_result *r) {
    memset(r, 0, sizeof *r);
    int n_sets = 1, launched = 0;
    SP_TRY(bn_pipe_args(c, p, &n_sets));
    const size_t ybytes = 2 * (size_t)c->b.B * c->d;
    SP_TRY(sp_exec_fill(c->e, c->dev.y, 0xFF, ybytes + BN_GUARD));
    SP_TRY(sp_exec_fill(c->e, c->dev.h, 0xFF, 2 * (size_t)c->b.B * c->f + BN_GUARD));
    SP_TRY(bn_launch_all(c, p, r->why, sizeof r->why, &launched));
    if (!launched) return SPRIG_OK;
    SP_TRY(bn_check(c, routed, &r->rel, &r->active_frac, &r->bytes, r->why, sizeof r->why));
    if (r->why[0]) return SPRIG_OK;
    sp_exec_step steps[BN_MAX_STAGES];
    for (int i = 0; i < p->n; ++i) steps[i] = (sp_exec_step){p->st[i].mod, p->st[i].plan, p->st[i].lists};
    SP_TRY(sp_exec_fill(c->e, c->dev.y, 0xFF, ybytes + BN_GUARD));
    sp_timing t;
    SP_TRY(sp_exec_time_seq(c->e, steps, p->n, n_sets, c->o->warmup, c->o->reps, &t));
    double rel2 = 0, act2 = 0, bytes2 = 0;
    SP_TRY(bn_check(c, routed, &rel2, &act2, &bytes2, r->why, sizeof r->why));
    if (r->why[0]) {
        char again[sizeof r->why];
        snprintf(again, sizeof again, "after timing: %.200s", r->why);
        snprintf(r->why, sizeof r->why, "%s", again);
        return SPRIG_OK;
    }
    r->ok = 1;
    r->us = t.median_us;
    r->rel = rel2 > r->rel ? rel2 : r->rel;
    return SPRIG_OK;
}

/* Opens a pipeline (lua/sprig/mlp.lua: its stages, the router in front when
 * the case is sparse); a pipeline that cannot serve says why in why. */
static sprig_status bn_open_pipe(bn_ctx *c, const sp_gen_pipeline *pl, double sparsity, bn_pipe *p, char *why,
                                 size_t cap) {
    memset(p, 0, sizeof *p);
    const int routed = sparsity > 0;
    const sp_gen_stage *router = &c->pipes.router;
    const int front = routed && !pl->routes; /* a pipeline that routes itself needs no router in front */
    snprintf(p->name, sizeof p->name, "%s%s%s", front ? router->family : "", front ? "+" : "", pl->name);
    if (pl->routes && !routed) {
        snprintf(why, cap, "it routes itself: cannot serve a dense case");
        return SPRIG_OK;
    }
    const sp_gen_stage *stages[SP_GEN_MAX_STAGES + 1];
    int n = 0;
    if (front) stages[n++] = router;
    for (int i = 0; i < pl->n; ++i) stages[n++] = &pl->stages[i];
    size_t at = 0;
    for (int i = 0; i < n; ++i) {
        bn_stage *st = &p->st[p->n];
        SP_TRY(bn_stage_open(c, st, stages[i]->family, stages[i]->variant, stages[i]->extra, sparsity, c->b.B, why,
                             cap));
        if (!st->mod) {
            sprig_plan_free(st->plan);
            return SPRIG_OK;
        }
        ++p->n;
        at += (size_t)snprintf(p->sources + at, at < sizeof p->sources ? sizeof p->sources - at : 0, "%s%s",
                               i ? "," : "", sp_lookup_source_name(st->source));
        if (at >= sizeof p->sources) at = sizeof p->sources - 1;
    }
    return routed ? bn_threshold(c, sparsity, &p->thr) : SPRIG_OK;
}

static void bn_note(sp_bench_row *row, const char *pipe, const char *why) {
    size_t at = strlen(row->note);
    snprintf(row->note + at, sizeof row->note - at, "%s%s: %s", at ? "; " : "", pipe, why);
}

/* Every pipeline of one (batch, sparsity) case; the fastest verified wins. */
/* The static model's time for pipe p at the routed share `active`: its
 * kernels, plus a launch gap before each (as measured: k pipelines per CUDA graph). */
static double bn_predict(const bn_ctx *c, const bn_pipe *p, double active) {
    if (!c->o->model_gpu) return -1;
    double t = 0;
    for (int i = 0; i < p->n; ++i) {
        const char *bar = strchr(p->st[i].plan->key, '|');
        sprig_request req = {p->st[i].family, c->d, c->f, c->o->dtype, c->b.B, c->g, bar ? bar + 1 : ""};
        sp_analyze_opts ao = {c->o->model_gpu, active > 0 ? active : 1.0, 512, NULL, ""};
        sp_analyze_plan ap;
        if (sp_analyze_request(c->gen, &req, &ao, &ap) != SPRIG_OK) return -1;
        t += ap.t_us + ap.n * c->o->model_gpu->launch_us; /* timed in a graph: a gap before every kernel */
    }
    return t;
}

static sprig_status bn_case(bn_ctx *c, double sparsity, sp_bench_row *row) {
    const int routed = sparsity > 0;
    if (!routed) SP_TRY(bn_route_all(c));
    for (int k = 0; k < c->pipes.n; ++k) {
        bn_pipe p;
        char why[256] = "";
        sprig_status st = bn_open_pipe(c, &c->pipes.items[k], sparsity, &p, why, sizeof why);
        bn_result r = {0};
        if (st == SPRIG_OK && !why[0]) st = bn_run_pipe(c, &p, routed, &r);
        const double predicted = st == SPRIG_OK && r.ok && (row->ours_us < 0 || r.us < row->ours_us)
                                     ? bn_predict(c, &p, r.active_frac) : -1;
        bn_pipe_free(c, &p);
        SP_TRY(st);
        if (why[0] || !r.ok) {
            if (!strstr(why[0] ? why : r.why, "cannot serve")) bn_note(row, p.name, why[0] ? why : r.why);
            bn_log(c, "  b=%d s=%g%%: %s: %s", c->b.B, sparsity, p.name, why[0] ? why : r.why);
            continue;
        }
        bn_log(c, "  b=%d s=%g%%: %s: %.2f us (rel_err %.1e) [%s]", c->b.B, sparsity, p.name, r.us, r.rel,
               p.sources);
        row->active_frac = r.active_frac, row->bytes = r.bytes;
        if (row->ours_us < 0 || r.us < row->ours_us) {
            row->ours_us = r.us, row->ours_rel_err = r.rel, row->predicted_us = predicted;
            snprintf(row->ours_what, sizeof row->ours_what, "%s", p.name);
            snprintf(row->ours_source, sizeof row->ours_source, "%s", p.sources);
        }
    }
    return SPRIG_OK;
}

/* ---- the run --------------------------------------------------------------------------------------- */

static sprig_status bn_check_opts(const sp_bench_opts *o) {
    if (!o || o->d <= 0 || o->f <= 0 || o->g <= 0 || o->f % o->g || !o->dtype ||
        (strcmp(o->dtype, "fp16") && strcmp(o->dtype, "bf16")) || o->n_batches < 1 || o->n_sparsities < 1 ||
        !o->batches || !o->sparsities || !o->dbs || !o->gpu || o->reps < 1 || o->warmup < 0 || o->min_sets < 1)
        return sp_fail(SPRIG_E_INVALID, "sp_bench_run: bad options (shape, dtype, batches, sparsities, dbs, gpu)");
    for (int i = 0; i < o->n_batches; ++i)
        if (o->batches[i] < 1 || o->batches[i] > 64) return sp_fail(SPRIG_E_INVALID, "batch %d is outside 1..64", o->batches[i]);
    for (int i = 0; i < o->n_sparsities; ++i)
        if (!(o->sparsities[i] >= 0 && o->sparsities[i] < 100))
            return sp_fail(SPRIG_E_INVALID, "sparsity %g is outside 0..99", o->sparsities[i]);
    return SPRIG_OK;
}

static void bn_report_init(const bn_ctx *c, sp_bench_report *r) {
    const sp_bench_opts *o = c->o;
    snprintf(r->device, sizeof r->device, "%s", c->e->device);
    r->cc_major = c->e->cc_major, r->cc_minor = c->e->cc_minor, r->sm_count = c->e->sm_count;
    if (o->shape_name) snprintf(r->shape, sizeof r->shape, "%s", o->shape_name);
    else snprintf(r->shape, sizeof r->shape, "%d,%d", o->d, o->f);
    r->d = o->d, r->f = o->f, r->g = o->g;
    snprintf(r->dtype, sizeof r->dtype, "%s", o->dtype);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(r->date, sizeof r->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static sprig_status bn_baseline(bn_ctx *c, double *us, double *rel, char *why, size_t cap) {
    *us = -1, *rel = 0;
    if (!c->o->baseline) return SPRIG_OK;
    const double *ref = NULL;
    SP_TRY(bn_reference(c, NULL, &ref));
    sp_operand wg, wu, wd, x;
    SP_TRY(bn_operand(c, "w_gate", &wg));
    SP_TRY(bn_operand(c, "w_up", &wu));
    SP_TRY(bn_operand(c, "w_down", &wd));
    SP_TRY(bn_operand(c, "x", &x));
    sp_bench_operands ops = {c->d, c->f, c->bf16, c->b.B, wg.bits, wu.bits, wd.bits, x.bits,
                             ref, c->e->l2_bytes, c->o->warmup, c->o->reps, c->o->tolerance};
    sprig_status st = c->o->baseline(c->o->baseline_ctx, &ops, us, rel);
    if (st == SPRIG_E_NOMEM || st == SPRIG_E_CUDA) return sp_wrap(st, "timing the dense baseline");
    if (st != SPRIG_OK) {
        snprintf(why, cap, "cuBLAS: %s", sprig_last_error());
        *us = -1;
    } else if (!(*rel < c->o->tolerance)) {
        snprintf(why, cap, "cuBLAS: wrong (rel_err %.3g), not shown", *rel);
        *us = -1;
    }
    return SPRIG_OK;
}

static sprig_status bn_run(bn_ctx *c, sp_bench_report *out) {
    const sp_bench_opts *o = c->o;
    if (o->read_bytes) {
        SP_TRY(sp_bench_read_bandwidth(c->e, o->read_bytes, o->warmup, o->reps, &out->read_gbs));
        out->read_bytes = (double)(o->read_bytes / 16 * 16);
        bn_log(c, "streaming read: %.4g GB/s over %.3g GiB", out->read_gbs, out->read_bytes / 1073741824.0);
    }
    c->d = o->d, c->f = o->f, c->g = o->g, c->E = o->f / o->g, c->bf16 = !strcmp(o->dtype, "bf16");
    SP_TRY(sp_operands_open(c->e, o->seed, &c->ops));
    SP_TRY(sp_gen_mlp_pipelines(c->gen, &c->pipes));
    for (int i = 0; i < o->n_batches; ++i) c->max_batch = o->batches[i] > c->max_batch ? o->batches[i] : c->max_batch;
    SP_TRY(bn_dev_alloc(c));
    out->rows = calloc((size_t)o->n_batches * o->n_sparsities, sizeof *out->rows);
    SP_CHECK_ALLOC(out->rows);
    for (int bi = 0; bi < o->n_batches; ++bi) {
        SP_TRY(bn_batch_build(c, o->batches[bi]));
        double cub_us, cub_rel;
        char cub_why[256] = "";
        SP_TRY(bn_baseline(c, &cub_us, &cub_rel, cub_why, sizeof cub_why));
        if (cub_us >= 0) bn_log(c, "  b=%d: cuBLAS dense %.2f us (rel_err %.1e)", o->batches[bi], cub_us, cub_rel);
        for (int si = 0; si < o->n_sparsities; ++si) {
            sp_bench_row *row = &out->rows[out->n++];
            row->batch = o->batches[bi], row->sparsity = o->sparsities[si];
            row->ours_us = row->roof_us = row->active_frac = row->predicted_us = -1;
            row->cublas_us = cub_us, row->cublas_rel_err = cub_rel;
            if (cub_why[0]) bn_note(row, "baseline", cub_why);
            SP_TRY(bn_case(c, o->sparsities[si], row));
            if (out->read_gbs > 0 && row->bytes > 0) row->roof_us = row->bytes / (out->read_gbs * 1e3);
        }
    }
    return SPRIG_OK;
}

sprig_status sp_bench_run(sp_exec *e, sprig_gen *gen, const sp_bench_opts *o, sp_bench_report *out) {
    if (!out) return sp_fail(SPRIG_E_INVALID, "sp_bench_run: out is NULL");
    memset(out, 0, sizeof *out);
    if (!e || !gen) return sp_fail(SPRIG_E_INVALID, "sp_bench_run: NULL executor or generator");
    SP_TRY(bn_check_opts(o));
    bn_ctx *c = calloc(1, sizeof *c);
    SP_CHECK_ALLOC(c);
    c->e = e, c->gen = gen, c->o = o;
    bn_report_init(c, out);
    sprig_status st = bn_run(c, out);
    bn_batch_free(&c->b);
    bn_dev_free(c);
    sp_operands_close(c->ops);
    free(c);
    return st;
}
