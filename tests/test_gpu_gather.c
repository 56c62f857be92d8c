/* gather_upgate and gather_down on the GPU (docs/kernel-abi.md), against the
 * float64 SwiGLU MLP with per-token masks:
 *   - h (compact, union order): exact zeros where a token's expert is masked,
 *     slots past the union left unwritten, ‖h − ref‖/‖ref‖ < 1e-2;
 *   - y from gather_down fed a host-made compact h (slots past the union
 *     hold NaN, which must never be read), and y from gather_down fed the
 *     kernel's own h (the MLP end to end);
 *   - empty unions: h untouched and y all zeros (written, not left poisoned).
 * Layouts: gate/up interleave 0/1 (packed on the host), W_down layout t/n,
 * all_active 0/1; g in {1, 16, 32, 64, 128}; batch 1..64; active fractions
 * 0, 0.1, 0.5, 0.9, 1. Every launch runs twice over poisoned outputs (the
 * second run also proves the workspace was left as the ABI requires). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "test_util.h"

/* The kernels of one (shape, g, batch), built once and run over every fraction. */
typedef struct kernels {
    gh_kernel up[2];       /* interleave 0, 1 */
    gh_kernel down[2];     /* layout n, t */
    gh_kernel up_all, down_all;
    int ok_up[2], ok_down[2], ok_up_all, ok_down_all;
} kernels;

/* The all_active pair only when some fraction is 1 (they are used only then). */
static void kernels_build(gh_ctx *h, kernels *ks, const gh_mlp *w, int B, int g, int with_all) {
    const char *dt = w->bf16 ? "bf16" : "fp16";
    memset(ks, 0, sizeof *ks);
    ks->ok_up[0] = gh_build(h, "gather_upgate", w->d, w->f, dt, B, g, "interleave=0", 0, &ks->up[0]);
    ks->ok_up[1] = gh_build(h, "gather_upgate", w->d, w->f, dt, B, g, "interleave=1", 0, &ks->up[1]);
    /* layout=n needs g % vec == 0: the family may refuse it for g = 1. */
    ks->ok_down[0] = gh_build(h, "gather_down", w->d, w->f, dt, B, g, "layout=n", g < 8, &ks->down[0]);
    ks->ok_down[1] = gh_build(h, "gather_down", w->d, w->f, dt, B, g, "layout=t", 0, &ks->down[1]);
    if (!with_all) return;
    ks->ok_up_all = gh_build(h, "gather_upgate", w->d, w->f, dt, B, g, "all_active=1", 0, &ks->up_all);
    ks->ok_down_all = gh_build(h, "gather_down", w->d, w->f, dt, B, g, "all_active=1,layout=t", 0, &ks->down_all);
}

static void kernels_free(kernels *ks) {
    for (int i = 0; i < 2; ++i) gh_kernel_free(&ks->up[i]), gh_kernel_free(&ks->down[i]);
    gh_kernel_free(&ks->up_all), gh_kernel_free(&ks->down_all);
}

static void gather_case(gh_ctx *h, gh_mlp *w, gh_batch *b, kernels *ks, int g, double frac) {
    gh_route r;
    gh_route_random(h, &r, w, b, g, frac);
    for (int il = 0; il < 2; ++il)
        if (ks->ok_up[il]) gh_check_upgate(h, &ks->up[il], w, b, &r, il, 0);
    for (int lt = 0; lt < 2; ++lt)
        if (ks->ok_down[lt]) gh_check_down(h, &ks->down[lt], w, b, &r, lt, 0, b->dh_in, r.y_from_hin, "y");
    /* End to end: the upgate kernel's own h straight into gather_down. */
    if (ks->ok_up[0] && ks->ok_down[1]) {
        gh_run_upgate(h, &ks->up[0], w, b, g, 0, 0);
        gh_check_down(h, &ks->down[1], w, b, &r, 1, 0, b->dh, r.y, "y<-h");
    }
    if (frac == 1.0) {
        /* all_active: dense h, y over every neuron, routing arguments NULL. */
        if (ks->ok_up_all) gh_check_upgate(h, &ks->up_all, w, b, &r, 0, 1);
        if (ks->ok_up_all && ks->ok_down_all) {
            gh_run_upgate(h, &ks->up_all, w, b, g, 0, 1);
            gh_check_down(h, &ks->down_all, w, b, &r, 1, 1, b->dh, r.y, "y<-h");
        }
    }
    gh_route_close(&r);
}

static void gather_sweep(gh_ctx *h, gh_mlp *w, int B, const int *gs, int n_g, const double *fracs, int n_f) {
    gh_batch b;
    gh_batch_open(h, &b, w, B);
    for (int i = 0; i < n_g; ++i) {
        if (w->f % gs[i]) continue;
        int with_all = 0;
        for (int j = 0; j < n_f; ++j) with_all |= fracs[j] == 1.0;
        kernels ks;
        kernels_build(h, &ks, w, B, gs[i], with_all);
        for (int j = 0; j < n_f; ++j) gather_case(h, w, &b, &ks, gs[i], fracs[j]);
        kernels_free(&ks);
    }
    gh_batch_close(&b);
}

/* Loop parameters of gather_upgate (one shape, g = 32, B = 4, half active). */
static void upgate_params(gh_ctx *h, gh_mlp *w) {
    static const char *const variants[] = {
        "rows_per_warp=2,vec=4", "rows_per_warp=4,vec=2,unroll=4", "x_smem=1", "threads=64,unroll=1",
        "threads=512,interleave=1,x_smem=1",
    };
    gh_batch b;
    gh_batch_open(h, &b, w, 4);
    gh_route r;
    gh_route_random(h, &r, w, &b, 32, 0.5);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; ++i) {
        gh_kernel k;
        if (!gh_build(h, "gather_upgate", w->d, w->f, w->bf16 ? "bf16" : "fp16", 4, 32, variants[i], 0, &k)) continue;
        gh_check_upgate(h, &k, w, &b, &r, strstr(variants[i], "interleave=1") != NULL, 0);
        gh_kernel_free(&k);
    }
    gh_route_close(&r);
    gh_batch_close(&b);
}

/* Reductions and loop parameters of gather_down (g = 32, B = 12: two token tiles). */
static void down_params(gh_ctx *h, gh_mlp *w) {
    static const char *const variants[] = {
        "reduce=deterministic", "reduce=direct,splits=1", "splits=4,reduce=deterministic", "splits=32",
        "cols_per_cta=64,vec=2,batch_tile=2", "cols_per_cta=1024,threads=512,unroll=1,batch_tile=4",
        "layout=n,rows_per_warp=2,vec=4", "layout=n,rows_per_warp=4,vec=2,threads=64,unroll=8",
    };
    gh_batch b;
    gh_batch_open(h, &b, w, 12);
    static const double fracs[] = {0.0, 0.5};
    for (int i = 0; i < 2; ++i) {
        gh_route r;
        gh_route_random(h, &r, w, &b, 32, fracs[i]);
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; ++v) {
            gh_kernel k;
            if (!gh_build(h, "gather_down", w->d, w->f, w->bf16 ? "bf16" : "fp16", 12, 32, variants[v], 0, &k))
                continue;
            int layout_t = strstr(variants[v], "layout=n") == NULL;
            gh_check_down(h, &k, w, &b, &r, layout_t, 0, b.dh_in, r.y_from_hin, "y");
            gh_kernel_free(&k);
        }
        gh_route_close(&r);
    }
    gh_batch_close(&b);
}

int main(void) {
    gh_ctx h;
    gh_open(&h, "test_gpu_gather");
    static const int all_g[] = {1, 16, 32, 64, 128}, lte_g[] = {32}, g1[] = {1}, g128[] = {128};
    static const double all_f[] = {0.0, 0.1, 0.5, 0.9, 1.0}, some_f[] = {0.1, 0.5};
    gh_mlp w;
    /* Full: these shapes; quick: the same structure at small widths. */
    const int q = h.quick;

    /* The broad sweep on a smaller MLP (E from 22 to 2816; quick: 11 to 1408). */
    gh_mlp_open(&h, &w, q ? 256 : 1024, q ? 1408 : 2816, 0);
    static const int batches_all_g[] = {1, 8, 64}, batches_lte[] = {4, 16};
    for (int i = 0; i < 3; ++i) gather_sweep(&h, &w, batches_all_g[i], all_g, 5, all_f, 5);
    for (int i = 0; i < 2; ++i) gather_sweep(&h, &w, batches_lte[i], lte_g, 1, all_f, 5);
    upgate_params(&h, &w);
    down_params(&h, &w);
    gh_mlp_close(&w);

    /* bf16, a SliceGPT width (3272: a multiple of 8 only) at full f. */
    gh_mlp_open(&h, &w, q ? 136 : 3272, q ? 1408 : 11008, 1);
    gather_sweep(&h, &w, 4, lte_g, 1, all_f, 5);
    gather_sweep(&h, &w, 1, g1, 1, some_f, 2);
    upgate_params(&h, &w);
    down_params(&h, &w);
    gh_mlp_close(&w);

    if (!q) { /* The LLaMA-2-7B MLP with LTE experts. */
        gh_mlp_open(&h, &w, 4096, 11008, 0);
        gather_sweep(&h, &w, 1, lte_g, 1, some_f, 2);
        gather_sweep(&h, &w, 8, lte_g, 1, some_f, 2);
        gh_mlp_close(&w);
    }

    /* 2864 (a multiple of 16 only), large experts. */
    gh_mlp_open(&h, &w, q ? 208 : 2864, q ? 1408 : 11008, 0);
    gather_sweep(&h, &w, 16, g128, 1, some_f, 2);
    gh_mlp_close(&w);
    return gh_finish(&h);
}
