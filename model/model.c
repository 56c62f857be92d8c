/* sp_model_open: names every weight of a LLaMA checkpoint and checks it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_error.h"
#include "sp_half.h"
#include "sp_model.h"

void sp_tensor_row(const sp_tensor *t, int64_t r, float *out) {
    const int64_t cols = t->shape[t->ndim - 1]; /* rows are the leading dimensions flattened */
    const unsigned char *p = (const unsigned char *)t->data + (size_t)r * (size_t)cols * sp_dtype_size(t->dtype);
    for (int64_t c = 0; c < cols; ++c) {
        /* safetensors does not promise alignment: read through memcpy */
        if (t->dtype == SP_DTYPE_F32) {
            memcpy(&out[c], p + 4 * c, 4);
        } else {
            uint16_t bits;
            memcpy(&bits, p + 2 * c, 2);
            out[c] = t->dtype == SP_DTYPE_F16 ? sp_f16_to_f32(bits) : sp_bf16_to_f32(bits);
        }
    }
}

/* inv_freq[i] = theta^(-2i/hd), with LLaMA-3.1's frequency-dependent scaling. */
void sp_rope_inv_freq(const sp_model_config *cfg, double *inv_freq) {
    const int half = cfg->head_dim / 2;
    const sp_rope_scaling *rs = &cfg->rope_scaling;
    for (int i = 0; i < half; ++i) {
        double f = 1.0 / pow(cfg->rope_theta, (2.0 * i) / cfg->head_dim);
        if (rs->kind == SP_ROPE_LLAMA3) {
            const double old = rs->original_max_position_embeddings;
            const double low_wavelen = old / rs->low_freq_factor, high_wavelen = old / rs->high_freq_factor;
            const double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                f = f / rs->factor;
            } else if (wavelen >= high_wavelen) {
                const double smooth = (old / wavelen - rs->low_freq_factor) / (rs->high_freq_factor - rs->low_freq_factor);
                f = (1.0 - smooth) * f / rs->factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

void sp_matvec(const sp_tensor *W, const float *x, float *y) {
    const int64_t rows = W->shape[0], cols = W->shape[1];
    float *row = malloc(sizeof(float) * (size_t)cols);
    if (!row) return;
    for (int64_t r = 0; r < rows; ++r) {
        sp_tensor_row(W, r, row);
        double acc = 0;
        for (int64_t c = 0; c < cols; ++c) acc += (double)row[c] * x[c];
        y[r] = (float)acc;
    }
    free(row);
}

static sprig_status get(const sp_model *m, const char *name, const sp_tensor **out) {
    return sp_model_files_get(m->files, name, out);
}

static sprig_status layer_tensor(const sp_model *m, int l, const char *suffix, const sp_tensor **out) {
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    return get(m, name, out);
}

/* The permutation tensor, validated by the config check, as int32. */
static sprig_status load_permutation(sp_model *m, int l) {
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.mlp.expert_permutation", l);
    const sp_tensor *t = sp_model_files_find(m->files, name);
    if (!t) return SPRIG_OK;
    const size_t f = (size_t)m->cfg->intermediate_size;
    int32_t *perm = malloc(sizeof(int32_t) * f);
    SP_CHECK_ALLOC(perm);
    for (size_t i = 0; i < f; ++i) perm[i] = (int32_t)sp_tensor_int_at(t, i);
    m->layers[l].neuron_of = perm;
    return SPRIG_OK;
}

static sprig_status open_layer(sp_model *m, int l) {
    sp_layer *L = &m->layers[l];
    const int sliced = m->cfg->slice.enabled;
    if (sliced) {  /* SliceGPT: weightless norms, shortcut matrices on the residual */
        SP_TRY(layer_tensor(m, l, "attn_shortcut_Q", &L->attn_shortcut));
        SP_TRY(layer_tensor(m, l, "mlp_shortcut_Q", &L->mlp_shortcut));
    } else {
        SP_TRY(layer_tensor(m, l, "input_layernorm.weight", &L->attn_norm));
        SP_TRY(layer_tensor(m, l, "post_attention_layernorm.weight", &L->mlp_norm));
    }
    SP_TRY(layer_tensor(m, l, "self_attn.q_proj.weight", &L->q));
    SP_TRY(layer_tensor(m, l, "self_attn.k_proj.weight", &L->k));
    SP_TRY(layer_tensor(m, l, "self_attn.v_proj.weight", &L->v));
    SP_TRY(layer_tensor(m, l, "self_attn.o_proj.weight", &L->o));
    if (sp_arch_get(m->cfg->arch)->qkv_bias) {
        SP_TRY(layer_tensor(m, l, "self_attn.q_proj.bias", &L->q_bias));
        SP_TRY(layer_tensor(m, l, "self_attn.k_proj.bias", &L->k_bias));
        SP_TRY(layer_tensor(m, l, "self_attn.v_proj.bias", &L->v_bias));
    }
    SP_TRY(layer_tensor(m, l, "mlp.gate_proj.weight", &L->gate));
    SP_TRY(layer_tensor(m, l, "mlp.up_proj.weight", &L->up));
    SP_TRY(layer_tensor(m, l, "mlp.down_proj.weight", &L->down));
    if (m->cfg->lte.enabled && m->cfg->lte.has_router[l]) {
        SP_TRY(layer_tensor(m, l, "mlp.router.weight", &L->router));
        SP_TRY(load_permutation(m, l));
    }
    return SPRIG_OK;
}

sprig_status sp_model_open(const char *dir, sp_model **out) {
    *out = NULL;
    sp_model *m = calloc(1, sizeof *m);
    SP_CHECK_ALLOC(m);
    sprig_status s = sp_model_files_open(dir, &m->files);
    if (s == SPRIG_OK) {
        m->cfg = sp_model_files_config(m->files);
        m->layers = calloc((size_t)m->cfg->num_hidden_layers, sizeof *m->layers);
        if (!m->layers) s = sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    if (s == SPRIG_OK) s = get(m, "model.embed_tokens.weight", &m->embed);
    if (s == SPRIG_OK && !m->cfg->slice.enabled) s = get(m, "model.norm.weight", &m->final_norm);
    if (s == SPRIG_OK) {
        /* SliceGPT unties lm_head (it is rotated apart from the embedding). */
        if (m->cfg->tie_word_embeddings && !m->cfg->slice.enabled) m->lm_head = m->embed;
        else s = get(m, "lm_head.weight", &m->lm_head);
    }
    for (int l = 0; s == SPRIG_OK && m->layers && l < m->cfg->num_hidden_layers; ++l) s = open_layer(m, l);
    if (s != SPRIG_OK) {
        sp_model_close(m);
        return s;
    }
    *out = m;
    return SPRIG_OK;
}

void sp_model_close(sp_model *m) {
    if (!m) return;
    if (m->layers && m->cfg)
        for (int l = 0; l < m->cfg->num_hidden_layers; ++l) free(m->layers[l].neuron_of);
    free(m->layers);
    sp_model_files_close(m->files);
    free(m);
}
