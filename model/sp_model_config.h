/* config.json of a Hugging Face LLaMA-family model folder, validated, plus the
 * check that the tensors present match it.
 *
 * sprig's LTE extension to config.json (the LTE authors published no format;
 * this one is sprig's own). An optional top-level object
 *
 *   "lte": {
 *     "expert_size": 32,             g: neurons per expert; must divide intermediate_size
 *     "threshold": 0.5,              tau: expert e is active for a token when
 *                                    sigmoid(x . W_r[e]) > tau; 0 < tau < 1
 *     "layers_with_router": [0, 1]   optional; default: every layer
 *   }
 *
 * and, for each layer N that has a router, tensors in the same safetensors:
 *
 *   model.layers.N.mlp.router.weight        [E, hidden_size], E = intermediate_size / g,
 *                                           a float dtype; no bias
 *   model.layers.N.mlp.expert_permutation   [intermediate_size], I32 or I64, optional.
 *       A permutation p of 0..intermediate_size-1: stored neuron p[i] becomes neuron i,
 *       i.e. the runtime uses gate_proj/up_proj rows p[i] and down_proj column p[i] at
 *       position i, so expert e is neurons p[e*g .. e*g+g-1] of the stored weights.
 *       Absent: the identity (the stored order is already expert-contiguous).
 *
 * Any other key inside "lte" is an error (so a typo cannot silently disable it).
 * Other top-level keys (e.g. "slicegpt", handled elsewhere) are ignored here.
 *
 * SliceGPT-sliced models (see sp_slicegpt.h) carry per-layer widths in `slice`,
 * filled by sp_slice_load from the folder; the tensor check below then expects
 * the sliced shapes, the shortcut matrices, and no norm weights. */
#ifndef SP_MODEL_CONFIG_H
#define SP_MODEL_CONFIG_H

#include <stddef.h>

#include "sp_arch.h"
#include "sp_safetensors.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

#define SP_MAX_LAYERS 1024
#define SP_MAX_EOS 16

/* RoPE scaling comes from "rope_scaling" (transformers < 5) or, when that is
 * absent/empty, "rope_parameters" (transformers >= 5); both are understood. */
typedef enum sp_rope_kind {
    SP_ROPE_NONE = 0,   /* plain RoPE with rope_theta (null, absent or rope_type "default") */
    SP_ROPE_LLAMA3      /* LLaMA-3.1 frequency-dependent scaling */
} sp_rope_kind;

typedef struct sp_rope_scaling {
    sp_rope_kind kind;
    double factor;                          /* > 0 */
    double low_freq_factor;                 /* > 0 */
    double high_freq_factor;                /* > low_freq_factor */
    int original_max_position_embeddings;   /* > 0; default max_position_embeddings */
} sp_rope_scaling;

typedef struct sp_lte_config {
    int enabled;                            /* "lte" present */
    int expert_size;                        /* g */
    int n_experts;                          /* E = intermediate_size / g */
    double threshold;                       /* tau, 0 < tau < 1 */
    unsigned char has_router[SP_MAX_LAYERS];/* per layer, 1 when it has a router */
} sp_lte_config;

/* SliceGPT's per-layer residual widths (its SlicingConfig JSON; see sp_slicegpt.h).
 * Layer l reads x of width attn_in[l], its attention block yields attn_out[l]
 * (= mlp_in[l]), its MLP block mlp_out[l] (= attn_in[l+1]). */
typedef struct sp_slice_config {
    int enabled;                            /* a slicing JSON was found */
    int embedding_dim;                      /* embed_tokens: [vocab, embedding_dim] = attn_in[0] */
    int attn_in[SP_MAX_LAYERS];             /* attention_input_dimensions: q/k/v columns */
    int attn_out[SP_MAX_LAYERS];            /* attention_output_dimensions: o_proj rows */
    int mlp_in[SP_MAX_LAYERS];              /* mlp_input_dimensions: gate/up columns */
    int mlp_out[SP_MAX_LAYERS];             /* mlp_output_dimensions: down_proj rows */
    int lm_head_width;                      /* head_dimension: lm_head columns = mlp_out[last] */
    double norm_eps;                        /* SliceGPT's weightless RMSN: 1e-5 (fixed there) */
    char source[256];                       /* where the widths came from, for messages */
} sp_slice_config;

/* A plain value: no allocations, nothing to free. Field names follow config.json. */
typedef struct sp_model_config {
    sp_arch_kind arch;                      /* from "architectures" (model/sp_arch.h); LLaMA is 0 */
    int sliding_window;                     /* attention sees the last sliding_window positions;
                                               0: all (Mistral's "sliding_window", null = 0) */
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;                  /* 1..SP_MAX_LAYERS */
    int num_attention_heads;
    int num_key_value_heads;                /* default num_attention_heads; divides it */
    int head_dim;                           /* default hidden_size / num_attention_heads; even.
                                               hidden_size % num_attention_heads == 0 always
                                               (transformers' LlamaConfig requires it too) */
    double rms_norm_eps;                    /* > 0 */
    double rope_theta;                      /* rope_scaling/rope_parameters.rope_theta, else the
                                               top-level rope_theta, else 10000 */
    int max_position_embeddings;
    int vocab_size;
    int tie_word_embeddings;                /* default 0 */
    char torch_dtype[16];                   /* "float16", "bfloat16", ... or "" if absent */
    int bos_token_id;                       /* -1 if absent or null */
    int n_eos;                              /* 0..SP_MAX_EOS */
    int eos_token_ids[SP_MAX_EOS];
    sp_rope_scaling rope_scaling;
    sp_lte_config lte;
    sp_slice_config slice;                  /* filled by sp_slice_load, not by the parser */
} sp_model_config;

/* Parses and validates config.json text (json need not be NUL-terminated).
 * label names the file in messages ("path/config.json"). Anything malformed,
 * unsupported or inconsistent: SPRIG_E_FORMAT with the key and the values. */
sprig_status sp_model_config_parse(const char *json, size_t len, const char *label,
                                   sp_model_config *out);

/* Reads `path` (SPRIG_E_IO if unreadable) and parses it. */
sprig_status sp_model_config_load(const char *path, sp_model_config *out);

/* Finds a tensor by name, or NULL: the checker's view of a model's files. */
typedef const sp_tensor *(*sp_tensor_lookup_fn)(const void *ctx, const char *name);

/* Checks every tensor the config implies: present, expected shape, float dtype
 * for weights, and for LTE layers the router shape and (if present) that the
 * expert permutation is an I32/I64 permutation. Extra tensors are ignored.
 * A problem: SPRIG_E_FORMAT naming the tensor, the expected and found shapes. */
sprig_status sp_model_config_check_tensors(const sp_model_config *cfg, sp_tensor_lookup_fn lookup,
                                           const void *ctx);

#pragma GCC visibility pop
#endif
