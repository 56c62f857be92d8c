/* The CPU forward pass of a LLaMA decoder, one token at a time (llama2.c's
 * shape): RMSNorm, RoPE (with llama3 scaling), GQA attention over a KV cache,
 * and a SwiGLU MLP that is dense, LTE-routed, or threshold-sparse. SliceGPT
 * models take forward_sliced: per-layer residual widths, weightless norms
 * over the original width, and shortcut matrices on the residual. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cpu.h"
#include "backend_internal.h"
#include "sp_error.h"

#define NEW(ptr, n) ((ptr) = calloc((size_t)(n), sizeof *(ptr)))

static int n_experts(const sp_model_config *cfg) {
    return cfg->lte.enabled ? cfg->lte.n_experts : 0;
}

/* Room per layer for either kind of decision: E experts or f neurons. */
static int decisions_stride(const sp_model_config *cfg) {
    return (n_experts(cfg) > cfg->intermediate_size ? n_experts(cfg) : cfg->intermediate_size) + 1;
}

sprig_status sp_cpu_open(const sp_model *model, int max_seq, sp_mlp_mode mode, sp_cpu **out) {
    *out = NULL;
    const sp_model_config *cfg = model->cfg;
    if (max_seq < 1) return sp_fail(SPRIG_E_INVALID, "max_seq must be positive");
    sp_cpu *c = calloc(1, sizeof *c);
    SP_CHECK_ALLOC(c);
    c->model = model, c->max_seq = max_seq, c->mode = mode;
    const int d = cfg->hidden_size, f = cfg->intermediate_size, L = cfg->num_hidden_layers;
    const int qd = cfg->num_attention_heads * cfg->head_dim, kvd = cfg->num_key_value_heads * cfg->head_dim;
    const int widest = d > f ? (d > qd ? d : qd) : (f > qd ? f : qd);
    int ok = NEW(c->k_cache, (size_t)L * max_seq * kvd) && NEW(c->v_cache, (size_t)L * max_seq * kvd) &&
             NEW(c->x, d) && NEW(c->xb, d) && NEW(c->q, qd) && NEW(c->k, kvd) && NEW(c->v, kvd) &&
             NEW(c->att, max_seq) && NEW(c->att_out, qd > d ? qd : d) && /* also the MLP output */ NEW(c->gate, f) && NEW(c->up, f) && NEW(c->h, f) &&
             NEW(c->scores, n_experts(cfg) + 1) && NEW(c->row, widest > cfg->vocab_size ? widest : cfg->vocab_size) &&
             NEW(c->logits, cfg->vocab_size) && NEW(c->inv_freq, cfg->head_dim / 2 + 1) &&
             NEW(c->thresholds, L) && NEW(c->last_active, (size_t)L * decisions_stride(cfg)) &&
             NEW(c->shortcut_out, d) && NEW(c->shortcut_acc, d);
    if (!ok) {
        sp_cpu_close(c);
        return sp_fail(SPRIG_E_NOMEM, "out of memory for the CPU backend (max_seq %d)", max_seq);
    }
    c->decisions_stride = decisions_stride(cfg);
    sp_rope_inv_freq(cfg, c->inv_freq);
    *out = c;
    return SPRIG_OK;
}

void sp_cpu_close(sp_cpu *c) {
    if (!c) return;
    float *bufs[] = {c->k_cache, c->v_cache, c->x, c->xb, c->q, c->k, c->v, c->att, c->att_out, c->gate,
                     c->up, c->h, c->scores, c->row, c->logits, c->thresholds, c->shortcut_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) free(bufs[i]);
    free(c->inv_freq);
    free(c->shortcut_acc);
    free(c->last_active);
    free(c);
}

/* out = x * rsqrt(mean(x²) + eps) * w */
static void rmsnorm(float *out, const float *x, const sp_tensor *w, float *wrow, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / n + eps));
    sp_tensor_row(w, 0, wrow);
    for (int i = 0; i < n; ++i) out[i] = (x[i] * scale) * wrow[i];
}

/* Hugging Face's rotate_half convention: dimension i pairs with i + hd/2. */
static void rope(float *v, int heads, int hd, int pos, const double *inv_freq) {
    for (int h = 0; h < heads; ++h) {
        float *p = v + (size_t)h * hd;
        for (int i = 0; i < hd / 2; ++i) {
            const float angle = (float)pos * (float)inv_freq[i];
            const double cs = cos(angle), sn = sin(angle);
            const double a = p[i], b = p[i + hd / 2];
            p[i] = (float)(a * cs - b * sn);
            p[i + hd / 2] = (float)(b * cs + a * sn);
        }
    }
}

/* Each head attends to positions first..pos: all of them, or with a sliding
 * window W (Mistral) the last W, as transformers' mask kv > q - W. */
static void attention(sp_cpu *c, int l, int pos) {
    const sp_model_config *cfg = c->model->cfg;
    const int hd = cfg->head_dim, H = cfg->num_attention_heads, KV = cfg->num_key_value_heads;
    const int first = cfg->sliding_window > 0 && pos + 1 > cfg->sliding_window ? pos + 1 - cfg->sliding_window : 0;
    const int kvd = KV * hd;
    const float *kc = c->k_cache + (size_t)l * c->max_seq * kvd, *vc = c->v_cache + (size_t)l * c->max_seq * kvd;
    const double scale = 1.0 / sqrt((double)hd);
    for (int h = 0; h < H; ++h) {
        const int kvh = h / (H / KV);
        const float *q = c->q + (size_t)h * hd;
        double mx = -INFINITY, sum = 0;
        for (int t = first; t <= pos; ++t) {
            const float *k = kc + (size_t)t * kvd + (size_t)kvh * hd;
            double s = 0;
            for (int i = 0; i < hd; ++i) s += (double)q[i] * k[i];
            c->att[t] = (float)(s * scale);
            if (c->att[t] > mx) mx = c->att[t];
        }
        for (int t = first; t <= pos; ++t) sum += exp(c->att[t] - mx);
        float *out = c->att_out + (size_t)h * hd;
        for (int i = 0; i < hd; ++i) {
            double acc = 0;
            for (int t = first; t <= pos; ++t) acc += exp(c->att[t] - mx) / sum * vc[(size_t)t * kvd + (size_t)kvh * hd + i];
            out[i] = (float)acc;
        }
    }
}

/* y += b (a 1-D tensor), through the scratch row. */
static void add_bias(float *y, const sp_tensor *b, float *row) {
    sp_tensor_row(b, 0, row);
    for (int64_t i = 0; i < b->shape[0]; ++i) y[i] += row[i];
}

static double dot_row(const sp_tensor *W, int64_t r, const float *x, float *row) {
    sp_tensor_row(W, r, row);
    double acc = 0;
    for (int64_t i = 0; i < W->shape[1]; ++i) acc += (double)row[i] * x[i];
    return acc;
}

static float silu(float v) { return v / (1.0f + expf(-v)); }

/* Marks in c->h which stored neurons this token uses; returns how many. */
static int choose_neurons(sp_cpu *c, int l, unsigned char *use) {
    const sp_model_config *cfg = c->model->cfg;
    const sp_layer *L = &c->model->layers[l];
    const int f = cfg->intermediate_size;
    int n = 0;
    if (c->mode != SP_MLP_DENSE && c->mode != SP_MLP_THRESHOLD && L->router) {
        const int E = cfg->lte.n_experts, g = cfg->lte.expert_size;
        unsigned char *act = c->last_active + (size_t)l * c->decisions_stride;
        memset(use, 0, (size_t)f);
        for (int e = 0; e < E; ++e) {
            const double s = dot_row(L->router, e, c->xb, c->row);
            act[e] = 1.0 / (1.0 + exp(-s)) > cfg->lte.threshold;
            for (int j = 0; act[e] && j < g; ++j) {
                const int pos = e * g + j;
                use[L->neuron_of ? L->neuron_of[pos] : pos] = 1;
                ++n;
            }
        }
        return n;
    }
    if (c->mode == SP_MLP_THRESHOLD) {
        unsigned char *act = c->last_active + (size_t)l * c->decisions_stride;
        for (int i = 0; i < f; ++i) {
            c->gate[i] = (float)dot_row(L->gate, i, c->xb, c->row);
            use[i] = act[i] = fabsf(silu(c->gate[i])) > c->thresholds[l];
            n += use[i];
        }
        return n;
    }
    memset(use, 1, (size_t)f);
    return f;
}

/* y[0 .. rows of down) = the MLP of c->xb (rows: hidden_size, or SliceGPT's mlp_out). */
static sprig_status mlp(sp_cpu *c, int l, float *y) {
    const sp_model_config *cfg = c->model->cfg;
    const sp_layer *L = &c->model->layers[l];
    const int f = cfg->intermediate_size, d = (int)L->down->shape[0];
    unsigned char *use = malloc((size_t)f);
    SP_CHECK_ALLOC(use);
    const int n = choose_neurons(c, l, use);
    c->mlp_active += n;
    c->mlp_total += f;
    for (int i = 0; i < f; ++i) {
        if (!use[i]) {
            c->h[i] = 0;
            continue;
        }
        const float g = c->mode == SP_MLP_THRESHOLD ? c->gate[i] : (float)dot_row(L->gate, i, c->xb, c->row);
        if (c->record) /* calibration: |silu(gate)| of every neuron, per layer */
            c->record[((size_t)l * c->record_n + c->record_t) * f + i] = fabsf(silu(g));
        c->h[i] = silu(g) * (float)dot_row(L->up, i, c->xb, c->row);
    }
    for (int r = 0; r < d; ++r) {  /* y = W_down h over the neurons in use only */
        sp_tensor_row(L->down, r, c->row);
        double acc = 0;
        for (int i = 0; i < f; ++i)
            if (use[i]) acc += (double)c->row[i] * c->h[i];
        y[r] = (float)acc;
    }
    free(use);
    return SPRIG_OK;
}

/* q/k/v of the normed input c->xb, RoPE, this position into the KV cache, and
 * attention over positions 0..pos: the heads' output in c->att_out. */
static void attention_block(sp_cpu *c, int l, int pos) {
    const sp_model_config *cfg = c->model->cfg;
    const sp_layer *L = &c->model->layers[l];
    const int hd = cfg->head_dim, kvd = cfg->num_key_value_heads * hd;
    sp_matvec(L->q, c->xb, c->q);
    sp_matvec(L->k, c->xb, c->k);
    sp_matvec(L->v, c->xb, c->v);
    if (L->q_bias) { /* Qwen2 */
        add_bias(c->q, L->q_bias, c->row);
        add_bias(c->k, L->k_bias, c->row);
        add_bias(c->v, L->v_bias, c->row);
    }
    rope(c->q, cfg->num_attention_heads, hd, pos, c->inv_freq);
    rope(c->k, cfg->num_key_value_heads, hd, pos, c->inv_freq);
    const size_t at = ((size_t)l * c->max_seq + pos) * kvd;
    memcpy(c->k_cache + at, c->k, sizeof(float) * kvd);
    memcpy(c->v_cache + at, c->v, sizeof(float) * kvd);
    attention(c, l, pos);
}

/* SliceGPT's RMSN: out = x * rsqrt(sum(x²) / D + eps) over n <= D values, with
 * D the ORIGINAL hidden size (the deleted dimensions count as zeros) and no
 * weight (SliceGPT folded it into the linears that follow). */
static void rmsnorm_weightless(float *out, const float *x, int n, int D, double eps) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / D + eps));
    for (int i = 0; i < n; ++i) out[i] = x[i] * scale;
}

/* x @ Q for a shortcut stored [in][out] (SliceGPT's orientation, not nn.Linear's):
 * out[j] = Σ_i x[i] Q[i][j], reading Q row by row, accumulated in double. */
static void shortcut(sp_cpu *c, const sp_tensor *Q, const float *x, float *out) {
    const int64_t in = Q->shape[0], n = Q->shape[1];
    double *acc = c->shortcut_acc;
    for (int64_t j = 0; j < n; ++j) acc[j] = 0;
    for (int64_t i = 0; i < in; ++i) {
        sp_tensor_row(Q, i, c->row);
        for (int64_t j = 0; j < n; ++j) acc[j] += (double)x[i] * c->row[j];
    }
    for (int64_t j = 0; j < n; ++j) out[j] = (float)acc[j];
}

/* A SliceGPT layer stack on the embedding in c->x (width embedding_dimensions):
 *   h = x @ attn_shortcut_Q + o(attn(rmsn(x))),  x' = h @ mlp_shortcut_Q + mlp(rmsn(h)). */
static sprig_status forward_sliced(sp_cpu *c, int pos) {
    const sp_model *m = c->model;
    const sp_model_config *cfg = m->cfg;
    const sp_slice_config *s = &cfg->slice;
    const int D = cfg->hidden_size;
    for (int l = 0; l < cfg->num_hidden_layers; ++l) {
        const sp_layer *L = &m->layers[l];
        rmsnorm_weightless(c->xb, c->x, s->attn_in[l], D, s->norm_eps);
        attention_block(c, l, pos);
        sp_matvec(L->o, c->att_out, c->xb);
        shortcut(c, L->attn_shortcut, c->x, c->shortcut_out);
        for (int i = 0; i < s->attn_out[l]; ++i) c->x[i] = c->shortcut_out[i] + c->xb[i];
        rmsnorm_weightless(c->xb, c->x, s->mlp_in[l], D, s->norm_eps);
        float *y = c->att_out;  /* free again: reuse as the MLP output */
        SP_TRY(mlp(c, l, y));
        shortcut(c, L->mlp_shortcut, c->x, c->shortcut_out);
        for (int i = 0; i < s->mlp_out[l]; ++i) c->x[i] = c->shortcut_out[i] + y[i];
    }
    rmsnorm_weightless(c->xb, c->x, s->lm_head_width, D, s->norm_eps);
    sp_matvec(m->lm_head, c->xb, c->logits);
    return SPRIG_OK;
}

sprig_status sp_cpu_forward(sp_cpu *c, int token, int pos, const float **logits) {
    const sp_model *m = c->model;
    const sp_model_config *cfg = m->cfg;
    const int d = cfg->hidden_size;
    if (token < 0 || token >= cfg->vocab_size)
        return sp_fail(SPRIG_E_INVALID, "token %d is outside the vocabulary (0..%d)", token, cfg->vocab_size - 1);
    if (pos < 0 || pos >= c->max_seq)
        return sp_fail(SPRIG_E_INVALID, "position %d is beyond the context of %d tokens", pos, c->max_seq);
    sp_tensor_row(m->embed, token, c->x);
    if (cfg->slice.enabled) {
        SP_TRY(forward_sliced(c, pos));
        *logits = c->logits;
        return SPRIG_OK;
    }
    for (int l = 0; l < cfg->num_hidden_layers; ++l) {
        const sp_layer *L = &m->layers[l];
        rmsnorm(c->xb, c->x, L->attn_norm, c->row, d, cfg->rms_norm_eps);
        attention_block(c, l, pos);
        sp_matvec(L->o, c->att_out, c->xb);
        for (int i = 0; i < d; ++i) c->x[i] += c->xb[i];
        rmsnorm(c->xb, c->x, L->mlp_norm, c->row, d, cfg->rms_norm_eps);
        float *y = c->att_out;  /* free again: reuse as the MLP output */
        SP_TRY(mlp(c, l, y));
        for (int i = 0; i < d; ++i) c->x[i] += y[i];
    }
    rmsnorm(c->xb, c->x, m->final_norm, c->row, d, cfg->rms_norm_eps);
    sp_matvec(m->lm_head, c->xb, c->logits);
    *logits = c->logits;
    return SPRIG_OK;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

sprig_status sp_cpu_calibrate(sp_cpu *c, const int *tokens, int n, double sparsity) {
    const sp_model_config *cfg = c->model->cfg;
    if (sparsity < 0 || sparsity >= 1) return sp_fail(SPRIG_E_INVALID, "sparsity %g is outside [0, 1)", sparsity);
    if (n < 1 || n > c->max_seq) return sp_fail(SPRIG_E_INVALID, "calibration needs 1..%d tokens", c->max_seq);
    const int L = cfg->num_hidden_layers, f = cfg->intermediate_size;
    c->record = malloc(sizeof(float) * (size_t)L * n * f);
    SP_CHECK_ALLOC(c->record);
    c->record_n = n;
    c->mode = SP_MLP_DENSE;
    const float *logits;
    sprig_status s = SPRIG_OK;
    for (int t = 0; s == SPRIG_OK && t < n; ++t) {
        c->record_t = t;
        s = sp_cpu_forward(c, tokens[t], t, &logits);
    }
    for (int l = 0; s == SPRIG_OK && l < L; ++l) {
        float *v = c->record + (size_t)l * n * f;
        qsort(v, (size_t)n * f, sizeof *v, cmp_float);
        const size_t at = (size_t)(sparsity * ((double)n * f));
        c->thresholds[l] = at == 0 ? -1.0f : v[at - 1]; /* keep values strictly above */
    }
    free(c->record);
    c->record = NULL;
    c->mlp_active = c->mlp_total = 0;
    if (s == SPRIG_OK) c->mode = SP_MLP_THRESHOLD;
    return s;
}

sprig_status sp_cpu_set_thresholds(sp_cpu *c, const float *thresholds) {
    memcpy(c->thresholds, thresholds, sizeof(float) * (size_t)c->model->cfg->num_hidden_layers);
    c->mode = SP_MLP_THRESHOLD;
    c->mlp_active = c->mlp_total = 0;
    return SPRIG_OK;
}

double sp_cpu_mlp_sparsity(const sp_cpu *c) {
    return c->mlp_total > 0 ? 1.0 - c->mlp_active / c->mlp_total : 0.0;
}

const unsigned char *sp_cpu_decisions(const sp_cpu *c, int l) {
    return l >= 0 && l < c->model->cfg->num_hidden_layers ? c->last_active + (size_t)l * c->decisions_stride : NULL;
}
