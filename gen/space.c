/* Tuning spaces (see sp_space.h): built by lua/sprig/space.lua or as a C
 * grid; sampling and neighbour walks work on candidate coordinates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "sp_error.h"
#include "gen_internal.h"
#include "sp_space.h"

void sp_space_free(sp_space *s) {
    if (!s) return;
    free(s->family);
    for (int d = 0; d < s->n_dims; ++d) {
        free(s->dims[d].name);
        for (int v = 0; v < s->dims[d].n_values; ++v) free(s->dims[d].values[v]);
        free(s->dims[d].values);
    }
    free(s->dims);
    for (size_t i = 0; i < s->n; ++i) free(s->params[i]);
    free(s->params);
    free(s->coords);
    free(s->codes_sorted);
    free(s->code_index);
    free(s);
}

/* ---- coordinates --------------------------------------------------------------- */

/* Mixed-radix code of coords (first dimension most significant). The raw
 * space is bounded (space.lua MAX_RAW, sp_space_grid's check), so it fits. */
static uint64_t encode(const sp_space *s, const int *coords) {
    uint64_t code = 0;
    for (int d = 0; d < s->n_dims; ++d) code = code * (uint64_t)s->dims[d].n_values + (uint64_t)coords[d];
    return code;
}

/* qsort has no context argument; thread-local keeps concurrent builds apart. */
static _Thread_local const uint64_t *sort_codes;

static int cmp_by_code(const void *a, const void *b) {
    uint64_t x = sort_codes[*(const size_t *)a], y = sort_codes[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* Builds the sorted code index that sp_space_find searches. */
static sprig_status index_codes(sp_space *s) {
    if (s->n == 0) return SPRIG_OK;
    uint64_t *codes = malloc(s->n * sizeof *codes);
    s->code_index = malloc(s->n * sizeof *s->code_index);
    s->codes_sorted = malloc(s->n * sizeof *s->codes_sorted);
    if (!codes || !s->code_index || !s->codes_sorted) {
        free(codes);
        return sp_fail(SPRIG_E_NOMEM, "out of memory indexing a tuning space of %zu candidates", s->n);
    }
    for (size_t i = 0; i < s->n; ++i) {
        codes[i] = encode(s, sp_space_coords(s, i));
        s->code_index[i] = i;
    }
    sort_codes = codes;
    qsort(s->code_index, s->n, sizeof *s->code_index, cmp_by_code);
    sort_codes = NULL;
    for (size_t i = 0; i < s->n; ++i) s->codes_sorted[i] = codes[s->code_index[i]];
    free(codes);
    return SPRIG_OK;
}

sprig_status sp_space_keep(sp_space *s, const size_t *keep, size_t n) {
    if (!s || (n && !keep)) return sp_fail(SPRIG_E_INVALID, "sp_space_keep: NULL argument");
    char *taken = calloc(s->n ? s->n : 1, 1);
    char **params = malloc((n ? n : 1) * sizeof *params);
    int *coords = malloc((n ? n : 1) * (size_t)(s->n_dims ? s->n_dims : 1) * sizeof *coords);
    sprig_status st = !taken || !params || !coords ? sp_fail(SPRIG_E_NOMEM, "out of memory narrowing a tuning space")
                                                   : SPRIG_OK;
    for (size_t i = 0; st == SPRIG_OK && i < n; ++i)
        if (keep[i] >= s->n || taken[keep[i]]++)
            st = sp_fail(SPRIG_E_INVALID, "sp_space_keep: index %zu is out of range or given twice", keep[i]);
    if (st != SPRIG_OK) {
        free(taken), free(params), free(coords);
        return st;
    }
    long def = -1;
    for (size_t i = 0; i < n; ++i) {
        params[i] = s->params[keep[i]];
        memcpy(coords + i * (size_t)s->n_dims, sp_space_coords(s, keep[i]), sizeof *coords * (size_t)s->n_dims);
        if ((long)keep[i] == s->default_index) def = (long)i;
    }
    for (size_t i = 0; i < s->n; ++i)
        if (!taken[i]) free(s->params[i]);
    free(taken), free(s->params), free(s->coords), free(s->codes_sorted), free(s->code_index);
    s->params = params, s->coords = coords, s->n = n, s->default_index = def;
    s->codes_sorted = NULL, s->code_index = NULL;
    return index_codes(s);
}

long sp_space_find(const sp_space *s, const int *coords) {
    for (int d = 0; d < s->n_dims; ++d)
        if (coords[d] < 0 || coords[d] >= s->dims[d].n_values) return -1;
    if (s->n == 0) return -1;
    uint64_t code = encode(s, coords);
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->codes_sorted[mid] < code) lo = mid + 1;
        else hi = mid;
    }
    return lo < s->n && s->codes_sorted[lo] == code ? (long)s->code_index[lo] : -1;
}

size_t sp_space_neighbours(const sp_space *s, size_t i, size_t *out, size_t cap) {
    if (i >= s->n || s->n_dims == 0) return 0;
    int *c = malloc((size_t)s->n_dims * sizeof *c);
    if (!c) return 0;
    memcpy(c, sp_space_coords(s, i), (size_t)s->n_dims * sizeof *c);
    size_t count = 0;
    for (int d = 0; d < s->n_dims; ++d) {
        for (int step = -1; step <= 1; step += 2) {
            int keep = c[d];
            c[d] += step;
            long j = sp_space_find(s, c);
            c[d] = keep;
            if (j < 0) continue;
            if (count < cap) out[count] = (size_t)j;
            ++count;
        }
    }
    free(c);
    return count;
}

/* splitmix64: a tiny, well-mixed generator whose output is the same on every
 * platform, so a seeded sample is reproducible. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

size_t sp_space_sample(const sp_space *s, uint64_t seed, size_t n, size_t *out) {
    if (n > s->n) n = s->n;
    if (n == 0) return 0;
    size_t *perm = malloc(s->n * sizeof *perm);
    if (!perm) return 0;
    for (size_t i = 0; i < s->n; ++i) perm[i] = i;
    uint64_t state = seed;
    /* Partial Fisher-Yates: the first n slots are a uniform sample. The
     * modulo bias is negligible for spaces far below 2^64. */
    for (size_t i = 0; i < n; ++i) {
        size_t j = i + (size_t)(splitmix64(&state) % (uint64_t)(s->n - i));
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        out[i] = perm[i];
    }
    free(perm);
    return n;
}

/* ---- a synthetic grid ---------------------------------------------------------- */

static sprig_status grid_dims(sp_space *s, int n_dims, const char *const *names, const int *n_values,
                              const char *const *const *values) {
    s->n_dims = n_dims;
    s->dims = calloc((size_t)(n_dims ? n_dims : 1), sizeof *s->dims);
    SP_CHECK_ALLOC(s->dims);
    s->raw = 1;
    for (int d = 0; d < n_dims; ++d) {
        if (n_values[d] < 1) return sp_fail(SPRIG_E_INVALID, "tuning space: dimension '%s' has no values", names[d]);
        if (s->raw > (1u << 20) / (size_t)n_values[d])
            return sp_fail(SPRIG_E_INVALID, "tuning space has more than %u combinations", 1u << 20);
        s->raw *= (size_t)n_values[d];
        s->dims[d].name = strdup(names[d]);
        s->dims[d].values = calloc((size_t)n_values[d], sizeof(char *));
        SP_CHECK_ALLOC(s->dims[d].name);
        SP_CHECK_ALLOC(s->dims[d].values);
        s->dims[d].n_values = n_values[d];
        for (int v = 0; v < n_values[d]; ++v) {
            s->dims[d].values[v] = strdup(values[d][v]);
            SP_CHECK_ALLOC(s->dims[d].values[v]);
        }
    }
    return SPRIG_OK;
}

static char *grid_params(const sp_space *s, const char *prefix, const int *c) {
    size_t len = (prefix ? strlen(prefix) : 0) + 2;
    for (int d = 0; d < s->n_dims; ++d) len += strlen(s->dims[d].name) + strlen(s->dims[d].values[c[d]]) + 2;
    char *out = malloc(len);
    if (!out) return NULL;
    size_t at = (size_t)snprintf(out, len, "%s", prefix ? prefix : "");
    for (int d = 0; d < s->n_dims; ++d)
        at += (size_t)snprintf(out + at, len - at, "%s%s=%s", at ? "," : "", s->dims[d].name, s->dims[d].values[c[d]]);
    return out;
}

static sprig_status grid_fill(sp_space *s, const char *prefix, int (*valid)(const int *, void *), void *ctx) {
    s->params = malloc(s->raw * sizeof *s->params);
    s->coords = malloc(s->raw * (size_t)(s->n_dims ? s->n_dims : 1) * sizeof *s->coords);
    int *c = calloc((size_t)(s->n_dims ? s->n_dims : 1), sizeof *c);
    if (!s->params || !s->coords || !c) {
        free(c);
        return sp_fail(SPRIG_E_NOMEM, "out of memory building a tuning space");
    }
    for (size_t r = 0; r < s->raw; ++r) {
        if (!valid || valid(c, ctx)) {
            char *p = grid_params(s, prefix, c);
            if (!p) {
                free(c);
                return sp_fail(SPRIG_E_NOMEM, "out of memory building a tuning space");
            }
            memcpy(s->coords + s->n * (size_t)s->n_dims, c, (size_t)s->n_dims * sizeof *c);
            s->params[s->n++] = p;
        }
        for (int d = s->n_dims - 1; d >= 0; --d) { /* odometer, last dimension fastest */
            if (++c[d] < s->dims[d].n_values) break;
            c[d] = 0;
        }
    }
    free(c);
    return SPRIG_OK;
}

sprig_status sp_space_grid(int n_dims, const char *const *names, const int *n_values,
                           const char *const *const *values, const char *prefix,
                           int (*valid)(const int *coords, void *ctx), void *ctx, sp_space **out) {
    if (!out || n_dims < 0 || (n_dims > 0 && (!names || !n_values || !values)))
        return sp_fail(SPRIG_E_INVALID, "sp_space_grid: bad argument");
    *out = NULL;
    sp_space *s = calloc(1, sizeof *s);
    SP_CHECK_ALLOC(s);
    sprig_status st = grid_dims(s, n_dims, names, n_values, values);
    if (st == SPRIG_OK) st = grid_fill(s, prefix, valid, ctx);
    if (st == SPRIG_OK) st = index_codes(s);
    if (st != SPRIG_OK) {
        sp_space_free(s);
        return st;
    }
    s->default_index = s->n ? 0 : -1;
    *out = s;
    return SPRIG_OK;
}

/* ---- from Lua ------------------------------------------------------------------- */


/* Calls space.<fn>(req, [extra], require) under pcall leaving nres results.
 * A Lua error is the request's fault (bad family, params, shape). */
static sprig_status call_space(sprig_gen *gen, const char *fn, const sprig_request *req, const char *params,
                               const char *extra, int nres) {
    lua_State *L = gen->L;
    SP_TRY(sp_gen_require(gen, "sprig.space"));
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    sp_gen_push_request(L, req, params);
    int nargs = 2;
    if (extra) {
        lua_pushstring(L, extra);
        ++nargs;
    }
    lua_getglobal(L, "sp_require");
    sp_gen_call_begin(gen);
    if (lua_pcall(L, nargs, nres, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        sprig_status st = sp_fail(SPRIG_E_INVALID, "%s", msg ? msg : "(no message)");
        lua_pop(L, 1);
        return st;
    }
    return SPRIG_OK;
}

static char *dup_string_at(lua_State *L, int idx) {
    const char *s = lua_tostring(L, idx);
    return s ? strdup(s) : NULL;
}

static sprig_status read_dims(lua_State *L, int t, sp_space *s) {
    lua_getfield(L, t, "dims");
    int dt = lua_gettop(L);
    s->n_dims = (int)lua_rawlen(L, dt);
    s->dims = calloc((size_t)(s->n_dims ? s->n_dims : 1), sizeof *s->dims);
    SP_CHECK_ALLOC(s->dims);
    for (int d = 0; d < s->n_dims; ++d) {
        lua_rawgeti(L, dt, d + 1);
        lua_getfield(L, -1, "name");
        s->dims[d].name = dup_string_at(L, -1);
        lua_pop(L, 1);
        SP_CHECK_ALLOC(s->dims[d].name);
        lua_getfield(L, -1, "values");
        int nv = (int)lua_rawlen(L, -1);
        s->dims[d].values = calloc((size_t)(nv ? nv : 1), sizeof(char *));
        SP_CHECK_ALLOC(s->dims[d].values);
        s->dims[d].n_values = nv;
        for (int v = 0; v < nv; ++v) {
            lua_rawgeti(L, -1, v + 1);
            s->dims[d].values[v] = dup_string_at(L, -1);
            lua_pop(L, 1);
            SP_CHECK_ALLOC(s->dims[d].values[v]);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return SPRIG_OK;
}

static sprig_status read_candidates(lua_State *L, int t, sp_space *s) {
    lua_getfield(L, t, "candidates");
    int ct = lua_gettop(L);
    size_t n = (size_t)lua_rawlen(L, ct);
    s->params = calloc(n ? n : 1, sizeof *s->params);
    s->coords = calloc((n ? n : 1) * (size_t)(s->n_dims ? s->n_dims : 1), sizeof *s->coords);
    SP_CHECK_ALLOC(s->params);
    SP_CHECK_ALLOC(s->coords);
    for (size_t i = 0; i < n; ++i) {
        lua_rawgeti(L, ct, (lua_Integer)i + 1);
        lua_getfield(L, -1, "params");
        s->params[i] = dup_string_at(L, -1);
        lua_pop(L, 1);
        SP_CHECK_ALLOC(s->params[i]);
        s->n = i + 1;
        lua_getfield(L, -1, "coords");
        for (int d = 0; d < s->n_dims; ++d) {
            lua_rawgeti(L, -1, d + 1);
            s->coords[i * (size_t)s->n_dims + (size_t)d] = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return SPRIG_OK;
}

static sprig_status read_space(lua_State *L, int t, sp_space *s) {
    lua_getfield(L, t, "family");
    s->family = dup_string_at(L, -1);
    lua_pop(L, 1);
    SP_CHECK_ALLOC(s->family);
    lua_getfield(L, t, "raw");
    s->raw = (size_t)lua_tointeger(L, -1);
    lua_getfield(L, t, "default");
    s->default_index = (long)lua_tointeger(L, -1);
    lua_pop(L, 2);
    SP_TRY(read_dims(L, t, s));
    SP_TRY(read_candidates(L, t, s));
    return index_codes(s);
}

sprig_status sp_space_build(sprig_gen *gen, const sprig_request *req, sp_space **out) {
    if (!gen || !req || !out) return sp_fail(SPRIG_E_INVALID, "sp_space_build: NULL argument");
    *out = NULL;
    lua_State *L = gen->L;
    int top = lua_gettop(L);
    sprig_status st = call_space(gen, "build", req, req->params, NULL, 1);
    if (st != SPRIG_OK) {
        lua_settop(L, top);
        return sp_wrap(st, "tuning space of %s", req->family ? req->family : "?");
    }
    sp_space *s = calloc(1, sizeof *s);
    if (!s) {
        lua_settop(L, top);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    st = read_space(L, lua_gettop(L), s);
    lua_settop(L, top);
    if (st != SPRIG_OK) {
        sp_space_free(s);
        return st;
    }
    *out = s;
    return SPRIG_OK;
}

sprig_status sp_space_defaults(sprig_gen *gen, const sprig_request *req, char **out, int *valid_out) {
    if (!gen || !req || !out) return sp_fail(SPRIG_E_INVALID, "sp_space_defaults: NULL argument");
    *out = NULL;
    lua_State *L = gen->L;
    int top = lua_gettop(L);
    SP_TRY(call_space(gen, "defaults", req, req->params, NULL, 2));
    *out = dup_string_at(L, -2);
    if (valid_out) *valid_out = lua_isnil(L, -1);
    lua_settop(L, top);
    SP_CHECK_ALLOC(*out);
    return SPRIG_OK;
}

sprig_status sp_space_check(sprig_gen *gen, const sprig_request *req, const char *params) {
    if (!gen || !req) return sp_fail(SPRIG_E_INVALID, "sp_space_check: NULL argument");
    lua_State *L = gen->L;
    int top = lua_gettop(L);
    SP_TRY(call_space(gen, "valid", req, "", params ? params : "", 2));
    int ok = lua_toboolean(L, -2);
    sprig_status st = ok ? SPRIG_OK
                         : sp_fail(SPRIG_E_INVALID, "%s: %s", req->family ? req->family : "?",
                                   lua_tostring(L, -1) ? lua_tostring(L, -1) : "invalid parameters");
    lua_settop(L, top);
    return st;
}

sprig_status sp_space_template_hash(sprig_gen *gen, const sprig_request *req, const sp_space *space,
                                    uint64_t *out) {
    char *defaults = NULL;
    int valid = 0;
    SP_TRY(sp_space_defaults(gen, req, &defaults, &valid));
    sp_space *built = NULL;
    sprig_request r = *req;
    sprig_status s = SPRIG_OK;
    if (valid) {
        r.params = defaults;
    } else {
        if (!space && (s = sp_space_build(gen, req, &built)) == SPRIG_OK) space = built;
        if (s == SPRIG_OK && space->n == 0)
            s = sp_fail(SPRIG_E_INVALID, "%s: no valid parameters for d=%d f=%d (%s)", req->family, req->d, req->f,
                        req->params ? req->params : "");
        if (s == SPRIG_OK) r.params = space->params[0];
    }
    sprig_plan *plan = NULL;
    if (s == SPRIG_OK) s = sprig_gen_render(gen, &r, &plan);
    if (s == SPRIG_OK) *out = plan->template_hash;
    sprig_plan_free(plan);
    sp_space_free(built);
    free(defaults);
    return s;
}
