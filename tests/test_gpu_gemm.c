/* gather_gemm (tensor cores, mma.sync m16n8k16) on the GPU: stage=upgate
 * against the compact float64 h (exact zeros where masked, nothing written
 * past the union), stage=down (Wd = W_down [d][f]) against y from the same h
 * it is fed (NaN past the union, never to be read), and the two stages
 * chained against the float64 MLP. Batch 8..64 (and 3, 12: partial token
 * tiles), g 16..128, active fractions
 * 0 (empty union: y written as zeros) to 1; shapes include 3272 (d not a
 * multiple of 16); a sweep of the tiling, split-K and reduction parameters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "test_util.h"

/* The upgate and down kernels of one (shape, batch, g) over every fraction. */
static void gemm_sweep(gh_ctx *h, gh_mlp *w, int B, int g, const double *fracs, int n_f) {
    const char *dt = w->bf16 ? "bf16" : "fp16";
    gh_kernel up, down, down_det;
    int ok_up = gh_build(h, "gather_gemm", w->d, w->f, dt, B, g, "stage=upgate", 0, &up);
    int ok_down = gh_build(h, "gather_gemm", w->d, w->f, dt, B, g, "stage=down", 0, &down);
    int ok_det = gh_build(h, "gather_gemm", w->d, w->f, dt, B, g, "stage=down,reduce=deterministic", 0, &down_det);
    gh_batch b;
    gh_batch_open(h, &b, w, B);
    for (int i = 0; i < n_f; ++i) {
        gh_route r;
        gh_route_random(h, &r, w, &b, g, fracs[i]);
        if (ok_up) gh_check_upgate(h, &up, w, &b, &r, 0, 0);
        if (ok_down) gh_check_down(h, &down, w, &b, &r, 0, 0, b.dh_in, r.y_from_hin, "y");
        if (ok_det) gh_check_down(h, &down_det, w, &b, &r, 0, 0, b.dh_in, r.y_from_hin, "y");
        if (ok_up && ok_down) { /* the two stages chained: the MLP end to end */
            gh_run_upgate(h, &up, w, &b, g, 0, 0);
            gh_check_down(h, &down, w, &b, &r, 0, 0, b.dh, r.y, "y<-h");
        }
        gh_route_close(&r);
    }
    gh_batch_close(&b);
    gh_kernel_free(&up), gh_kernel_free(&down), gh_kernel_free(&down_det);
}

/* Tiling, split-K and reduction parameters at one point (g = 32, B = 24, half active). */
static void gemm_params(gh_ctx *h, gh_mlp *w) {
    static const char *const up_variants[] = {
        "stage=upgate,warps=2,kwarps=1", "stage=upgate,warps=8,kwarps=4,m_tiles=2",
        "stage=upgate,n_tiles=1,k_unroll=1", "stage=upgate,n_tiles=2,k_unroll=4,kwarps=1",
    };
    static const char *const down_variants[] = {
        "stage=down,splits=1", "stage=down,splits=3", "stage=down,splits=32,reduce=deterministic",
        "stage=down,warps=8,kwarps=8", "stage=down,m_tiles=2,n_tiles=1,warps=2,kwarps=1",
        "stage=down,splits=12,n_tiles=2,k_unroll=1",
    };
    const int B = 24;
    const char *dt = w->bf16 ? "bf16" : "fp16";
    gh_batch b;
    gh_batch_open(h, &b, w, B);
    gh_route r;
    gh_route_random(h, &r, w, &b, 32, 0.5);
    for (size_t v = 0; v < sizeof up_variants / sizeof up_variants[0]; ++v) {
        gh_kernel k;
        if (!gh_build(h, "gather_gemm", w->d, w->f, dt, B, 32, up_variants[v], 0, &k)) continue;
        gh_check_upgate(h, &k, w, &b, &r, 0, 0);
        gh_kernel_free(&k);
    }
    for (size_t v = 0; v < sizeof down_variants / sizeof down_variants[0]; ++v) {
        gh_kernel k;
        if (!gh_build(h, "gather_gemm", w->d, w->f, dt, B, 32, down_variants[v], 0, &k)) continue;
        gh_check_down(h, &k, w, &b, &r, 0, 0, b.dh_in, r.y_from_hin, "y");
        gh_kernel_free(&k);
    }
    gh_route_close(&r);
    gh_batch_close(&b);
}

int main(void) {
    gh_ctx h;
    gh_open(&h, "test_gpu_gemm");
    if (!h.emu && h.dev->props.cc_major < 8) {
        printf("test_gpu_gemm: skipped: mma.sync m16n8k16 needs sm_80 or newer (this GPU is sm_%d%d)\n",
               h.dev->props.cc_major, h.dev->props.cc_minor);
        gh_finish(&h);
        return 77;
    }
    const int q = h.quick;
    static const double all_f[] = {0.0, 0.1, 0.5, 1.0}, some_f[] = {0.1, 0.5};
    static const int gs[] = {16, 32, 64, 128};
    gh_mlp w;

    /* Every g at batch 8 and 64, LTE's g = 32 at every batch (quick: smaller). */
    gh_mlp_open(&h, &w, q ? 256 : 1024, q ? 1408 : 2816, 0);
    for (int i = 0; i < 4; ++i) gemm_sweep(&h, &w, 8, gs[i], all_f, 4);
    for (int i = 0; i < 4; ++i) gemm_sweep(&h, &w, 64, gs[i], some_f, 2);
    gemm_sweep(&h, &w, 16, 32, all_f, 4);
    gemm_sweep(&h, &w, 32, 32, all_f, 4);
    gemm_sweep(&h, &w, 12, 32, some_f, 2); /* a partial token tile (padded columns) */
    gemm_sweep(&h, &w, 3, 64, some_f, 2);  /* below one tile */
    gemm_params(&h, &w);
    gh_mlp_close(&w);

    /* bf16 at SliceGPT widths: 3272 is a multiple of 8 but not of 16. */
    gh_mlp_open(&h, &w, q ? 136 : 3272, q ? 1408 : 11008, 1);
    gemm_sweep(&h, &w, 16, 32, some_f, 2);
    gemm_sweep(&h, &w, 8, 128, some_f, 2);
    gemm_params(&h, &w);
    gh_mlp_close(&w);

    if (!q) {
        gh_mlp_open(&h, &w, 2864, 11008, 0);
        gemm_sweep(&h, &w, 32, 64, some_f, 2);
        gh_mlp_close(&w);
        gh_mlp_open(&h, &w, 4096, 11008, 0);
        gemm_sweep(&h, &w, 8, 32, some_f, 2);
        gemm_sweep(&h, &w, 64, 32, some_f, 2);
        gh_mlp_close(&w);
    }
    return gh_finish(&h);
}
