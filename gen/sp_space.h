/* Tuning spaces: the candidate parameter strings of one tuning problem, with
 * each candidate's coordinates (index of each varied parameter's value) so the
 * search can sample and walk to neighbours without a Lua state.
 *
 * A family's space comes from Lua (lua/sprig/space.lua, see there for the
 * `tune = {fixed, skip}` spec fields); a synthetic space can be built in C
 * with sp_space_grid (tests, or tuning something that is not a family). */
#ifndef SP_SPACE_H
#define SP_SPACE_H

#include <stddef.h>
#include <stdint.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_space_dim {
    char *name;      /* owned */
    int n_values;
    char **values;   /* owned, [n_values], in declaration order ("adjacent" = index +-1) */
} sp_space_dim;

typedef struct sp_space {
    char *family;          /* owned; NULL for a synthetic space */
    int n_dims;
    sp_space_dim *dims;    /* [n_dims]: the varied parameters */
    size_t n;              /* valid candidates */
    char **params;         /* [n] owned: "k=v,..." complete, ready for sprig_gen_render */
    int *coords;           /* [n * n_dims]: candidate i's value index per dim */
    size_t raw;            /* combinations before the validity filter */
    long default_index;    /* the family's defaults (with fixed params), or -1 */
    /* private: candidates sorted by mixed-radix code, for neighbour lookups */
    uint64_t *codes_sorted;
    size_t *code_index;
} sp_space;

/* The tuning space of req->family for req (d, f, dtype, batch, g); req->params
 * holds the caller's fixed params ("op=down"), which always apply. Bad
 * requests and bad fixed params are SPRIG_E_INVALID with Lua's message. A space
 * with no valid candidate is returned (n == 0), not an error.
 * The caller owns *out (sp_space_free). */
sprig_status sp_space_build(sprig_gen *gen, const sprig_request *req, sp_space **out);

/* A synthetic space: the product of dims (names[i] takes values[i][0..n_values[i])),
 * keeping combinations for which valid(coords, ctx) is nonzero (NULL: all).
 * Each candidate string is `prefix` (may be NULL or "") then "name=value,...".
 * default_index is 0 when there is a candidate. The caller owns *out. */
sprig_status sp_space_grid(int n_dims, const char *const *names, const int *n_values,
                           const char *const *const *values, const char *prefix,
                           int (*valid)(const int *coords, void *ctx), void *ctx, sp_space **out);

void sp_space_free(sp_space *space); /* NULL is a no-op */

/* Narrows the space to candidates keep[0..n) of it, in that order (candidate
 * i becomes keep[i]'s; the rest are dropped): the tuner measures only those
 * its model does not rule out, best predicted first. default_index follows its
 * candidate, or is -1 when that one is dropped. Neighbours are then among the
 * kept candidates only. SPRIG_E_INVALID for an index out of range or repeated. */
sprig_status sp_space_keep(sp_space *space, const size_t *keep, size_t n);

/* Candidate i's coordinates ([n_dims]). */
static inline const int *sp_space_coords(const sp_space *s, size_t i) { return s->coords + i * (size_t)s->n_dims; }

/* Index of the candidate with these coordinates, or -1 if that combination is
 * not a valid candidate (or out of range). */
long sp_space_find(const sp_space *space, const int *coords);

/* Writes up to min(n, space->n) distinct candidate indices, a deterministic
 * function of (space, seed, n), to out; returns how many. */
size_t sp_space_sample(const sp_space *space, uint64_t seed, size_t n, size_t *out);

/* The valid candidates that differ from candidate i in one parameter, moved
 * to an adjacent value of its list (index +-1). Writes up to cap indices to
 * out (dimension order, -1 before +1); returns how many there are (may exceed cap). */
size_t sp_space_neighbours(const sp_space *space, size_t i, size_t *out, size_t cap);

/* The family's defaults for req with req->params (fixed) applied, as the
 * canonical "k=v,..." string (malloc'ed, caller frees). *valid_out, if not
 * NULL, gets 0 when the family's check() rejects that combination. */
sprig_status sp_space_defaults(sprig_gen *gen, const sprig_request *req, char **out, int *valid_out);

/* Whether params is a valid combination for req (req->params is ignored).
 * Returns SPRIG_OK (valid) or SPRIG_E_INVALID with the reason. */
sprig_status sp_space_check(sprig_gen *gen, const sprig_request *req, const char *params);

/* The template hash a tuning key records (sp_db_key.template_hash), one
 * definition for the tuner and every lookup: that of the plan rendered with
 * the family's defaults and req->params (fixed) applied, or, when the family
 * rejects those defaults for this problem, with the space's first candidate.
 * (A plan's hash covers the template files it includes, which can depend on
 * its parameters: gather_down's layout t includes the split-K finalize.)
 * space may be NULL (then built when needed). SPRIG_E_INVALID when the key
 * has no valid parameters at all. */
sprig_status sp_space_template_hash(sprig_gen *gen, const sprig_request *req, const sp_space *space,
                                    uint64_t *out);

#pragma GCC visibility pop
#endif
