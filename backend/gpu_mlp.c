/* The MLP of the GPU backend: which kernels each mode uses and how one
 * layer's MLP is launched (docs/kernel-abi.md argument lists).
 *   dense:     gather_upgate + gather_down with all_active=1 (routing unused)
 *   LTE:       gather_upgate route=sigmoid (the router folded in: threshold logit(tau);
 *              it writes h by neuron) -> gather_down h_index=neuron, the union
 *              passed as a bitmap (union_out=bits -> list=bits) with two LTE layers
 *              or more, else as id lists; with SPRIG_FUSED_ROUTER=0, router
 *              (score=sigmoid) -> gather_upgate -> gather_down as before, to
 *              measure one against the other
 *   threshold: router (score=silu_abs over W_gate, g = 1, per-layer threshold)
 *              -> gather_upgate gate=scores (the router's scores are the gates:
 *              W_gate is read once) -> gather_down, g = 1
 * Every layer writes its own union_count slot, so one download of [L] ints
 * after the token gives the measured sparsity without a sync per layer. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sp_error.h"
#include "sp_tuning_hook.h"
#include "gpu_internal.h"

/* The gather pair of a path for layer G's widths (gate/up read a_out, down
 * writes m_out); the down kernel's layout is forced when `layout` is set.
 * Unsliced, the down kernel ends with the norm after the MLP (norm=add).
 * up_extra and down_extra: each kernel's own fixed params beyond `extra`. */
static sprig_status load_gathers(sp_gpu *g, const gpu_layer *G, gpu_mlp_path *p, const char *extra,
                                 const char *up_extra, const char *down_extra, const char *layout, double sparsity) {
    char own[128], fixed[192], forced[32] = "";
    SP_TRY(sp_tuning_merge_params(extra, up_extra, own, sizeof own));
    /* W_gate and W_up are packed as two [f][d] matrices, not row-interleaved */
    SP_TRY(sp_tuning_merge_params(own, "interleave=0", fixed, sizeof fixed));
    SP_TRY(sp_gpu_kernel_get(g->kernels, "gather_upgate", G->a_out, g->f, g->dtype, p->g, fixed, sparsity,
                             &p->upgate));
    SP_TRY(sp_tuning_merge_params(extra, down_extra, fixed, sizeof fixed));
    /* unsliced: down's last CTA adds y into x and writes the next norm's output (norm=add) */
    SP_TRY(sp_tuning_merge_params(fixed, g->sliced ? "" : "norm=add", own, sizeof own));
    if (layout) snprintf(forced, sizeof forced, "layout=%s", layout);
    SP_TRY(sp_tuning_merge_params(own, forced, fixed, sizeof fixed));
    return sp_gpu_kernel_get(g->kernels, "gather_down", G->m_out, g->f, g->dtype, p->g, fixed, sparsity, &p->down);
}

/* The packing of W_down follows the first main path's gather_down plan. */
static sprig_status take_layout(sp_gpu *g, const gpu_mlp_path *p) {
    char layout[4];
    if (!sp_gpu_plan_param(p->down->plan, "layout", layout, sizeof layout) ||
        (strcmp(layout, "t") != 0 && strcmp(layout, "n") != 0))
        return sp_fail(SPRIG_E_INTERNAL, "gather_down plan %s names no layout", p->down->plan->key);
    snprintf(g->down_layout, sizeof g->down_layout, "%s", layout);
    return SPRIG_OK;
}

/* The layout to force: none until the first main path has chosen one. */
static const char *forced_layout(const sp_gpu *g) { return g->down_layout[0] ? g->down_layout : NULL; }

static sprig_status prepare_layer(sp_gpu *g, int l, int any_dense, int lte_layers) {
    gpu_layer *G = &g->layers[l];
    const sp_lte_config *lte = &g->cfg->lte;
    /* all_active ignores g; the expert size keeps layout=n (g % vec == 0) possible */
    G->dense.g = lte->enabled ? lte->expert_size : 1;
    if (lte_layers > 0) {
        G->lte.g = lte->expert_size;
        if (g->fused_router) { /* one launch: gather_upgate scores the experts itself */
            G->lte.router = NULL;
            /* and with two layers or more, leaves the union as a bitmap that gather_down
             * compacts in every CTA (no CTA of gather_upgate doing it alone at its end):
             * each LTE layer's bitmap is cleared by the LTE layer before it (launch_gathers),
             * so two are needed; else, or where gather_down cannot take the bitmap, the
             * id lists */
            sprig_status s = SPRIG_E_INVALID;
            if (lte_layers >= 2)
                s = load_gathers(g, G, &G->lte, "", "route=sigmoid,union_out=bits", "h_index=neuron,list=bits",
                                 forced_layout(g), SP_GPU_EXPECTED_SPARSITY);
            if (s != SPRIG_OK)
                SP_TRY(load_gathers(g, G, &G->lte, "", "route=sigmoid", "h_index=neuron", forced_layout(g),
                                    SP_GPU_EXPECTED_SPARSITY));
        } else {
            SP_TRY(sp_gpu_kernel_get(g->kernels, "router", G->a_out, g->f, g->dtype, G->lte.g, "score=sigmoid",
                                     SP_GPU_EXPECTED_SPARSITY, &G->lte.router));
            SP_TRY(load_gathers(g, G, &G->lte, "", "", "", forced_layout(g), SP_GPU_EXPECTED_SPARSITY));
        }
        if (!g->down_layout[0]) SP_TRY(take_layout(g, &G->lte));
        if (any_dense) SP_TRY(load_gathers(g, G, &G->dense, "all_active=1", "", "", g->down_layout, 0));
    } else {
        SP_TRY(load_gathers(g, G, &G->dense, "all_active=1", "", "", forced_layout(g), 0));
        if (!g->down_layout[0]) SP_TRY(take_layout(g, &G->dense));
    }
    return SPRIG_OK;
}

static int uses_bits(const gpu_layer *G);

sprig_status sp_gpu_mlp_prepare(sp_gpu *g) {
    int any_dense = 0, lte_layers = 0;
    for (int l = 0; l < g->L; ++l) {
        any_dense |= g->layers[l].kind == GPU_MLP_DENSE;
        lte_layers += g->layers[l].kind == GPU_MLP_LTE;
    }
    if (lte_layers > 0) {
        const double tau = g->cfg->lte.threshold;
        g->lte_threshold = (float)log(tau / (1.0 - tau));
    }
    for (int l = 0; l < g->L; ++l) {
        gpu_layer *G = &g->layers[l];
        if (sp_gpu_same_widths(g, l)) {
            G->dense = G[-1].dense, G->lte = G[-1].lte;
            continue;
        }
        sprig_status s = prepare_layer(g, l, any_dense, lte_layers);
        if (s != SPRIG_OK) return sp_wrap(s, "layer %d MLP", l);
    }
    int bits_layers = 0;
    for (int l = 0; l < g->L; ++l) bits_layers += uses_bits(&g->layers[l]);
    if (bits_layers == 1) /* it would have to clear its own bitmap (next_layer_bits) */
        return sp_fail(SPRIG_E_INTERNAL, "one LTE layer alone passes its experts as a bitmap");
    return SPRIG_OK;
}

sprig_status sp_gpu_mlp_prepare_threshold(sp_gpu *g) {
    if (strcmp(g->down_layout, "t") != 0)
        return sp_fail(SPRIG_E_INVALID, "threshold sparsity needs gather_down layout=t (neuron granularity, g = 1), "
                                        "but W_down is packed for layout=%s", g->down_layout);
    for (int l = 0; l < g->L; ++l) {
        gpu_layer *G = &g->layers[l];
        if (sp_gpu_same_widths(g, l)) {
            G->thr = G[-1].thr;
            continue;
        }
        G->thr.g = 1;
        SP_TRY(sp_gpu_kernel_get(g->kernels, "router", G->a_out, g->f, g->dtype, 1, "score=silu_abs",
                                 SP_GPU_EXPECTED_SPARSITY, &G->thr.router));
        SP_TRY(load_gathers(g, G, &G->thr, "", "gate=scores", "", g->down_layout, SP_GPU_EXPECTED_SPARSITY));
    }
    return SPRIG_OK;
}

/* Layer l's union bitmap (gather_upgate union_out=bits). */
static sp_dptr layer_bits(const sp_gpu *g, int l) {
    return g->union_bits ? g->union_bits + sizeof(unsigned) * (size_t)l * g->bits_words : 0;
}

static int uses_bits(const gpu_layer *G) {
    char v[16];
    return G->kind == GPU_MLP_LTE && G->lte.upgate && sp_gpu_plan_param(G->lte.upgate->plan, "union_out", v, sizeof v) &&
           !strcmp(v, "bits");
}

/* The bitmap layer l's gather_upgate clears: that of the next layer that uses one
 * (after the last, the first): gather_down read it last a token ago, and nothing
 * sets it before that layer's gather_upgate. sp_gpu_mlp_prepare loads bitmaps for
 * two LTE layers or more, so it is never l's own. */
static sp_dptr next_layer_bits(const sp_gpu *g, int l) {
    for (int k = 1; k < g->L; ++k)
        if (uses_bits(&g->layers[(l + k) % g->L])) return layer_bits(g, (l + k) % g->L);
    return 0;
}

static sprig_status launch_gathers(sp_gpu *g, int l, gpu_mlp_path *p, sp_dptr union_count) {
    const gpu_layer *G = &g->layers[l];
    sp_kargs up;
    sp_kargs_init(&up, p->upgate->plan);
    sp_kargs_ptr(&up, "Wg", G->wg);
    sp_kargs_ptr(&up, "Wu", G->wu);
    sp_kargs_ptr(&up, "x", g->xb);
    sp_kargs_ptr(&up, "union_ids", g->union_ids);
    sp_kargs_ptr(&up, "union_count", union_count);
    sp_kargs_ptr(&up, "mask", g->mask);
    sp_kargs_ptr(&up, "h", g->h);
    if (sp_kargs_has(&up, "gate_scores")) /* gate=scores: the router's scores of W_gate's rows */
        sp_kargs_ptr(&up, "gate_scores", g->scores + sizeof(float) * (size_t)l * g->f);
    if (sp_kargs_has(&up, "Wr")) { /* route=sigmoid: the router's arguments too */
        sp_kargs_ptr(&up, "Wr", G->wr);
        sp_kargs_ptr(&up, "scores", g->scores + sizeof(float) * (size_t)l * g->f);
        sp_kargs_f32(&up, "threshold", g->lte_threshold);
        sp_kargs_ptr(&up, "ids", g->ids);
        sp_kargs_ptr(&up, "counts", g->counts);
        sp_kargs_ptr(&up, "ws", p->upgate->ws);
    }
    if (sp_kargs_has(&up, "union_bits")) { /* union_out=bits: this layer's bitmap; the next one's cleared */
        sp_kargs_ptr(&up, "union_bits", layer_bits(g, l));
        sp_kargs_ptr(&up, "bits_clear", next_layer_bits(g, l));
    }
    SP_TRY(sp_gpu_kernel_launch(g->kernels, p->upgate, &up));
    sp_kargs down;
    sp_kargs_init(&down, p->down->plan);
    sp_kargs_ptr(&down, "Wd", G->wd);
    sp_kargs_ptr(&down, "h", g->h);
    sp_kargs_ptr(&down, "union_ids", g->union_ids);
    sp_kargs_ptr(&down, "union_count", union_count);
    sp_kargs_ptr(&down, "ws", p->down->ws);
    sp_kargs_ptr(&down, "y", g->proj);
    if (sp_kargs_has(&down, "union_bits")) sp_kargs_ptr(&down, "union_bits", layer_bits(g, l));
    if (sp_kargs_has(&down, "res")) { /* norm=add: the next layer's attention norm, or the final one */
        sp_kargs_ptr(&down, "res", g->x);
        sp_kargs_ptr(&down, "norm_w", l + 1 < g->L ? g->layers[l + 1].attn_norm : g->final_norm);
        sp_kargs_ptr(&down, "normed", g->xb);
        sp_kargs_f32(&down, "eps", g->norm_eps);
    }
    return sp_gpu_kernel_launch(g->kernels, p->down, &down);
}

sprig_status sp_gpu_mlp_launch(sp_gpu *g, int l) {
    gpu_layer *G = &g->layers[l];
    const sp_dptr union_count = g->union_counts + sizeof(int) * (size_t)l;
    if (G->kind == GPU_MLP_DENSE) return launch_gathers(g, l, &G->dense, union_count);
    gpu_mlp_path *p = G->kind == GPU_MLP_LTE ? &G->lte : &G->thr;
    if (!p->router) return launch_gathers(g, l, p, union_count); /* the router is folded into gather_upgate */
    sp_kargs route;
    sp_kargs_init(&route, p->router->plan);
    /* LTE: the router's rows are the experts; threshold mode: W_gate's rows are the neurons (g = 1) */
    sp_kargs_ptr(&route, "Wr", G->kind == GPU_MLP_LTE ? G->wr : G->wg);
    sp_kargs_ptr(&route, "x", g->xb);
    sp_kargs_ptr(&route, "scores", g->scores + sizeof(float) * (size_t)l * g->f);
    sp_kargs_f32(&route, "threshold", G->kind == GPU_MLP_LTE ? g->lte_threshold : g->thresholds[l]);
    sp_kargs_ptr(&route, "ids", g->ids);
    sp_kargs_ptr(&route, "counts", g->counts);
    sp_kargs_ptr(&route, "union_ids", g->union_ids);
    sp_kargs_ptr(&route, "union_count", union_count);
    sp_kargs_ptr(&route, "mask", g->mask);
    sp_kargs_ptr(&route, "ws", p->router->ws);
    SP_TRY(sp_gpu_kernel_launch(g->kernels, p->router, &route));
    return launch_gathers(g, l, p, union_count);
}

int sp_gpu_mlp_active(const sp_gpu *g, int l, const int *union_counts) {
    switch (g->layers[l].kind) {
    case GPU_MLP_LTE: return union_counts[l] * g->layers[l].lte.g;
    case GPU_MLP_THRESHOLD: return union_counts[l];
    default: return g->f;
    }
}
