/* Interface of backend/: where the GPU backend's kernels get their tuning
 * parameters. The backend only asks; the tuner (tuner/sp_runtime_tuning.h)
 * answers from its databases, so the backend needs nothing of the tuner.
 *
 * choose gets the request (req->params: the parameters the problem fixes,
 * e.g. "op=up" or "all_active=1") and the share of MLP neurons the backend
 * expects to skip (percent; 0 for dense MLPs and for the attention-side
 * kernels); it writes the parameters to use to buf and returns 1, or returns
 * 0 for the executor's defaults. why (may be "") gets one line saying where
 * they came from. Parameters that turn out not to fit the exact problem fall
 * back to the defaults; fixed parameters always win. */
#ifndef SP_TUNING_HOOK_H
#define SP_TUNING_HOOK_H

#include <stddef.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_tuning_hook {
    int (*choose)(void *ctx, const sprig_request *req, double sparsity, char *buf, size_t cap, char *why,
                  size_t why_cap);
    void *ctx;           /* borrowed: must outlive whatever the hook is installed in */
} sp_tuning_hook;

/* The parameters a kernel is rendered with: out = fixed, then every item of
 * tuned whose key fixed does not set (fixed parameters always win).
 * SPRIG_E_INVALID when out would not fit in cap. */
sprig_status sp_tuning_merge_params(const char *fixed, const char *tuned, char *out, size_t cap);

#pragma GCC visibility pop
#endif
