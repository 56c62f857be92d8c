/* The tuning keys of one model's MLP, and the convention by which `sprig
 * tune` stores and `sprig bench` (and the runtime) look up its kernels.
 *
 * The convention is the family specs' (tune.mlp; lua/sprig/mlp.lua reads it
 * through gen/sp_gen_mlp.h); as they declare it today, per batch and
 * sparsity (percent of experts inactive), each family is tuned with these
 * caller-fixed parameters (part of the database key):
 *   dense_gemv      op=up, op=down       sparsity 0 only (the dense baseline)
 *   router          score=sigmoid        sparsity > 0 only (LTE)
 *   gather_upgate   all_active=1 at sparsity 0, all_active=0 above
 *   gather_down     all_active=1 at sparsity 0, all_active=0 above
 *   fused_mlp       all_active=1 at sparsity 0, all_active=0 above
 *   gather_gemm     stage=upgate, stage=down (routing with every expert on at 0)
 * Default families: router, gather_upgate, gather_down, fused_mlp and
 * dense_gemv at every batch, gather_gemm too from batch 8. A key the family
 * cannot serve (fused_mlp above batch 8, gather_gemm with g % 16 != 0, ...)
 * is skipped with the family's reason. */
#ifndef SP_MLP_KEYS_H
#define SP_MLP_KEYS_H

#include <stddef.h>

#include "sp_db.h"
#include "sp_tune.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

#define SP_MLP_MAX_VARIANTS 2

/* The fixed parameters of variant v (0 or 1) of family at sparsity; returns
 * the number of variants the family has there (0: not tuned at that
 * sparsity, e.g. router at 0), writing variant v's string to buf when v is
 * below that number. */
int sp_mlp_fixed(sprig_gen *gen, const char *family, double sparsity, int v, char *buf, size_t cap);

/* Whether family is tuned by default at this batch. */
int sp_mlp_default_family(sprig_gen *gen, const char *family, int batch);

typedef struct sp_mlp_key_request {
    int d, f, g;
    const char *const *dtypes;     /* "fp16", "bf16" */
    int n_dtypes;
    const int *batches;
    int n_batches;
    const double *sparsities;      /* percent inactive, 0 <= s < 100 */
    int n_sparsities;
    const char *const *families;   /* NULL: the defaults per batch */
    int n_families;
} sp_mlp_key_request;

typedef struct sp_mlp_keys {
    sp_tune_key *keys;             /* owned, [n]; strings point into the struct's own storage */
    size_t n;
    char **skipped;                /* owned, [n_skipped]: "family b=.. s=..: reason" */
    size_t n_skipped;
    char *storage;                 /* private */
} sp_mlp_keys;

/* Builds the keys in order (dtype, batch, sparsity, family, variant), asking
 * each family's tuning space whether it can serve the key. SPRIG_E_INVALID
 * for an unknown family name or a bad request; a request that leaves no key
 * is not an error (n == 0, skipped says why). The caller frees with
 * sp_mlp_keys_free. */
sprig_status sp_mlp_keys_build(sprig_gen *gen, const sp_mlp_key_request *req, sp_mlp_keys *out);
void sp_mlp_keys_free(sp_mlp_keys *k);

/* ---- lookup ------------------------------------------------------------------------------ */

/* Finds the params to run family (variant v, as in sp_mlp_fixed) with for
 * this problem: sp_db_lookup over set (exact -> same GPU nearest shape ->
 * same architecture -> generic default), only accepting params the family
 * considers valid for the problem. On success out->params is a complete
 * parameter string ready for sprig_gen_render (the fixed params, plus the
 * tuned ones when found), and out->source / out->explain say where it came
 * from. SPRIG_E_INVALID when the family cannot serve the problem at all. */
sprig_status sp_mlp_lookup(sprig_gen *gen, const sp_db_set *set, const sp_gpu_id *gpu, const char *family, int v,
                           int d, int f, const char *dtype, int batch, int g, double sparsity,
                           sp_lookup_result *out);

#pragma GCC visibility pop
#endif
