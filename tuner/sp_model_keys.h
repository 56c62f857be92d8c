/* The tuning keys of a whole model folder: every kernel the GPU backend's
 * decode step (backend/gpu_backend.c, backend/gpu_mlp.c) looks up in the
 * tuning database, at the model's own widths, SliceGPT-sliced ones included,
 * keyed as tuner/runtime_tuning.c looks them up (the convention of
 * sp_mlp_keys.h), so a tuned model is served by exact entries.
 *
 * What the decode step asks for, per layer l (a_in, a_out, m_out: the layer's
 * widths, all hidden_size when unsliced; qd = heads * head_dim,
 * qkv_rows = (heads + 2 kv_heads) * head_dim):
 *   dense_gemv op=up   qkv_proj                  d = a_in,      f = qkv_rows
 *                      o_proj (unsliced)         d = qd,        f = hidden_size
 *                      o_proj+attn_shortcut      d = a_in + qd, f = a_out   (sliced: one fused GEMV)
 *                      mlp_shortcut (sliced)     d = a_out,     f = m_out   (run with accumulate=1,
 *                                                keyed op=up: the tuner does not choose accumulate)
 *                      lm_head (once)            d = head width, f = vocab rounded up to 8
 *   the dense MLP, sparsity 0, g = the LTE expert size (1 without LTE):
 *     gather_upgate all_active=1  d = a_out, f = intermediate_size
 *     gather_down   all_active=1  d = m_out, f = intermediate_size
 *   the routed MLP, sparsity > 0:
 *     with LTE routers (g = expert size): router score=sigmoid (d = a_out),
 *       gather_upgate, gather_down all_active=0
 *     without (threshold mode, g = 1): gather_upgate, gather_down all_active=0
 *       (its router, score=silu_abs, is not tuned)
 * rmsnorm and attention_decode are not tuned. Layers of equal widths share
 * keys; a key used in several places lists them all (`uses`). */
#ifndef SP_MODEL_KEYS_H
#define SP_MODEL_KEYS_H

#include <stddef.h>

#include "sp_model_config.h"
#include "sp_tune.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* Reads dir/config.json and the folder's SliceGPT slicing (sp_slice_load)
 * into *cfg, without opening the weights. No such folder, or no config.json:
 * SPRIG_E_IO naming the path; a malformed config or slicing: SPRIG_E_FORMAT
 * (a width that is not a multiple of 8 names its layer and value). */
sprig_status sp_model_keys_config(const char *dir, sp_model_config *cfg);

typedef struct sp_model_key_request {
    const sp_model_config *cfg;                /* borrowed, slicing filled (sp_model_keys_config) */
    const char *const *dtypes;                 /* "fp16", "bf16"; NULL: fp16 */
    int n_dtypes;
    const int *batches;                        /* NULL: 1 (decode) */
    int n_batches;
    const double *sparsities;                  /* percent inactive, 0 <= s < 100; NULL: 0, plus
                                                  50, 75, 90 when the model has LTE routers */
    int n_sparsities;
    const char *const *families;               /* NULL: every family above */
    int n_families;
} sp_model_key_request;

typedef struct sp_model_keys {
    sp_tune_key *keys;             /* owned, [n]; strings point into the struct's own storage */
    char **uses;                   /* owned, [n]: where the decode step runs key i,
                                      e.g. "qkv_proj layers 0-31" or "mlp_shortcut layer 31, lm_head" */
    size_t n;
    char **skipped;                /* owned, [n_skipped]: "family ...: reason" */
    size_t n_skipped;
    int sliced;                    /* the model is SliceGPT-sliced */
    int routed;                    /* the model has LTE routers */
    int g_dense, g_routed;         /* the expert sizes of the dense and routed MLP keys */
    char *storage;                 /* private */
} sp_model_keys;

/* Builds the distinct keys in order (dtype, batch, sparsity, family, first
 * use), asking each family's tuning space whether it can serve the key: one
 * it cannot (an empty space, e.g. a batch too large for every candidate) is
 * skipped with the family's reason. A shape the generator rejects outright
 * (a width that is not a multiple of 8, an unsupported expert size) means the
 * GPU backend cannot run the model: SPRIG_E_INVALID naming the layer, the
 * use and the widths. An unknown family, or one the decode step does not
 * run (fused_mlp, gather_gemm, rmsnorm): SPRIG_E_INVALID. A request that
 * leaves no key is not an error (n == 0, skipped says why when asked for
 * families). The caller frees with sp_model_keys_free. */
sprig_status sp_model_keys_build(sprig_gen *gen, const sp_model_key_request *req, sp_model_keys *out);
void sp_model_keys_free(sp_model_keys *k);

#pragma GCC visibility pop
#endif
