/* The runtime's kernel parameters from the tuning databases (see
 * sp_runtime_tuning.h): request -> tuning-key variant -> lookup -> an answer
 * the backend can run, recorded for the summary. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tuner_internal.h"
#include "sp_error.h"
#include "sp_mlp_keys.h"
#include "sp_runtime_tuning.h"
#include "sp_space.h"

struct sp_runtime_tuning {
    sprig_gen *gen;               /* owned: the families' spaces and templates */
    sp_db_set set;                /* owned: the database files */
    sp_gpu_id gpu;
    char dirs[8400];              /* the folders consulted, for messages */
    char *notes;                  /* owned: skipped files, lookup errors ("" if none) */
    int lookups;
    sp_rt_choice *choices;        /* owned, [n] */
    size_t n, cap;
};

const char *sp_rt_source_name(sp_rt_source s) {
    static const char *const names[SP_RT_N_SOURCES] = {"exact",   "same_gpu_nearest_shape", "same_arch", "generic_default",
                                                       "untuned", "unusable",               "error"};
    return s >= 0 && s < SP_RT_N_SOURCES ? names[s] : "unknown";
}

/* ---- small helpers -------------------------------------------------------------- */

static void rt_note(sp_runtime_tuning *t, const char *text) { sp_notes_append(&t->notes, text); }

/* The value of key in "k=v,k=v" (spaces around items ignored); 1 when present. */
static int rt_param(const char *params, const char *key, char *out, size_t cap) {
    const size_t klen = strlen(key);
    for (const char *p = params ? params : ""; *p;) {
        while (*p == ' ' || *p == ',') ++p;
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = len - klen - 1;
            while (vlen && p[klen + 1 + vlen - 1] == ' ') --vlen;
            snprintf(out, cap, "%.*s", (int)vlen, p + klen + 1);
            return 1;
        }
        p += len;
    }
    return 0;
}

/* The first item k=v of constraints that params (completed by defaults) does
 * not satisfy, written to what; 1 when every item is satisfied. */
static int rt_satisfies(const char *params, const char *defaults, const char *constraints, char *what, size_t cap) {
    char item[128], key[64], want[64], got[64];
    for (const char *p = constraints ? constraints : ""; *p;) {
        while (*p == ' ' || *p == ',') ++p;
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        p += len;
        char *eq = strchr(item, '=');
        if (!eq) continue;
        snprintf(key, sizeof key, "%.*s", (int)(eq - item), item);
        snprintf(want, sizeof want, "%s", eq + 1);
        if (!rt_param(params, key, got, sizeof got) && !rt_param(defaults, key, got, sizeof got)) got[0] = '\0';
        if (strcmp(got, want) != 0) {
            if (what) snprintf(what, cap, "%s=%s where the runtime needs %s", key, got[0] ? got : "(unset)", item);
            return 0;
        }
    }
    return 1;
}

/* ---- opening -------------------------------------------------------------------- */

static sprig_status rt_add_dir(sp_runtime_tuning *t, const char *dir) {
    size_t at = strlen(t->dirs);
    snprintf(t->dirs + at, sizeof t->dirs - at, "%s%s", at ? "; " : "", dir);
    return sp_db_set_add_dir(&t->set, dir);
}

sprig_status sp_runtime_tuning_open(const sp_exec *e, const char *db_dir, const char *defaults_dir,
                                    sp_runtime_tuning **out) {
    if (!out) return sp_fail(SPRIG_E_INVALID, "sp_runtime_tuning_open: out is NULL");
    *out = NULL;
    if (!e) return sp_fail(SPRIG_E_INVALID, "sp_runtime_tuning_open: no executor");
    sp_runtime_tuning *t = calloc(1, sizeof *t);
    SP_CHECK_ALLOC(t);
    sp_db_set_init(&t->set);
    snprintf(t->gpu.name, sizeof t->gpu.name, "%.127s", e->device);
    t->gpu.cc_major = e->cc_major, t->gpu.cc_minor = e->cc_minor, t->gpu.sm_count = e->sm_count;
    sprig_status s = sprig_gen_open(&t->gen, NULL);
    char dir[4096];
    if (s == SPRIG_OK) {
        if (sp_db_dir(db_dir && *db_dir ? db_dir : NULL, dir, sizeof dir) == SPRIG_OK) {
            s = rt_add_dir(t, dir);
        } else {
            char note[1024];
            snprintf(note, sizeof note, "no user tuning database folder: %s", sprig_last_error());
            rt_note(t, note);
        }
    }
    if (s == SPRIG_OK && defaults_dir && *defaults_dir) s = rt_add_dir(t, defaults_dir);
    if (s == SPRIG_OK && t->set.notes && *t->set.notes) rt_note(t, t->set.notes);
    if (s != SPRIG_OK) {
        sp_runtime_tuning_close(t);
        return s;
    }
    *out = t;
    return SPRIG_OK;
}

void sp_runtime_tuning_close(sp_runtime_tuning *t) {
    if (!t) return;
    sp_db_set_free(&t->set);
    sprig_gen_close(t->gen);
    free(t->notes);
    free(t->choices);
    free(t);
}

sp_tuning_hook sp_runtime_tuning_hook(sp_runtime_tuning *t) {
    sp_tuning_hook h = {sp_runtime_tuning_choose, t};
    return h;
}

/* ---- answering one request ---------------------------------------------------- */

/* The variant of the convention the request resolves to (its fixed params
 * applied to the family's defaults, compared with each variant's fixed
 * params), and that variant's fixed params. 0 with c->source/explain set when
 * there is none or it fails. */
static int rt_variant(sp_runtime_tuning *t, const sprig_request *req, double sparsity, int *v, char *conv_fixed,
                      size_t conv_cap, sp_rt_choice *c) {
    const int n = sp_mlp_fixed(t->gen, req->family, sparsity, 0, NULL, 0);
    if (n == 0) {
        c->source = SP_RT_UNTUNED;
        snprintf(c->explain, sizeof c->explain, "the tuner does not tune %s at sparsity %g: family defaults",
                 req->family, sparsity);
        return 0;
    }
    sprig_request rq = {req->family, req->d, req->f, req->dtype, 1, req->g, req->params};
    char *resolved = NULL, variants[256] = "";
    if (sp_space_defaults(t->gen, &rq, &resolved, NULL) != SPRIG_OK) {
        c->source = SP_RT_ERROR;
        snprintf(c->explain, sizeof c->explain, "resolving the request's params: %s", sprig_last_error());
        return 0;
    }
    int found = 0;
    for (int i = 0; i < n && !found; ++i) {
        char fixed[64];
        sp_mlp_fixed(t->gen, req->family, sparsity, i, fixed, sizeof fixed);
        if (rt_satisfies(resolved, NULL, fixed, NULL, 0)) {
            *v = i, found = 1;
            snprintf(conv_fixed, conv_cap, "%s", fixed);
        }
        size_t at = strlen(variants);
        snprintf(variants + at, sizeof variants - at, "%s%s", at ? ", " : "", fixed);
    }
    free(resolved);
    if (!found) {
        c->source = SP_RT_UNTUNED;
        snprintf(c->explain, sizeof c->explain,
                 "%s with %s is none of the variants the tuner tunes at sparsity %g (%s): family defaults",
                 req->family, req->params && *req->params ? req->params : "its defaults", sparsity, variants);
    }
    return found;
}

/* What the runtime fixes for this request: its fixed params (the backend
 * fixes everything its weight packing depends on, e.g. gather_upgate's
 * interleave=0 and gather_down's layout). */
static void rt_constraints(const sprig_request *req, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", req->params ? req->params : "");
}

/* The items of constraints on parameters the tuner chose (the dimensions of
 * the space it searched, with the convention's fixed params): only those can
 * disagree with a tuned answer. The others (dense_gemv accumulate=1, a
 * parameter the tuner skips) are set by the merge whatever was tuned. On a
 * failure to build the space, every item counts. */
static void rt_tuned_constraints(sp_runtime_tuning *t, const sprig_request *req, const char *conv_fixed,
                                 const char *constraints, char *out, size_t cap) {
    sprig_request rq = {req->family, req->d, req->f, req->dtype, 1, req->g, conv_fixed};
    sp_space *space = NULL;
    if (sp_space_build(t->gen, &rq, &space) != SPRIG_OK) {
        snprintf(out, cap, "%s", constraints);
        return;
    }
    size_t at = 0;
    out[0] = '\0';
    for (const char *p = constraints; *p;) {
        const char *end = strchr(p, ','), *eq = strchr(p, '=');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        const size_t klen = eq && eq < p + len ? (size_t)(eq - p) : len;
        int dim = 0;
        for (int i = 0; i < space->n_dims && !dim; ++i)
            dim = strlen(space->dims[i].name) == klen && !strncmp(space->dims[i].name, p, klen);
        if (dim && at < cap) at += (size_t)snprintf(out + at, cap - at, "%s%.*s", at ? "," : "", (int)len, p);
        p = end ? end + 1 : p + len;
    }
    sp_space_free(space);
}

static void rt_append(sp_rt_choice *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rt_append(sp_rt_choice *c, const char *fmt, ...) {
    size_t at = strlen(c->explain);
    va_list ap;
    va_start(ap, fmt);
    if (at < sizeof c->explain) vsnprintf(c->explain + at, sizeof c->explain - at, fmt, ap);
    va_end(ap);
}

/* The params to use from a lookup hit: the winner when it agrees with what the
 * runtime fixes on every parameter the tuner chose, else the entry's fastest
 * verified candidate that does and is valid here. 0 when neither exists. */
static int rt_pick(sp_runtime_tuning *t, const sprig_request *req, const char *conv_fixed, const char *constraints,
                   const sp_lookup_result *r, char *out, size_t cap, sp_rt_choice *c) {
    char tuned[256], what[256], *defaults = NULL;
    sprig_request rq = {req->family, req->d, req->f, req->dtype, 1, req->g, NULL};
    if (sp_space_defaults(t->gen, &rq, &defaults, NULL) != SPRIG_OK) {
        rt_append(c, "; the family's defaults failed: %s", sprig_last_error());
        return 0;
    }
    int ok = rt_satisfies(r->params, defaults, constraints, what, sizeof what);
    if (!ok) { /* the space is built only when something disagrees */
        rt_tuned_constraints(t, req, conv_fixed, constraints, tuned, sizeof tuned);
        ok = rt_satisfies(r->params, defaults, tuned, what, sizeof what);
    }
    if (ok) snprintf(out, cap, "%s", r->params);
    const sp_trial *best = NULL;
    for (size_t i = 0; !ok && r->entry && i < r->entry->n_trials; ++i) {
        const sp_trial *tr = &r->entry->trials[i];
        if (tr->m.verdict != SP_VERDICT_OK || !rt_satisfies(tr->params, defaults, tuned, NULL, 0)) continue;
        if (best && sp_trial_median_us(tr) >= sp_trial_median_us(best)) continue;
        if (sp_space_check(t->gen, &rq, tr->params) == SPRIG_OK) best = tr;
    }
    free(defaults);
    if (ok) return 1;
    if (best) {
        rt_append(c, "; the winner has %s; using the fastest measured candidate that fits (%.2f us against the "
                  "winner's %.2f us)", what, sp_trial_median_us(best), r->entry->best.median_us);
        snprintf(out, cap, "%s", best->params);
        return 1;
    }
    rt_append(c, "; not used: the winner has %s and no measured candidate fits: family defaults", what);
    return 0;
}

/* Renders merged params for the exact request, as the backend will. */
static int rt_renders(sp_runtime_tuning *t, const sprig_request *req, const char *params, sp_rt_choice *c) {
    sprig_request rq = {req->family, req->d, req->f, req->dtype, 1, req->g, params};
    sprig_plan *plan = NULL;
    if (sprig_gen_render(t->gen, &rq, &plan) == SPRIG_OK) {
        sprig_plan_free(plan);
        return 1;
    }
    rt_append(c, "; not used: does not render for this request (%s): family defaults", sprig_last_error());
    return 0;
}

static void rt_answer(sp_runtime_tuning *t, const sprig_request *req, double sparsity, sp_rt_choice *c) {
    int v = 0;
    char conv_fixed[64];
    if (!rt_variant(t, req, sparsity, &v, conv_fixed, sizeof conv_fixed, c)) return;
    sp_lookup_result r;
    ++t->lookups;
    if (sp_mlp_lookup(t->gen, &t->set, &t->gpu, req->family, v, req->d, req->f, req->dtype, 1, req->g, sparsity,
                      &r) != SPRIG_OK) {
        c->source = SP_RT_ERROR;
        snprintf(c->explain, sizeof c->explain, "lookup failed: %s", sprig_last_error());
        char note[1400];
        snprintf(note, sizeof note, "tuning lookup for %s d=%d f=%d %s g=%d (%s): %s; family defaults", req->family,
                 req->d, req->f, req->dtype, req->g, req->params, sprig_last_error());
        rt_note(t, note);
        return;
    }
    c->source = (sp_rt_source)r.source;
    snprintf(c->explain, sizeof c->explain, "%s", r.explain);
    if (r.db && r.db->path) snprintf(c->db, sizeof c->db, "%s", r.db->path);
    if (r.source == SP_LOOKUP_GENERIC_DEFAULT) return;
    /* the backend merges its fixed params over the answer; the runtime's own go in here */
    char constraints[256], chosen[512], merged[sizeof c->params];
    rt_constraints(req, constraints, sizeof constraints);
    if (!rt_pick(t, req, conv_fixed, constraints, &r, chosen, sizeof chosen, c) ||
        sp_tuning_merge_params(constraints, chosen, merged, sizeof merged) != SPRIG_OK || !rt_renders(t, req, merged, c)) {
        c->source = SP_RT_UNUSABLE;
        return;
    }
    snprintf(c->params, sizeof c->params, "%s", merged);
    c->used = 1;
}

static int rt_same_request(const sp_rt_choice *c, const sprig_request *req, double sparsity) {
    return !strcmp(c->family, req->family) && c->d == req->d && c->f == req->f && c->g == req->g &&
           !strcmp(c->dtype, req->dtype) && !strcmp(c->fixed, req->params ? req->params : "") &&
           c->sparsity == sparsity;
}

/* The recorded answer for the request, answering it first if new; NULL when out of memory. */
static const sp_rt_choice *rt_choice_for(sp_runtime_tuning *t, const sprig_request *req, double sparsity) {
    for (size_t i = 0; i < t->n; ++i)
        if (rt_same_request(&t->choices[i], req, sparsity)) return &t->choices[i];
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        sp_rt_choice *grown = realloc(t->choices, cap * sizeof *grown);
        if (!grown) return NULL;
        t->choices = grown, t->cap = cap;
    }
    sp_rt_choice *c = &t->choices[t->n];
    memset(c, 0, sizeof *c);
    snprintf(c->family, sizeof c->family, "%s", req->family);
    c->d = req->d, c->f = req->f, c->g = req->g, c->sparsity = sparsity;
    snprintf(c->dtype, sizeof c->dtype, "%s", req->dtype);
    snprintf(c->fixed, sizeof c->fixed, "%s", req->params ? req->params : "");
    rt_answer(t, req, sparsity, c);
    ++t->n;
    return c;
}

int sp_runtime_tuning_choose(void *ctx, const sprig_request *req, double sparsity, char *buf, size_t cap, char *why,
                             size_t why_cap) {
    sp_runtime_tuning *t = ctx;
    if (why && why_cap) why[0] = '\0';
    if (!t || !req || !req->family || !req->dtype || !buf || !cap) return 0;
    const sp_rt_choice *c = rt_choice_for(t, req, sparsity);
    if (!c) return 0;
    if (why && why_cap) snprintf(why, why_cap, "%s: %s", sp_rt_source_name(c->source), c->explain);
    if (!c->used || strlen(c->params) >= cap) return 0;
    snprintf(buf, cap, "%s", c->params);
    return 1;
}

/* ---- reporting ------------------------------------------------------------------- */

size_t sp_runtime_tuning_n_files(const sp_runtime_tuning *t) { return t ? t->set.n : 0; }
const char *sp_runtime_tuning_notes(const sp_runtime_tuning *t) { return t && t->notes ? t->notes : ""; }
int sp_runtime_tuning_lookups(const sp_runtime_tuning *t) { return t ? t->lookups : 0; }
size_t sp_runtime_tuning_count(const sp_runtime_tuning *t) { return t ? t->n : 0; }
const sp_rt_choice *sp_runtime_tuning_choice(const sp_runtime_tuning *t, size_t i) {
    return t && i < t->n ? &t->choices[i] : NULL;
}

int sp_runtime_tuning_count_source(const sp_runtime_tuning *t, sp_rt_source s) {
    int n = 0;
    for (size_t i = 0; t && i < t->n; ++i) n += t->choices[i].source == s;
    return n;
}

static cJSON *rt_choice_json(const sp_rt_choice *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "family", c->family);
    cJSON_AddNumberToObject(o, "d", c->d);
    cJSON_AddNumberToObject(o, "f", c->f);
    cJSON_AddStringToObject(o, "dtype", c->dtype);
    cJSON_AddNumberToObject(o, "g", c->g);
    cJSON_AddStringToObject(o, "fixed", c->fixed);
    cJSON_AddNumberToObject(o, "sparsity", c->sparsity);
    cJSON_AddStringToObject(o, "source", sp_rt_source_name(c->source));
    cJSON_AddBoolToObject(o, "used", c->used);
    cJSON_AddStringToObject(o, "params", c->params);
    cJSON_AddStringToObject(o, "db", c->db);
    cJSON_AddStringToObject(o, "explain", c->explain);
    return o;
}

/* notes as an array of lines */
static cJSON *rt_notes_json(const char *notes) {
    cJSON *a = cJSON_CreateArray();
    for (const char *p = notes; a && p && *p;) {
        const char *end = strchr(p, '\n');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        char *line = malloc(len + 1);
        if (line) {
            memcpy(line, p, len), line[len] = '\0';
            cJSON_AddItemToArray(a, cJSON_CreateString(line));
            free(line);
        }
        p = end ? end + 1 : p + len;
    }
    return a;
}

cJSON *sp_runtime_tuning_summary_json(const sp_runtime_tuning *t) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddBoolToObject(o, "enabled", t != NULL);
    if (!t) return o;
    cJSON *gpu = cJSON_AddObjectToObject(o, "gpu");
    char cc[16];
    snprintf(cc, sizeof cc, "%d.%d", t->gpu.cc_major, t->gpu.cc_minor);
    cJSON_AddStringToObject(gpu, "name", t->gpu.name);
    cJSON_AddStringToObject(gpu, "cc", cc);
    cJSON_AddNumberToObject(gpu, "sms", t->gpu.sm_count);
    cJSON_AddStringToObject(o, "dirs", t->dirs);
    cJSON *files = cJSON_AddArrayToObject(o, "db_files");
    for (size_t i = 0; files && i < t->set.n; ++i) cJSON_AddItemToArray(files, cJSON_CreateString(t->set.dbs[i]->path));
    cJSON_AddItemToObject(o, "notes", rt_notes_json(t->notes));
    cJSON_AddNumberToObject(o, "lookups", t->lookups);
    cJSON *counts = cJSON_AddObjectToObject(o, "counts");
    for (int s = 0; counts && s < SP_RT_N_SOURCES; ++s)
        cJSON_AddNumberToObject(counts, sp_rt_source_name((sp_rt_source)s), sp_runtime_tuning_count_source(t, s));
    cJSON *reqs = cJSON_AddArrayToObject(o, "requests");
    for (size_t i = 0; reqs && i < t->n; ++i) cJSON_AddItemToArray(reqs, rt_choice_json(&t->choices[i]));
    return o;
}

void sp_runtime_tuning_summary_line(const sp_runtime_tuning *t, char *buf, size_t cap) {
    if (!cap) return;
    if (!t) {
        snprintf(buf, cap, "tuning off: every kernel at the backend's defaults");
        return;
    }
    size_t at = (size_t)snprintf(buf, cap, "%zu kernel request%s:", t->n, t->n == 1 ? "" : "s");
    for (int s = 0; s < SP_RT_N_SOURCES && at < cap; ++s) {
        const int n = sp_runtime_tuning_count_source(t, s);
        if (n || s <= SP_RT_UNTUNED) /* the last two only when they happen */
            at += (size_t)snprintf(buf + at, cap - at, "%s %d %s", s ? "," : "", n, sp_rt_source_name(s));
    }
    if (at < cap && t->set.n == 0) at += (size_t)snprintf(buf + at, cap - at, "; no database files in %s", t->dirs);
    for (size_t i = 0; i < t->set.n && at < cap; ++i)
        at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? ", " : "; db files: ", t->set.dbs[i]->path);
}
