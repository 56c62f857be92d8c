/* The GPU backend: opening a model on an executor (its kernels come from a
 * kernel set, gpu_kernels.c) and the per-token launch sequence (see sp_gpu.h
 * for the sequence and the choices). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_internal.h"
#include "sp_error.h"
#include "gpu_internal.h"
#include "sp_half.h"

/* ---- opening a model ----------------------------------------------------------- */

/* The CPU backend's inverse frequencies, rounded to fp32 as the CPU backend
 * rounds them before use. */
static sprig_status rope_frequencies(const sp_model_config *cfg, float *inv_freq) {
    double *f = malloc(sizeof(double) * (size_t)(cfg->head_dim / 2 + 1));
    SP_CHECK_ALLOC(f);
    sp_rope_inv_freq(cfg, f);
    for (int i = 0; i < cfg->head_dim / 2; ++i) inv_freq[i] = (float)f[i];
    free(f);
    return SPRIG_OK;
}

/* The shapes every generated kernel needs to be multiples of 8 (16-byte rows). */
static sprig_status check_shapes(const sp_gpu *g) {
    const struct {
        const char *what;
        int v;
    } need[] = {{"hidden_size", g->d},
                {"intermediate_size", g->f},
                {"num_attention_heads * head_dim", g->qd},
                {"num_key_value_heads * head_dim", g->kvd}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; ++i)
        if (need[i].v % 8 != 0)
            return sp_fail(SPRIG_E_INVALID, "the GPU backend needs %s (%d) to be a multiple of 8", need[i].what,
                           need[i].v);
    return SPRIG_OK;
}

static sprig_status alloc_zero(sp_gpu *g, sp_dptr *p, size_t bytes) {
    SP_TRY(sp_exec_alloc(g->exec, p, bytes));
    return sp_exec_fill(g->exec, *p, 0, bytes);
}

static sprig_status alloc_buffers(sp_gpu *g) {
    const size_t t = 2, cache = (size_t)g->L * g->max_seq * g->kvd * t;
    float *inv = malloc(sizeof(float) * (size_t)(g->hd / 2));
    SP_CHECK_ALLOC(inv);
    sprig_status s = rope_frequencies(g->cfg, inv);
    if (s == SPRIG_OK) s = alloc_zero(g, &g->inv_freq, sizeof(float) * (size_t)(g->hd / 2));
    if (s == SPRIG_OK) s = sp_exec_upload(g->exec, g->inv_freq, inv, sizeof(float) * (size_t)(g->hd / 2));
    free(inv);
    SP_TRY(s);
    SP_TRY(alloc_zero(g, &g->k_cache, cache));
    SP_TRY(alloc_zero(g, &g->v_cache, cache));
    SP_TRY(alloc_zero(g, &g->io, 2 * sizeof(int)));
    SP_TRY(alloc_zero(g, &g->x, sizeof(float) * (size_t)g->d));
    SP_TRY(alloc_zero(g, &g->xb, t * (size_t)g->d));
    SP_TRY(alloc_zero(g, &g->qkv, t * (size_t)g->qkv_rows));
    SP_TRY(alloc_zero(g, &g->att, t * (size_t)g->qd));
    if (g->sliced) SP_TRY(alloc_zero(g, &g->cat, t * (size_t)(g->d + g->qd)));
    SP_TRY(alloc_zero(g, &g->proj, t * (size_t)g->d));
    SP_TRY(alloc_zero(g, &g->h, t * (size_t)g->f));
    SP_TRY(alloc_zero(g, &g->logits, t * (size_t)g->vocab8));
    /* routing arrays sized for g = 1 (E = f), the largest any path uses */
    SP_TRY(alloc_zero(g, &g->scores, sizeof(float) * (size_t)g->L * g->f));
    SP_TRY(alloc_zero(g, &g->ids, sizeof(int) * (size_t)g->f));
    SP_TRY(alloc_zero(g, &g->counts, sizeof(int)));
    SP_TRY(alloc_zero(g, &g->union_ids, sizeof(int) * (size_t)g->f));
    SP_TRY(alloc_zero(g, &g->mask, (size_t)g->f));
    SP_TRY(alloc_zero(g, &g->union_counts, sizeof(int) * (size_t)g->L));
    g->bits_words = (g->f + 31) / 32;
    SP_TRY(alloc_zero(g, &g->union_bits, sizeof(unsigned) * (size_t)g->L * g->bits_words));
    g->logits16 = calloc((size_t)g->vocab8, sizeof *g->logits16);
    g->logits_f = calloc((size_t)g->vocab, sizeof *g->logits_f);
    g->active = calloc((size_t)g->L, sizeof *g->active);
    g->counts_host = calloc((size_t)g->L, sizeof *g->counts_host);
    g->thresholds = calloc((size_t)g->L, sizeof *g->thresholds);
    if (!g->logits16 || !g->logits_f || !g->active || !g->counts_host || !g->thresholds)
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    return SPRIG_OK;
}

/* The kernels of a layer's attention side and norms for its widths. */
static sprig_status load_layer_kernels(sp_gpu *g, gpu_layer *G) {
    sp_gpu_kernels *ks = g->kernels;
    /* dense_gemv op=up: W is [f][d], so (d, f) = (columns, rows) of each projection */
    /* Qwen2's q/k/v biases are added as the GEMV stores its rows */
    const char *qkv = sp_arch_get(g->cfg->arch)->qkv_bias ? "op=up,bias=1" : "op=up";
    SP_TRY(sp_gpu_kernel_get(ks, "dense_gemv", G->a_in, g->qkv_rows, g->dtype, 1, qkv, 0, &G->gemv_qkv));
    if (!g->sliced) {
        /* o_proj's last CTA adds its output into x and writes the MLP's normed input; the
         * norm after the MLP is folded into gather_down the same way (gpu_mlp.c) */
        return sp_gpu_kernel_get(ks, "dense_gemv", g->qd, g->d, g->dtype, 1, "op=up,norm=add", 0, &G->gemv_o);
    }
    /* SliceGPT's norms (weightless, over the original width, x kept in T for the
     * next GEMV) fold into o_proj and the MLP-shortcut GEMV as norm=set */
    char o[160], sc[160];
    snprintf(o, sizeof o, "op=up,norm=set,norm_dim=%d,norm_weightless=1,norm_raw=1", g->d);
    snprintf(sc, sizeof sc, "op=up,accumulate=1,norm=set,norm_dim=%d,norm_weightless=1,norm_raw=1", g->d);
    SP_TRY(sp_gpu_kernel_get(ks, "dense_gemv", G->a_in + g->qd, G->a_out, g->dtype, 1, o, 0, &G->gemv_o));
    return sp_gpu_kernel_get(ks, "dense_gemv", G->a_out, G->m_out, g->dtype, 1, sc, 0, &G->gemv_sc);
}

/* Norms, projections, attention and lm_head; then the MLP kernels. */
static sprig_status load_kernels(sp_gpu *g) {
    sp_gpu_kernels *ks = g->kernels;
    char attn[128], embed[96], window[32] = "";
    if (g->cfg->sliding_window > 0) snprintf(window, sizeof window, ",window=%d", g->cfg->sliding_window); /* Mistral */
    snprintf(attn, sizeof attn, "heads=%d,kv_heads=%d,head_dim=%d%s%s", g->H, g->KV, g->hd,
             g->hd % 8 == 0 ? "" : g->hd % 4 == 0 ? ",vec=4" : ",vec=2", window); /* vec must divide head_dim */
    if (g->sliced) snprintf(embed, sizeof embed, "mode=embed,norm_dim=%d,weightless=1,raw_out=1", g->d);
    else snprintf(embed, sizeof embed, "mode=embed");
    const int w0 = g->layers[0].a_in;
    SP_TRY(sp_gpu_kernel_get(ks, "rmsnorm", w0, w0, g->dtype, 1, embed, 0, &g->norm_embed));
    SP_TRY(sp_gpu_kernel_get(ks, "dense_gemv", g->head_width, g->vocab8, g->dtype, 1, "op=up", 0, &g->gemv_lm));
    SP_TRY(sp_gpu_kernel_get(ks, "attention_decode", g->d, g->f, g->dtype, 1, attn, 0, &g->attn));
    for (int l = 0; l < g->L; ++l) {
        gpu_layer *G = &g->layers[l];
        if (sp_gpu_same_widths(g, l)) {
            const gpu_layer *P = G - 1;
            G->gemv_qkv = P->gemv_qkv, G->gemv_o = P->gemv_o, G->gemv_sc = P->gemv_sc;
            continue;
        }
        sprig_status s = load_layer_kernels(g, G);
        if (s != SPRIG_OK) return sp_wrap(s, "layer %d", l);
    }
    return sp_gpu_mlp_prepare(g);
}

/* Every layer's widths: d, or the sliced ones. */
static void set_widths(sp_gpu *g) {
    const sp_slice_config *sl = &g->cfg->slice;
    for (int l = 0; l < g->L; ++l) {
        gpu_layer *G = &g->layers[l];
        G->a_in = g->sliced ? sl->attn_in[l] : g->d;
        G->a_out = g->sliced ? sl->attn_out[l] : g->d;
        G->m_out = g->sliced ? sl->mlp_out[l] : g->d;
    }
    g->head_width = g->sliced ? sl->lm_head_width : g->d;
    g->norm_eps = (float)(g->sliced ? sl->norm_eps : g->cfg->rms_norm_eps);
}

static void assign_kinds(sp_gpu *g) {
    for (int l = 0; l < g->L; ++l) {
        const int routed = g->mode == SP_MLP_AUTO && g->cfg->lte.enabled && g->cfg->lte.has_router[l];
        g->layers[l].kind = g->mode == SP_MLP_THRESHOLD ? GPU_MLP_THRESHOLD : routed ? GPU_MLP_LTE : GPU_MLP_DENSE;
    }
}

/* Opens the step: shapes, widths, kinds and kernels; then, unless only
 * describing it (no executor: sp_gpu_describe), its buffers and weights. */
static sprig_status open_gpu(sp_gpu *g) {
    const sp_model_config *cfg = g->cfg;
    g->d = cfg->hidden_size, g->f = cfg->intermediate_size, g->L = cfg->num_hidden_layers;
    g->hd = cfg->head_dim, g->H = cfg->num_attention_heads, g->KV = cfg->num_key_value_heads;
    g->qd = g->H * g->hd, g->kvd = g->KV * g->hd, g->qkv_rows = g->qd + 2 * g->kvd;
    g->vocab = cfg->vocab_size, g->vocab8 = (cfg->vocab_size + 7) / 8 * 8;
    g->sliced = cfg->slice.enabled;
    /* LTE's router folded into gather_upgate; SPRIG_FUSED_ROUTER=0 keeps it a kernel of its
     * own, so that a GPU session can measure the one against the other */
    const char *fused = getenv("SPRIG_FUSED_ROUTER");
    g->fused_router = !(fused && !strcmp(fused, "0"));
    SP_TRY(check_shapes(g));
    g->layers = calloc((size_t)g->L, sizeof *g->layers);
    SP_CHECK_ALLOC(g->layers);
    set_widths(g);
    /* threshold mode starts dense-routed like the CPU backend: the kinds are final at set_thresholds */
    assign_kinds(g);
    if (g->mode == SP_MLP_THRESHOLD) {
        /* the threshold path packs W_down by its own plan: prepare the dense path to pick the layout */
        for (int l = 0; l < g->L; ++l) g->layers[l].kind = GPU_MLP_DENSE;
        SP_TRY(load_kernels(g));
        assign_kinds(g);
        SP_TRY(sp_gpu_mlp_prepare_threshold(g));
    } else {
        SP_TRY(load_kernels(g));
    }
    if (!g->exec) { /* describing: the launches' host-side values only */
        g->thresholds = calloc((size_t)g->L, sizeof *g->thresholds);
        SP_CHECK_ALLOC(g->thresholds);
        return SPRIG_OK;
    }
    SP_TRY(alloc_buffers(g));
    return sp_gpu_upload_weights(g);
}

sprig_status sp_gpu_open(sp_gpu_kernels *kernels, const sp_model *model, int max_seq, sp_mlp_mode mode,
                              const char *dtype, sp_gpu **out) {
    *out = NULL;
    if (max_seq < 1) return sp_fail(SPRIG_E_INVALID, "max_seq must be positive");
    if (!dtype || (strcmp(dtype, "fp16") != 0 && strcmp(dtype, "bf16") != 0))
        return sp_fail(SPRIG_E_INVALID, "GPU dtype '%s' is not fp16 or bf16", dtype ? dtype : "(null)");
    sp_gpu *g = calloc(1, sizeof *g);
    SP_CHECK_ALLOC(g);
    g->kernels = kernels, g->exec = kernels->exec, g->model = model, g->cfg = model->cfg;
    g->max_seq = max_seq, g->mode = mode;
    snprintf(g->dtype, sizeof g->dtype, "%s", dtype);
    g->bf16 = strcmp(dtype, "bf16") == 0;
    g->use_graph = 1;
    sprig_status s = open_gpu(g);
    if (s != SPRIG_OK) {
        sp_gpu_close(g);
        return s;
    }
    *out = g;
    return SPRIG_OK;
}

void sp_gpu_close(sp_gpu *g) {
    if (!g) return;
    sp_exec *e = g->exec;
    if (e) {
        sp_exec_graph_free(e, g->graph);
        sp_gpu_free_weights(g);
    }
    sp_dptr bufs[] = {g->inv_freq, g->k_cache, g->v_cache, g->io, g->x, g->xb, g->qkv, g->att, g->cat, g->proj, g->h,
                      g->logits, g->scores, g->ids, g->counts, g->union_ids, g->mask, g->union_counts, g->union_bits};
    for (size_t i = 0; e && i < sizeof bufs / sizeof bufs[0]; ++i) sp_exec_free(e, bufs[i]);
    free(g->layers);
    free(g->logits16);
    free(g->logits_f);
    free(g->active);
    free(g->counts_host);
    free(g->thresholds);
    free(g);
}

/* ---- the decode step ----------------------------------------------------------- */

/* rmsnorm: x = src-mode(x), xb = norm(x) * w; sliced: weightless, and x as T
 * to g->cat (raw_out=1; docs/kernel-abi.md) */
static sprig_status norm(sp_gpu *g, sp_gpu_kernel *k, sp_dptr src, sp_dptr w) {
    sp_kargs a;
    sp_kargs_init(&a, k->plan);
    sp_kargs_ptr(&a, "x", g->x);
    sp_kargs_ptr(&a, "src", src);
    sp_kargs_ptr(&a, "row", g->io); /* the token id, io[0] (read by mode=embed only) */
    sp_kargs_ptr(&a, "w", w);
    sp_kargs_ptr(&a, "out", g->xb);
    sp_kargs_f32(&a, "eps", g->norm_eps);
    if (sp_kargs_has(&a, "raw")) sp_kargs_ptr(&a, "raw", g->cat);
    return sp_gpu_kernel_launch(g->kernels, k, &a);
}

static sprig_status gemv(sp_gpu *g, sp_gpu_kernel *k, sp_dptr W, sp_dptr x, sp_dptr y) {
    sp_kargs a;
    sp_kargs_init(&a, k->plan);
    sp_kargs_ptr(&a, "W", W);
    sp_kargs_ptr(&a, "x", x);
    sp_kargs_ptr(&a, "y", y);
    return sp_gpu_kernel_launch(g->kernels, k, &a);
}

/* q/k/v = Wqkv x (+ their biases, when the layer has them: bias=1 plans) */
static sprig_status gemv_qkv(sp_gpu *g, const gpu_layer *G) {
    sp_kargs a;
    sp_kargs_init(&a, G->gemv_qkv->plan);
    sp_kargs_ptr(&a, "W", G->wqkv);
    sp_kargs_ptr(&a, "x", g->xb);
    sp_kargs_ptr(&a, "y", g->qkv);
    if (sp_kargs_has(&a, "bias")) sp_kargs_ptr(&a, "bias", G->bqkv);
    return sp_gpu_kernel_launch(g->kernels, G->gemv_qkv, &a);
}

/* y = W x, then x += y (norm=set: x = y) and xb = norm(x) [* w] in the kernel's
 * last CTA; w is 0 for SliceGPT's weightless norms. */
static sprig_status gemv_norm(sp_gpu *g, sp_gpu_kernel *k, sp_dptr W, sp_dptr x, sp_dptr y, sp_dptr w) {
    sp_kargs a;
    sp_kargs_init(&a, k->plan);
    sp_kargs_ptr(&a, "W", W);
    sp_kargs_ptr(&a, "x", x);
    sp_kargs_ptr(&a, "y", y);
    sp_kargs_ptr(&a, "res", g->x);
    sp_kargs_ptr(&a, "norm_w", w);
    sp_kargs_ptr(&a, "normed", g->xb);
    sp_kargs_f32(&a, "eps", g->norm_eps);
    sp_kargs_ptr(&a, "ws", k->ws);
    if (sp_kargs_has(&a, "raw")) sp_kargs_ptr(&a, "raw", g->cat); /* sliced: x in T, where the next GEMV reads it */
    return sp_gpu_kernel_launch(g->kernels, k, &a);
}

static sprig_status attention(sp_gpu *g, int l, sp_dptr out) {
    const size_t at = (size_t)l * g->max_seq * g->kvd * 2;
    sp_kargs a;
    sp_kargs_init(&a, g->attn->plan);
    sp_kargs_ptr(&a, "qkv", g->qkv);
    sp_kargs_ptr(&a, "inv_freq", g->inv_freq);
    sp_kargs_ptr(&a, "k_cache", g->k_cache + at);
    sp_kargs_ptr(&a, "v_cache", g->v_cache + at);
    sp_kargs_ptr(&a, "pos", g->io + sizeof(int));
    sp_kargs_ptr(&a, "ws", g->attn->ws);
    sp_kargs_ptr(&a, "out", out);
    return sp_gpu_kernel_launch(g->kernels, g->attn, &a);
}

/* Five to seven launches: qkv, attention, o_proj (+ the norm before the MLP),
 * the MLP's router, gate/up, down (+ the norm after the MLP). */
static sprig_status run_layer(sp_gpu *g, int l) {
    const gpu_layer *G = &g->layers[l];
    SP_TRY(gemv_qkv(g, G));
    SP_TRY(attention(g, l, g->att));
    SP_TRY(gemv_norm(g, G->gemv_o, G->wo, g->att, g->proj, G->mlp_norm));
    return sp_gpu_mlp_launch(g, l); /* ends with x += mlp and xb = the next norm (norm=add) */
}

/* A SliceGPT layer. g->cat holds x (as T, a_in wide) from the norm before;
 * attention appends its output, so one GEMV over [x ; att] gives
 * x @ attn_shortcut_Q + o(att). The MLP shortcut accumulates onto the MLP
 * output, and each norm sets x from that sum (weightless, over d), in the
 * last CTA of the GEMV before it. */
static sprig_status run_sliced_layer(sp_gpu *g, int l) {
    const gpu_layer *G = &g->layers[l];
    SP_TRY(gemv_qkv(g, G));
    SP_TRY(attention(g, l, g->cat + 2 * (size_t)G->a_in));
    SP_TRY(gemv_norm(g, G->gemv_o, G->wo, g->cat, g->proj, 0));
    SP_TRY(sp_gpu_mlp_launch(g, l));
    return gemv_norm(g, G->gemv_sc, G->wsc, g->cat, g->proj, 0);
}

/* One token: the same launches, with the same arguments, every time; only the
 * contents of g->io (token, pos) change. */
static sprig_status run_token(sp_gpu *g) {
    SP_TRY(norm(g, g->norm_embed, g->embed, g->sliced ? 0 : g->layers[0].attn_norm));
    for (int l = 0; l < g->L; ++l) SP_TRY(g->sliced ? run_sliced_layer(g, l) : run_layer(g, l));
    return gemv(g, g->gemv_lm, g->lm_head, g->xb, g->logits);
}

/* run_token captured into g->graph. */
static sprig_status capture_token(sp_gpu *g) {
    sprig_status s = sp_exec_capture_begin(g->exec), e = SPRIG_OK;
    if (s == SPRIG_OK) {
        s = run_token(g);
        e = sp_exec_capture_end(g->exec, &g->graph); /* ends the capture either way */
    }
    return s != SPRIG_OK ? s : e;
}

/* Captures run_token once, then replays it. A capture the executor or the
 * driver cannot make is not fatal: one with programmatic dependent launch is
 * made again without it, and one that still fails leaves the backend saying
 * why (sp_gpu_graph_note) and launching kernel by kernel from then on. */
static sprig_status run_token_graph(sp_gpu *g) {
    if (!g->graph) {
        sprig_status s = capture_token(g);
        if (s != SPRIG_OK && g->exec->pdl) { /* the driver may not capture programmatic launches: without */
            sp_exec_graph_free(g->exec, g->graph);
            g->graph = NULL;
            sp_exec_pdl_off(g->exec, sprig_last_error());
            s = capture_token(g);
        }
        if (s == SPRIG_OK) return sp_exec_graph_launch(g->exec, g->graph);
        snprintf(g->graph_note, sizeof g->graph_note, "no CUDA graph, launching kernel by kernel: %s",
                 sprig_last_error());
        sp_exec_graph_free(g->exec, g->graph);
        g->graph = NULL;
        g->use_graph = 0;
        return run_token(g); /* a launch that failed inside the capture fails here again, plainly */
    }
    return sp_exec_graph_launch(g->exec, g->graph);
}

const char *sp_gpu_graph_note(const sp_gpu *g) { return g->graph_note; }

void sp_gpu_set_graph(sp_gpu *g, int on) {
    g->use_graph = on != 0;
    if (!g->use_graph) {
        sp_exec_graph_free(g->exec, g->graph);
        g->graph = NULL;
    }
}

static float from_t(const sp_gpu *g, uint16_t v) { return g->bf16 ? sp_bf16_to_f32(v) : sp_f16_to_f32(v); }

sprig_status sp_gpu_forward(sp_gpu *g, int token, int pos, const float **logits) {
    if (token < 0 || token >= g->vocab)
        return sp_fail(SPRIG_E_INVALID, "token %d is outside the vocabulary (0..%d)", token, g->vocab - 1);
    if (pos < 0 || pos >= g->max_seq)
        return sp_fail(SPRIG_E_INVALID, "position %d is beyond the context of %d tokens", pos, g->max_seq);
    if (g->mode == SP_MLP_THRESHOLD && !g->thresholds_set)
        return sp_fail(SPRIG_E_INVALID, "threshold sparsity: call sp_gpu_set_thresholds before the first token");
    const int io[2] = {token, pos};
    SP_TRY(sp_exec_upload(g->exec, g->io, io, sizeof io));
    sprig_status s = g->use_graph ? run_token_graph(g) : run_token(g);
    if (s != SPRIG_OK) return sp_wrap(s, "GPU forward, token %d at position %d", token, pos);
    SP_TRY(sp_exec_download(g->exec, g->logits16, g->logits, sizeof(uint16_t) * (size_t)g->vocab8));
    SP_TRY(sp_exec_download(g->exec, g->counts_host, g->union_counts, sizeof(int) * (size_t)g->L));
    SP_TRY(sp_exec_sync(g->exec));
    for (int i = 0; i < g->vocab; ++i) g->logits_f[i] = from_t(g, g->logits16[i]);
    for (int l = 0; l < g->L; ++l) {
        g->active[l] = sp_gpu_mlp_active(g, l, g->counts_host);
        g->mlp_active += g->active[l];
        g->mlp_total += g->f;
    }
    *logits = g->logits_f;
    return SPRIG_OK;
}

sprig_status sp_gpu_set_thresholds(sp_gpu *g, const float *thresholds) {
    if (!g->layers[0].thr.router) SP_TRY(sp_gpu_mlp_prepare_threshold(g));
    memcpy(g->thresholds, thresholds, sizeof(float) * (size_t)g->L);
    sp_exec_graph_free(g->exec, g->graph); /* the layers' kernels change: capture again */
    g->graph = NULL;
    for (int l = 0; l < g->L; ++l) g->layers[l].kind = GPU_MLP_THRESHOLD;
    g->mode = SP_MLP_THRESHOLD;
    g->thresholds_set = 1;
    g->mlp_active = g->mlp_total = 0;
    return SPRIG_OK;
}

double sp_gpu_mlp_sparsity(const sp_gpu *g) {
    return g->mlp_total > 0 ? 1.0 - g->mlp_active / g->mlp_total : 0.0;
}

const int *sp_gpu_last_active(const sp_gpu *g) { return g->active; }

size_t sp_gpu_weight_bytes(const sp_gpu *g) { return g->weight_bytes; }

size_t sp_gpu_mlp_weight_bytes(const sp_gpu *g) { return g->mlp_weight_bytes; }

sprig_status sp_gpu_router_scores(sp_gpu *g, int l, float *scores, int *n, float *threshold) {
    *n = 0;
    if (l < 0 || l >= g->L) return sp_fail(SPRIG_E_INVALID, "layer %d is outside 0..%d", l, g->L - 1);
    const gpu_layer *G = &g->layers[l];
    if (G->kind == GPU_MLP_DENSE) return SPRIG_OK;
    const int count = G->kind == GPU_MLP_LTE ? g->f / G->lte.g : g->f;
    *threshold = G->kind == GPU_MLP_LTE ? g->lte_threshold : g->thresholds[l];
    SP_TRY(sp_exec_download(g->exec, scores, g->scores + sizeof(float) * (size_t)l * g->f, sizeof(float) * (size_t)count));
    *n = count;
    return SPRIG_OK;
}

/* ---- describing the step -------------------------------------------------------- */

sprig_status sp_gpu_describe(sp_gpu_kernels *kernels, const sp_model_config *cfg, sp_mlp_mode mode,
                             const char *dtype, sp_gpu_step *out) {
    memset(out, 0, sizeof *out);
    if (kernels->exec) return sp_fail(SPRIG_E_INVALID, "sp_gpu_describe: the kernel set must have no executor");
    if (!dtype || (strcmp(dtype, "fp16") != 0 && strcmp(dtype, "bf16") != 0))
        return sp_fail(SPRIG_E_INVALID, "GPU dtype '%s' is not fp16 or bf16", dtype ? dtype : "(null)");
    sp_gpu *g = calloc(1, sizeof *g);
    SP_CHECK_ALLOC(g);
    g->kernels = kernels, g->cfg = cfg, g->max_seq = 1, g->mode = mode;
    snprintf(g->dtype, sizeof g->dtype, "%s", dtype);
    g->bf16 = strcmp(dtype, "bf16") == 0;
    sprig_status s = open_gpu(g);
    if (s == SPRIG_OK) {
        sp_gpu_kernels_record(kernels, 1);
        s = run_token(g); /* the very sequence sp_gpu_forward launches */
        sp_gpu_kernels_record(kernels, 0);
    }
    if (s == SPRIG_OK) s = sp_gpu_kernels_recorded(kernels, out);
    sp_gpu_close(g);
    return s;
}
