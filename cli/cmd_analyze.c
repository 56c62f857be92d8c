/* sprig analyze: the static performance model (tuner/sp_analyze.h,
 * docs/perf-model.md) for a GPU profile, with no GPU: per kernel of a model
 * shape's MLP keys (or of one family), what it must move, what it requests,
 * its occupancy, waves, bytes in flight against Little's law, the SASS's
 * load widths, and its predicted time against the roof. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "sp_analyze.h"
#include "sp_mlp_keys.h"
#include "sp_model_keys.h"
#include "sp_mlp_mode.h"

#define AN_MAX_PLANS 64

typedef struct an_opts {
    cli_kernel_args k;
    const char *gpu;
    const char *model_dir;     /* --model-dir: the decode step of the folder's config */
    double sparsity;           /* percent of experts inactive (routed keys) */
    int context, json, no_sass;
} an_opts;

static void an_help(FILE *to) {
    fprintf(to,
            "usage: sprig analyze (--model NAME | --shape D,F) [--gpu NAME] [options]\n\n"
            "Predicts, without a GPU, how fast each kernel runs on a GPU profile\n"
            "(lua/sprig/gpus.lua: h100, h200, a100, l40s, rtx4090, b200) from what can be known\n"
            "without running it: the bytes its declared arguments must move (the roof), the bytes\n"
            "its spec says it requests, NVRTC's registers and shared memory (occupancy, waves),\n"
            "the loads each lane keeps in flight (bytes in flight against Little's law at the\n"
            "GPU's bandwidth), its dependent memory round trips, and, where nvdisasm is\n"
            "installed, the SASS's global load widths, the loads issued before a first use, the\n"
            "programmatic-dependent-launch wait, release and prefetches, and the serial tail (the\n"
            "loads one CTA waits on in turn after the last arrival; --json: tail_rounds, and\n"
            "tail_loop_rounds, those of them inside a loop, which each further trip repeats;\n"
            "tail_model, the spec's count of them).\n"
            "The model is written down in docs/perf-model.md.\n\n"
            "Without --family: every MLP key of the shape at --batch, dense (sparsity 0) and at\n"
            "--sparsity. With --family F [--param K=V]: that family's request.\n\n"
            "With --model-dir DIR (only its config.json and slicing are read; `sprig synth DIR\n"
            "--model llama2-7b [--lte 32] [--slice 0.25] --config-only` writes one): the decode step\n"
            "of that model as the GPU backend launches it (recorded from its own code without a\n"
            "GPU), dense and sparse (LTE routers, else training-free thresholds) at --sparsity:\n"
            "launches per token, each kernel's prediction, and ms/token against the roof with plain\n"
            "launches and, uncalibrated, with programmatic dependent launch (the CUDA executor's\n"
            "default on sm_90 and later; SPRIG_PDL=0 turns it off).\n\n"
            "options:\n"
            "%s"
            "  --gpu NAME          GPU profile (default h200)\n"
            "  --model-dir DIR     analyse that model's decode step (see above)\n"
            "  --sparsity S        percent of experts inactive for the routed keys (default 50)\n"
            "  --context N         positions an attention step reads (default 512)\n"
            "  --no-sass           do not disassemble (faster; SASS columns show -)\n"
            "  --json              print one JSON object instead of the table\n",
            cli_kernel_args_help);
}

static int an_parse(int argc, char **argv, an_opts *o) {
    memset(o, 0, sizeof *o);
    cli_kernel_args_init(&o->k);
    o->gpu = "h200", o->sparsity = 50, o->context = 512;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            an_help(stdout);
            return -1;
        }
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        if (!strcmp(a, "--no-sass")) { o->no_sass = 1; continue; }
        if ((!strcmp(a, "--gpu") || !strcmp(a, "--sparsity") || !strcmp(a, "--context") || !strcmp(a, "--model-dir")) &&
            !v) {
            fprintf(stderr, "sprig analyze: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--gpu")) { o->gpu = argv[++i]; continue; }
        if (!strcmp(a, "--model-dir")) { o->model_dir = argv[++i]; continue; }
        if (!strcmp(a, "--sparsity")) {
            char *end = NULL;
            o->sparsity = strtod(argv[++i], &end);
            if (!end || *end || !(o->sparsity >= 0 && o->sparsity < 100)) {
                fprintf(stderr, "sprig analyze: --sparsity expects a percent in [0, 100), got '%s'\n", argv[i]);
                return 2;
            }
            continue;
        }
        if (!strcmp(a, "--context")) {
            char *end = NULL;
            long c = strtol(argv[++i], &end, 10);
            if (!end || *end || c < 1 || c > 1 << 20) {
                fprintf(stderr, "sprig analyze: --context expects positions in 1..1048576, got '%s'\n", argv[i]);
                return 2;
            }
            o->context = (int)c;
            continue;
        }
        int r = cli_kernel_arg(&o->k, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "sprig analyze: unknown option '%s' (sprig analyze --help)\n", a);
            return 2;
        }
    }
    return 0;
}

/* One analysed request, with the key it came from. */
typedef struct an_row {
    char fixed[128];
    double sparsity;
    sp_analyze_plan plan;
} an_row;

static void an_print(const sp_gpu_profile *g, const an_row *rows, int n) {
    printf("%s (%s): %.0f GB/s %s, %d SMs, %.0f MB L2; Little's law needs %.2f MB in flight\n", g->name, g->full,
           g->read_gbs, g->measured ? "measured" : "(data sheet x 0.9)", g->sms, g->l2_mb,
           g->read_gbs * g->latency_ns / 1e6);
    printf("%-15s %-20s %4s %-27s %7s %4s %5s %6s %8s %8s %6s %7s %12s %9s %8s %6s\n", "family", "fixed", "sp%",
           "kernel", "CTAs", "regs", "CTA/S", "waves", "MB min", "MB req", "req/m", "inflt", "LDG 16/8/4/<4",
           "weights", "pred us", "%roof");
    for (int i = 0; i < n; ++i) {
        const sp_analyze_plan *p = &rows[i].plan;
        for (int j = 0; j < p->n; ++j) {
            const sp_analyze_kernel *k = &p->k[j];
            char ldg[32] = "-", wl[32] = "-";
            if (k->ldg128 >= 0) snprintf(ldg, sizeof ldg, "%d/%d/%d/%d", k->ldg128, k->ldg64, k->ldg32, k->ldg_sub);
            if (k->stream > 0)
                snprintf(wl, sizeof wl, "%s x%d", k->stream128 == k->stream ? "16B" : "mixed", k->stream_before_use);
            printf("%-15s %-20.20s %4g %-27.27s %7u %4d %5d %6.2f", j ? "" : p->family, j ? "" : rows[i].fixed,
                   rows[i].sparsity, k->name, k->ctas, k->regs, k->ctas_per_sm, k->waves);
            if (j == 0) printf(" %8.2f %8.2f %6.3f", p->bytes_min / 1e6, p->bytes / 1e6, p->bytes_min > 0 ? p->bytes / p->bytes_min : 0);
            else printf(" %8s %8.2f %6s", "", k->bytes / 1e6, "");
            printf(" %6.0f%% %12s %9s %8.2f", 100 * k->littles, ldg, wl, k->t_us);
            if (j == 0 && p->n == 1) printf(" %5.0f%%", 100 * p->roof_us / p->t_us);
            printf("\n");
        }
        if (p->n > 1)
            printf("%-15s %-20s %4s %-27s %69s %8.2f %5.0f%%\n", "", "", "", "  (plan)", "", p->t_us,
                   100 * p->roof_us / p->t_us);
    }
    printf("(inflt: the share of the bandwidth the bytes in flight sustain; LDG: global loads of 16, 8, 4 and fewer\n"
           " bytes in the SASS (- without nvdisasm); weights: the streamed (evict-first) loads, 16B when all are 16-byte,\n"
           " xN the most issued in a row before a floating-point use; %%roof: roof / predicted, the roof being the\n"
           " minimum bytes at the bandwidth above; docs/perf-model.md)\n");
}

static cJSON *an_json_plan(const an_row *r) {
    const sp_analyze_plan *p = &r->plan;
    cJSON *o = cJSON_CreateObject(), *ks = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "family", p->family);
    cJSON_AddStringToObject(o, "fixed", r->fixed);
    cJSON_AddNumberToObject(o, "sparsity", r->sparsity);
    cJSON_AddStringToObject(o, "params", p->params);
    cJSON_AddNumberToObject(o, "bytes_min", p->bytes_min);
    cJSON_AddNumberToObject(o, "bytes_requested", p->bytes);
    cJSON_AddNumberToObject(o, "predicted_us", p->t_us);
    cJSON_AddNumberToObject(o, "roof_us", p->roof_us);
    cJSON_AddNumberToObject(o, "attainable_us", p->attainable_us);
    cJSON_AddNumberToObject(o, "of_roof", p->t_us > 0 ? p->roof_us / p->t_us : 0);
    for (int j = 0; j < p->n; ++j) {
        const sp_analyze_kernel *k = &p->k[j];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", k->name);
        cJSON_AddNumberToObject(e, "ctas", k->ctas);
        cJSON_AddNumberToObject(e, "threads", k->threads);
        cJSON_AddNumberToObject(e, "working_ctas", k->working);
        cJSON_AddNumberToObject(e, "registers", k->regs);
        cJSON_AddNumberToObject(e, "smem", k->smem);
        if (k->spill >= 0) cJSON_AddNumberToObject(e, "spill_bytes", k->spill);
        else cJSON_AddNullToObject(e, "spill_bytes"); /* NVRTC's log had no report */
        cJSON_AddNumberToObject(e, "ctas_per_sm", k->ctas_per_sm);
        cJSON_AddNumberToObject(e, "waves", k->waves);
        cJSON_AddNumberToObject(e, "bytes_requested", k->bytes);
        cJSON_AddNumberToObject(e, "inflight_bytes", k->inflight_bytes);
        cJSON_AddNumberToObject(e, "littles", k->littles);
        cJSON_AddNumberToObject(e, "rounds", k->rounds);
        cJSON_AddNumberToObject(e, "predicted_us", k->t_us);
        if (k->ldg128 >= 0) {
            cJSON_AddNumberToObject(e, "ldg128", k->ldg128);
            cJSON_AddNumberToObject(e, "ldg64", k->ldg64);
            cJSON_AddNumberToObject(e, "ldg32", k->ldg32);
            cJSON_AddNumberToObject(e, "ldg_narrow", k->ldg_sub);
            cJSON_AddNumberToObject(e, "loads_before_use", k->loads_before_use);
            cJSON_AddNumberToObject(e, "weight_loads", k->stream);
            cJSON_AddNumberToObject(e, "weight_loads_16B", k->stream128);
            cJSON_AddNumberToObject(e, "weight_loads_before_use", k->stream_before_use);
            cJSON_AddNumberToObject(e, "grid_dep_waits", k->sass_waits);
            cJSON_AddNumberToObject(e, "grid_dep_releases", k->sass_releases);
            cJSON_AddNumberToObject(e, "prefetches_before_wait", k->sass_prefetch_before_wait);
            cJSON_AddNumberToObject(e, "global_writes_before_wait", k->sass_writes_before_wait);
            cJSON_AddNumberToObject(e, "tail_rounds", k->tail_rounds);
            cJSON_AddNumberToObject(e, "tail_loop_rounds", k->tail_loop_rounds);
        }
        if (k->tail_model >= 0) cJSON_AddNumberToObject(e, "tail_model", k->tail_model);
        cJSON_AddBoolToObject(e, "prefetch", k->prefetch);
        cJSON_AddItemToArray(ks, e);
    }
    cJSON_AddItemToObject(o, "kernels", ks);
    return o;
}

static int an_json(const sp_gpu_profile *g, const an_opts *o, const an_row *rows, int n) {
    cJSON *root = cJSON_CreateObject(), *plans = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "gpu", g->name);
    cJSON_AddNumberToObject(root, "read_gbs", g->read_gbs);
    cJSON_AddBoolToObject(root, "read_gbs_measured", g->measured);
    cJSON_AddNumberToObject(root, "d", o->k.d);
    cJSON_AddNumberToObject(root, "f", o->k.f);
    cJSON_AddStringToObject(root, "dtype", o->k.dtype);
    cJSON_AddNumberToObject(root, "batch", o->k.batch);
    for (int i = 0; i < n; ++i) cJSON_AddItemToArray(plans, an_json_plan(&rows[i]));
    cJSON_AddItemToObject(root, "plans", plans);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return 1;
    printf("%s\n", text);
    free(text);
    return 0;
}

/* The requests: one family's, or every MLP key of the shape at the batch, dense and sparse. */
static int an_requests(sprig_gen *gen, const an_opts *o, sp_mlp_keys *keys) {
    if (o->k.family) return 0;
    const char *dtypes[] = {o->k.dtype};
    const int batches[] = {o->k.batch};
    const double sp[] = {0, o->sparsity};
    sp_mlp_key_request req = {o->k.d, o->k.f, o->k.g, dtypes, 1, batches, 1, sp, o->sparsity > 0 ? 2 : 1, NULL, 0};
    sprig_status s = sp_mlp_keys_build(gen, &req, keys);
    return s == SPRIG_OK ? 0 : cli_error("building the MLP keys", s);
}

static int an_run(sprig_gen *gen, const an_opts *o, const sp_gpu_profile *g) {
    sp_mlp_keys keys;
    memset(&keys, 0, sizeof keys);
    int rc = an_requests(gen, o, &keys);
    if (rc) return rc;
    const int n = o->k.family ? 1 : (int)keys.n;
    an_row *rows = calloc((size_t)(n ? n : 1), sizeof *rows);
    if (!rows) return cli_error("analysing", SPRIG_E_NOMEM);
    sp_analyze_opts ao = {g, 1.0, o->context, NULL, o->no_sass ? "" : NULL};
    int done = 0;
    for (int i = 0; i < n && !rc; ++i) {
        sprig_request req = {o->k.family, o->k.d, o->k.f, o->k.dtype, o->k.batch, o->k.g, o->k.params};
        double sparsity = o->k.family ? o->sparsity : 0;
        if (!o->k.family) {
            const sp_tune_key *k = &keys.keys[i];
            req = (sprig_request){k->family, k->d, k->f, k->dtype, k->batch, k->g, k->fixed};
            sparsity = k->sparsity;
            snprintf(rows[done].fixed, sizeof rows[done].fixed, "%s", k->fixed ? k->fixed : "");
        } else {
            snprintf(rows[done].fixed, sizeof rows[done].fixed, "%.120s", o->k.params);
        }
        ao.active = 1.0 - sparsity / 100.0;
        rows[done].sparsity = sparsity;
        sprig_status s = sp_analyze_request(gen, &req, &ao, &rows[done].plan);
        if (s == SPRIG_OK) ++done;
        else if (s == SPRIG_E_INVALID && !o->k.family) fprintf(stderr, "sprig analyze: %s skipped: %s\n", req.family, sprig_last_error());
        else rc = cli_error("analysing", s);
    }
    if (!rc) rc = o->json ? an_json(g, o, rows, done) : (an_print(g, rows, done), 0);
    free(rows);
    sp_mlp_keys_free(&keys);
    return rc;
}

/* ---- a model's decode step ------------------------------------------------------------- */

/* Whether the CUDA executor launches with programmatic dependent launch on g's
 * architecture (exec/exec_cuda.c: sm_90 and later, unless SPRIG_PDL=0). */
static int an_pdl_default(const sp_gpu_profile *g) {
    return !strncmp(g->arch, "sm_", 3) && atoi(g->arch + 3) >= 90;
}

static void an_print_step(const char *mode, const sp_analyze_step *st, const sp_gpu_profile *g) {
    printf("\n%s%s: %d kernel launches per token (%.1f per layer over %d layers)\n", mode,
           strcmp(mode, "dense") ? "" : "", st->kernels, (double)st->kernels / st->layers, st->layers);
    printf("  %-18s %-44s %5s %9s %9s %7s\n", "family", "params", "count", "us each", "us total", "%roof");
    for (int i = 0; i < st->n; ++i) {
        const sp_analyze_plan *p = &st->rows[i].plan;
        printf("  %-18s %-44.44s %5d %9.2f %9.2f %6.0f%%\n", p->family, p->params, st->rows[i].count, p->t_us,
               p->t_us * st->rows[i].count, p->t_us > 0 ? 100 * p->roof_us / p->t_us : 0);
    }
    printf("  plain launches: predicted %.3f ms/token (%.3f of it launch gaps, %.3f kernels' fixed cost), "
           "roof %.3f ms/token: %.0f%% of the roof%s\n",
           st->t_us / 1e3, st->gaps_us / 1e3, st->kernels * g->kernel_us / 1e3, st->roof_us / 1e3,
           100 * st->roof_us / st->t_us, an_pdl_default(g) ? " (SPRIG_PDL=0)" : " (the default here)");
    printf("  programmatic dependent launch (%s; uncalibrated: gaps after the first and\n"
           "  prefetched first round trips hidden): %.3f ms/token, %.0f%% of the roof\n",
           an_pdl_default(g) ? "the default on sm_90+" : "needs sm_90: not on this GPU", st->t_pdl_us / 1e3,
           100 * st->roof_us / st->t_pdl_us);
}

static cJSON *an_json_step(const char *mode, const sp_analyze_step *st, double sparsity, const sp_gpu_profile *g) {
    cJSON *o = cJSON_CreateObject(), *rows = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "mode", mode);
    cJSON_AddNumberToObject(o, "sparsity", sparsity);
    cJSON_AddNumberToObject(o, "launches_per_token", st->kernels);
    cJSON_AddNumberToObject(o, "layers", st->layers);
    cJSON_AddNumberToObject(o, "predicted_ms", st->t_us / 1e3);
    cJSON_AddNumberToObject(o, "gaps_ms", st->gaps_us / 1e3);
    cJSON_AddNumberToObject(o, "roof_ms", st->roof_us / 1e3);
    cJSON_AddNumberToObject(o, "of_roof", st->t_us > 0 ? st->roof_us / st->t_us : 0);
    cJSON_AddNumberToObject(o, "predicted_pdl_ms", st->t_pdl_us / 1e3);
    cJSON_AddNumberToObject(o, "of_roof_pdl", st->t_pdl_us > 0 ? st->roof_us / st->t_pdl_us : 0);
    /* what the CUDA executor does by default on this GPU: PDL on sm_90+ */
    cJSON_AddBoolToObject(o, "pdl_default", an_pdl_default(g));
    const double t_default = an_pdl_default(g) ? st->t_pdl_us : st->t_us;
    cJSON_AddNumberToObject(o, "predicted_default_ms", t_default / 1e3);
    cJSON_AddNumberToObject(o, "of_roof_default", t_default > 0 ? st->roof_us / t_default : 0);
    for (int i = 0; i < st->n; ++i) {
        an_row r = {"", sparsity, st->rows[i].plan};
        cJSON *p = an_json_plan(&r);
        cJSON_AddNumberToObject(p, "count", st->rows[i].count);
        cJSON_AddItemToArray(rows, p);
    }
    cJSON_AddItemToObject(o, "plans", rows);
    return o;
}

static int an_run_step(sprig_gen *gen, const an_opts *o, const sp_gpu_profile *g) {
    sp_model_config cfg;
    sprig_status s = sp_model_keys_config(o->model_dir, &cfg);
    if (s != SPRIG_OK) return cli_error("reading the model folder", s);
    const struct {
        const char *name;
        sp_mlp_mode mode;
        double sparsity;
    } modes[] = {{"dense", SP_MLP_DENSE, 0},
                 {cfg.lte.enabled ? "lte" : "threshold", cfg.lte.enabled ? SP_MLP_AUTO : SP_MLP_THRESHOLD, o->sparsity}};
    cJSON *root = o->json ? cJSON_CreateObject() : NULL, *list = o->json ? cJSON_CreateArray() : NULL;
    if (!o->json)
        printf("%s on %s (%s): %.0f GB/s %s, launch gap %.1f us, fixed cost %.1f us per kernel\n", o->model_dir,
               g->name, g->full, g->read_gbs, g->measured ? "measured" : "(data sheet x 0.9)", g->launch_us,
               g->kernel_us);
    int rc = 0;
    for (size_t m = 0; m < 2 && !rc; ++m) {
        if (m == 1 && o->sparsity <= 0) break;
        sp_analyze_opts ao = {g, 1.0 - modes[m].sparsity / 100.0, o->context, NULL, o->no_sass ? "" : NULL};
        sp_analyze_step st;
        s = sp_analyze_step_of(gen, &cfg, modes[m].mode, o->k.dtype, &ao, &st);
        if (s != SPRIG_OK) {
            rc = cli_error("analysing the decode step", s);
            break;
        }
        if (o->json) cJSON_AddItemToArray(list, an_json_step(modes[m].name, &st, modes[m].sparsity, g));
        else an_print_step(modes[m].name, &st, g);
        sp_analyze_step_free(&st);
    }
    if (root) {
        cJSON_AddStringToObject(root, "gpu", g->name);
        cJSON_AddStringToObject(root, "model_dir", o->model_dir);
        cJSON_AddNumberToObject(root, "read_gbs", g->read_gbs);
        cJSON_AddNumberToObject(root, "launch_us", g->launch_us);
        cJSON_AddNumberToObject(root, "kernel_us", g->kernel_us);
        cJSON_AddItemToObject(root, "steps", list);
        char *text = cJSON_Print(root);
        if (text && !rc) printf("%s\n", text);
        free(text);
        cJSON_Delete(root);
    }
    return rc;
}

int cmd_analyze(int argc, char **argv) {
    an_opts o;
    int rc = an_parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    sprig_gen *gen = NULL;
    sprig_status s = sprig_gen_open(&gen, o.k.template_dir);
    if (s != SPRIG_OK) return cli_error("starting the generator", s);
    if (!o.model_dir) rc = cli_resolve_model(gen, &o.k);
    sp_gpu_profile g;
    if (!rc && (s = sp_gen_gpu_profile(gen, o.gpu, &g)) != SPRIG_OK) rc = cli_error("--gpu", s);
    if (!rc && !o.no_sass && !o.json) {
        char dis[4096];
        if (sp_analyze_find_nvdisasm(dis, sizeof dis)) printf("SASS read with %s\n", dis);
        else
            fprintf(stderr, "sprig analyze: no nvdisasm found ($SPRIG_NVDISASM, PATH, /usr/local/cuda/bin, or the copy "
                            "scripts/install-deps.sh installs): the SASS columns show -\n");
    }
    if (!rc) rc = o.model_dir ? an_run_step(gen, &o, &g) : an_run(gen, &o, &g);
    sprig_gen_close(gen);
    return rc;
}
