/* The tuning options of the commands that run a model on the CUDA backend
 * (sprig run, sprig bench-e2e): which databases the kernels' parameters come
 * from (tuner/sp_runtime_tuning.h), and the report of what was chosen. */
#ifndef SP_CLI_TUNING_H
#define SP_CLI_TUNING_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "sp_exec.h"
#include "sp_gpu.h"
#include "sp_runtime_tuning.h"

typedef struct cli_tuning_args {
    const char *db_dir;        /* --db-dir; NULL: as sprig tune (sp_db_dir) */
    const char *defaults_dir;  /* --defaults-dir; NULL: none */
    int off;                   /* --no-tuning */
} cli_tuning_args;

/* Consumes --db-dir DIR, --defaults-dir DIR or --no-tuning at argv[*i]
 * (advancing *i past a value). 1 if consumed, 0 if not one of them, -1 when
 * the value is missing (after printing why, prefixed with cmd). */
int cli_tuning_arg(cli_tuning_args *a, const char *cmd, int argc, char **argv, int *i);
/* The options' lines for --help. */
extern const char *const cli_tuning_args_help;

/* The CUDA backend's kernel set with the databases' answers installed: opens
 * the tuning (unless --no-tuning) and the kernel set, and sets the hook. A
 * database that cannot be used never fails this (a warning, then defaults);
 * only the kernel set can. The caller owns *t (may stay NULL) and *ks and
 * closes, after every backend on ks: sp_gpu_kernels_close(ks), then
 * sp_runtime_tuning_close(t). Returns 0 or, after printing why, 1. */
int cli_tuning_kernels_open(const cli_tuning_args *a, const char *cmd, sp_exec *exec, sp_runtime_tuning **t,
                            sp_gpu_kernels **ks);

/* To stderr: files skipped, then one line counting the kernels' sources and
 * naming the db files ("cmd: kernel parameters: ..."). */
void cli_tuning_report(const cli_tuning_args *a, const char *cmd, const sp_runtime_tuning *t);

/* The summary for --json output (sp_runtime_tuning_summary_json), unformatted;
 * the caller frees. {"enabled":false} when t is NULL; NULL when out of memory. */
char *cli_tuning_json(const sp_runtime_tuning *t);

#endif
