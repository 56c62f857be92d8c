/* router on the GPU: fp32 scores against the float64 ones; activity decisions
 * against the float64 decisions (a difference is allowed only where the score
 * sits within 1e-3·rms(scores) of the threshold, and such scores must be
 * rare); and ids / counts / union / mask checked for consistency with the
 * kernel's own decisions (ascending, complete, nothing extra). Sigmoid rule
 * (LTE) with tau = 0.5 and 0.6, and silu_abs (training-free, g = 1,
 * Wr = W_gate) with a threshold calibrated to about half the neurons. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "test_util.h"

/* Host copies of everything the router writes. */
typedef struct router_out {
    float *scores;        /* [B][E] */
    unsigned char *mask;  /* [B][E] */
    int *ids;             /* [B][E] */
    int *counts;          /* [B] */
    int *uids;            /* [E] */
    int ucount;
} router_out;

typedef struct router_dev {
    CUdeviceptr Wr, x, scores, ids, counts, uids, ucount, mask;
} router_dev;

static double rms(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += v[i] * v[i];
    return n ? sqrt(s / (double)n) : 0.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The quantity the rule compares with the threshold. */
static double rule_value(int silu, double s) { return silu ? fabs(sp_ref_silu(s)) : s; }

/* The kernel's decisions must follow its own scores exactly for sigmoid (a
 * float compare); for silu_abs the device expf may differ from the host's
 * in the last bits, so a difference within 1e-5 relative is tolerated. */
static int follows_own_score(int silu, float s, float thr, unsigned char on) {
    if (!silu) return on == (s > thr);
    float q = fabsf(s / (1.0f + expf(-s)));
    if (on == (q > thr)) return 1;
    return fabsf(q - thr) <= 1e-5f * fmaxf(thr, 1e-30f);
}

/* ids [B][E] / counts / union against the mask (the kernel's own decisions). */
static void check_lists(gh_ctx *h, const gh_kernel *k, int B, int E, const router_out *o) {
    int bad_ids = 0, bad_counts = 0;
    for (int t = 0; t < B; ++t) {
        int want = 0;
        for (int e = 0; e < E; ++e) want += o->mask[(size_t)t * E + e];
        if (o->counts[t] != want) {
            if (bad_counts++ < 3)
                gh_fail_case(h, k, "counts[%d] = %d but the mask has %d experts", t, o->counts[t], want);
            continue;
        }
        const int *ids = o->ids + (size_t)t * E;
        for (int i = 0; i < want; ++i) {
            int ok = ids[i] >= 0 && ids[i] < E && o->mask[(size_t)t * E + ids[i]] && (i == 0 || ids[i] > ids[i - 1]);
            if (!ok && bad_ids++ < 3)
                gh_fail_case(h, k, "ids[%d][%d] = %d: not ascending, out of range or not in the mask", t, i, ids[i]);
        }
    }
    int want_u = 0;
    for (int e = 0; e < E; ++e) {
        int any = 0;
        for (int t = 0; t < B; ++t) any |= o->mask[(size_t)t * E + e];
        want_u += any;
    }
    if (o->ucount != want_u) {
        gh_fail_case(h, k, "union_count = %d, the mask's union has %d experts", o->ucount, want_u);
        return;
    }
    for (int j = 0; j < want_u; ++j) {
        int e = o->uids[j], any = 0;
        if (e >= 0 && e < E)
            for (int t = 0; t < B; ++t) any |= o->mask[(size_t)t * E + e];
        if (!any || (j > 0 && e <= o->uids[j - 1])) {
            gh_fail_case(h, k, "union_ids[%d] = %d: not ascending, out of range or in no token's mask", j, e);
            return;
        }
    }
}

/* Runs the kernel (output poisoned) and checks everything it wrote; the
 * case's line is printed after the last of the repeated runs. */
static void router_run_check(gh_ctx *h, gh_kernel *k, router_dev *dv, int B, int E, int silu, float thr,
                             const double *ref, router_out *o, int last) {
    size_t be = (size_t)B * E;
    gh_poison_out(dv->scores, be * sizeof(float));
    gh_poison_out(dv->mask, be);
    gh_poison(dv->ids, be * sizeof(int));
    gh_poison_out(dv->counts, (size_t)B * sizeof(int));
    gh_poison(dv->uids, (size_t)E * sizeof(int));
    gh_poison_out(dv->ucount, sizeof(int));
    sp_kargs a;
    sp_kargs_init(&a, k->plan);
    sp_kargs_ptr(&a, "Wr", dv->Wr), sp_kargs_ptr(&a, "x", dv->x), sp_kargs_ptr(&a, "scores", dv->scores);
    sp_kargs_f32(&a, "threshold", thr);
    sp_kargs_ptr(&a, "ids", dv->ids), sp_kargs_ptr(&a, "counts", dv->counts), sp_kargs_ptr(&a, "union_ids", dv->uids);
    sp_kargs_ptr(&a, "union_count", dv->ucount), sp_kargs_ptr(&a, "mask", dv->mask), sp_kargs_ptr(&a, "ws", k->ws);
    gh_run(h, k, &a);
    gh_download(o->scores, dv->scores, be * sizeof(float));
    gh_download(o->mask, dv->mask, be);
    gh_download(o->ids, dv->ids, be * sizeof(int));
    gh_download(o->counts, dv->counts, (size_t)B * sizeof(int));
    gh_download(o->uids, dv->uids, (size_t)E * sizeof(int));
    gh_download(&o->ucount, dv->ucount, sizeof(int));

    /* Scores: fp32 sums of the same operands, so far inside 1e-2; hold them to 1e-4. */
    double d2 = 0, r2 = 0;
    long nan = 0;
    for (size_t i = 0; i < be; ++i) {
        if (!isfinite(o->scores[i])) {
            ++nan;
            continue;
        }
        d2 += (o->scores[i] - ref[i]) * (o->scores[i] - ref[i]);
        r2 += ref[i] * ref[i];
    }
    gh_cmp c = {r2 > 0 ? sqrt(d2 / r2) : 0, nan, (long)be};
    long active = 0, bad_mask = 0, unfollowed = 0, band = 0, differ = 0, differ_outside = 0;
    double tol = 1e-3 * rms(ref, be);
    for (size_t i = 0; i < be; ++i) {
        unsigned char on = o->mask[i];
        if (on > 1) {
            ++bad_mask;
            continue;
        }
        active += on;
        if (!follows_own_score(silu, o->scores[i], thr, on)) ++unfollowed;
        int near = fabs(rule_value(silu, ref[i]) - (double)thr) < tol;
        band += near;
        if (on != sp_ref_router_active(silu ? SP_REF_RULE_SILU_ABS : SP_REF_RULE_SIGMOID, ref[i], thr)) {
            ++differ;
            differ_outside += !near;
        }
    }
    double frac = be ? (double)active / (double)be : 0;
    if (bad_mask) gh_fail_case(h, k, "%ld mask bytes are neither 0 nor 1 (unwritten?)", bad_mask);
    if (unfollowed) gh_fail_case(h, k, "%ld mask entries disagree with the kernel's own scores", unfollowed);
    if (differ_outside)
        gh_fail_case(h, k, "%ld decisions differ from float64 away from the threshold", differ_outside);
    if (band > 2 + (long)(be / 100)) gh_fail_case(h, k, "%ld scores within the tolerance band: not rare", band);
    if (!gh_guard_intact(dv->scores, be * sizeof(float)) || !gh_guard_intact(dv->mask, be) ||
        !gh_guard_intact(dv->counts, (size_t)B * sizeof(int)) || !gh_guard_intact(dv->ucount, sizeof(int)))
        gh_fail_case(h, k, "wrote past the end of scores, mask, counts or union_count");
    if (!bad_mask) check_lists(h, k, B, E, o);
    if (last || c.nan || c.rel >= GH_TOL) {
        gh_report(h, k, silu ? "silu_abs" : "sigmoid", frac, c);
        printf("      threshold %.6g%s; %ld of %zu active, %ld within %.1e of it, %ld differ from float64\n",
               (double)thr, silu ? " (median |silu|)" : "", active, be, band, tol, differ);
    }
}

/* One router problem: E experts of width d, batch B, one rule; several params. */
static void router_problem(gh_ctx *h, int d, int f, int g, int B, int bf16, int silu, double tau,
                           const char *const *variants, int n_variants) {
    int E = f / g;
    size_t be = (size_t)B * E;
    float *Wr = gh_xalloc(sizeof(float) * (size_t)E * d), *x = gh_xalloc(sizeof(float) * (size_t)B * d);
    uint16_t *Wrb = gh_xalloc(2 * (size_t)E * d), *xb = gh_xalloc(2 * (size_t)B * d);
    gh_fill(h, bf16, 1.0 / sqrt((double)d), (size_t)E * d, Wr, Wrb);
    gh_fill(h, bf16, 1.0, (size_t)B * d, x, xb);
    double *ref = gh_xalloc(sizeof(double) * be);
    sp_ref_router_scores(Wr, x, ref, E, d, B);

    float thr;
    if (silu) { /* the median |silu(score)|: about half the neurons active */
        double *q = gh_xalloc(sizeof(double) * be);
        for (size_t i = 0; i < be; ++i) q[i] = fabs(sp_ref_silu(ref[i]));
        qsort(q, be, sizeof *q, cmp_double);
        thr = (float)q[be / 2];
        free(q);
    } else {
        thr = (float)log(tau / (1.0 - tau));
    }

    router_dev dv;
    dv.Wr = gh_upload_new(Wrb, 2 * (size_t)E * d);
    dv.x = gh_upload_new(xb, 2 * (size_t)B * d);
    dv.scores = gh_alloc_out(be * sizeof(float));
    dv.mask = gh_alloc_out(be);
    dv.ids = gh_alloc(be * sizeof(int));
    dv.counts = gh_alloc_out((size_t)B * sizeof(int));
    dv.uids = gh_alloc((size_t)E * sizeof(int));
    dv.ucount = gh_alloc_out(sizeof(int));
    router_out o = {gh_xalloc(be * sizeof(float)), gh_xalloc(be), gh_xalloc(be * sizeof(int)),
                    gh_xalloc((size_t)B * sizeof(int)), gh_xalloc((size_t)E * sizeof(int)), 0};

    for (int v = 0; v < n_variants; ++v) {
        char params[160];
        snprintf(params, sizeof params, "score=%s%s%s", silu ? "silu_abs" : "sigmoid", variants[v][0] ? "," : "",
                 variants[v]);
        gh_kernel k;
        if (!gh_build(h, "router", d, f, bf16 ? "bf16" : "fp16", B, g, params, 0, &k)) continue;
        for (int rep = 0; rep < 2; ++rep) router_run_check(h, &k, &dv, B, E, silu, thr, ref, &o, rep == 1);
        gh_kernel_free(&k);
    }

    free(o.scores), free(o.mask), free(o.ids), free(o.counts), free(o.uids);
    gh_free(dv.Wr), gh_free(dv.x), gh_free(dv.scores), gh_free(dv.mask), gh_free(dv.ids);
    gh_free(dv.counts), gh_free(dv.uids), gh_free(dv.ucount);
    free(Wr), free(x), free(Wrb), free(xb), free(ref);
}

int main(void) {
    gh_ctx h;
    gh_open(&h, "test_gpu_router");
    static const char *const defaults[] = {""};
    static const char *const sweep[] = {
        "", "rows_per_warp=2,vec=4", "rows_per_warp=4,vec=2,unroll=4", "threads=64,ksplit=1",
        "threads=512,unroll=1,ksplit=4",
    };
    static const int batches[] = {1, 5, 64};
    /* Full: LLaMA-2-7B widths; quick: the same structure at a small width. */
    const int d0 = h.quick ? 264 : 4096, d1 = h.quick ? 136 : 3272, d2 = h.quick ? 200 : 2864;
    const int f = h.quick ? 1408 : 11008;
    for (int b = 0; b < 3; ++b) {
        int B = batches[b];
        /* rows_per_warp * batch must stay <= 64: the sweep runs at B <= 5. */
        const char *const *vars = B <= 5 ? sweep : defaults;
        int nv = B <= 5 ? 5 : 1;
        router_problem(&h, d0, f, 32, B, 0, 0, 0.5, vars, nv);       /* LTE; E = 344 (quick: 44) */
        router_problem(&h, d1, f, 128, B, 1, 0, 0.5, defaults, 1);   /* bf16; E = 86 (11) */
        router_problem(&h, d2, f, 16, B, 0, 0, 0.6, defaults, 1);    /* tau 0.6 (~10% active); E = 688 (88) */
        router_problem(&h, d0, f, 1, B, B == 5, 1, 0, defaults, 1);  /* silu_abs; E = f */
    }
    router_problem(&h, d0, f, 1, 5, 0, 1, 0, sweep, 5);
    return gh_finish(&h);
}
