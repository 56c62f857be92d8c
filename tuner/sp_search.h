/* The search over one tuning space: which candidates to measure, in which
 * order, and which one wins. Measuring is a callback, so the search knows
 * nothing of GPUs (the lead's GPU code compiles, verifies and times; tests
 * inject synthetic timings).
 *
 * Exhaustive when the space has at most exhaustive_limit candidates; else a
 * seeded random sample (the family's default candidate first; with `ordered`,
 * the space's first candidates instead: the best predicted), then hill
 * climbing from the best few over neighbours (one parameter moved to an
 * adjacent value) until no neighbour improves or the time budget runs out.
 * Finally the top `confirm` verified candidates are re-timed and the best
 * confirmed median wins. Wrong and failed candidates are recorded, never chosen. */
#ifndef SP_SEARCH_H
#define SP_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "sp_space.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* What measuring one candidate found. */
typedef enum sp_verdict {
    SP_VERDICT_OK = 0,          /* matched the reference; timings valid */
    SP_VERDICT_WRONG,           /* ran, but the output failed verification (rel_err, NaN) */
    SP_VERDICT_COMPILE_FAILED,  /* NVRTC rejected it */
    SP_VERDICT_LAUNCH_FAILED    /* compiled but could not run (e.g. too many resources) */
} sp_verdict;

typedef struct sp_measurement {
    sp_verdict verdict;
    double rel_err;            /* ||out - ref|| / ||ref|| (NaN output: set verdict WRONG) */
    double median_us, min_us;  /* only meaningful when verdict == OK */
    int runs;                  /* timed runs the median is over */
    double sm_clock_mhz;       /* clocks while timing; 0 if unknown */
    double mem_clock_mhz;
    char note[160];            /* why it failed (first line of a compile log, ...) or "" */
} sp_measurement;

/* Measures the candidate `params` ("k=v,..."): compile, verify against the
 * reference, time. A candidate's own failure is SPRIG_OK with out->verdict
 * set; a non-OK return means the measuring itself broke (driver error, the
 * user asked to stop) and aborts the search with that status. */
typedef sprig_status (*sp_measure_fn)(void *ctx, const char *params, sp_measurement *out);

/* Called before a batch of candidates is measured, so the caller can compile
 * them in parallel (through the cubin cache). Optional; non-OK aborts. */
typedef sprig_status (*sp_prepare_fn)(void *ctx, const char *const *params, size_t n);

/* After each measurement: done so far, the current estimate of the total,
 * the best verified median so far in microseconds (negative: none yet). */
typedef void (*sp_progress_fn)(void *ctx, size_t done, size_t total_estimate, double best_us);

typedef struct sp_search_callbacks {
    sp_measure_fn measure;     /* required */
    sp_prepare_fn prepare;     /* may be NULL */
    sp_progress_fn progress;   /* may be NULL */
    void *ctx;                 /* passed to all three */
} sp_search_callbacks;

typedef struct sp_search_opts {
    size_t exhaustive_limit;   /* measure everything up to this many candidates (64) */
    size_t sample;             /* pruned: random candidates measured first (32) */
    int climbs;                /* pruned: hill climbs, from the best distinct starting points (3) */
    int confirm;               /* re-time this many of the best before choosing (3; 0: none) */
    double budget_s;           /* wall-clock budget of the search phase in seconds (<= 0: none);
                                * confirmation adds at most `confirm` measurements after it */
    size_t max_trials;         /* stop after this many measurements (0: no cap) */
    uint64_t seed;             /* sampling seed (same seed, same candidates) */
    int ordered;               /* 1: the space is ordered best-first (sp_space_keep after the static
                                * model's ranking): the sample takes candidates in that order, not a
                                * random permutation */
} sp_search_opts;

void sp_search_opts_init(sp_search_opts *o); /* the defaults above, seed 1 */

/* One measured candidate. */
typedef struct sp_trial {
    char *params;              /* owned */
    long index;                /* in the space, or -1 */
    sp_measurement m;          /* the first measurement (or the failed re-run) */
    int confirmed;             /* re-timed and verified again */
    double confirm_median_us;  /* the re-timed median (when confirmed) */
} sp_trial;

typedef struct sp_search_result {
    sp_trial *trials;          /* owned, [n_trials], in measurement order */
    size_t n_trials;
    long winner;               /* index into trials, -1 when none verified */
    size_t n_ok, n_wrong, n_failed; /* failed = compile or launch failures */
    size_t n_measure_calls;    /* including confirmation re-runs */
    int exhaustive;            /* 1: every candidate of the space was tried */
    int budget_hit;            /* the time budget or max_trials stopped the search */
    double elapsed_s;
} sp_search_result;

/* Runs the search. On SPRIG_OK, out->winner >= 0. SPRIG_E_VERIFY when no
 * candidate verified (the message says how many were wrong or failed and
 * whether the budget ran out); SPRIG_E_INVALID for an empty space; a measure
 * or prepare error is returned as is. In every case *out holds what was
 * measured and the caller frees it with sp_search_result_free. */
sprig_status sp_search_run(const sp_space *space, const sp_search_opts *opts, const sp_search_callbacks *cb,
                           sp_search_result *out);
void sp_search_result_free(sp_search_result *r);

/* The winning median: the confirmed one when confirmed, else the first. */
double sp_trial_median_us(const sp_trial *t);

#pragma GCC visibility pop
#endif
