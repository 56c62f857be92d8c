/* The LTE MLP end to end on the GPU: router -> gather_upgate -> gather_down
 * queued back to back with no host synchronisation in between (the routing
 * arrays never leave the device), then router -> fused_mlp and, for larger
 * batches, router -> gather_gemm (upgate) -> gather_gemm (down). y is
 * checked against the float64 SwiGLU MLP with the router kernel's own
 * decisions applied, h against the compact float64 h, and those decisions
 * against the float64 router (differences only within 1e-3·rms of the
 * threshold). Thresholds: logit(0.5) = 0 (about half the experts) and a
 * high one (about 10%). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "test_util.h"

typedef struct router_in {
    int E;
    float *Wr;            /* [E][d] */
    CUdeviceptr dWr, dscores;
    double *ref_scores;   /* [B][E] */
    double rms;
} router_in;

static void router_in_open(gh_ctx *h, router_in *ri, const gh_mlp *w, const gh_batch *b, int g) {
    ri->E = w->f / g;
    size_t n = (size_t)ri->E * w->d, be = (size_t)b->B * ri->E;
    ri->Wr = gh_xalloc(sizeof(float) * n);
    uint16_t *bits = gh_xalloc(2 * n);
    gh_fill(h, w->bf16, 1.0 / sqrt((double)w->d), n, ri->Wr, bits);
    ri->dWr = gh_upload_new(bits, 2 * n);
    free(bits);
    ri->dscores = gh_alloc(sizeof(float) * be);
    ri->ref_scores = gh_xalloc(sizeof(double) * be);
    sp_ref_router_scores(ri->Wr, b->x, ri->ref_scores, ri->E, w->d, b->B);
    double s2 = 0;
    for (size_t i = 0; i < be; ++i) s2 += ri->ref_scores[i] * ri->ref_scores[i];
    ri->rms = sqrt(s2 / (double)be);
}

static void router_in_close(router_in *ri) {
    free(ri->Wr), free(ri->ref_scores);
    gh_free(ri->dWr), gh_free(ri->dscores);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The score below which a fraction `quantile` of the reference scores lie. */
static float score_quantile(const router_in *ri, int B, double quantile) {
    size_t be = (size_t)B * ri->E;
    double *s = gh_xalloc(sizeof(double) * be);
    memcpy(s, ri->ref_scores, sizeof(double) * be);
    qsort(s, be, sizeof *s, cmp_double);
    float t = (float)s[(size_t)(quantile * (double)(be - 1))];
    free(s);
    return t;
}

/* The router kernel's mask, checked against float64 away from the threshold. */
static void check_decisions(gh_ctx *h, const gh_kernel *k, const router_in *ri, int B, float thr,
                            const unsigned char *mask) {
    long far_off = 0, bad = 0;
    for (size_t i = 0; i < (size_t)B * ri->E; ++i) {
        if (mask[i] > 1) {
            ++bad;
            continue;
        }
        int want = ri->ref_scores[i] > (double)thr;
        if (mask[i] != want && fabs(ri->ref_scores[i] - thr) >= 1e-3 * ri->rms) ++far_off;
    }
    if (bad) gh_fail_case(h, k, "%ld mask bytes are neither 0 nor 1", bad);
    if (far_off) gh_fail_case(h, k, "%ld router decisions differ from float64 away from the threshold", far_off);
}

/* Which second and third stage a pipeline uses. */
typedef enum { PIPE_GATHER, PIPE_FUSED, PIPE_GEMM } pipe_kind;

static void pipeline_case(gh_ctx *h, gh_mlp *w, int B, int g, pipe_kind kind) {
    const char *dt = w->bf16 ? "bf16" : "fp16";
    gh_kernel router, up, down;
    memset(&up, 0, sizeof up), memset(&down, 0, sizeof down);
    int ok = gh_build(h, "router", w->d, w->f, dt, B, g, "score=sigmoid", 0, &router);
    if (kind == PIPE_GATHER) {
        ok &= gh_build(h, "gather_upgate", w->d, w->f, dt, B, g, "", 0, &up);
        ok &= gh_build(h, "gather_down", w->d, w->f, dt, B, g, "layout=t", 0, &down);
    } else if (kind == PIPE_FUSED) {
        ok &= gh_build(h, "fused_mlp", w->d, w->f, dt, B, g, "", 0, &down);
    } else {
        ok &= gh_build(h, "gather_gemm", w->d, w->f, dt, B, g, "stage=upgate", 0, &up);
        ok &= gh_build(h, "gather_gemm", w->d, w->f, dt, B, g, "stage=down", 0, &down);
    }
    if (!ok) {
        gh_kernel_free(&router), gh_kernel_free(&up), gh_kernel_free(&down);
        return;
    }
    gh_batch b;
    gh_batch_open(h, &b, w, B);
    router_in ri;
    router_in_open(h, &ri, w, &b, g);
    size_t h_bytes = 2 * (size_t)B * w->f, y_bytes = 2 * (size_t)B * w->d, be = (size_t)B * ri.E;
    uint16_t *hout = gh_xalloc(h_bytes), *yout = gh_xalloc(y_bytes);
    unsigned char *mask = gh_xalloc(be);
    const float thresholds[] = {0.0f /* logit(0.5) */, score_quantile(&ri, B, 0.9)};

    for (int ti = 0; ti < 2; ++ti) {
        float thr = thresholds[ti];
        gh_cmp worst_h = {0, 0, 0}, worst_y = {0, 0, 0};
        gh_route r;
        memset(&r, 0, sizeof r);
        for (int rep = 0; rep < 2; ++rep) {
            /* Every output poisoned, the routing arrays included. */
            gh_poison(b.duids, sizeof(int) * (size_t)ri.E);
            gh_poison(b.ducount, sizeof(int));
            gh_poison(b.dmask, be);
            gh_poison(b.dids, sizeof(int) * be);
            gh_poison(b.dcounts, sizeof(int) * (size_t)B);
            gh_poison_out(b.dh, h_bytes);
            gh_poison_out(b.dy, y_bytes);
            sp_kargs ra, ua, da;
            sp_kargs_init(&ra, router.plan);
            sp_kargs_ptr(&ra, "Wr", ri.dWr), sp_kargs_ptr(&ra, "x", b.dx), sp_kargs_ptr(&ra, "scores", ri.dscores);
            sp_kargs_f32(&ra, "threshold", thr);
            sp_kargs_ptr(&ra, "ids", b.dids), sp_kargs_ptr(&ra, "counts", b.dcounts);
            sp_kargs_ptr(&ra, "union_ids", b.duids), sp_kargs_ptr(&ra, "union_count", b.ducount);
            sp_kargs_ptr(&ra, "mask", b.dmask), sp_kargs_ptr(&ra, "ws", router.ws);
            gh_launch(h, &router, &ra);
            sp_kargs_init(&da, down.plan);
            sp_kargs_ptr(&da, "union_ids", b.duids), sp_kargs_ptr(&da, "union_count", b.ducount);
            sp_kargs_ptr(&da, "ws", down.ws), sp_kargs_ptr(&da, "y", b.dy);
            if (kind == PIPE_FUSED) {
                sp_kargs_ptr(&da, "Wg", w->dWg), sp_kargs_ptr(&da, "Wu", w->dWu), sp_kargs_ptr(&da, "WdT", w->dWd_t);
                sp_kargs_ptr(&da, "x", b.dx), sp_kargs_ptr(&da, "mask", b.dmask);
                gh_launch(h, &down, &da);
            } else {
                sp_kargs_init(&ua, up.plan);
                sp_kargs_ptr(&ua, "Wg", w->dWg), sp_kargs_ptr(&ua, "Wu", w->dWu), sp_kargs_ptr(&ua, "x", b.dx);
                sp_kargs_ptr(&ua, "union_ids", b.duids), sp_kargs_ptr(&ua, "union_count", b.ducount);
                sp_kargs_ptr(&ua, "mask", b.dmask), sp_kargs_ptr(&ua, "h", b.dh);
                gh_launch(h, &up, &ua);
                sp_kargs_ptr(&da, "Wd", kind == PIPE_GATHER ? w->dWd_t : w->dWd_n), sp_kargs_ptr(&da, "h", b.dh);
                gh_launch(h, &down, &da);
            }
            gh_sync(h);
            gh_download(mask, b.dmask, be);
            gh_download(yout, b.dy, y_bytes);
            if (kind != PIPE_FUSED) gh_download(hout, b.dh, h_bytes);
            check_decisions(h, &router, &ri, B, thr, mask);
            /* The references for the decisions the router kernel made (this
             * also uploads the host's routing arrays, replaced next run);
             * recomputed only if the second run decided differently. */
            if (rep == 0 || memcmp(mask, r.mask, be) != 0) {
                gh_route_close(&r);
                gh_route_from_mask(&r, w, &b, g, mask);
            }
            worst_y = gh_worse(worst_y, gh_compare(w->bf16, yout, w->d, r.y, w->d, B, w->d));
            if (kind != PIPE_FUSED)
                worst_h = gh_worse(worst_h, gh_compare(w->bf16, hout, w->f, r.hc, w->f, B, r.U * g));
        }
        if (kind != PIPE_FUSED) gh_report(h, &up, "router->h", r.frac, worst_h);
        gh_report(h, &down, kind == PIPE_FUSED ? "router->y" : "router->h->y", r.frac, worst_y);
        gh_route_close(&r);
    }
    free(hout), free(yout), free(mask);
    router_in_close(&ri);
    gh_batch_close(&b);
    gh_kernel_free(&router), gh_kernel_free(&up), gh_kernel_free(&down);
}

int main(void) {
    gh_ctx h;
    gh_open(&h, "test_gpu_mlp_pipeline");
    const int q = h.quick;
    int have_mma = h.emu || h.dev->props.cc_major >= 8;
    gh_mlp w;
    for (int bf16 = 0; bf16 < 2; ++bf16) {
        gh_mlp_open(&h, &w, q ? 256 : 4096, q ? 1408 : 11008, bf16);
        static const int batches[] = {1, 4, 16};
        for (int i = 0; i < 3; ++i) pipeline_case(&h, &w, batches[i], 32, PIPE_GATHER);
        pipeline_case(&h, &w, 1, 32, PIPE_FUSED);
        pipeline_case(&h, &w, 8, 32, PIPE_FUSED);
        if (have_mma) pipeline_case(&h, &w, 16, 32, PIPE_GEMM);
        gh_mlp_close(&w);
    }
    /* Batch 64 on a smaller MLP (the float64 reference grows with B*d*f). */
    gh_mlp_open(&h, &w, q ? 256 : 1024, q ? 1408 : 2816, 0);
    pipeline_case(&h, &w, 64, 32, PIPE_GATHER);
    if (have_mma) pipeline_case(&h, &w, 64, 16, PIPE_GEMM);
    gh_mlp_close(&w);
    /* A SliceGPT width with bigger experts. */
    gh_mlp_open(&h, &w, q ? 136 : 3272, q ? 1408 : 11008, 0);
    pipeline_case(&h, &w, 5, 128, PIPE_GATHER);
    if (have_mma) pipeline_case(&h, &w, 32, 64, PIPE_GEMM);
    gh_mlp_close(&w);
    return gh_finish(&h);
}
