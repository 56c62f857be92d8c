/* Packing a model's weights for the GPU backend: converted once on the host
 * to the compute dtype (from the checkpoint's F32/F16/BF16), the LTE expert
 * permutation applied (rows of gate/up, columns of down: the function is
 * unchanged), W_down laid out as the gather_down kernel wants, then uploaded. */
#include <stdlib.h>
#include <string.h>

#include "sp_error.h"
#include "gpu_internal.h"
#include "sp_half.h"

static uint16_t to_t(const sp_gpu *g, float v) { return g->bf16 ? sp_f32_to_bf16(v) : sp_f32_to_f16(v); }

/* Allocates `bytes` on the device and copies src there. */
static sprig_status upload_new(sp_gpu *g, const void *src, size_t bytes, sp_dptr *out) {
    SP_TRY(sp_exec_alloc(g->exec, out, bytes));
    g->weight_bytes += bytes;
    return sp_exec_upload(g->exec, *out, src, bytes);
}

/* dst[r] = row src_row(r) of t, converted, for r < rows; rows past t's are zero.
 * perm (may be NULL) names the source row of each destination row. */
static void pack_rows(const sp_gpu *g, const sp_tensor *t, const int32_t *perm, int64_t rows, uint16_t *dst,
                      float *tmp) {
    const int64_t cols = t->shape[t->ndim - 1], have = t->ndim == 1 ? 1 : t->shape[0];
    for (int64_t r = 0; r < rows; ++r) {
        uint16_t *o = dst + (size_t)r * cols;
        if (r >= have) {
            memset(o, 0, sizeof(uint16_t) * (size_t)cols);
            continue;
        }
        sp_tensor_row(t, perm ? perm[r] : r, tmp);
        for (int64_t c = 0; c < cols; ++c) o[c] = to_t(g, tmp[c]);
    }
}

/* Uploads a [rows][cols] matrix (a vector: rows = 1) built from tensors
 * stacked by rows: parts[0] rows first, then parts[1], ... A single part in the
 * compute dtype with no permutation and no padding goes up straight from the
 * mapped file. */
static sprig_status upload_stacked(sp_gpu *g, const sp_tensor *const *parts, int n_parts, const int32_t *perm,
                                   int64_t pad_rows, sp_dptr *out) {
    const int64_t cols = parts[0]->shape[parts[0]->ndim - 1];
    int64_t rows = 0;
    for (int i = 0; i < n_parts; ++i) rows += parts[i]->ndim == 1 ? 1 : parts[i]->shape[0];
    const int64_t total = rows > pad_rows ? rows : pad_rows;
    const sp_dtype want = g->bf16 ? SP_DTYPE_BF16 : SP_DTYPE_F16;
    if (n_parts == 1 && !perm && total == rows && parts[0]->dtype == want)
        return upload_new(g, parts[0]->data, parts[0]->nbytes, out);
    uint16_t *buf = malloc(sizeof(uint16_t) * (size_t)total * (size_t)cols);
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        return sp_fail(SPRIG_E_NOMEM, "out of memory packing %s (%lld x %lld)", parts[0]->name, (long long)total,
                       (long long)cols);
    }
    int64_t at = 0;
    for (int i = 0; i < n_parts; ++i) {
        const int64_t r = parts[i]->ndim == 1 ? 1 : parts[i]->shape[0];
        pack_rows(g, parts[i], perm, r, buf + (size_t)at * cols, tmp);
        at += r;
    }
    memset(buf + (size_t)rows * cols, 0, sizeof(uint16_t) * (size_t)(total - rows) * (size_t)cols);
    sprig_status s = upload_new(g, buf, sizeof(uint16_t) * (size_t)total * (size_t)cols, out);
    free(buf);
    free(tmp);
    return s;
}

static sprig_status upload_matrix(sp_gpu *g, const sp_tensor *t, const int32_t *perm, int64_t pad_rows,
                                  sp_dptr *out) {
    return upload_stacked(g, &t, 1, perm, pad_rows, out);
}

/* W_down [d][f] with its columns permuted (column i = stored column perm[i]),
 * as W_downᵀ [f][d] (layout t) or [d][f] (layout n). Read BLK rows of W_down
 * at a time so the transposed writes stay in cache. */
static sprig_status upload_down(sp_gpu *g, const sp_tensor *t, const int32_t *perm, int transpose, sp_dptr *out) {
    enum { BLK = 32 };
    const int64_t d = t->shape[0], f = t->shape[1];
    uint16_t *buf = malloc(sizeof(uint16_t) * (size_t)d * (size_t)f);
    float *tmp = malloc(sizeof(float) * BLK * (size_t)f);
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        return sp_fail(SPRIG_E_NOMEM, "out of memory packing %s", t->name);
    }
    for (int64_t c0 = 0; c0 < d; c0 += BLK) {
        const int64_t n = d - c0 < BLK ? d - c0 : BLK;
        for (int64_t c = 0; c < n; ++c) sp_tensor_row(t, c0 + c, tmp + (size_t)c * f);
        for (int64_t i = 0; i < f; ++i) {
            const int64_t src = perm ? perm[i] : i;
            for (int64_t c = 0; c < n; ++c) {
                const uint16_t v = to_t(g, tmp[(size_t)c * f + src]);
                if (transpose) buf[(size_t)i * d + c0 + c] = v;
                else buf[(size_t)(c0 + c) * f + i] = v;
            }
        }
    }
    sprig_status s = upload_new(g, buf, sizeof(uint16_t) * (size_t)d * (size_t)f, out);
    free(buf);
    free(tmp);
    return s;
}

/* SliceGPT: [attn_shortcut_Qᵀ | W_o], [a_out][a_in + qd] (see gpu_layer): row r
 * is column r of Q [a_in][a_out], then row r of W_o [a_out][qd]. */
static sprig_status upload_shortcut_o(sp_gpu *g, const sp_tensor *Q, const sp_tensor *o, sp_dptr *out) {
    const int64_t a_in = Q->shape[0], a_out = Q->shape[1], qd = o->shape[1], cols = a_in + qd;
    uint16_t *buf = malloc(sizeof(uint16_t) * (size_t)a_out * (size_t)cols);
    float *tmp = malloc(sizeof(float) * (size_t)(a_out > qd ? a_out : qd));
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        return sp_fail(SPRIG_E_NOMEM, "out of memory packing %s with %s", Q->name, o->name);
    }
    for (int64_t i = 0; i < a_in; ++i) {
        sp_tensor_row(Q, i, tmp);
        for (int64_t r = 0; r < a_out; ++r) buf[(size_t)r * cols + i] = to_t(g, tmp[r]);
    }
    for (int64_t r = 0; r < a_out; ++r) {
        sp_tensor_row(o, r, tmp);
        for (int64_t c = 0; c < qd; ++c) buf[(size_t)r * cols + a_in + c] = to_t(g, tmp[c]);
    }
    sprig_status s = upload_new(g, buf, sizeof(uint16_t) * (size_t)a_out * (size_t)cols, out);
    free(buf);
    free(tmp);
    return s;
}

/* The q, k and v biases end to end, [(H + 2 KV) hd] of T: the rows of wqkv. */
static sprig_status upload_qkv_bias(sp_gpu *g, const sp_layer *L, sp_dptr *out) {
    const sp_tensor *parts[3] = {L->q_bias, L->k_bias, L->v_bias};
    const size_t n = (size_t)(parts[0]->shape[0] + parts[1]->shape[0] + parts[2]->shape[0]);
    uint16_t *buf = malloc(sizeof(uint16_t) * n);
    float *tmp = malloc(sizeof(float) * n);
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        return sp_fail(SPRIG_E_NOMEM, "out of memory packing %s", parts[0]->name);
    }
    size_t at = 0;
    for (int i = 0; i < 3; ++i) {
        sp_tensor_row(parts[i], 0, tmp);
        for (int64_t j = 0; j < parts[i]->shape[0]; ++j) buf[at++] = to_t(g, tmp[j]);
    }
    sprig_status s = upload_new(g, buf, sizeof(uint16_t) * n, out);
    free(buf);
    free(tmp);
    return s;
}

static sprig_status upload_layer(sp_gpu *g, int l) {
    const sp_layer *L = &g->model->layers[l];
    gpu_layer *G = &g->layers[l];
    const sp_tensor *qkv[3] = {L->q, L->k, L->v};
    SP_TRY(upload_stacked(g, qkv, 3, NULL, 0, &G->wqkv));
    if (L->q_bias) SP_TRY(upload_qkv_bias(g, L, &G->bqkv));
    if (g->sliced) {
        SP_TRY(upload_shortcut_o(g, L->attn_shortcut, L->o, &G->wo));
        /* mlp_shortcut_Q [a_out][m_out] as its transpose: the same packing as W_downᵀ, unpermuted */
        SP_TRY(upload_down(g, L->mlp_shortcut, NULL, 1, &G->wsc));
    } else {
        SP_TRY(upload_matrix(g, L->attn_norm, NULL, 0, &G->attn_norm));
        SP_TRY(upload_matrix(g, L->o, NULL, 0, &G->wo));
        SP_TRY(upload_matrix(g, L->mlp_norm, NULL, 0, &G->mlp_norm));
    }
    const size_t before_mlp = g->weight_bytes;
    SP_TRY(upload_matrix(g, L->gate, L->neuron_of, 0, &G->wg));
    SP_TRY(upload_matrix(g, L->up, L->neuron_of, 0, &G->wu));
    SP_TRY(upload_down(g, L->down, L->neuron_of, strcmp(g->down_layout, "n") != 0, &G->wd));
    g->mlp_weight_bytes += g->weight_bytes - before_mlp;
    if (G->kind == GPU_MLP_LTE) SP_TRY(upload_matrix(g, L->router, NULL, 0, &G->wr));
    return SPRIG_OK;
}

sprig_status sp_gpu_upload_weights(sp_gpu *g) {
    const sp_model *m = g->model;
    SP_TRY(upload_matrix(g, m->embed, NULL, 0, &g->embed));
    g->weight_bytes = 0; /* a token reads one row of the embedding: count the rest */
    if (m->final_norm) SP_TRY(upload_matrix(g, m->final_norm, NULL, 0, &g->final_norm));
    /* lm_head rows padded to a multiple of 8 (dense_gemv's shape rule); padded logits are 0 and never read */
    SP_TRY(upload_matrix(g, m->lm_head, NULL, g->vocab8, &g->lm_head));
    for (int l = 0; l < g->L; ++l) {
        sprig_status s = upload_layer(g, l);
        if (s != SPRIG_OK) return sp_wrap(s, "uploading layer %d", l);
    }
    return SPRIG_OK;
}

void sp_gpu_free_weights(sp_gpu *g) {
    sp_exec_free(g->exec, g->embed);
    sp_exec_free(g->exec, g->final_norm);
    sp_exec_free(g->exec, g->lm_head);
    for (int l = 0; g->layers && l < g->L; ++l) {
        gpu_layer *G = &g->layers[l];
        sp_dptr all[] = {G->attn_norm, G->wqkv, G->bqkv, G->wo, G->mlp_norm, G->wg, G->wu, G->wd, G->wr, G->wsc};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) sp_exec_free(g->exec, all[i]);
        G->attn_norm = G->wqkv = G->bqkv = G->wo = G->mlp_norm = G->wg = G->wu = G->wd = G->wr = G->wsc = 0;
    }
    g->embed = g->final_norm = g->lm_head = 0;
}
