/* The tuning search (see sp_search.h). The state is one struct threaded
 * through small phase functions; every measurement goes through measure_one,
 * which owns the budget check, bookkeeping and progress report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tuner_internal.h"
#include "sp_error.h"
#include "sp_search.h"

static const char *const verdict_names[] = {"ok", "wrong", "compile_failed", "launch_failed"};

const char *sp_verdict_name(sp_verdict v) {
    return (unsigned)v < sizeof verdict_names / sizeof verdict_names[0] ? verdict_names[v] : "unknown";
}

int sp_verdict_parse(const char *name, sp_verdict *out) {
    for (unsigned i = 0; name && i < sizeof verdict_names / sizeof verdict_names[0]; ++i)
        if (!strcmp(name, verdict_names[i])) {
            *out = (sp_verdict)i;
            return 1;
        }
    return 0;
}

void sp_search_opts_init(sp_search_opts *o) {
    memset(o, 0, sizeof *o);
    o->exhaustive_limit = 64;
    o->sample = 32;
    o->climbs = 3;
    o->confirm = 3;
    o->seed = 1;
}

double sp_trial_median_us(const sp_trial *t) { return t->confirmed ? t->confirm_median_us : t->m.median_us; }

void sp_search_result_free(sp_search_result *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_trials; ++i) free(r->trials[i].params);
    free(r->trials);
    memset(r, 0, sizeof *r);
    r->winner = -1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct search {
    const sp_space *space;
    const sp_search_opts *o;
    const sp_search_callbacks *cb;
    sp_search_result *r;
    size_t cap;             /* capacity of r->trials */
    long *trial_of;         /* [space->n]: trial index, or -1 if not measured */
    char *expanded;         /* [space->n]: neighbours already measured (hill climbing) */
    long best;              /* trial with the lowest verified median, or -1 */
    double t0;
    int stopped;            /* budget or max_trials reached */
    size_t estimate;        /* progress: total measurements expected */
} search;

static int out_of_budget(search *s) {
    if (s->o->max_trials && s->r->n_trials >= s->o->max_trials) return 1;
    return s->o->budget_s > 0 && now_s() - s->t0 >= s->o->budget_s;
}

static void report(search *s) {
    if (!s->cb->progress) return;
    size_t done = s->r->n_measure_calls;
    if (s->estimate < done) s->estimate = done;
    s->cb->progress(s->cb->ctx, done, s->estimate, s->best >= 0 ? s->r->trials[s->best].m.median_us : -1.0);
}

static void count_verdict(sp_search_result *r, sp_verdict v, int delta) {
    size_t *c = v == SP_VERDICT_OK ? &r->n_ok : v == SP_VERDICT_WRONG ? &r->n_wrong : &r->n_failed;
    *c += (size_t)delta;
}

/* Calls the measure callback with a clean measurement. A verdict of OK with
 * a non-finite or negative time is treated as a failed run: such a number
 * would otherwise win every comparison. */
static sprig_status call_measure(search *s, const char *params, sp_measurement *m) {
    memset(m, 0, sizeof *m);
    m->verdict = SP_VERDICT_LAUNCH_FAILED;
    ++s->r->n_measure_calls;
    sprig_status st = s->cb->measure(s->cb->ctx, params, m);
    if (st != SPRIG_OK) return sp_wrap(st, "measuring %s", params);
    if ((unsigned)m->verdict > SP_VERDICT_LAUNCH_FAILED) m->verdict = SP_VERDICT_LAUNCH_FAILED;
    if (m->verdict == SP_VERDICT_OK && !(isfinite(m->median_us) && m->median_us >= 0)) {
        m->verdict = SP_VERDICT_LAUNCH_FAILED;
        snprintf(m->note, sizeof m->note, "the measurement reported no valid time");
    }
    return SPRIG_OK;
}

/* Measures candidate idx of the space (once). Sets s->stopped instead when
 * the budget is spent. */
static sprig_status measure_one(search *s, size_t idx) {
    if (s->trial_of[idx] >= 0 || s->stopped) return SPRIG_OK;
    if (out_of_budget(s)) {
        s->stopped = 1;
        s->r->budget_hit = 1;
        return SPRIG_OK;
    }
    sp_search_result *r = s->r;
    if (r->n_trials == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        sp_trial *grown = realloc(r->trials, cap * sizeof *grown);
        SP_CHECK_ALLOC(grown);
        r->trials = grown;
        s->cap = cap;
    }
    sp_trial *t = &r->trials[r->n_trials];
    memset(t, 0, sizeof *t);
    t->index = (long)idx;
    t->params = strdup(s->space->params[idx]);
    SP_CHECK_ALLOC(t->params);
    ++r->n_trials; /* recorded before measuring so an aborted search still frees it */
    s->trial_of[idx] = (long)(r->n_trials - 1);
    SP_TRY(call_measure(s, t->params, &t->m));
    count_verdict(r, t->m.verdict, 1);
    if (t->m.verdict == SP_VERDICT_OK && (s->best < 0 || t->m.median_us < r->trials[s->best].m.median_us))
        s->best = (long)(r->n_trials - 1);
    report(s);
    return SPRIG_OK;
}

/* Hands the not-yet-measured candidates of a batch to the prepare callback. */
static sprig_status prepare(search *s, const size_t *idx, size_t n) {
    if (!s->cb->prepare || n == 0) return SPRIG_OK;
    const char **list = malloc(n * sizeof *list);
    SP_CHECK_ALLOC(list);
    size_t k = 0;
    for (size_t i = 0; i < n; ++i)
        if (s->trial_of[idx[i]] < 0) list[k++] = s->space->params[idx[i]];
    sprig_status st = k ? s->cb->prepare(s->cb->ctx, list, k) : SPRIG_OK;
    free(list);
    return st;
}

static sprig_status measure_batch(search *s, const size_t *idx, size_t n) {
    SP_TRY(prepare(s, idx, n));
    for (size_t i = 0; i < n && !s->stopped; ++i) SP_TRY(measure_one(s, idx[i]));
    return SPRIG_OK;
}

static sprig_status run_exhaustive(search *s) {
    size_t n = s->space->n;
    size_t *all = malloc(n * sizeof *all);
    SP_CHECK_ALLOC(all);
    for (size_t i = 0; i < n; ++i) all[i] = i;
    s->estimate = n + (size_t)s->o->confirm;
    sprig_status st = measure_batch(s, all, n);
    free(all);
    return st;
}

/* Random phase: the default candidate, then the next `sample` unmeasured
 * candidates of a seeded permutation; again while nothing has verified. */
static sprig_status run_sample(search *s, const size_t *perm, size_t *cursor) {
    size_t n = s->space->n, want = s->o->sample ? s->o->sample : 1;
    size_t *batch = malloc((want + 1) * sizeof *batch);
    SP_CHECK_ALLOC(batch);
    sprig_status st = SPRIG_OK;
    int first = 1;
    while (st == SPRIG_OK && !s->stopped && *cursor < n && (first || s->r->n_ok == 0)) {
        size_t k = 0;
        if (first && s->space->default_index >= 0) batch[k++] = (size_t)s->space->default_index;
        while (k < want + (first && s->space->default_index >= 0) && *cursor < n) {
            size_t c = perm[(*cursor)++];
            if (s->trial_of[c] < 0 && !(first && (long)c == s->space->default_index)) batch[k++] = c;
        }
        s->estimate = s->r->n_measure_calls + k + (size_t)s->o->confirm;
        st = measure_batch(s, batch, k);
        first = 0;
    }
    free(batch);
    return st;
}

/* One hill climb from trial `start`: measure the neighbours of the current
 * point, move to the best verified one while it improves. */
static sprig_status climb(search *s, long start, size_t *nb, size_t nb_cap) {
    long cur = start;
    while (!s->stopped) {
        size_t idx = (size_t)s->r->trials[cur].index;
        s->expanded[idx] = 1;
        size_t k = sp_space_neighbours(s->space, idx, nb, nb_cap);
        if (k > nb_cap) k = nb_cap;
        s->estimate = s->r->n_measure_calls + k + (size_t)s->o->confirm;
        SP_TRY(measure_batch(s, nb, k));
        long next = cur;
        for (size_t i = 0; i < k; ++i) {
            long t = s->trial_of[nb[i]];
            if (t >= 0 && s->r->trials[t].m.verdict == SP_VERDICT_OK &&
                s->r->trials[t].m.median_us < s->r->trials[next].m.median_us)
                next = t;
        }
        if (next == cur || s->expanded[s->r->trials[next].index]) break;
        cur = next;
    }
    return SPRIG_OK;
}

/* The verified, not yet expanded trial with the lowest median, or -1. */
static long best_unexpanded(search *s) {
    long best = -1;
    for (size_t i = 0; i < s->r->n_trials; ++i) {
        const sp_trial *t = &s->r->trials[i];
        if (t->m.verdict != SP_VERDICT_OK || s->expanded[t->index]) continue;
        if (best < 0 || t->m.median_us < s->r->trials[best].m.median_us) best = (long)i;
    }
    return best;
}

static sprig_status run_pruned(search *s) {
    size_t n = s->space->n;
    size_t *perm = malloc(n * sizeof *perm);
    size_t nb_cap = 2 * (size_t)(s->space->n_dims ? s->space->n_dims : 1);
    size_t *nb = malloc(nb_cap * sizeof *nb);
    sprig_status st = SPRIG_OK;
    if (!perm || !nb) st = sp_fail(SPRIG_E_NOMEM, "out of memory in the tuning search");
    size_t cursor = 0;
    if (st == SPRIG_OK && s->o->ordered)
        for (size_t i = 0; i < n; ++i) perm[i] = i; /* best predicted first */
    else if (st == SPRIG_OK && sp_space_sample(s->space, s->o->seed, n, perm) != n)
        st = sp_fail(SPRIG_E_NOMEM, "out of memory sampling the tuning space");
    if (st == SPRIG_OK) st = run_sample(s, perm, &cursor);
    for (int c = 0; st == SPRIG_OK && c < s->o->climbs && !s->stopped; ++c) {
        long start = best_unexpanded(s);
        if (start < 0) break;
        st = climb(s, start, nb, nb_cap);
    }
    free(perm);
    free(nb);
    return st;
}

/* qsort has no context argument; thread-local keeps concurrent searches apart. */
static _Thread_local const sp_search_result *sort_result;

static int cmp_median(const void *a, const void *b) {
    long i = *(const long *)a, j = *(const long *)b;
    double x = sort_result->trials[i].m.median_us, y = sort_result->trials[j].m.median_us;
    if (x != y) return x < y ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* Re-times the best verified trials until `confirm` of them verify again; a
 * trial that fails its re-run is recorded with that verdict and dropped. */
static sprig_status confirm_top(search *s) {
    sp_search_result *r = s->r;
    long *rank = malloc((r->n_trials ? r->n_trials : 1) * sizeof *rank);
    SP_CHECK_ALLOC(rank);
    size_t k = 0;
    for (size_t i = 0; i < r->n_trials; ++i)
        if (r->trials[i].m.verdict == SP_VERDICT_OK) rank[k++] = (long)i;
    sort_result = r;
    qsort(rank, k, sizeof *rank, cmp_median);
    sort_result = NULL;
    int confirmed = 0;
    sprig_status st = SPRIG_OK;
    for (size_t i = 0; i < k && confirmed < s->o->confirm && st == SPRIG_OK; ++i) {
        sp_trial *t = &r->trials[rank[i]];
        sp_measurement m;
        st = call_measure(s, t->params, &m);
        if (st != SPRIG_OK) break;
        if (m.verdict == SP_VERDICT_OK) {
            t->confirmed = 1;
            t->confirm_median_us = m.median_us;
            ++confirmed;
        } else { /* flaky: the re-run decides, and it is never chosen */
            count_verdict(r, t->m.verdict, -1);
            t->m = m;
            if (!t->m.note[0]) snprintf(t->m.note, sizeof t->m.note, "failed when re-timed");
            count_verdict(r, t->m.verdict, 1);
        }
        report(s);
    }
    free(rank);
    return st;
}

static long pick_winner(const sp_search_result *r, int use_confirmed) {
    long w = -1;
    for (size_t i = 0; i < r->n_trials; ++i) {
        const sp_trial *t = &r->trials[i];
        if (t->m.verdict != SP_VERDICT_OK || (use_confirmed && !t->confirmed)) continue;
        if (w < 0 || sp_trial_median_us(t) < sp_trial_median_us(&r->trials[w])) w = (long)i;
    }
    return w;
}

static sprig_status no_winner(const search *s) {
    const sp_search_result *r = s->r;
    const sp_trial *example = NULL;
    for (size_t i = 0; i < r->n_trials && !example; ++i)
        if (r->trials[i].m.verdict != SP_VERDICT_OK) example = &r->trials[i];
    return sp_fail(SPRIG_E_VERIFY,
                   "no candidate verified: %zu measured, %zu wrong, %zu failed to compile or run%s%s%s%s%s",
                   r->n_trials, r->n_wrong, r->n_failed, r->budget_hit ? " (the time budget ran out)" : "",
                   example ? "; e.g. " : "", example ? example->params : "", example ? ": " : "",
                   example ? (example->m.note[0] ? example->m.note : sp_verdict_name(example->m.verdict)) : "");
}

sprig_status sp_search_run(const sp_space *space, const sp_search_opts *opts, const sp_search_callbacks *cb,
                           sp_search_result *out) {
    if (!out) return sp_fail(SPRIG_E_INVALID, "sp_search_run: out is NULL");
    memset(out, 0, sizeof *out);
    out->winner = -1;
    if (!space || !cb || !cb->measure) return sp_fail(SPRIG_E_INVALID, "sp_search_run: NULL space or measure");
    if (space->n == 0)
        return sp_fail(SPRIG_E_INVALID, "the tuning space%s%s is empty: every combination was rejected",
                       space->family ? " of " : "", space->family ? space->family : "");
    sp_search_opts defaults;
    if (!opts) {
        sp_search_opts_init(&defaults);
        opts = &defaults;
    }
    search s = {.space = space, .o = opts, .cb = cb, .r = out, .best = -1, .t0 = now_s()};
    s.trial_of = malloc(space->n * sizeof *s.trial_of);
    s.expanded = calloc(space->n, 1);
    sprig_status st = SPRIG_OK;
    if (!s.trial_of || !s.expanded) st = sp_fail(SPRIG_E_NOMEM, "out of memory in the tuning search");
    for (size_t i = 0; st == SPRIG_OK && i < space->n; ++i) s.trial_of[i] = -1;
    out->exhaustive = space->n <= opts->exhaustive_limit;
    if (st == SPRIG_OK) st = out->exhaustive ? run_exhaustive(&s) : run_pruned(&s);
    if (out->exhaustive && out->n_trials < space->n) out->exhaustive = 0; /* cut short by the budget */
    if (st == SPRIG_OK && opts->confirm > 0) st = confirm_top(&s);
    if (st == SPRIG_OK) {
        out->winner = pick_winner(out, opts->confirm > 0);
        if (out->winner < 0) st = no_winner(&s);
    }
    out->elapsed_s = now_s() - s.t0;
    free(s.trial_of);
    free(s.expanded);
    return st;
}
