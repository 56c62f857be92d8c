/* fused_mlp on the GPU (docs/kernel-abi.md): routing arrays in, y out, against
 * the float64 SwiGLU MLP with per-token masks. Batch 1..8; g 1, 32, 128;
 * active fractions 0 (empty union: y must be written as zeros), 0.1, 0.5,
 * 0.9, 1; gate/up interleave 0/1 (packed on the host); atomic and
 * deterministic reductions; all_active. Each launch runs twice over a
 * poisoned y with the same workspace, so a workspace not left zeroed (the
 * ABI) shows up as a wrong second result. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "test_util.h"

static void check_fused(gh_ctx *h, gh_kernel *k, gh_mlp *w, gh_batch *b, const gh_route *r, int interleave,
                        int all_active) {
    size_t bytes = 2 * (size_t)b->B * w->d;
    uint16_t *out = gh_xalloc(bytes);
    CUdeviceptr Wg = interleave ? gh_mlp_interleaved(w, r->g) : w->dWg;
    CUdeviceptr Wu = interleave ? 0 : w->dWu; /* unused with interleave=1 */
    CUdeviceptr uids = all_active ? 0 : b->duids, ucount = all_active ? 0 : b->ducount;
    CUdeviceptr mask = all_active ? 0 : b->dmask;
    gh_cmp worst = {0, 0, 0};
    int guard = 1;
    for (int rep = 0; rep < 2; ++rep) {
        gh_poison_out(b->dy, bytes);
        sp_kargs a;
        sp_kargs_init(&a, k->plan);
        sp_kargs_ptr(&a, "Wg", Wg), sp_kargs_ptr(&a, "Wu", Wu), sp_kargs_ptr(&a, "WdT", w->dWd_t);
        sp_kargs_ptr(&a, "x", b->dx), sp_kargs_ptr(&a, "union_ids", uids), sp_kargs_ptr(&a, "union_count", ucount);
        sp_kargs_ptr(&a, "mask", mask), sp_kargs_ptr(&a, "ws", k->ws), sp_kargs_ptr(&a, "y", b->dy);
        gh_run(h, k, &a);
        gh_download(out, b->dy, bytes);
        worst = gh_worse(worst, gh_compare(w->bf16, out, w->d, r->y, w->d, b->B, w->d));
        guard &= gh_guard_intact(b->dy, bytes);
    }
    if (!guard) gh_fail_case(h, k, "wrote past the end of y");
    gh_report(h, k, "y", all_active ? 1.0 : r->frac, worst);
    free(out);
}

/* One (shape, batch, g): the kernels for each layout and reduction, over every fraction. */
static void fused_sweep(gh_ctx *h, gh_mlp *w, int B, int g, const double *fracs, int n_f) {
    static const char *const variants[] = {
        "", "interleave=1", "reduce=deterministic", "interleave=1,reduce=deterministic",
    };
    enum { NV = sizeof variants / sizeof variants[0] };
    const char *dt = w->bf16 ? "bf16" : "fp16";
    gh_kernel ks[NV], all;
    int ok[NV];
    for (int v = 0; v < NV; ++v) ok[v] = gh_build(h, "fused_mlp", w->d, w->f, dt, B, g, variants[v], 0, &ks[v]);
    int ok_all = gh_build(h, "fused_mlp", w->d, w->f, dt, B, g, "all_active=1", 0, &all);
    gh_batch b;
    gh_batch_open(h, &b, w, B);
    for (int i = 0; i < n_f; ++i) {
        gh_route r;
        gh_route_random(h, &r, w, &b, g, fracs[i]);
        for (int v = 0; v < NV; ++v)
            if (ok[v]) check_fused(h, &ks[v], w, &b, &r, strstr(variants[v], "interleave=1") != NULL, 0);
        if (fracs[i] == 1.0 && ok_all) check_fused(h, &all, w, &b, &r, 0, 1);
        gh_route_close(&r);
    }
    gh_batch_close(&b);
    for (int v = 0; v < NV; ++v)
        if (ok[v]) gh_kernel_free(&ks[v]);
    if (ok_all) gh_kernel_free(&all);
}

/* Loop parameters at one point (g = 32, half active). */
static void fused_params(gh_ctx *h, gh_mlp *w, int B) {
    static const char *const variants[] = {
        "rows_per_cta=8,vec=4", "rows_per_cta=64,threads=512", "rows_per_cta=128,unroll=4,reduce=deterministic",
        "threads=64,vec=2,unroll=1", "rows_per_cta=32,interleave=1,vec=4",
    };
    gh_batch b;
    gh_batch_open(h, &b, w, B);
    gh_route r;
    gh_route_random(h, &r, w, &b, 32, 0.5);
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; ++v) {
        gh_kernel k;
        if (!gh_build(h, "fused_mlp", w->d, w->f, w->bf16 ? "bf16" : "fp16", B, 32, variants[v], 0, &k)) continue;
        check_fused(h, &k, w, &b, &r, strstr(variants[v], "interleave=1") != NULL, 0);
        gh_kernel_free(&k);
    }
    gh_route_close(&r);
    gh_batch_close(&b);
}

int main(void) {
    gh_ctx h;
    gh_open(&h, "test_gpu_fused");
    const int q = h.quick;
    static const double all_f[] = {0.0, 0.1, 0.5, 0.9, 1.0}, some_f[] = {0.0, 0.5, 1.0};
    static const int batches[] = {1, 2, 5, 8};
    gh_mlp w;

    /* A smaller MLP: every batch at LTE's g = 32, and g = 1 and 128 at two batches. */
    gh_mlp_open(&h, &w, q ? 256 : 1024, q ? 1408 : 2816, 0);
    for (int i = 0; i < 4; ++i) fused_sweep(&h, &w, batches[i], 32, all_f, 5);
    fused_sweep(&h, &w, 1, 1, some_f, 3);
    fused_sweep(&h, &w, 8, 128, some_f, 3);
    fused_params(&h, &w, 3);
    gh_mlp_close(&w);

    /* bf16 at a SliceGPT width (a multiple of 8 only). */
    gh_mlp_open(&h, &w, q ? 136 : 3272, q ? 1408 : 11008, 1);
    fused_sweep(&h, &w, 4, 32, some_f, 3);
    fused_params(&h, &w, 8);
    gh_mlp_close(&w);

    if (!q) { /* The LLaMA-2-7B MLP. */
        gh_mlp_open(&h, &w, 4096, 11008, 0);
        fused_sweep(&h, &w, 1, 32, some_f, 3);
        fused_sweep(&h, &w, 8, 32, some_f, 3);
        gh_mlp_close(&w);
    }
    return gh_finish(&h);
}
