/* The tuner's front: tune a list of keys into a GPU's database, resuming
 * where a killed run stopped. Measuring is injected (the GPU code compiles,
 * verifies and times a candidate; tests use synthetic timings), so this file
 * and everything it includes need no GPU.
 *
 *   sp_tune_opts o;  sp_tune_opts_init(&o);
 *   o.gen = gen; o.db = db; o.keys = keys; o.n_keys = n;
 *   o.measure = my_measure; o.ctx = my_ctx;
 *   sp_tune_summary sum;  sprig_status s = sp_tune_run(&o, &sum);
 *   ... print sum (sp_tune_summary_print / _json) ...  sp_tune_summary_free(&sum);
 *
 * Headers: sp_space.h (candidates), sp_search.h (search, measurements),
 * sp_db.h (database files, lookup). */
#ifndef SP_TUNE_H
#define SP_TUNE_H

#include <stdio.h>

#include "sp_analyze.h"
#include "sp_db.h"
#include "sp_search.h"
#include "sp_space.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* One tuning problem, as the caller states it (the db key buckets it). */
typedef struct sp_tune_key {
    const char *family;
    int d, f;
    const char *dtype;     /* "fp16", "bf16" */
    int batch;             /* tuned at this batch, stored under its bucket */
    int g;
    double sparsity;       /* percent of experts inactive while timing (0: dense) */
    const char *fixed;     /* params the caller fixes ("op=down"), NULL or "" for none */
} sp_tune_key;

/* Measures params for key; contract as sp_measure_fn (sp_search.h). */
typedef sprig_status (*sp_tune_measure_fn)(void *ctx, const sp_tune_key *key, const char *params,
                                           sp_measurement *out);
/* Optional: compile these candidates ahead (in parallel). */
typedef sprig_status (*sp_tune_prepare_fn)(void *ctx, const sp_tune_key *key, const char *const *params, size_t n);
/* Optional: progress within key key_index of n_keys (see sp_progress_fn). */
typedef void (*sp_tune_progress_fn)(void *ctx, size_t key_index, size_t n_keys, const sp_tune_key *key, size_t done,
                                    size_t total_estimate, double best_us);

typedef struct sp_tune_opts {
    sprig_gen *gen;              /* for tuning spaces and template hashes */
    sp_db *db;                   /* this GPU's db (sp_db_open); saved after every key */
    const sp_tune_key *keys;
    size_t n_keys;
    sp_search_opts search;       /* per key (budget_s is per key) */
    double total_budget_s;       /* no new key is started after this many seconds (<= 0: none) */
    int retune;                  /* measure keys that are already in the db */
    const sp_gpu_profile *model_gpu; /* the static model's GPU (sp_analyze.h): before measuring, candidates
                                  * whose plans are the very kernels of another are dropped and the rest
                                  * predicted; NULL: the whole space, sampled at random */
    double prune_within;         /* with model_gpu: measure only candidates predicted within this factor
                                  * of the best prediction (default 1.3), best first; <= 0: every
                                  * distinct one, sampled at random */
    size_t max_kept;             /* with model_gpu: search at most this many distinct candidates, the
                                  * best predicted (default SP_TUNE_MAX_KEPT; 0: no cap) */
    sp_tune_measure_fn measure;  /* required */
    sp_tune_prepare_fn prepare;  /* may be NULL */
    sp_tune_progress_fn progress;/* may be NULL */
    void *ctx;                   /* passed to the three callbacks */
} sp_tune_opts;

#define SP_TUNE_MAX_KEPT 128 /* sp_tune_opts.max_kept's default */
void sp_tune_opts_init(sp_tune_opts *o); /* zeroes, search defaults, prune_within 1.3, max_kept SP_TUNE_MAX_KEPT */

typedef enum sp_tune_outcome {
    SP_TUNE_TUNED = 0,   /* searched and saved */
    SP_TUNE_SKIPPED,     /* already in the db (resume) */
    SP_TUNE_NO_VERIFIED, /* every measured candidate was wrong or failed; nothing saved */
    SP_TUNE_INVALID,     /* the key itself is bad, or its space is empty */
    SP_TUNE_ABORTED,     /* measuring failed (driver error, interrupted): the run stopped here */
    SP_TUNE_NOT_RUN      /* after an abort, or past total_budget_s */
} sp_tune_outcome;

const char *sp_tune_outcome_name(sp_tune_outcome o); /* "tuned", "skipped", ... */

typedef struct sp_tune_row {
    char key[512];             /* sp_db_key_string, or the request if it could not be keyed */
    sp_tune_outcome outcome;
    char winner[512];          /* tuned or skipped: the winning params */
    double median_us;          /* its (confirmed) median; 0 if none */
    size_t space_size;         /* candidates in the space (0 if unknown) */
    size_t within, kept;       /* with model_gpu: of them predicted within prune_within, and the
                                  * distinct ones of those searched (sp_analyze_rank) */
    size_t tried, wrong, failed;
    int exhaustive;
    double elapsed_s;
    char message[512];         /* why, for the failure outcomes */
} sp_tune_row;

typedef struct sp_tune_summary {
    sp_tune_row *rows;         /* owned, one per key, in key order */
    size_t n;
    size_t n_tuned, n_skipped, n_failed, n_not_run;
} sp_tune_summary;

/* Tunes every key not yet in o->db: builds its space, searches with
 * o->measure, records and saves the winner before the next key. A key whose
 * candidates all fail verification, or that is invalid, is reported in its row
 * and the run goes on; the return is then SPRIG_E_VERIFY / SPRIG_E_INVALID
 * naming how many failed. A measure/prepare error stops the run at once and is
 * returned (keys finished so far are saved). *out is filled in every case;
 * free it with sp_tune_summary_free. */
sprig_status sp_tune_run(const sp_tune_opts *o, sp_tune_summary *out);
void sp_tune_summary_free(sp_tune_summary *s);

/* What the filter of sp_tune_run (model_gpu, prune_within) leaves of key's
 * space, without measuring: for sprig tune --list. */
sprig_status sp_tune_key_rank(sprig_gen *gen, const sp_tune_key *key, const sp_gpu_profile *gpu, double prune_within,
                              size_t max_keep, sp_analyze_rank *out);

/* The summary as a JSON array of row objects (malloc'ed; NULL on no memory). */
char *sp_tune_summary_json(const sp_tune_summary *s);
/* The summary as an aligned text table. */
void sp_tune_summary_print(const sp_tune_summary *s, FILE *to);

#pragma GCC visibility pop
#endif
