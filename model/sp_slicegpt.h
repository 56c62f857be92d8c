/* SliceGPT-sliced LLaMA models (microsoft/TransformerCompression), read
 * without the slicegpt package.
 *
 * What SliceGPT does to a LLaMA (its layernorm_fusion.py and rotate.py): every
 * RMSNorm scale is folded into the linears that read the norm, so the norms
 * become weightless, x * rsqrt(sum(x^2) / D + 1e-5) with D the ORIGINAL
 * hidden size (its RMSN module; eps is fixed at 1e-5 there). The residual
 * stream is rotated by an orthogonal Q at each point and its last dimensions
 * deleted: q/k/v and gate/up lose input columns, o and down lose output rows,
 * heads, head_dim and intermediate_size stay. Each layer gains two shortcut
 * matrices, stored [in, out] (x @ Q, transposed from nn.Linear):
 *
 *   h = x @ attn_shortcut_Q + o_proj(attn(rmsn(x)))
 *   y = h @ mlp_shortcut_Q  + down_proj(mlp(rmsn(h)))
 *
 * The last layer's MLP output and lm_head keep the full width D unless it was
 * sliced with do_slice_head; lm_head is untied (SliceGPT clones it).
 *
 * A sliced model folder for sprig is a Hugging Face folder:
 *   config.json        the ORIGINAL model's config (hidden_size = D), plus the
 *                      slicing, found in this order:
 *                        "slicegpt": { SliceGPT's SlicingConfig object }   inline, or
 *                        "slicegpt": "Llama-2-7b-hf_0.25.json"             a file in the folder, or
 *                        no key: the one file in the folder named as
 *                        run_slicegpt.py names it, <model>_<sparsity>.json
 *                        (several such files: name one with "slicegpt").
 *   model.safetensors  (or shards) SliceGPT's state dict under its own names:
 *     model.embed_tokens.weight               [vocab, embedding_dimensions["0"]]
 *     model.layers.N.self_attn.{q,k,v}_proj.weight  [heads*hd | kv*hd, attention_input_dimensions[N]]
 *     model.layers.N.self_attn.o_proj.weight  [attention_output_dimensions[N], heads*hd]
 *     model.layers.N.attn_shortcut_Q          [attention_input_dimensions[N], attention_output_dimensions[N]]
 *     model.layers.N.mlp.{gate,up}_proj.weight [intermediate, mlp_input_dimensions[N]]
 *     model.layers.N.mlp.down_proj.weight     [mlp_output_dimensions[N], intermediate]
 *     model.layers.N.mlp_shortcut_Q           [mlp_input_dimensions[N], mlp_output_dimensions[N]]
 *     lm_head.weight                          [vocab, head_dimension]
 *   and no norm weights (input_layernorm / post_attention_layernorm /
 *   model.norm: their scales are already folded; present ones are refused).
 *   LTE routers (sp_model_config.h) read the sliced MLP input:
 *     model.layers.N.mlp.router.weight        [E, mlp_input_dimensions[N]]
 *
 * The SlicingConfig JSON (SliceGPT's model_adapter.SlicingConfig.to_json_string):
 *   {"hidden_size": D, "layers_num": L, "do_slice_head": false, "parallel_blocks": false,
 *    "embedding_dimensions": {"0": d}, "attention_input_dimensions": {"0": d, ...},
 *    "attention_output_dimensions": {...}, "mlp_input_dimensions": {...},
 *    "mlp_output_dimensions": {..., "L-1": D}, "head_dimension": D, "const_dimension": null}
 * Per-layer objects are keyed by the layer index as a string. A file with only
 * "const_dimension" (SliceGPT's fallback) means every width is that value, the
 * last MLP output and head D (or the value, with do_slice_head). Unknown keys
 * are refused (SliceGPT's own SlicingConfig(**d) refuses them too);
 * parallel_blocks (Phi-2-style layers) is not a LLaMA layout and is refused.
 *
 * Widths must be multiples of 8 (sprig's kernels need it): SliceGPT's
 * run_slicegpt.py rounds int((1 - sparsity) * D) down to --round-interval,
 * default 8; a file made with round_interval 1 (e.g. 3276 for LLaMA-2-7B at
 * 20%) is refused with the width it should have been (3272). */
#ifndef SP_SLICEGPT_H
#define SP_SLICEGPT_H

#include <stddef.h>

#include "sp_model_config.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

#define SP_SLICE_ROUND 8       /* widths must be multiples of this */
#define SP_SLICE_NORM_EPS 1e-5 /* slicegpt/modules.py RMSN */

/* Parses SlicingConfig JSON text (need not be NUL-terminated) for the model
 * described by cfg (hidden_size, num_hidden_layers) into *out. label names
 * the text in messages. Malformed, inconsistent, or not a multiple of 8:
 * SPRIG_E_FORMAT naming the key and the values. */
sprig_status sp_slice_parse(const char *json, size_t len, const char *label,
                            const sp_model_config *cfg, sp_slice_config *out);

/* Finds the slicing of model folder `dir`, whose config.json was parsed into
 * cfg, in the order listed above, and fills cfg->slice (enabled = 0 when the
 * folder is not sliced). A named file that is missing: SPRIG_E_IO. */
sprig_status sp_slice_load(const char *dir, sp_model_config *cfg);

/* int((1 - sparsity) * hidden) rounded down to a multiple of round_interval,
 * as run_slicegpt.py computes the new embedding dimension. */
int sp_slice_width(int hidden, double sparsity, int round_interval);

/* The slicing SliceGPT's ConstSlicingScheduler(width) produces for cfg
 * (do_slice_head false): every width `width`, the last MLP output and the
 * head hidden_size. */
void sp_slice_const(const sp_model_config *cfg, int width, sp_slice_config *out);

/* The SlicingConfig JSON of s (SliceGPT's key order). The caller frees the
 * returned string; NULL when out of memory. */
char *sp_slice_to_json(const sp_model_config *cfg, const sp_slice_config *s);

#pragma GCC visibility pop
#endif
