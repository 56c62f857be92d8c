/* Interface of gen/: a family's own reference, for families whose spec
 * computes its outputs in Lua (spec field `reference`, verify kind "lua"):
 * small elementwise kernels that need no C reference to be tuned and checked.
 * The tuner calls it with the host values of every input argument. */
#ifndef SP_GEN_REFERENCE_H
#define SP_GEN_REFERENCE_H

#include <stddef.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* Runs reference(req, p, inputs) of req's family (req->params resolved as a
 * render would): inputs are n_in arrays named in_names (as the kernel names
 * its arguments), in_counts values each; the outputs named out_names are
 * written to out_vals (out_counts values each, as the plan declares them).
 * SPRIG_E_INVALID when the family has no Lua reference or returns an output
 * of another size; Lua errors are SPRIG_E_INTERNAL with the message. */
sprig_status sp_gen_reference(sprig_gen *gen, const sprig_request *req, int n_in, const char *const *in_names,
                              const float *const *in_vals, const size_t *in_counts, int n_out,
                              const char *const *out_names, double *const *out_vals, const size_t *out_counts);

#pragma GCC visibility pop
#endif
