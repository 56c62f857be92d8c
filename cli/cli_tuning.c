/* Tuning options shared by sprig run and sprig bench-e2e (see cli_tuning.h). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_tuning.h"

const char *const cli_tuning_args_help =
    "  --db-dir DIR          --backend cuda: tuning database folder the kernels' parameters come\n"
    "                        from (default as sprig tune: $SPRIG_DB_DIR, else $XDG_DATA_HOME/sprig/db,\n"
    "                        else ~/.local/share/sprig/db); per kernel: exact entry, else nearest\n"
    "                        shape tuned on this GPU, else same architecture, else the defaults\n"
    "  --defaults-dir DIR    also consult the databases in DIR after --db-dir (e.g. tuner/defaults)\n"
    "  --no-tuning           every kernel at its family's defaults (no database is read)\n";

int cli_tuning_arg(cli_tuning_args *a, const char *cmd, int argc, char **argv, int *i) {
    const char *opt = argv[*i];
    if (!strcmp(opt, "--no-tuning")) return a->off = 1, 1;
    const int dir = !strcmp(opt, "--db-dir"), defaults = !strcmp(opt, "--defaults-dir");
    if (!dir && !defaults) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sprig %s: %s needs a value\n", cmd, opt);
        return -1;
    }
    *(dir ? &a->db_dir : &a->defaults_dir) = argv[++*i];
    return 1;
}

int cli_tuning_kernels_open(const cli_tuning_args *a, const char *cmd, sp_exec *exec, sp_runtime_tuning **t,
                            sp_gpu_kernels **ks) {
    *t = NULL, *ks = NULL;
    if (!a->off && sp_runtime_tuning_open(exec, a->db_dir, a->defaults_dir, t) != SPRIG_OK)
        fprintf(stderr, "sprig %s: the tuning databases cannot be used (%s); every kernel at its defaults\n", cmd,
                sprig_last_error());
    sprig_status s = sp_gpu_kernels_open(exec, ks);
    if (s != SPRIG_OK) {
        sp_runtime_tuning_close(*t);
        *t = NULL;
        return cli_error("opening the kernel set", s);
    }
    if (*t) {
        sp_tuning_hook hook = sp_runtime_tuning_hook(*t);
        sp_gpu_kernels_set_tuning(*ks, &hook);
    }
    return 0;
}

void cli_tuning_report(const cli_tuning_args *a, const char *cmd, const sp_runtime_tuning *t) {
    const char *notes = sp_runtime_tuning_notes(t);
    if (*notes) fprintf(stderr, "sprig %s: tuning notes:\n%s\n", cmd, notes);
    if (!t) {
        fprintf(stderr, "sprig %s: kernel parameters: %s\n", cmd,
                a->off ? "--no-tuning, every kernel at its family's defaults" : "every kernel at its family's defaults");
        return;
    }
    char line[8192];
    sp_runtime_tuning_summary_line(t, line, sizeof line);
    fprintf(stderr, "sprig %s: kernel parameters: %s\n", cmd, line);
}

char *cli_tuning_json(const sp_runtime_tuning *t) {
    cJSON *j = sp_runtime_tuning_summary_json(t);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return text;
}
