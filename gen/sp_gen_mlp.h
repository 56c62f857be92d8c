/* Interface of gen/: the MLP's tuning keys and pipelines as the family specs
 * declare them (lua/sprig/mlp.lua; each MLP family's tune.mlp), so that the
 * tuner, the bench and the runtime's lookups keep no family list of their own. */
#ifndef SP_GEN_MLP_H
#define SP_GEN_MLP_H

#include <stddef.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

#define SP_GEN_MAX_NAMES 16
#define SP_GEN_MAX_STAGES 3

typedef struct sp_gen_names {
    int n;
    char name[SP_GEN_MAX_NAMES][64];
} sp_gen_names;

/* The families with MLP keys, in registry order. */
sprig_status sp_gen_mlp_families(sprig_gen *gen, sp_gen_names *out);
/* The fixed params of each of family's key variants at sparsity (percent);
 * n = 0 where it has none (or is no MLP family). */
sprig_status sp_gen_mlp_fixed(sprig_gen *gen, const char *family, double sparsity, sp_gen_names *out);
/* Whether family is tuned by default at this batch (0 for non-MLP families). */
int sp_gen_mlp_default(sprig_gen *gen, const char *family, int batch);

/* The ways sprig bench computes an MLP, each a few stages (family, variant:
 * an index into sp_gen_mlp_fixed at the case's sparsity; extra: params set
 * over the looked-up ones), the router in front of every one when the case
 * is sparse, unless the pipeline routes itself (then it serves sparse cases
 * only). */
typedef struct sp_gen_stage {
    char family[64];
    int variant;
    char extra[64];
} sp_gen_stage;
typedef struct sp_gen_pipeline {
    char name[96];
    int n;
    int routes;
    sp_gen_stage stages[SP_GEN_MAX_STAGES];
} sp_gen_pipeline;
typedef struct sp_gen_pipelines {
    int n;
    sp_gen_pipeline items[8];
    sp_gen_stage router;
} sp_gen_pipelines;
sprig_status sp_gen_mlp_pipelines(sprig_gen *gen, sp_gen_pipelines *out);

#pragma GCC visibility pop
#endif
