/* The tuner's operands by role (see operands.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operands.h"
#include "sp_error.h"
#include "sp_reference.h"

/* ---- random numbers ---------------------------------------------------------------- */

static uint64_t rng_mix(uint64_t a, uint64_t b) {
    uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

sp_rng sp_rng_make(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    sp_rng r = {rng_mix(rng_mix(rng_mix(seed, a), b), c)};
    if (!r.s) r.s = 1;
    return r;
}

uint64_t sp_rng_next(sp_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

double sp_rng_uniform(sp_rng *r) { return 2.0 * ((double)(sp_rng_next(r) >> 11) * 0x1p-53) - 1.0; }

/* ---- the store ---------------------------------------------------------------------- */

/* One operand: its identity, host data and device copies. */
typedef struct ops_entry {
    char role[24], type[4];
    size_t rows, cols;
    int fan_in;
    int problem;              /* 1: an MLP role (freed when the problem changes) */
    int batch_dependent;      /* 1: freed when the batch changes */
    void *bits;
    float *vals;
    size_t count, bytes;
    sp_dptr dev[SP_OPS_MAX_SETS];
    int n_dev;
} ops_entry;

struct sp_operands {
    sp_exec *e;
    uint64_t seed;
    int d, f, g, bf16, batch;
    ops_entry *items;
    size_t n, cap;
};

static void entry_free(sp_operands *o, ops_entry *x) {
    for (int i = 0; i < x->n_dev; ++i) sp_exec_free(o->e, x->dev[i]);
    free(x->bits);
    free(x->vals);
    memset(x, 0, sizeof *x);
}

sprig_status sp_operands_open(sp_exec *e, uint64_t seed, sp_operands **out) {
    *out = NULL;
    sp_operands *o = calloc(1, sizeof *o);
    SP_CHECK_ALLOC(o);
    o->e = e, o->seed = seed;
    *out = o;
    return SPRIG_OK;
}

void sp_operands_close(sp_operands *o) {
    if (!o) return;
    for (size_t i = 0; i < o->n; ++i) entry_free(o, &o->items[i]);
    free(o->items);
    free(o);
}

/* Drops the entries for which drop(entry) holds, keeping the order of the rest. */
static void drop_where(sp_operands *o, int problem, int batch) {
    size_t k = 0;
    for (size_t i = 0; i < o->n; ++i) {
        ops_entry *x = &o->items[i];
        if ((problem && x->problem) || (batch && x->batch_dependent)) entry_free(o, x);
        else o->items[k++] = *x;
    }
    o->n = k;
}

sprig_status sp_operands_set(sp_operands *o, int d, int f, int g, int bf16, int batch) {
    if (d <= 0 || f <= 0 || g <= 0 || f % g || batch < 1) return sp_fail(SPRIG_E_INVALID, "operands: bad shape");
    const int problem = d != o->d || f != o->f || g != o->g || bf16 != o->bf16;
    drop_where(o, problem, batch != o->batch);
    o->d = d, o->f = f, o->g = g, o->bf16 = bf16, o->batch = batch;
    return SPRIG_OK;
}

/* The generator of a role: its rows, cols and scale, and its rng stream. */
typedef struct ops_recipe {
    size_t rows, cols;
    double scale;
    uint64_t stream, key;
    int problem, batch_dependent;
    const char *derive;       /* "": drawn; else how it is packed from w_gate/w_up/w_down */
} ops_recipe;

static int is_mlp_weight(const char *role) {
    return !strcmp(role, "w_gate") || !strcmp(role, "w_up") || !strcmp(role, "w_down") ||
           !strcmp(role, "w_down_t") || !strcmp(role, "w_gate_up") || !strcmp(role, "w_router");
}

int sp_operands_is_weight(const sprig_arg *a) { return is_mlp_weight(a->role) || !strcmp(a->role, "weight"); }

int sp_operands_knows(const sprig_arg *a) {
    const int sixteen = !strcmp(a->type, "T"), f32 = !strcmp(a->type, "f32");
    if (is_mlp_weight(a->role) || !strcmp(a->role, "x")) return sixteen;
    if (!strcmp(a->role, "weight") || !strcmp(a->role, "activation")) return sixteen || f32;
    return 0;
}

/* The recipe of an input argument under the current problem; SPRIG_E_INVALID
 * when its declared count disagrees with what the role means. */
static sprig_status recipe_of(const sp_operands *o, const sprig_arg *a, ops_recipe *r) {
    memset(r, 0, sizeof *r);
    r->derive = "";
    const size_t d = (size_t)o->d, f = (size_t)o->f, E = f / (size_t)o->g, B = (size_t)o->batch;
    const uint64_t shape = (uint64_t)d << 32 | (uint64_t)f;
    const char *role = a->role;
    r->problem = 1;
    if (!strcmp(role, "w_gate") || !strcmp(role, "w_up")) {
        *r = (ops_recipe){f, d, 1.0 / sqrt((double)d), !strcmp(role, "w_gate") ? 1 : 8, shape, 1, 0, ""};
    } else if (!strcmp(role, "w_down")) {
        *r = (ops_recipe){d, f, 1.0 / sqrt((double)f), 9, shape, 1, 0, ""};
    } else if (!strcmp(role, "w_down_t")) {
        *r = (ops_recipe){f, d, 0, 0, 0, 1, 0, "transpose"};
    } else if (!strcmp(role, "w_gate_up")) {
        *r = (ops_recipe){2 * f, d, 0, 0, 0, 1, 0, "interleave"};
    } else if (!strcmp(role, "w_router")) {
        *r = (ops_recipe){E, d, 1.0 / sqrt((double)d), 2, (uint64_t)d << 32 | E, 1, 0, ""};
    } else if (!strcmp(role, "x")) {
        *r = (ops_recipe){B, d, 1.0, 3, (uint64_t)d << 32 | B, 1, 1, ""};
    } else if (!strcmp(role, "weight")) {
        const int fan = a->fan_in > 0 ? a->fan_in : (int)a->cols;
        *r = (ops_recipe){a->rows, a->cols, 1.0 / sqrt((double)(fan > 0 ? fan : 1)), 6,
                          (uint64_t)a->rows << 32 | a->cols, 0, 0, ""};
    } else if (!strcmp(role, "activation")) {
        *r = (ops_recipe){a->rows, a->cols, 1.0, 7, (uint64_t)a->count, 0, 0, ""};
    } else {
        return sp_fail(SPRIG_E_INVALID, "argument '%s': the tuner has no operand for role '%s'", a->name, role);
    }
    if (r->rows * r->cols != a->count)
        return sp_fail(SPRIG_E_INVALID, "argument '%s' (role %s) declares %zu elements; the role means %zu x %zu",
                       a->name, role, a->count, r->rows, r->cols);
    return SPRIG_OK;
}

static ops_entry *find(sp_operands *o, const sprig_arg *a, const ops_recipe *r) {
    for (size_t i = 0; i < o->n; ++i) {
        ops_entry *x = &o->items[i];
        if (!strcmp(x->role, a->role) && !strcmp(x->type, a->type) && x->rows == r->rows && x->cols == r->cols &&
            x->fan_in == a->fan_in)
            return x;
    }
    return NULL;
}

/* n values uniform in +-scale: floats and the bits uploaded (16-bit: rounded to the dtype). */
static sprig_status draw(const sp_operands *o, const ops_recipe *r, int sixteen, ops_entry *x) {
    const size_t n = r->rows * r->cols;
    x->count = n, x->bytes = n * (sixteen ? 2 : 4);
    x->bits = malloc(x->bytes ? x->bytes : 1);
    x->vals = malloc(sizeof(float) * (n ? n : 1));
    if (!x->bits || !x->vals) return sp_fail(SPRIG_E_NOMEM, "out of host memory for %zu operands", n);
    sp_rng g = sp_rng_make(o->seed, r->stream, r->key, (uint64_t)o->bf16);
    for (size_t i = 0; i < n; ++i) {
        const float v = (float)(r->scale * sp_rng_uniform(&g));
        if (sixteen) {
            const uint16_t b = sp_ref_to_bits(o->bf16, v);
            ((uint16_t *)x->bits)[i] = b;
            x->vals[i] = sp_ref_from_bits(o->bf16, b);
        } else {
            ((float *)x->bits)[i] = x->vals[i] = v;
        }
    }
    return SPRIG_OK;
}

static sprig_status host_of_role(sp_operands *o, const char *role, const char *type, ops_entry **out);

/* The packed forms, from the logical weights they are made of. */
static sprig_status derive(sp_operands *o, const ops_recipe *r, ops_entry *x) {
    x->count = r->rows * r->cols, x->bytes = 2 * x->count;
    x->bits = malloc(x->bytes);
    x->vals = malloc(sizeof(float) * x->count);
    if (!x->bits || !x->vals) return sp_fail(SPRIG_E_NOMEM, "out of host memory for %zu operands", x->count);
    ops_entry *src = NULL; /* each pointer is used before the next lookup, which may move the entries */
    if (!strcmp(r->derive, "transpose")) {
        SP_TRY(host_of_role(o, "w_down", "T", &src));
        sp_ref_transpose(src->bits, x->bits, o->d, o->f, 2);
    } else {
        SP_TRY(host_of_role(o, "w_gate", "T", &src));
        const void *gate = src->bits; /* the bits themselves never move */
        SP_TRY(host_of_role(o, "w_up", "T", &src));
        sp_ref_interleave_gate_up(gate, src->bits, x->bits, o->f, o->d, o->g, 2);
    }
    for (size_t i = 0; i < x->count; ++i) x->vals[i] = sp_ref_from_bits(o->bf16, ((const uint16_t *)x->bits)[i]);
    return SPRIG_OK;
}

/* Finds or builds the entry of a (declared) argument. */
static sprig_status entry_of(sp_operands *o, const sprig_arg *a, ops_entry **out) {
    if (!sp_operands_knows(a))
        return sp_fail(SPRIG_E_INVALID, "argument '%s': the tuner has no %s operand for role '%s'", a->name, a->type,
                       a->role);
    ops_recipe r;
    SP_TRY(recipe_of(o, a, &r));
    ops_entry *x = find(o, a, &r);
    if (x) return *out = x, SPRIG_OK;
    ops_entry built = {0};
    snprintf(built.role, sizeof built.role, "%s", a->role);
    snprintf(built.type, sizeof built.type, "%s", a->type);
    built.rows = r.rows, built.cols = r.cols, built.fan_in = a->fan_in;
    built.problem = r.problem, built.batch_dependent = r.batch_dependent;
    sprig_status s = r.derive[0] ? derive(o, &r, &built) : draw(o, &r, !strcmp(a->type, "T"), &built);
    if (s == SPRIG_OK && o->n == o->cap) { /* after derive(), which may have added entries itself */
        const size_t cap = o->cap ? 2 * o->cap : 16;
        ops_entry *grown = realloc(o->items, sizeof *grown * cap);
        if (grown) o->items = grown, o->cap = cap;
        else s = sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    if (s != SPRIG_OK) {
        entry_free(o, &built);
        return s;
    }
    o->items[o->n] = built;
    *out = &o->items[o->n++];
    return SPRIG_OK;
}

/* A logical MLP weight by role (for the packed forms and the references). */
static sprig_status host_of_role(sp_operands *o, const char *role, const char *type, ops_entry **out) {
    sprig_arg a = {0};
    snprintf(a.name, sizeof a.name, "%s", role);
    snprintf(a.role, sizeof a.role, "%s", role);
    snprintf(a.type, sizeof a.type, "%s", type);
    ops_recipe r;
    const size_t d = (size_t)o->d, f = (size_t)o->f;
    a.count = !strcmp(role, "w_router") ? f / (size_t)o->g * d : !strcmp(role, "x") ? (size_t)o->batch * d : f * d;
    SP_TRY(recipe_of(o, &a, &r));
    a.rows = r.rows, a.cols = r.cols;
    return entry_of(o, &a, out);
}

sprig_status sp_operands_host(sp_operands *o, const sprig_arg *a, sp_operand *out) {
    ops_entry *x = NULL;
    SP_TRY(entry_of(o, a, &x));
    *out = (sp_operand){x->bits, x->vals, x->count, x->bytes};
    return SPRIG_OK;
}

sprig_status sp_operands_device(sp_operands *o, const sprig_arg *a, int set, sp_dptr *out) {
    ops_entry *x = NULL;
    SP_TRY(entry_of(o, a, &x));
    if (!sp_operands_is_weight(a)) set = 0;
    if (set < 0 || set >= SP_OPS_MAX_SETS) return sp_fail(SPRIG_E_INVALID, "rotation set %d is out of range", set);
    for (; x->n_dev <= set; ++x->n_dev) {
        sp_dptr p = 0;
        SP_TRY(sp_exec_alloc(o->e, &p, x->bytes ? x->bytes : 16));
        x->dev[x->n_dev] = p;
        SP_TRY(sp_exec_upload(o->e, p, x->bits, x->bytes));
    }
    *out = x->dev[set];
    return SPRIG_OK;
}

int sp_operands_rotation(const sp_exec *e, size_t bytes_per_set, int min_sets, size_t max_bytes) {
    size_t want = bytes_per_set ? (2 * e->l2_bytes + bytes_per_set) / bytes_per_set : 1;
    if (want < (size_t)min_sets) want = (size_t)min_sets;
    if (want > SP_OPS_MAX_SETS) want = SP_OPS_MAX_SETS;
    while (want > 1 && want * bytes_per_set > max_bytes) --want;
    return (int)want;
}
