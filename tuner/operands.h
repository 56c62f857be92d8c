/* The operands the tuner and the bench give kernels, by the roles their
 * arguments declare (sprig_arg.role; docs/kernel-abi.md "Roles"): seeded
 * random values rounded to the dtype, so a problem's operands depend only on
 * its shape and the seed, with device copies for rotation. Internal to tuner/
 * (measure.c, bench.c).
 *
 * MLP roles (their shapes follow from d, f, g and the batch):
 *   w_gate, w_up [f][d] and w_router [E][d]: uniform in +-1/sqrt(d);
 *   w_down [d][f]: +-1/sqrt(f); w_down_t = its transpose [f][d];
 *   w_gate_up [E][2][g][d]: w_gate and w_up interleaved per expert;
 *   x [B][d]: uniform in +-1.
 * Generic roles, shaped by the declaration alone (what a new family uses):
 *   weight [rows][cols]: +-1/sqrt(fan_in, else cols); activation [count]: +-1.
 * Weights (roles w_* and weight) get up to SP_OPS_MAX_SETS device copies, so
 * that a timed sequence reading copy i % n of each can exceed the L2 cache;
 * everything else one copy. */
#ifndef SP_OPERANDS_H
#define SP_OPERANDS_H

#include <stddef.h>
#include <stdint.h>

#include "sp_exec.h"
#include "sprig.h"

#define SP_OPS_MAX_SETS 64

/* splitmix64 / xorshift64*: well-mixed seeds per (seed, a, b, c). */
typedef struct sp_rng {
    uint64_t s;
} sp_rng;
sp_rng sp_rng_make(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
uint64_t sp_rng_next(sp_rng *r);
double sp_rng_uniform(sp_rng *r); /* [-1, 1) */

typedef struct sp_operands sp_operands;

/* One host operand: the bits uploaded (16-bit types: the dtype's; f32: floats)
 * and their values as floats (what a reference reads). Owned by the store. */
typedef struct sp_operand {
    const void *bits;
    const float *vals;
    size_t count, bytes;
} sp_operand;

/* exec borrowed (must outlive the store). */
sprig_status sp_operands_open(sp_exec *e, uint64_t seed, sp_operands **out);
void sp_operands_close(sp_operands *o);

/* Makes the problem (d, f, g, dtype, batch) current; operands of another
 * problem are freed when what they depend on changed (weights: d, f, g,
 * dtype; x: the batch too). */
sprig_status sp_operands_set(sp_operands *o, int d, int f, int g, int bf16, int batch);

/* Whether the store has data for an input argument of this role and type. */
int sp_operands_knows(const sprig_arg *a);
/* The host operand of an input argument (role, type, count as declared). */
sprig_status sp_operands_host(sp_operands *o, const sprig_arg *a, sp_operand *out);
/* Whether the argument is a weight (rotated over copies). */
int sp_operands_is_weight(const sprig_arg *a);
/* Device copy `set` of an input argument (0 for anything but weights), made
 * (uploaded) on first use. */
sprig_status sp_operands_device(sp_operands *o, const sprig_arg *a, int set, sp_dptr *out);

/* How many rotation sets make n_sets * bytes exceed twice the L2 cache, at
 * least min_sets, at most SP_OPS_MAX_SETS and max_bytes in all. */
int sp_operands_rotation(const sp_exec *e, size_t bytes_per_set, int min_sets, size_t max_bytes);

#endif
