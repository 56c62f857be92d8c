/* Declarations shared by tuner/'s own files (not exported from the layer). */
#ifndef SP_TUNER_INTERNAL_H
#define SP_TUNER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sp_analyze.h"
#include "sp_db.h"
#include "sp_space.h"
#include "sp_search.h"
#include "sp_tune.h"
#include "sprig.h"

/* db.c */
int sp_gpu_id_equal(const sp_gpu_id *a, const sp_gpu_id *b);
int sp_db_key_equal(const sp_db_key *a, const sp_db_key *b);

/* lookup.c: appends a line of text to *notes (malloc'ed, NULL for none yet);
 * notes are advisory, so out of memory drops the line. */
void sp_notes_append(char **notes, const char *text);

/* analyze.c: what a plan runs (its source, kernels, launches, workspace and
 * arguments) as one hash: two candidates with the same hash are the same kernels. */
uint64_t sp_plan_identity(const sprig_plan *plan);

/* analyze.c: the filter of sp_analyze_rank (sp_analyze.h) over space for req
 * (req->params: the key's fixed parameters; the candidates carry them). */
sprig_status sp_analyze_rank_space(sprig_gen *gen, const sprig_request *req, const sp_space *space,
                                   const sp_analyze_opts *o, double keep_within, size_t max_keep,
                                   sp_analyze_rank *out);

/* search.c */
const char *sp_verdict_name(sp_verdict v);           /* "ok", "wrong", "compile_failed", "launch_failed" */
int sp_verdict_parse(const char *name, sp_verdict *out); /* 1 on success */

/* mlp_keys.c: whether the family can serve key (its tuning space is not
 * empty): 1; 0 when it cannot (why: the family's reason); -1 when the
 * generator rejects the request itself (why: the generator's message). */
int sp_tune_key_servable(sprig_gen *gen, const sp_tune_key *key, char *why, size_t cap);


#endif
