/* A LLaMA-family model opened from a Hugging Face folder: the validated
 * config and, per layer, views of the weights in the mapped safetensors
 * (no copies). LTE routers and expert permutations are optional per layer. */
#ifndef SP_MODEL_H
#define SP_MODEL_H

#include <stdint.h>

#include "sp_model_config.h"
#include "sp_model_files.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* Widths: d = hidden_size, or for a SliceGPT model (cfg->slice.enabled) the
 * layer's sliced widths: q/k/v read attn_in, o writes attn_out, gate/up/router
 * read mlp_in, down writes mlp_out (see sp_slicegpt.h). */
typedef struct sp_layer {
    const sp_tensor *attn_norm;        /* [d]; NULL when sliced (weightless norm) */
    const sp_tensor *q, *k, *v;        /* [heads*hd][d], [kv*hd][d], [kv*hd][d] */
    const sp_tensor *q_bias, *k_bias, *v_bias; /* [heads*hd], [kv*hd], [kv*hd] where the architecture
                                          has them (sp_arch.qkv_bias: Qwen2), else NULL */
    const sp_tensor *o;                /* [d][heads*hd] */
    const sp_tensor *mlp_norm;         /* [d]; NULL when sliced */
    const sp_tensor *gate, *up;        /* [f][d] */
    const sp_tensor *down;             /* [d][f] */
    const sp_tensor *router;           /* [E][d], NULL when the layer has none */
    int32_t *neuron_of;                /* owned, [f]: position i (expert i/g) is stored neuron
                                          neuron_of[i]; NULL = identity */
    const sp_tensor *attn_shortcut;    /* SliceGPT only, else NULL: [attn_in][attn_out], x @ Q */
    const sp_tensor *mlp_shortcut;     /* SliceGPT only, else NULL: [mlp_in][mlp_out] */
} sp_layer;

typedef struct sp_model {
    sp_model_files *files;             /* owned */
    const sp_model_config *cfg;        /* inside files */
    const sp_tensor *embed;            /* [vocab][d] */
    const sp_tensor *final_norm;       /* [d]; NULL when sliced */
    const sp_tensor *lm_head;          /* [vocab][d]; the embedding when tied; sliced: [vocab][head_dimension] */
    sp_layer *layers;                  /* owned, [n_layers] */
} sp_model;

/* Opens and validates the folder. The caller owns *out (sp_model_close). */
sprig_status sp_model_open(const char *dir, sp_model **out);
void sp_model_close(sp_model *m);

/* Row r of a float tensor as floats: its last dimension is the row, the leading
 * dimensions flattened count the rows (a 1-D tensor is one row). */
void sp_tensor_row(const sp_tensor *t, int64_t r, float *out);
/* RoPE inverse frequencies [head_dim/2]: theta^(-2i/hd), with LLaMA-3.1's
 * frequency-dependent scaling when the config asks for it (as transformers). */
void sp_rope_inv_freq(const sp_model_config *cfg, double *inv_freq);
/* y[r] = Σ_c W[r][c] x[c] for r < rows of W (accumulated in double). */
void sp_matvec(const sp_tensor *W, const float *x, float *y);
#pragma GCC visibility pop
#endif
