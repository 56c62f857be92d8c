/* A LLaMA-architecture GGUF file as a model: config from metadata, tensors
 * renamed to Hugging Face's names, dequantized, q/k un-permuted (sp_gguf.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_gguf.h"

struct sp_gguf_model {
    sp_gguf *g;
    size_t n;
    sp_tensor *tensors;    /* sorted by name */
    char **names;          /* [n] owned HF names */
    float **owned;         /* [n] owned data, or NULL where data points into the mapping */
};

int sp_gguf_is_file(const char *path) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    size_t len = strlen(path);
    if (len >= 5 && strcmp(path + len - 5, ".gguf") == 0) return 1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    char magic[4] = {0};
    ssize_t got = read(fd, magic, 4);
    close(fd);
    return got == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/* ---- the config ------------------------------------------------------------------------ */

static sprig_status gm_int(const sp_gguf *g, const char *key, int required, int64_t lo, int64_t hi, int *out) {
    int64_t v = *out;
    SP_TRY(sp_gguf_get_int(g, key, required, lo, hi, &v));
    *out = (int)v;
    return SPRIG_OK;
}

static sprig_status gm_config(const sp_gguf *g, sp_model_config *c) {
    const char *L = sp_gguf_label(g);
    char arch[64];
    SP_TRY(sp_gguf_get_str(g, "general.architecture", 1, arch, sizeof arch));
    if (strcmp(arch, "llama") != 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: general.architecture is '%s'; sprig runs 'llama' GGUF files", L, arch);
    memset(c, 0, sizeof *c);
    const int big = 1 << 24;
    SP_TRY(gm_int(g, "llama.embedding_length", 1, 1, big, &c->hidden_size));
    SP_TRY(gm_int(g, "llama.feed_forward_length", 1, 1, big, &c->intermediate_size));
    SP_TRY(gm_int(g, "llama.block_count", 1, 1, SP_MAX_LAYERS, &c->num_hidden_layers));
    SP_TRY(gm_int(g, "llama.attention.head_count", 1, 1, big, &c->num_attention_heads));
    c->num_key_value_heads = c->num_attention_heads;
    SP_TRY(gm_int(g, "llama.attention.head_count_kv", 0, 1, big, &c->num_key_value_heads));
    c->max_position_embeddings = 2048;
    SP_TRY(gm_int(g, "llama.context_length", 0, 1, big, &c->max_position_embeddings));
    c->rope_theta = 10000.0;
    SP_TRY(sp_gguf_get_double(g, "llama.rope.freq_base", 0, &c->rope_theta));
    SP_TRY(sp_gguf_get_double(g, "llama.attention.layer_norm_rms_epsilon", 1, &c->rms_norm_eps));
    if (c->hidden_size % c->num_attention_heads)
        return sp_fail(SPRIG_E_FORMAT, "%s: llama.embedding_length %d is not a multiple of head_count %d", L,
                       c->hidden_size, c->num_attention_heads);
    if (c->num_attention_heads % c->num_key_value_heads)
        return sp_fail(SPRIG_E_FORMAT, "%s: llama.attention.head_count_kv %d does not divide head_count %d", L,
                       c->num_key_value_heads, c->num_attention_heads);
    c->head_dim = c->hidden_size / c->num_attention_heads;
    SP_TRY(gm_int(g, "llama.attention.key_length", 0, 2, big, &c->head_dim));
    int rot = c->head_dim, vlen = c->head_dim;
    SP_TRY(gm_int(g, "llama.attention.value_length", 0, 1, big, &vlen));
    SP_TRY(gm_int(g, "llama.rope.dimension_count", 0, 1, big, &rot));
    if (c->head_dim % 2 || vlen != c->head_dim || rot != c->head_dim)
        return sp_fail(SPRIG_E_FORMAT, "%s: head size %d, value length %d, RoPE dimensions %d: sprig needs one even "
                       "head size rotated whole", L, c->head_dim, vlen, rot);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return sp_fail(SPRIG_E_FORMAT, "%s: layer_norm_rms_epsilon %g and rope.freq_base %g must be positive", L,
                       c->rms_norm_eps, c->rope_theta);
    char scaling[32] = "none";
    SP_TRY(sp_gguf_get_str(g, "llama.rope.scaling.type", 0, scaling, sizeof scaling));
    if (strcmp(scaling, "none") != 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: llama.rope.scaling.type '%s' is not supported (sprig reads "
                       "unscaled RoPE from GGUF)", L, scaling);
    if (sp_gguf_find_tensor(g, "rope_freqs.weight"))
        return sp_fail(SPRIG_E_FORMAT, "%s: rope_freqs.weight (LLaMA-3.1 RoPE scaling factors) is not supported "
                       "from GGUF", L);
    const sp_gguf_kv *tokens = sp_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (tokens && !(tokens->type == SP_GGUF_ARRAY && tokens->arr_type == SP_GGUF_STRING))
        return sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.ggml.tokens is not an array of strings", L);
    if (tokens && (tokens->n == 0 || tokens->n > (uint64_t)big))
        return sp_fail(SPRIG_E_FORMAT, "%s: tokenizer.ggml.tokens has %" PRIu64 " entries", L, tokens->n);
    if (tokens) c->vocab_size = (int)tokens->n;
    else SP_TRY(gm_int(g, "llama.vocab_size", 1, 1, big, &c->vocab_size));
    c->bos_token_id = -1;
    SP_TRY(gm_int(g, "tokenizer.ggml.bos_token_id", 0, 0, c->vocab_size - 1, &c->bos_token_id));
    int eos = -1;
    SP_TRY(gm_int(g, "tokenizer.ggml.eos_token_id", 0, 0, c->vocab_size - 1, &eos));
    if (eos >= 0) c->eos_token_ids[c->n_eos++] = eos;
    c->tie_word_embeddings = sp_gguf_find_tensor(g, "output.weight") == NULL;
    return SPRIG_OK;
}

sprig_status sp_gguf_config(const char *path, sp_model_config *cfg) {
    sp_gguf *g = NULL;
    SP_TRY(sp_gguf_open(path, &g));
    sprig_status s = gm_config(g, cfg);
    sp_gguf_close(g);
    return s;
}

/* ---- tensor names ------------------------------------------------------------------------ */

static const char *const gm_global[][2] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};
static const char *const gm_layer[][2] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

/* The HF name of GGUF tensor `name` into buf, and which q/k permutation it
 * carries (0 none, 1 q, 2 k); -1 when sprig does not know the name. */
static int gm_hf_name(const char *name, int n_layers, char *buf, size_t cap) {
    for (size_t i = 0; i < sizeof gm_global / sizeof gm_global[0]; ++i)
        if (strcmp(name, gm_global[i][0]) == 0) {
            snprintf(buf, cap, "%s", gm_global[i][1]);
            return 0;
        }
    unsigned layer;
    int used = 0;
    if (sscanf(name, "blk.%u.%n", &layer, &used) != 1 || used == 0 || layer >= (unsigned)n_layers) return -1;
    char digits[16];
    snprintf(digits, sizeof digits, "blk.%u.", layer);
    if (strncmp(name, digits, strlen(digits)) != 0) return -1;  /* "blk.01." or "blk.+1.": not canonical */
    const char *rest = name + used;
    for (size_t i = 0; i < sizeof gm_layer / sizeof gm_layer[0]; ++i)
        if (strcmp(rest, gm_layer[i][0]) == 0) {
            snprintf(buf, cap, "model.layers.%u.%s", layer, gm_layer[i][1]);
            return i == 1 ? 1 : i == 2 ? 2 : 0;
        }
    return -1;
}

/* llama.cpp's convert_hf_to_gguf.py stores q (n_head heads) and k (n_head_kv
 * heads) with each head's rows reordered for its interleaved RoPE:
 * reshape(n_head, 2, hd/2, cols).swapaxes(1, 2), i.e. GGUF row h*hd + 2j + i
 * holds HF row h*hd + i*(hd/2) + j (i in {0, 1}, j < hd/2). Undone here. */
static void gm_unpermute(const float *src, float *dst, int64_t rows, int64_t cols, int n_head) {
    const int64_t hd = rows / n_head, half = hd / 2;
    for (int64_t h = 0; h < n_head; ++h)
        for (int64_t j = 0; j < half; ++j)
            for (int64_t i = 0; i < 2; ++i)
                memcpy(dst + (h * hd + i * half + j) * cols, src + (h * hd + 2 * j + i) * cols,
                       sizeof(float) * (size_t)cols);
}

static sprig_status gm_tensor(sp_gguf_model *m, const sp_model_config *c, const sp_gguf_tensor *gt, size_t k) {
    const char *L = sp_gguf_label(m->g);
    char hf[256];
    const int perm = gm_hf_name(gt->name, c->num_hidden_layers, hf, sizeof hf);
    if (perm < 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' is not one sprig knows in a llama GGUF", L, gt->name);
    if (!sp_gguf_can_dequantize(gt->type))
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has type %s (%" PRIu32 "), which sprig cannot load "
                       "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)", L, gt->name,
                       sp_ggml_type_name(gt->type), gt->type);
    m->names[k] = strdup(hf);
    SP_CHECK_ALLOC(m->names[k]);
    sp_tensor *t = &m->tensors[k];
    t->name = m->names[k];
    t->ndim = gt->n_dims;
    for (int d = 0; d < gt->n_dims; ++d) t->shape[d] = gt->ne[gt->n_dims - 1 - d];
    const int64_t cols = gt->ne[0], rows = gt->n_elems / gt->ne[0];
    if (!perm && (gt->type == SP_GGML_F32 || gt->type == SP_GGML_F16 || gt->type == SP_GGML_BF16)) {
        /* as stored: the runtime reads these dtypes (through memcpy: GGUF aligns, but need not) */
        t->dtype = gt->type == SP_GGML_F32 ? SP_DTYPE_F32 : gt->type == SP_GGML_F16 ? SP_DTYPE_F16 : SP_DTYPE_BF16;
        t->data = gt->data;
        t->nbytes = gt->nbytes;
        return SPRIG_OK;
    }
    if ((uint64_t)gt->n_elems > SIZE_MAX / sizeof(float) / 2)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' is too large to dequantize here", L, gt->name);
    float *out = malloc(sizeof(float) * (size_t)gt->n_elems);
    SP_CHECK_ALLOC(out);
    m->owned[k] = out;
    t->dtype = SP_DTYPE_F32;
    t->data = out;
    t->nbytes = sizeof(float) * (size_t)gt->n_elems;
    if (!perm) return sp_gguf_dequantize(gt->type, gt->data, (size_t)gt->n_elems, out);
    const int n_head = perm == 1 ? c->num_attention_heads : c->num_key_value_heads;
    if (gt->n_dims != 2 || rows != (int64_t)n_head * c->head_dim)
        return sp_fail(SPRIG_E_FORMAT, "%s: tensor '%s' has %" PRId64 " rows, not %d heads x %d", L, gt->name, rows,
                       n_head, c->head_dim);
    float *tmp = malloc(sizeof(float) * (size_t)gt->n_elems);
    SP_CHECK_ALLOC(tmp);
    sprig_status s = sp_gguf_dequantize(gt->type, gt->data, (size_t)gt->n_elems, tmp);
    if (s == SPRIG_OK) gm_unpermute(tmp, out, rows, cols, n_head);
    free(tmp);
    return s;
}

static int gm_cmp_tensor(const void *a, const void *b) {
    return strcmp(((const sp_tensor *)a)->name, ((const sp_tensor *)b)->name);
}

static sprig_status gm_open(sp_gguf_model *m, const char *path, sp_model_config *cfg) {
    SP_TRY(sp_gguf_open(path, &m->g));
    SP_TRY(gm_config(m->g, cfg));
    const size_t n = sp_gguf_n_tensors(m->g);
    m->tensors = calloc(n ? n : 1, sizeof *m->tensors);
    m->names = calloc(n ? n : 1, sizeof *m->names);
    m->owned = calloc(n ? n : 1, sizeof *m->owned);
    SP_CHECK_ALLOC(m->tensors);
    SP_CHECK_ALLOC(m->names);
    SP_CHECK_ALLOC(m->owned);
    for (size_t i = 0; i < n; ++i) {
        m->n = i + 1;
        SP_TRY(gm_tensor(m, cfg, sp_gguf_tensor_at(m->g, i), i));
    }
    /* names are unique: the GGUF names are, and the mapping is one-to-one. The
     * owned buffers stay indexed by file order; only the views are sorted. */
    qsort(m->tensors, n, sizeof *m->tensors, gm_cmp_tensor);
    return SPRIG_OK;
}

sprig_status sp_gguf_model_open(const char *path, sp_model_config *cfg, sp_gguf_model **out) {
    *out = NULL;
    sp_gguf_model *m = calloc(1, sizeof *m);
    SP_CHECK_ALLOC(m);
    sprig_status s = gm_open(m, path, cfg);
    if (s != SPRIG_OK) {
        sp_gguf_model_close(m);
        return s;
    }
    *out = m;
    return SPRIG_OK;
}

void sp_gguf_model_close(sp_gguf_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; ++i) {
        if (m->names) free(m->names[i]);
        if (m->owned) free(m->owned[i]);
    }
    free(m->names);
    free(m->owned);
    free(m->tensors);
    sp_gguf_close(m->g);
    free(m);
}

size_t sp_gguf_model_count(const sp_gguf_model *m) { return m ? m->n : 0; }
const sp_tensor *sp_gguf_model_tensor(const sp_gguf_model *m, size_t i) {
    return m && i < m->n ? &m->tensors[i] : NULL;
}
const sp_gguf *sp_gguf_model_file(const sp_gguf_model *m) { return m ? m->g : NULL; }
