/* dense_gemv on the GPU against the float64 GEMV: op=up and op=down, the
 * LLaMA-2-7B shape and its SliceGPT widths (3272: a multiple of 8 only; 2864:
 * of 16 only) and a small odd shape, batch 1/3/8, fp16 and bf16, and a sweep
 * of the loop parameters on the awkward widths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "test_util.h"

#define MAX_B 8

/* One operand set: W [N][K] (the same random values serve as [f][d] for
 * op=up and [d][f] for op=down), x [MAX_B][K], and the reference y [MAX_B][N]. */
typedef struct dense_set {
    int N, K, bf16;
    uint16_t *Wb, *xb;
    double *y;
    CUdeviceptr dW, dx, dy;
} dense_set;

static void set_open(gh_ctx *h, dense_set *s, const float *W, int N, int K, int bf16) {
    memset(s, 0, sizeof *s);
    s->N = N, s->K = K, s->bf16 = bf16;
    float *x = gh_xalloc(sizeof(float) * MAX_B * K);
    s->xb = gh_xalloc(sizeof(uint16_t) * MAX_B * K);
    gh_fill(h, bf16, 1.0, (size_t)MAX_B * K, x, s->xb);
    s->y = gh_xalloc(sizeof(double) * MAX_B * N);
    sp_ref_gemv(W, x, s->y, N, K, MAX_B);
    free(x);
    s->dx = gh_upload_new(s->xb, sizeof(uint16_t) * MAX_B * K);
    s->dy = gh_alloc_out(sizeof(uint16_t) * MAX_B * N);
}

static void set_close(dense_set *s) {
    free(s->xb);
    free(s->y);
    gh_free(s->dx);
    gh_free(s->dy);
}

/* Builds one kernel, runs it twice on poisoned output, checks y. */
static void dense_case(gh_ctx *h, dense_set *s, const char *op, int d, int f, int batch, const char *extra) {
    char params[160];
    snprintf(params, sizeof params, "op=%s%s%s", op, extra && *extra ? "," : "", extra ? extra : "");
    gh_kernel k;
    if (!gh_build(h, "dense_gemv", d, f, s->bf16 ? "bf16" : "fp16", batch, 1, params, 0, &k)) return;
    size_t out_bytes = sizeof(uint16_t) * (size_t)batch * s->N;
    uint16_t *y = gh_xalloc(out_bytes);
    gh_cmp worst = {0, 0, 0};
    int guard_ok = 1;
    for (int rep = 0; rep < 2; ++rep) {
        gh_poison_out(s->dy, out_bytes);
        sp_kargs a;
        sp_kargs_init(&a, k.plan);
        sp_kargs_ptr(&a, "W", s->dW), sp_kargs_ptr(&a, "x", s->dx), sp_kargs_ptr(&a, "y", s->dy);
        gh_run(h, &k, &a);
        gh_download(y, s->dy, out_bytes);
        worst = gh_worse(worst, gh_compare(s->bf16, y, s->N, s->y, s->N, batch, s->N));
        guard_ok &= gh_guard_intact(s->dy, out_bytes);
    }
    if (!guard_ok) gh_fail_case(h, &k, "wrote past the end of y");
    gh_report(h, &k, op, 1.0, worst);
    free(y);
    gh_kernel_free(&k);
}

/* Every op for one (d, f, dtype); params_sweep adds the parameter variants. */
static void dense_shape(gh_ctx *h, int d, int f, int bf16, int sweep) {
    size_t n = (size_t)d * f;
    float *W = gh_xalloc(sizeof(float) * n);
    uint16_t *Wb = gh_xalloc(sizeof(uint16_t) * n);
    static const char *const ops[] = {"up", "down"};
    for (int o = 0; o < 2; ++o) {
        int up = o == 0;
        int N = up ? f : d, K = up ? d : f;
        /* Weights scaled like a real layer: uniform in ±1/sqrt(K). */
        gh_fill(h, bf16, 1.0 / sqrt((double)K), n, W, Wb);
        dense_set s;
        set_open(h, &s, W, N, K, bf16);
        s.dW = gh_upload_new(Wb, sizeof(uint16_t) * n);
        static const int batches[] = {1, 3, 8};
        for (int b = 0; b < 3; ++b) dense_case(h, &s, ops[o], d, f, batches[b], "");
        if (sweep) {
            static const int vecs[] = {2, 4, 8}, rows[] = {1, 2, 4};
            char extra[96];
            for (int v = 0; v < 3; ++v)
                for (int r = 0; r < 3; ++r) {
                    snprintf(extra, sizeof extra, "vec=%d,rows_per_warp=%d", vecs[v], rows[r]);
                    dense_case(h, &s, ops[o], d, f, 3, extra);
                }
            dense_case(h, &s, ops[o], d, f, 8, "threads=64,unroll=4,rows_per_warp=4");
            dense_case(h, &s, ops[o], d, f, 1, "threads=512,unroll=1,vec=2");
        }
        gh_free(s.dW);
        set_close(&s);
    }
    free(W);
    free(Wb);
}

int main(void) {
    gh_ctx h;
    gh_open(&h, "test_gpu_dense");
    static const int shapes[][2] = {{4096, 11008}, {3272, 11008}, {2864, 11008}, {72, 200}, {328, 1096}};
    for (int bf16 = 0; bf16 < 2; ++bf16)
        for (int i = h.quick ? 3 : 0; i < 5; ++i) {
            /* The sweep runs on the widths whose tails are awkward, in fp16, and
             * on the small odd shape in bf16 as well. */
            int sweep = (i == 1 && !bf16) || i == 3;
            dense_shape(&h, shapes[i][0], shapes[i][1], bf16, sweep);
        }
    return gh_finish(&h);
}
