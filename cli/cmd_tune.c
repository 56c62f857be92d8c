/* sprig tune: tune one model's MLP kernels (--model/--shape), or every kernel
 * a model folder's decode step looks up (--model-dir), on the GPU in hand into
 * its tuning database (tuner/sp_tune.h), resuming where a killed run stopped.
 *
 * Keys come from tuner/sp_mlp_keys.h (families per batch, the fixed params
 * per sparsity) or tuner/sp_model_keys.h (a folder's config.json and
 * slicing); candidates are measured by tuner/sp_measure.h (compile in
 * parallel, verify against float64, time with CUDA events). --list prints the
 * keys and stops before any GPU is needed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <nvrtc.h>

#include "cli.h"
#include "sp_measure.h"
#include "sp_mlp_keys.h"
#include "sp_model_keys.h"
#include "sp_tune.h"

#define TU_MAX_LIST 32

typedef struct tu_opts {
    cli_kernel_args k;          /* --model/--shape, --g, --template-dir (dtype, batch, family parsed here) */
    const char *model_dir;      /* --model-dir: keys from the folder's config instead of (d, f) */
    int list;                   /* --list / --dry-run: print the keys, measure nothing */
    int batch_given, sparsity_given, g_given;
    const char *dtypes[TU_MAX_LIST];
    int n_dtypes;
    int batches[TU_MAX_LIST];
    int n_batches;
    double sparsities[TU_MAX_LIST];
    int n_sparsities;
    const char *families[TU_MAX_LIST];
    int n_families;
    char family_text[512];      /* storage for the --family list */
    char dtype_text[64];
    double budget_s, total_budget_s;
    const char *db_dir;
    int retune, json, jobs, device, force, reps, warmup;
    const char *gpu;            /* --gpu: the static model's profile (NULL: from the device's name) */
    int no_prune, counts;       /* --no-prune; --counts (with --list) */
    double prune_within;        /* --prune-within (1.3) */
    long exhaustive_limit;
    unsigned long long seed;
} tu_opts;

static void tu_help(FILE *to) {
    fprintf(to,
            "usage: sprig tune (--model NAME | --shape D,F | --model-dir DIR) [options]\n\n"
            "Tunes the MLP kernels of one model shape, or every kernel a model folder's decode\n"
            "step looks up, on GPU 0 (or --device N) and records the fastest verified\n"
            "candidate per key in the GPU's tuning database. Every candidate\n"
            "is compiled (NVRTC, in parallel, through the cubin cache), checked against a\n"
            "float64 reference on random inputs (wrong ones are recorded, never chosen) and\n"
            "timed with CUDA events over rotating weight copies larger than the L2 cache.\n"
            "The database is saved after every key: a killed run resumes where it stopped.\n"
            "Before measuring, candidates whose rendered kernels are identical to another's\n"
            "are dropped, and the rest are predicted by the static model (sprig analyze,\n"
            "docs/perf-model.md) and measured best predicted first; those predicted more\n"
            "than 1.3x slower than the best are not measured (--prune-within, --no-prune).\n\n"
            "With --model/--shape, keys per dtype, batch and sparsity: router (sparse only),\n"
            "gather_upgate, gather_down, fused_mlp (batch <= 8), dense_gemv op=up/op=down\n"
            "(sparsity 0 only), and gather_gemm stage=upgate/down from batch 8. At sparsity 0\n"
            "the gather families are tuned with all_active=1 (the dense MLP).\n\n"
            "With --model-dir the keys are the decode step's own requests, at the widths of\n"
            "the folder's config.json and SliceGPT slicing (the weights are not read):\n"
            "dense_gemv op=up for qkv_proj, o_proj (sliced: fused with the attention\n"
            "shortcut), the sliced MLP shortcut and lm_head; gather_upgate and gather_down\n"
            "with all_active=1 at sparsity 0; and at sparsity > 0 the routed MLP: the\n"
            "gathers at the LTE expert size with LTE routers (the router runs inside\n"
            "gather_upgate, route=sigmoid, with that key's parameters), without them at\n"
            "g=1 (threshold mode); the GPU backend looks its routed kernels up at sparsity\n"
            "50. Layers of equal widths share keys.\n\n"
            "options:\n"
            "  --model NAME        named shape, e.g. llama2-7b (sprig models lists them)\n"
            "  --shape D,F         model width and MLP width\n"
            "  --model-dir DIR     a Hugging Face model folder (config.json, optional slicing)\n"
            "  --list, --dry-run   print the keys that would be tuned (a table, or JSON with\n"
            "                      --json) and exit; needs no GPU\n"
            "  --dtype LIST        fp16, bf16 or fp16,bf16 (default fp16)\n"
            "  --batch LIST        tokens per call (default 1,8,32; --model-dir: 1)\n"
            "  --sparsity LIST     percent of experts inactive (default 0,50,75,90;\n"
            "                      --model-dir: 0, plus 50,75,90 when it has LTE routers)\n"
            "  --family LIST       only these families (default: the MLP families above;\n"
            "                      --model-dir: dense_gemv,router,gather_upgate,gather_down)\n"
            "  --g N               neurons per expert (default 32; --model-dir: from its config)\n"
            "  --counts            with --list: also each key's candidates, distinct kernels and\n"
            "                      those left after pruning, and the GPU time that estimates\n"
            "                      (renders every candidate: seconds to minutes, no GPU)\n"
            "  --gpu NAME          the static model's GPU profile for pruning (sprig analyze;\n"
            "                      default: from the device's name, else h100)\n"
            "  --prune-within F    measure only candidates predicted within F x the best\n"
            "                      prediction, best first (default 1.3)\n"
            "  --no-prune          measure among every distinct candidate, sampled at random\n"
            "  --budget S          search time per key in seconds (default 20; 0: none)\n"
            "  --total-budget S    start no new key after S seconds (default: none)\n"
            "  --exhaustive-limit N  measure every candidate of spaces up to N (default 64)\n"
            "  --reps N            timed samples per measurement (default 30)\n"
            "  --seed N            operands and sampling seed (default 1)\n"
            "  --db-dir DIR        database folder (default $SPRIG_DB_DIR, else\n"
            "                      $XDG_DATA_HOME/sprig/db, else ~/.local/share/sprig/db)\n"
            "  --retune            measure keys that are already in the database again\n"
            "  --force             replace an unusable database file (it is moved aside first)\n"
            "  --device N          GPU ordinal (default 0)\n"
            "  -j N                compile threads (default: the number of CPUs)\n"
            "  --template-dir DIR  render templates from DIR instead of the embedded ones\n"
            "  --json              print the summary as JSON instead of the table\n\n"
            "A progress line goes to stderr when it is a terminal. Exit status: 0 when every\n"
            "key was tuned or already in the database (--list: when there are keys), 1\n"
            "otherwise (and without a GPU), 2 for bad options.\n");
}

/* ---- parsing ----------------------------------------------------------------------------- */

static int tu_number(const char *opt, const char *text, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "sprig tune: %s expects a number in %g..%g, got '%s'\n", opt, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

/* Splits a comma list of numbers into out (as doubles). Returns the count or -1. */
static int tu_number_list(const char *opt, const char *text, double lo, double hi, double *out) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == TU_MAX_LIST) {
            fprintf(stderr, "sprig tune: %s: more than %d values\n", opt, TU_MAX_LIST);
            return -1;
        }
        if (tu_number(opt, tok, lo, hi, &out[n++]) != 0) return -1;
    }
    if (n == 0) fprintf(stderr, "sprig tune: %s names no value\n", opt);
    return n ? n : -1;
}

/* Splits a comma list of names in place (text is kept in storage). */
static int tu_name_list(const char *opt, const char *text, char *storage, size_t cap, const char **out) {
    snprintf(storage, cap, "%s", text);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(storage, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == TU_MAX_LIST) {
            fprintf(stderr, "sprig tune: %s: more than %d names\n", opt, TU_MAX_LIST);
            return -1;
        }
        out[n++] = tok;
    }
    if (n == 0) fprintf(stderr, "sprig tune: %s names nothing\n", opt);
    return n ? n : -1;
}

static void tu_defaults(tu_opts *o) {
    memset(o, 0, sizeof *o);
    cli_kernel_args_init(&o->k);
    o->dtypes[0] = "fp16", o->n_dtypes = 1;
    static const int batches[] = {1, 8, 32};
    static const double sparsities[] = {0, 50, 75, 90};
    memcpy(o->batches, batches, sizeof batches), o->n_batches = 3;
    memcpy(o->sparsities, sparsities, sizeof sparsities), o->n_sparsities = 4;
    o->budget_s = 20;
    o->reps = 30, o->warmup = 3;
    o->exhaustive_limit = 64;
    o->seed = 1;
    o->prune_within = 1.3;
}

/* One option with a value; returns 1 consumed, 0 not ours, -1 bad. */
static int tu_value_opt(tu_opts *o, const char *a, const char *v) {
    double x, list[TU_MAX_LIST];
    int n;
    if (!strcmp(a, "--dtype")) {
        n = tu_name_list(a, v, o->dtype_text, sizeof o->dtype_text, o->dtypes);
        for (int i = 0; i < n; ++i)
            if (strcmp(o->dtypes[i], "fp16") && strcmp(o->dtypes[i], "bf16")) {
                fprintf(stderr, "sprig tune: --dtype: '%s' is not fp16 or bf16\n", o->dtypes[i]);
                return -1;
            }
        return n < 0 ? -1 : (o->n_dtypes = n, 1);
    }
    if (!strcmp(a, "--batch")) {
        o->batch_given = 1;
        if ((n = tu_number_list(a, v, 1, 64, list)) < 0) return -1;
        for (int i = 0; i < n; ++i) o->batches[i] = (int)list[i];
        return o->n_batches = n, 1;
    }
    if (!strcmp(a, "--sparsity")) {
        o->sparsity_given = 1;
        if ((n = tu_number_list(a, v, 0, 99, o->sparsities)) < 0) return -1;
        return o->n_sparsities = n, 1;
    }
    if (!strcmp(a, "--family")) {
        n = tu_name_list(a, v, o->family_text, sizeof o->family_text, o->families);
        return n < 0 ? -1 : (o->n_families = n, 1);
    }
    if (!strcmp(a, "--budget")) return tu_number(a, v, 0, 1e7, &o->budget_s) ? -1 : 1;
    if (!strcmp(a, "--total-budget")) return tu_number(a, v, 0, 1e8, &o->total_budget_s) ? -1 : 1;
    if (!strcmp(a, "--db-dir")) return o->db_dir = v, 1;
    if (!strcmp(a, "--model-dir")) return o->model_dir = v, 1;
    if (!strcmp(a, "--device")) return tu_number(a, v, 0, 255, &x) ? -1 : (o->device = (int)x, 1);
    if (!strcmp(a, "--reps")) return tu_number(a, v, 1, 4096, &x) ? -1 : (o->reps = (int)x, 1);
    if (!strcmp(a, "--seed")) return tu_number(a, v, 0, 1e15, &x) ? -1 : (o->seed = (unsigned long long)x, 1);
    if (!strcmp(a, "--exhaustive-limit"))
        return tu_number(a, v, 0, 1e6, &x) ? -1 : (o->exhaustive_limit = (long)x, 1);
    if (!strcmp(a, "-j")) return tu_number(a, v, 1, 256, &x) ? -1 : (o->jobs = (int)x, 1);
    if (!strcmp(a, "--gpu")) return o->gpu = v, 1;
    if (!strcmp(a, "--prune-within")) return tu_number(a, v, 1, 100, &o->prune_within) ? -1 : 1;
    return 0;
}

/* Exactly one of --model, --shape, --model-dir names what to tune. */
static int tu_check_source(const tu_opts *o) {
    const int shape = o->k.d != 0 || o->k.f != 0;
    if (!o->model_dir) return 0;
    if (o->k.model || shape) {
        fprintf(stderr, "sprig tune: --model-dir cannot be combined with --%s: give one of --model, --shape, "
                        "--model-dir\n", o->k.model ? "model" : "shape");
        return 2;
    }
    if (o->g_given) {
        fprintf(stderr, "sprig tune: --g does not apply to --model-dir: the expert sizes come from the folder's "
                        "config.json (lte.expert_size; 1 without LTE)\n");
        return 2;
    }
    return 0;
}

static int tu_parse(int argc, char **argv, tu_opts *o) {
    tu_defaults(o);
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            tu_help(stdout);
            return -1;
        }
        if (!strcmp(a, "--retune")) o->retune = 1;
        else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--force")) o->force = 1;
        else if (!strcmp(a, "--list") || !strcmp(a, "--dry-run")) o->list = 1;
        else if (!strcmp(a, "--no-prune")) o->no_prune = 1;
        else if (!strcmp(a, "--counts")) o->counts = 1;
        else if (!strncmp(a, "-j", 2) && a[2]) { /* -j8 */
            if (tu_value_opt(o, "-j", a + 2) < 0) return 2;
        } else if (!strcmp(a, "--dtype") || !strcmp(a, "--batch") || !strcmp(a, "--family") || !strcmp(a, "--sparsity") ||
                   !strcmp(a, "--budget") || !strcmp(a, "--total-budget") || !strcmp(a, "--db-dir") ||
                   !strcmp(a, "--device") || !strcmp(a, "--reps") || !strcmp(a, "--seed") ||
                   !strcmp(a, "--exhaustive-limit") || !strcmp(a, "-j") || !strcmp(a, "--model-dir") ||
                   !strcmp(a, "--gpu") || !strcmp(a, "--prune-within")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sprig tune: %s needs a value\n", a);
                return 2;
            }
            if (tu_value_opt(o, a, argv[++i]) < 0) return 2;
        } else {
            o->g_given |= !strcmp(a, "--g");
            int r = cli_kernel_arg(&o->k, argc, argv, &i);
            if (r < 0) return 2;
            if (r == 0 || !strcmp(a, "--param")) {
                fprintf(stderr, "sprig tune: unknown option or missing value '%s' (sprig tune --help)\n", a);
                return 2;
            }
        }
    }
    if (o->counts && !o->list) {
        fprintf(stderr, "sprig tune: --counts goes with --list (it counts the candidates each key would measure)\n");
        return 2;
    }
    return tu_check_source(o);
}

/* ---- progress ------------------------------------------------------------------------------ */

typedef struct tu_run {
    sp_measure *m;
    int progress;               /* stderr is a terminal */
    double t0;
} tu_run;

static double tu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static sprig_status tu_measure(void *ctx, const sp_tune_key *k, const char *params, sp_measurement *out) {
    return sp_measure_candidate(((tu_run *)ctx)->m, k, params, out);
}

static sprig_status tu_prepare(void *ctx, const sp_tune_key *k, const char *const *params, size_t n) {
    tu_run *r = ctx;
    if (r->progress) {
        fprintf(stderr, "\r\033[K  %s: compiling %zu candidates", k->family, n);
        fflush(stderr);
    }
    return sp_measure_prepare(r->m, k, params, n);
}

static void tu_progress(void *ctx, size_t key_index, size_t n_keys, const sp_tune_key *k, size_t done,
                        size_t total, double best_us) {
    tu_run *r = ctx;
    if (!r->progress) return;
    const int width = 20;
    int filled = total ? (int)((double)width * (double)done / (double)total) : 0;
    char bar[32];
    for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    char best[32] = "-";
    if (best_us >= 0) snprintf(best, sizeof best, "%.2f us", best_us);
    fprintf(stderr, "\r\033[K[%zu/%zu] %s%s%s %s b=%d s=%g [%s] %zu/%zu  best %s  %.0fs", key_index + 1, n_keys,
            k->family, k->fixed && *k->fixed ? " " : "", k->fixed ? k->fixed : "", k->dtype, k->batch, k->sparsity,
            bar, done, total, best, tu_now() - r->t0);
    fflush(stderr);
}

/* ---- the command ----------------------------------------------------------------------------- */

/* The keys to tune, from one shape (sp_mlp_keys) or a model folder (sp_model_keys). */
typedef struct tu_keys {
    const sp_tune_key *keys;    /* borrowed from one of the two below */
    size_t n;
    char *const *uses;          /* [n] where each key runs (model folders), else NULL */
    char *const *skipped;
    size_t n_skipped;
    sp_mlp_keys mlp;
    sp_model_keys model;
} tu_keys;

static void tu_keys_free(tu_keys *k) {
    sp_mlp_keys_free(&k->mlp);
    sp_model_keys_free(&k->model);
}

static sprig_status tu_model_keys(sprig_gen *gen, const tu_opts *o, tu_keys *keys) {
    sp_model_config *cfg = calloc(1, sizeof *cfg); /* large (per-layer tables) */
    if (!cfg) return SPRIG_E_NOMEM;
    sprig_status s = sp_model_keys_config(o->model_dir, cfg);
    if (s != SPRIG_OK) {
        free(cfg);
        return cli_error("reading the model folder", s), s;
    }
    sp_model_key_request req = {cfg,
                                o->dtypes, o->n_dtypes,
                                o->batch_given ? o->batches : NULL, o->batch_given ? o->n_batches : 0,
                                o->sparsity_given ? o->sparsities : NULL, o->sparsity_given ? o->n_sparsities : 0,
                                o->n_families ? o->families : NULL, o->n_families};
    s = sp_model_keys_build(gen, &req, &keys->model);
    free(cfg);
    if (s != SPRIG_OK) return cli_error("choosing tuning keys", s), s;
    keys->keys = keys->model.keys, keys->n = keys->model.n, keys->uses = keys->model.uses;
    keys->skipped = keys->model.skipped, keys->n_skipped = keys->model.n_skipped;
    return SPRIG_OK;
}

static int tu_build_keys(sprig_gen *gen, tu_opts *o, tu_keys *keys) {
    if (o->model_dir) {
        if (tu_model_keys(gen, o, keys) != SPRIG_OK) return 1;
    } else {
        if (cli_resolve_model(gen, &o->k)) return 1;
        sp_mlp_key_request req = {o->k.d, o->k.f, o->k.g, o->dtypes, o->n_dtypes, o->batches, o->n_batches,
                                  o->sparsities, o->n_sparsities, o->n_families ? o->families : NULL, o->n_families};
        sprig_status s = sp_mlp_keys_build(gen, &req, &keys->mlp);
        if (s != SPRIG_OK) return cli_error("choosing tuning keys", s);
        keys->keys = keys->mlp.keys, keys->n = keys->mlp.n;
        keys->skipped = keys->mlp.skipped, keys->n_skipped = keys->mlp.n_skipped;
    }
    for (size_t i = 0; i < keys->n_skipped; ++i) fprintf(stderr, "sprig tune: skipping %s\n", keys->skipped[i]);
    if (keys->n == 0) {
        fprintf(stderr, "sprig tune: nothing to tune for this %s, batch and sparsity list\n",
                o->model_dir ? "model folder" : "shape");
        return 1;
    }
    return 0;
}

/* ---- the static model's filter ------------------------------------------------------------- */

/* The candidates of a ranked key the search may measure: the kept, up to the cap. */
static size_t tu_searched(const sp_analyze_rank *r) {
    return r->n_keep < SP_TUNE_MAX_KEPT ? r->n_keep : SP_TUNE_MAX_KEPT;
}

/* GPU seconds a key's search is expected to take (docs/perf-model.md, "Tuning
 * with the model"): 1 s for the key (operands, weight copies past the L2,
 * references), then the candidates it measures (all kept ones up to
 * --exhaustive-limit, else the sample and about three climbs' neighbours) plus
 * the three re-timed, each costing a fixed 5 ms (module load, verification,
 * synchronisation) and warm-up + reps samples of at least 50 us (short kernels
 * are timed k launches per graph). An estimate until a GPU calibrates it. */
static double tu_estimate_s(const tu_opts *o, const sp_analyze_rank *r) {
    const size_t kept = tu_searched(r);
    const size_t searched = kept <= (size_t)o->exhaustive_limit ? kept : 56;
    const double sample_us = r->best_us > 50 ? r->best_us : 50;
    return 1.0 + (double)(searched + 3) * (5e-3 + (o->warmup + o->reps) * sample_us * 1e-6);
}

/* ---- --list ----------------------------------------------------------------------------------- */

/* --list --counts: each key's filter, ranked (ranks[i] zeroed when it failed). */
static int tu_rank_keys(sprig_gen *gen, const tu_opts *o, const tu_keys *k, sp_analyze_rank **ranks) {
    sp_gpu_profile g;
    *ranks = NULL;
    if (!o->counts) return 0;
    if (cli_model_profile(gen, o->gpu, NULL, &g)) return 1;
    *ranks = calloc(k->n ? k->n : 1, sizeof **ranks);
    if (!*ranks) return fprintf(stderr, "sprig tune: out of memory\n"), 1;
    const int tty = isatty(STDERR_FILENO);
    for (size_t i = 0; i < k->n; ++i) {
        if (tty) fprintf(stderr, "\r\033[Kcounting candidates: key %zu of %zu (%s)", i + 1, k->n, k->keys[i].family);
        if (sp_tune_key_rank(gen, &k->keys[i], &g, o->no_prune ? 0 : o->prune_within, 0, &(*ranks)[i]) != SPRIG_OK)
            fprintf(stderr, "%ssprig tune: key %zu (%s): %s\n", tty ? "\r\033[K" : "", i + 1, k->keys[i].family,
                    sprig_last_error());
    }
    if (tty) fprintf(stderr, "\r\033[K");
    return 0;
}

static void tu_free_ranks(sp_analyze_rank *ranks, size_t n) {
    for (size_t i = 0; ranks && i < n; ++i) sp_analyze_rank_free(&ranks[i]);
    free(ranks);
}

static void tu_list_table(const tu_opts *o, const tu_keys *k, const sp_analyze_rank *ranks) {
    if (o->model_dir)
        printf("%zu keys for %s (%s, %s; g=%d dense, g=%d routed)\n", k->n, o->model_dir,
               k->model.sliced ? "SliceGPT-sliced" : "unsliced", k->model.routed ? "LTE routers" : "no LTE routers",
               k->model.g_dense, k->model.g_routed);
    else
        printf("%zu keys for d=%d, f=%d, g=%d\n", k->n, o->k.d, o->k.f, o->k.g);
    printf("%4s  %-14s %-14s %-5s %5s %8s %7s %7s %4s", "#", "family", "fixed", "dtype", "batch", "sparsity", "d", "f",
           "g");
    if (ranks) printf(" %7s %7s %8s %7s %6s", "space", "within", "distinct", "search", "est_s");
    printf("  %s\n", "used by");
    size_t space = 0, within = 0, distinct = 0, searched = 0;
    double est = 0;
    for (size_t i = 0; i < k->n; ++i) {
        const sp_tune_key *x = &k->keys[i];
        printf("%4zu  %-14s %-14s %-5s %5d %8g %7d %7d %4d", i + 1, x->family, x->fixed ? x->fixed : "", x->dtype,
               x->batch, x->sparsity, x->d, x->f, x->g);
        if (ranks) {
            const sp_analyze_rank *r = &ranks[i];
            const size_t search = tu_searched(r);
            const double e = tu_estimate_s(o, r);
            printf(" %7zu %7zu %8zu %7zu %6.1f", r->n_space, r->n_within, r->n_distinct, search, e);
            space += r->n_space, within += r->n_within, distinct += r->n_distinct, searched += search, est += e;
        }
        printf("  %s\n", k->uses ? k->uses[i] : "-");
    }
    if (ranks)
        printf("total: %zu candidates; %zu predicted within %.2gx of their key's best, %zu of them distinct kernels, "
               "%zu searched (the best predicted %d per key at most); about %.0f s of GPU time (an estimate: "
               "docs/perf-model.md)\n", space, within, o->no_prune ? 0.0 : o->prune_within, distinct, searched,
               SP_TUNE_MAX_KEPT, est);
}

static int tu_list_json(const tu_opts *o, const tu_keys *k, const sp_analyze_rank *ranks) {
    cJSON *root = cJSON_CreateObject();
    cJSON *src = cJSON_AddObjectToObject(root, "source");
    if (o->model_dir) {
        cJSON_AddStringToObject(src, "model_dir", o->model_dir);
        cJSON_AddBoolToObject(src, "sliced", k->model.sliced);
        cJSON_AddBoolToObject(src, "lte_routers", k->model.routed);
        cJSON_AddNumberToObject(src, "g_dense", k->model.g_dense);
        cJSON_AddNumberToObject(src, "g_routed", k->model.g_routed);
    } else {
        cJSON_AddNumberToObject(src, "d", o->k.d);
        cJSON_AddNumberToObject(src, "f", o->k.f);
        cJSON_AddNumberToObject(src, "g", o->k.g);
    }
    cJSON *keys = cJSON_AddArrayToObject(root, "keys");
    for (size_t i = 0; keys && i < k->n; ++i) {
        const sp_tune_key *x = &k->keys[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "family", x->family);
        cJSON_AddStringToObject(e, "fixed", x->fixed ? x->fixed : "");
        cJSON_AddStringToObject(e, "dtype", x->dtype);
        cJSON_AddNumberToObject(e, "batch", x->batch);
        cJSON_AddNumberToObject(e, "sparsity", x->sparsity);
        cJSON_AddNumberToObject(e, "d", x->d);
        cJSON_AddNumberToObject(e, "f", x->f);
        cJSON_AddNumberToObject(e, "g", x->g);
        if (k->uses) cJSON_AddStringToObject(e, "uses", k->uses[i]);
        if (ranks) {
            cJSON_AddNumberToObject(e, "space", (double)ranks[i].n_space);
            cJSON_AddNumberToObject(e, "within", (double)ranks[i].n_within);
            cJSON_AddNumberToObject(e, "distinct", (double)ranks[i].n_distinct);
            cJSON_AddNumberToObject(e, "searched", (double)tu_searched(&ranks[i]));
            cJSON_AddNumberToObject(e, "best_predicted_us", ranks[i].best_us);
            cJSON_AddNumberToObject(e, "estimated_gpu_s", tu_estimate_s(o, &ranks[i]));
        }
        cJSON_AddItemToArray(keys, e);
    }
    cJSON *skipped = cJSON_AddArrayToObject(root, "skipped");
    for (size_t i = 0; skipped && i < k->n_skipped; ++i)
        cJSON_AddItemToArray(skipped, cJSON_CreateString(k->skipped[i]));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) {
        fprintf(stderr, "sprig tune: out of memory\n");
        return 1;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

static int tu_open_device(const tu_opts *o, sp_exec **e) {
    sprig_status s = cli_exec_open(e, o->device);
    if (s == SPRIG_E_NO_DRIVER || s == SPRIG_E_NO_DEVICE) {
        fprintf(stderr,
                "sprig tune: no GPU to tune on: %s\n"
                "Tuning times kernels on the GPU it tunes for; run it on a machine with an NVIDIA GPU and\n"
                "driver. (sprig gen and sprig compile need no GPU.)\n",
                sprig_last_error());
        return 1;
    }
    return s == SPRIG_OK ? 0 : cli_error("opening the GPU", s);
}

static int tu_open_db(const tu_opts *o, const sp_exec *e, sp_db **db) {
    sp_gpu_id gpu;
    memset(&gpu, 0, sizeof gpu);
    snprintf(gpu.name, sizeof gpu.name, "%.127s", e->device);
    gpu.cc_major = e->cc_major, gpu.cc_minor = e->cc_minor, gpu.sm_count = e->sm_count;
    sprig_status s = sp_db_open(db, o->db_dir, &gpu, o->force);
    if (s != SPRIG_OK) {
        cli_error("opening the tuning database", s);
        if (s == SPRIG_E_FORMAT) fprintf(stderr, "sprig tune: --force moves the unusable file aside and starts anew\n");
        return 1;
    }
    int major = 0, minor = 0;
    if (nvrtcVersion(&major, &minor) == NVRTC_SUCCESS) (*db)->nvrtc_version = 1000 * major + 10 * minor;
    (*db)->driver_version = e->driver_version;
    if ((*db)->load_failed) fprintf(stderr, "sprig tune: replacing unusable %s: %s\n", (*db)->path, (*db)->load_error);
    return 0;
}

static int tu_run_keys(const tu_opts *o, sprig_gen *gen, sp_exec *e, sp_db *db, const tu_keys *keys) {
    sp_measure_opts mo;
    sp_measure_opts_init(&mo);
    mo.reps = o->reps, mo.warmup = o->warmup, mo.seed = o->seed, mo.jobs = o->jobs;
    tu_run run = {NULL, isatty(STDERR_FILENO), tu_now()};
    sprig_status s = sp_measure_open(&run.m, e, gen, &mo);
    if (s != SPRIG_OK) return cli_error("starting the measurements", s);
    sp_tune_opts to;
    sp_tune_opts_init(&to);
    to.gen = gen, to.db = db, to.keys = keys->keys, to.n_keys = keys->n;
    to.search.budget_s = o->budget_s;
    to.search.exhaustive_limit = (size_t)o->exhaustive_limit;
    to.search.seed = o->seed;
    to.total_budget_s = o->total_budget_s;
    to.retune = o->retune;
    to.measure = tu_measure, to.prepare = tu_prepare, to.progress = tu_progress, to.ctx = &run;
    sp_gpu_profile profile;
    if (cli_model_profile(gen, o->gpu, e->device, &profile)) {
        sp_measure_close(run.m);
        return 1;
    }
    to.model_gpu = &profile;
    to.prune_within = o->no_prune ? 0 : o->prune_within;
    to.max_kept = o->no_prune ? 0 : SP_TUNE_MAX_KEPT;
    if (!o->json && o->model_dir)
        printf("tuning %zu keys (model %s) on %s (sm_%d%d, %d SMs) into %s\n", keys->n, o->model_dir, e->device,
               e->cc_major, e->cc_minor, e->sm_count, db->path);
    else if (!o->json)
        printf("tuning %zu keys (d=%d, f=%d, g=%d) on %s (sm_%d%d, %d SMs) into %s\n", keys->n, o->k.d, o->k.f,
               o->k.g, e->device, e->cc_major, e->cc_minor, e->sm_count, db->path);
    fflush(stdout);
    sp_tune_summary sum;
    s = sp_tune_run(&to, &sum);
    if (run.progress) fprintf(stderr, "\r\033[K");
    if (o->json) {
        char *text = sp_tune_summary_json(&sum);
        if (text) printf("%s\n", text);
        free(text);
    } else {
        sp_tune_summary_print(&sum, stdout);
        printf("%.1f s\n", tu_now() - run.t0);
    }
    fflush(stdout);
    if (s != SPRIG_OK) cli_error("tuning", s);
    int rc = s != SPRIG_OK || sum.n_failed || sum.n_not_run;
    sp_tune_summary_free(&sum);
    sp_measure_close(run.m);
    return rc;
}

int cmd_tune(int argc, char **argv) {
    tu_opts o;
    int rc = tu_parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    sprig_gen *gen = NULL;
    sprig_status s = sprig_gen_open(&gen, o.k.template_dir);
    if (s != SPRIG_OK) return cli_error("starting the generator", s);
    tu_keys keys;
    memset(&keys, 0, sizeof keys);
    sp_exec *e = NULL;
    sp_db *db = NULL;
    rc = tu_build_keys(gen, &o, &keys);
    if (!rc && o.list) {
        sp_analyze_rank *ranks = NULL;
        rc = tu_rank_keys(gen, &o, &keys, &ranks);
        if (!rc && o.json) rc = tu_list_json(&o, &keys, ranks);
        else if (!rc) tu_list_table(&o, &keys, ranks);
        tu_free_ranks(ranks, keys.n);
        tu_keys_free(&keys);
        sprig_gen_close(gen);
        return rc;
    }
    if (!rc) rc = tu_open_device(&o, &e);
    if (!rc) rc = tu_open_db(&o, e, &db);
    if (!rc) rc = tu_run_keys(&o, gen, e, db, &keys);
    sp_db_close(db);
    sp_exec_close(e);
    tu_keys_free(&keys);
    sprig_gen_close(gen);
    return rc;
}
