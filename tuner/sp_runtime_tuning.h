/* The runtime's GPU backend, tuned: a hook (backend/sp_tuning_hook.h)
 * that answers each kernel request of the backend from the tuning databases.
 *
 *   sp_runtime_tuning *t;   sp_runtime_tuning_open(exec, NULL, "tuner/defaults", &t);
 *   sp_gpu_kernels *ks;     sp_gpu_kernels_open(exec, &ks);
 *   sp_tuning_hook hook = sp_runtime_tuning_hook(t);  sp_gpu_kernels_set_tuning(ks, &hook);
 *   sp_gpu_open(ks, model, ...);  ...  sp_gpu_close(g);
 *   sp_gpu_kernels_close(ks);  sp_runtime_tuning_close(t);      (in this order)
 *
 * Each request (family, d, f, dtype, g, the params the backend fixes, the
 * sparsity it expects) is mapped onto the tuning-key convention of
 * sp_mlp_keys.h: the variant v of the family whose convention-fixed params
 * (op=up, score=sigmoid, all_active=0|1, ...) the request resolves to; fixed
 * params the convention does not key on (gather_down layout=t) are constraints
 * on the answer instead. Then sp_mlp_lookup at batch 1 (exact -> same GPU,
 * nearest shape -> same architecture -> generic default).
 *
 * The answer is the entry's winner when it satisfies the constraints (the
 * request's fixed params, and what the runtime's weight packing needs:
 * gather_upgate interleave=0), else the entry's fastest measured candidate
 * that does, else nothing; and it must render for the exact request. Without
 * an answer (generic_default, a family or variant the tuner does not tune,
 * any error) the hook returns 0 and the backend uses its own defaults. A
 * database problem never fails model loading: it is noted and skipped.
 * Every distinct request is recorded (and answered once) for the summary. */
#ifndef SP_RUNTIME_TUNING_H
#define SP_RUNTIME_TUNING_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "sp_db.h"
#include "sp_exec.h"
#include "sp_tuning_hook.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* Where a request's parameters came from. The first four are the lookup's
 * sources (sp_lookup_source, same order); the rest mean "backend defaults". */
typedef enum sp_rt_source {
    SP_RT_EXACT = 0,             /* tuned for this GPU and shape */
    SP_RT_SAME_GPU_NEAREST,      /* tuned on this GPU for the nearest shape */
    SP_RT_SAME_ARCH,             /* tuned on another GPU of the same compute capability */
    SP_RT_GENERIC_DEFAULT,       /* nothing tuned fits: backend defaults */
    SP_RT_UNTUNED,               /* the tuner does not tune this family/variant: no lookup, defaults */
    SP_RT_UNUSABLE,              /* an entry was found, but nothing in it fits what the runtime fixes: defaults */
    SP_RT_ERROR,                 /* the lookup failed (noted): defaults */
    SP_RT_N_SOURCES
} sp_rt_source;

/* "exact", "same_gpu_nearest_shape", "same_arch", "generic_default", "untuned", "unusable", "error". */
const char *sp_rt_source_name(sp_rt_source s);

/* One distinct request of the backend and its answer. */
typedef struct sp_rt_choice {
    char family[32];
    int d, f, g;
    char dtype[8];
    char fixed[128];             /* the params the backend fixed ("" for none) */
    double sparsity;             /* percent of neurons the backend expects to skip */
    sp_rt_source source;
    int used;                    /* the hook returned params (1) or 0 (backend defaults) */
    char params[640];            /* used: the params the backend renders (fixed + tuned); else "" */
    char db[512];                /* the database file the answer came from, or "" */
    char explain[2048];          /* why: the lookup's explanation, adjustments, errors */
} sp_rt_choice;

typedef struct sp_runtime_tuning sp_runtime_tuning;

/* Opens the databases for e's GPU (name, compute capability, SM count):
 * every *.json in db_dir (NULL or "": sp_db_dir(NULL), as `sprig tune`), then
 * in defaults_dir (NULL: none). Missing folders add nothing; unusable files
 * are skipped and named in the notes; a db folder that cannot be resolved
 * (no $HOME) is noted too. Fails only for NULL arguments, out of memory or a
 * generator that cannot start. e is read during the call only.
 * The caller owns *out (sp_runtime_tuning_close). */
sprig_status sp_runtime_tuning_open(const sp_exec *e, const char *db_dir, const char *defaults_dir,
                                    sp_runtime_tuning **out);
/* After every kernel set using the hook is closed. NULL is a no-op. */
void sp_runtime_tuning_close(sp_runtime_tuning *t);

/* The hook for sp_gpu_kernels_set_tuning; t is its ctx (borrowed: t must
 * outlive the kernel set). */
sp_tuning_hook sp_runtime_tuning_hook(sp_runtime_tuning *t);
/* The hook's choose (ctx = the sp_runtime_tuning), callable directly. */
int sp_runtime_tuning_choose(void *ctx, const sprig_request *req, double sparsity, char *buf, size_t cap, char *why,
                             size_t why_cap);

/* The database files loaded, in precedence order (borrowed; n may be 0). */
size_t sp_runtime_tuning_n_files(const sp_runtime_tuning *t);
/* Skipped files and lookup errors, one per line; "" when none (borrowed). */
const char *sp_runtime_tuning_notes(const sp_runtime_tuning *t);
/* How many database lookups the hook has made (requests of untuned
 * families and repeated requests make none). */
int sp_runtime_tuning_lookups(const sp_runtime_tuning *t);

/* The distinct requests so far, in order of first request (borrowed). */
size_t sp_runtime_tuning_count(const sp_runtime_tuning *t);
const sp_rt_choice *sp_runtime_tuning_choice(const sp_runtime_tuning *t, size_t i);
/* How many requests have this source. */
int sp_runtime_tuning_count_source(const sp_runtime_tuning *t, sp_rt_source s);

/* {"enabled":true,"gpu":{...},"dirs":..,"db_files":[..],"notes":[..],"lookups":n,
 *  "counts":{"exact":n,...},"requests":[{family,d,f,dtype,g,fixed,sparsity,source,used,params,db,explain}]}.
 * NULL t: {"enabled":false} (tuning switched off). The caller owns the result
 * (cJSON_Delete); NULL when out of memory. */
cJSON *sp_runtime_tuning_summary_json(const sp_runtime_tuning *t);
/* One line for humans: "N kernel requests: a exact, b same_gpu_nearest_shape,
 * c same_arch, d generic_default, e untuned[, f unusable][, g error]; db files: ..." */
void sp_runtime_tuning_summary_line(const sp_runtime_tuning *t, char *buf, size_t cap);

#pragma GCC visibility pop
#endif
