/* Seeded random operands shared by the tuner's measurements and the bench:
 * a splitmix-derived seed per (seed, a, b, c) and xorshift64* values, so a
 * problem's operands depend only on its shape and the seed. Internal. */
#ifndef SP_OPERANDS_H
#define SP_OPERANDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "sp_error.h"
#include "sp_reference.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_rng {
    uint64_t s;
} sp_rng;

/* splitmix64 step: well-mixed seeds from (seed, a, b, c). */
static inline uint64_t sp_rng_mix(uint64_t a, uint64_t b) {
    uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline sp_rng sp_rng_make(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    sp_rng r = {sp_rng_mix(sp_rng_mix(sp_rng_mix(seed, a), b), c)};
    if (!r.s) r.s = 1;
    return r;
}

static inline uint64_t sp_rng_next(sp_rng *r) { /* xorshift64* */
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-1, 1). */
static inline double sp_rng_uniform(sp_rng *r) { return 2.0 * ((double)(sp_rng_next(r) >> 11) * 0x1p-53) - 1.0; }

/* n values uniform in ±scale rounded to the dtype: *vals (floats a reference
 * reads; may be NULL) and *bits (what is uploaded), both malloc'ed. */
static inline sprig_status sp_rng_fill(sp_rng *r, int bf16, double scale, size_t n, float **vals, uint16_t **bits) {
    *bits = malloc((n ? n : 1) * sizeof **bits);
    if (vals) *vals = malloc((n ? n : 1) * sizeof **vals);
    if (!*bits || (vals && !*vals)) return sp_fail(SPRIG_E_NOMEM, "out of host memory for %zu operands", n);
    for (size_t i = 0; i < n; ++i) {
        uint16_t b = sp_ref_to_bits(bf16, (float)(scale * sp_rng_uniform(r)));
        (*bits)[i] = b;
        if (vals) (*vals)[i] = sp_ref_from_bits(bf16, b);
    }
    return SPRIG_OK;
}

#pragma GCC visibility pop
#endif
