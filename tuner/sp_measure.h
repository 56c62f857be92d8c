/* Measuring one tuning candidate on an executor (a GPU through exec/
 * exec_cuda.c, or the CPU emulator in the tests): the sp_tune_measure_fn and
 * sp_tune_prepare_fn that `sprig tune` plugs into sp_tune_run.
 *
 * For a key (family, shape, dtype, batch, g, sparsity, fixed params) the
 * context builds the problem once: weights uniform in ±1/sqrt(K) rounded to
 * the dtype, x uniform in ±1, and for the gather families a random per-token
 * active set of round((1 - sparsity/100) * E) experts (docs/kernel-abi.md
 * routing arrays, built on the host); the float64 references are computed
 * once per key and kept until the key changes. Each candidate is then
 * rendered, compiled and loaded (a compile error is the verdict
 * COMPILE_FAILED, not an error), run once over poisoned outputs and checked
 * (‖out − ref‖/‖ref‖ below the tolerance, no NaN, every output written,
 * nothing written past the end or where the ABI says not to) — WRONG or OK —
 * then timed with sp_exec_time over rotating weight copies that together
 * exceed twice the L2 cache, and checked again after timing (the output of
 * the last timed run must still be right: catches workspaces that are not
 * left zeroed). A candidate whose parameters render the very kernels of an
 * earlier candidate of the same key (parameters a plan does not read, such as
 * batch_tile at batch 1, or splits=0 resolving to what an explicit value
 * gives) is not run again: it gets that candidate's measurement, its note
 * naming it.
 *
 * Families: dense_gemv (op=up|down), router (score=sigmoid|silu_abs; the
 * threshold is set from the float64 scores so that the key's sparsity is
 * inactive), gather_upgate, gather_down, fused_mlp, gather_gemm
 * (stage=upgate|down). The routing for sparsity 0 has every expert active.
 *
 * Errors: a candidate's own failure is SPRIG_OK with the verdict set. A
 * non-OK return stops the tuning run: the GPU context was lost (a kernel
 * faulted), device memory ran out, or timing failed. */
#ifndef SP_MEASURE_H
#define SP_MEASURE_H

#include <stddef.h>
#include <stdint.h>

#include "sp_exec.h"
#include "sp_tune.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_measure_opts {
    int warmup;                /* untimed runs before timing (3) */
    int reps;                  /* timed samples per measurement (30) */
    double tolerance;          /* relative error bound (1e-2) */
    uint64_t seed;             /* operands and routing (1) */
    int min_sets;              /* rotation sets at least (2); more when the weights are smaller than 2x L2 */
    size_t max_rotation_bytes; /* device memory the weight copies may take (4 GiB) */
    int jobs;                  /* prepare: compile threads (0: the CPUs) */
    const char *compile_arch;  /* prepare: compile for this arch (NULL: the executor's when it is a
                                * CUDA executor; under the emulator prepare then does nothing) */
} sp_measure_opts;

void sp_measure_opts_init(sp_measure_opts *o);

typedef struct sp_measure sp_measure;

/* exec and gen are borrowed (must outlive the context); gen renders every
 * candidate, so a template override folder given to sprig_gen_open applies.
 * The caller owns *out (sp_measure_close). */
sprig_status sp_measure_open(sp_measure **out, sp_exec *exec, sprig_gen *gen, const sp_measure_opts *opts);
/* Frees the cached problem and its device buffers. NULL is a no-op. */
void sp_measure_close(sp_measure *m);

/* sp_tune_measure_fn: ctx is the sp_measure. */
sprig_status sp_measure_candidate(void *ctx, const sp_tune_key *key, const char *params, sp_measurement *out);
/* sp_tune_prepare_fn: renders the candidates and compiles them on opts.jobs
 * threads into the cubin cache, so measuring finds them compiled. Failures
 * are left for measuring to report. */
sprig_status sp_measure_prepare(void *ctx, const sp_tune_key *key, const char *const *params, size_t n);

/* Counters, for tests and the CLI's report. */
typedef struct sp_measure_stats {
    long problems_built;       /* keys whose operands and references were built */
    long references_computed;  /* float64 reference outputs computed (one per output kind and key) */
    long measured;             /* sp_measure_candidate calls */
    long compiled_ahead;        /* candidates compiled by prepare */
    long duplicates;           /* candidates whose kernels (source, launches, workspace) an earlier
                                  candidate of the same key already had: answered with its
                                  measurement, nothing run */
} sp_measure_stats;

void sp_measure_get_stats(const sp_measure *m, sp_measure_stats *out);

#pragma GCC visibility pop
#endif
