/* The sprig command-line program: one file per subcommand, sharing the
 * request-parsing helpers below. Each cmd_* returns the process exit code. */
#ifndef SP_CLI_H
#define SP_CLI_H

#include "sprig.h"

int cmd_gen(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_families(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench_e2e(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_analyze(int argc, char **argv);

/* Options shared by every command that names a kernel. */
typedef struct cli_kernel_args {
    const char *family;
    const char *model;      /* --model NAME: fills d and f */
    int d, f, batch, g;
    const char *dtype;
    char params[1024];      /* accumulated --param k=v, comma separated */
    const char *template_dir;
} cli_kernel_args;

void cli_kernel_args_init(cli_kernel_args *a);
/* Consumes one kernel option at argv[*i] (advancing *i past its value).
 * Returns 1 if consumed, 0 if not a kernel option, -1 on a malformed value
 * (after printing the reason). */
int cli_kernel_arg(cli_kernel_args *a, int argc, char **argv, int *i);
/* Fills d and f from --model via the generator; prints and returns nonzero on error. */
int cli_resolve_model(sprig_gen *gen, cli_kernel_args *a);
extern const char *const cli_kernel_args_help;

/* The static model's GPU profile (sp_gen_perf.h) for name, else the one the
 * device's name names (H200 -> h200, ...), else h100: 0, or 1 after an error. */
struct sp_gpu_profile;
int cli_model_profile(sprig_gen *gen, const char *name, const char *device, struct sp_gpu_profile *out);

/* Opens the executor the GPU commands (run, tune, bench, bench-e2e) run on:
 * the CUDA device (sp_exec_open_cuda). A test build points it at the CPU
 * emulator (tests/sprig_emu_cli.c), so scripts/gpu-check.sh --dry-run runs
 * the commands' plumbing without a GPU. */
struct sp_exec;
extern sprig_status (*cli_exec_open)(struct sp_exec **out, int device);

/* The command-line tool itself (main() only calls it). */
int sprig_cli_main(int argc, char **argv);

/* Strict numbers for options: the whole text, within [lo, hi] (NaN never is);
 * else "sprig CMD: OPT expects ..." on stderr and -1. 0 on success. */
int cli_parse_int(const char *cmd, const char *opt, const char *text, long lo, long hi, int *out);
int cli_parse_double(const char *cmd, const char *opt, const char *text, double lo, double hi, double *out);

/* Prints "sprig: <what>: <status name>: <last error>" to stderr, returns 1. */
int cli_error(const char *what, sprig_status s);
#endif
