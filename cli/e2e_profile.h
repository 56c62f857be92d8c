/* sprig bench-e2e --profile: where a decode step's time goes, kernel by
 * kernel. The step runs without a CUDA graph, each launch between two events
 * of its own (sp_exec_profile_begin), and the launches are summed per plan:
 * launches per token, measured microseconds each, and the static model's
 * prediction for the same plan (docs/perf-model.md), so a GPU session can
 * see which kernels the model misjudges and how much of a token's time lies
 * outside the kernels (the graph's gaps, the host). */
#ifndef SP_E2E_PROFILE_H
#define SP_E2E_PROFILE_H

#include <cjson/cJSON.h>

#include "sp_analyze.h"
#include "sp_exec.h"

typedef struct e2e_prof_row {
    const sprig_plan *plan;     /* borrowed from the backend's kernel set */
    int launches;               /* over all profiled tokens */
    double us;                  /* their summed time */
    double predicted_us;        /* one launch, by the static model; 0: none */
} e2e_prof_row;

typedef struct e2e_profile {
    e2e_prof_row *rows;         /* in order of first launch */
    int n, tokens;
} e2e_profile;

/* Starts timing every launch on exec (the backend must launch directly:
 * graph off); an error naming the executor when it cannot. */
sprig_status e2e_profile_begin(sp_exec *exec);
/* Stops it and sums the launches made since per plan, over `tokens` tokens. */
sprig_status e2e_profile_take(sp_exec *exec, int tokens, e2e_profile *out);
/* Fills each row's predicted_us for gpu, the routed kernels at `active`. */
void e2e_profile_predict(e2e_profile *p, sprig_gen *gen, const sp_gpu_profile *gpu, double active);
/* The table for people: per plan and in total, against the row's ms/token. */
void e2e_profile_print(const e2e_profile *p, const char *title, double row_ms);
cJSON *e2e_profile_json(const e2e_profile *p);
void e2e_profile_free(e2e_profile *p);

#endif
