/* The MLP of the GPU backend: which kernels each mode uses and how one
 * layer's MLP is launched (docs/kernel-abi.md argument lists).
 *   dense:     gather_upgate + gather_down with all_active=1 (routing unused)
 *   LTE:       router (score=sigmoid, threshold logit(tau)) -> gather_upgate -> gather_down
 *   threshold: router (score=silu_abs over W_gate, g = 1, per-layer threshold)
 *              -> gather_upgate -> gather_down, g = 1
 * Every layer writes its own union_count slot, so one download of [L] ints
 * after the token gives the measured sparsity without a sync per layer. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sp_error.h"
#include "sp_gpu_internal.h"

/* The gather pair of a path; the down kernel's layout is forced when `layout` is set. */
static sprig_status load_gathers(sp_gpu *g, gpu_mlp_path *p, const char *extra, const char *layout) {
    char fixed[128];
    const double sparsity = p == &g->dense ? 0 : SP_GPU_EXPECTED_SPARSITY;
    snprintf(fixed, sizeof fixed, "%s", extra);
    SP_TRY(sp_gpu_kernel_get(g->kernels, "gather_upgate", g->d, g->f, g->dtype, p->g, fixed, sparsity, &p->upgate));
    if (layout) snprintf(fixed, sizeof fixed, "%s%slayout=%s", extra, *extra ? "," : "", layout);
    return sp_gpu_kernel_get(g->kernels, "gather_down", g->d, g->f, g->dtype, p->g, fixed, sparsity, &p->down);
}

/* The packing of W_down follows the main path's gather_down plan. */
static sprig_status take_layout(sp_gpu *g, const gpu_mlp_path *p) {
    char layout[4];
    if (!sp_gpu_plan_param(p->down->plan, "layout", layout, sizeof layout) ||
        (strcmp(layout, "t") != 0 && strcmp(layout, "n") != 0))
        return sp_fail(SPRIG_E_INTERNAL, "gather_down plan %s names no layout", p->down->plan->key);
    snprintf(g->down_layout, sizeof g->down_layout, "%s", layout);
    return SPRIG_OK;
}

sprig_status sp_gpu_mlp_prepare(sp_gpu *g) {
    int any_dense = 0, any_lte = 0;
    for (int l = 0; l < g->L; ++l) {
        any_dense |= g->layers[l].kind == GPU_MLP_DENSE;
        any_lte |= g->layers[l].kind == GPU_MLP_LTE;
    }
    const sp_lte_config *lte = &g->cfg->lte;
    /* all_active ignores g; the expert size keeps layout=n (g % vec == 0) possible */
    g->dense.g = lte->enabled ? lte->expert_size : 1;
    if (any_lte) {
        g->lte.g = lte->expert_size;
        g->lte_threshold = (float)log(lte->threshold / (1.0 - lte->threshold));
        SP_TRY(sp_gpu_kernel_get(g->kernels, "router", g->d, g->f, g->dtype, g->lte.g, "score=sigmoid",
                                 SP_GPU_EXPECTED_SPARSITY, &g->lte.router));
        SP_TRY(load_gathers(g, &g->lte, "", NULL));
        SP_TRY(take_layout(g, &g->lte));
        if (any_dense) SP_TRY(load_gathers(g, &g->dense, "all_active=1", g->down_layout));
    } else {
        SP_TRY(load_gathers(g, &g->dense, "all_active=1", NULL));
        SP_TRY(take_layout(g, &g->dense));
    }
    return SPRIG_OK;
}

sprig_status sp_gpu_mlp_prepare_threshold(sp_gpu *g) {
    if (strcmp(g->down_layout, "t") != 0)
        return sp_fail(SPRIG_E_INVALID, "threshold sparsity needs gather_down layout=t (neuron granularity, g = 1), "
                                        "but W_down is packed for layout=%s", g->down_layout);
    g->thr.g = 1;
    SP_TRY(sp_gpu_kernel_get(g->kernels, "router", g->d, g->f, g->dtype, 1, "score=silu_abs", SP_GPU_EXPECTED_SPARSITY,
                             &g->thr.router));
    return load_gathers(g, &g->thr, "", g->down_layout);
}

static sprig_status launch_gathers(sp_gpu *g, const gpu_layer *G, gpu_mlp_path *p, sp_dptr *union_count) {
    void *up[] = {(void *)&G->wg, (void *)&G->wu, &g->xb, &g->union_ids, union_count, &g->mask, &g->h};
    SP_TRY(sp_gpu_kernel_launch(g->kernels, p->upgate, up));
    void *down[] = {(void *)&G->wd, &g->h, &g->union_ids, union_count, &p->down->ws, &g->proj};
    return sp_gpu_kernel_launch(g->kernels, p->down, down);
}

sprig_status sp_gpu_mlp_launch(sp_gpu *g, int l) {
    const gpu_layer *G = &g->layers[l];
    sp_dptr union_count = g->union_counts + sizeof(int) * (size_t)l;
    if (G->kind == GPU_MLP_DENSE) return launch_gathers(g, G, &g->dense, &union_count);
    gpu_mlp_path *p = G->kind == GPU_MLP_LTE ? &g->lte : &g->thr;
    float threshold = G->kind == GPU_MLP_LTE ? g->lte_threshold : g->thresholds[l];
    /* LTE: the router's rows are the experts; threshold mode: W_gate's rows are the neurons (g = 1) */
    const sp_dptr *wr = G->kind == GPU_MLP_LTE ? &G->wr : &G->wg;
    sp_dptr scores = g->scores + sizeof(float) * (size_t)l * g->f;
    void *route[] = {(void *)wr, &g->xb, &scores, &threshold, &g->ids, &g->counts, &g->union_ids, &union_count,
                     &g->mask};
    SP_TRY(sp_gpu_kernel_launch(g->kernels, p->router, route));
    return launch_gathers(g, G, p, &union_count);
}

int sp_gpu_mlp_active(const sp_gpu *g, int l, const int *union_counts) {
    switch (g->layers[l].kind) {
    case GPU_MLP_LTE: return union_counts[l] * g->lte.g;
    case GPU_MLP_THRESHOLD: return union_counts[l];
    default: return g->f;
    }
}
