/* sprig bench-e2e: decode speed (ms/token) of one or more model folders, each
 * dense and sparse (LTE routers or training-free thresholds), all measured in
 * the same run on the same backend, so that ratios between them mean
 * something: LTE against dense, a SliceGPT-sliced model against its unsliced
 * original, sliced + LTE against both. On CUDA each row also gets the bytes a
 * token reads and the time the measured streaming-read bandwidth allows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "e2e_profile.h"
#include "sp_model_keys.h"
#include "sp_analyze.h"
#include "cli_tuning.h"
#include "sp_error.h"
#include "sp_backend.h"
#include "sp_bench.h"
#include "sp_exec.h"
#include "sp_model.h"

#define E2E_MAX_MODELS 8

typedef struct e2e_opts {
    const char *dirs[E2E_MAX_MODELS];
    int n_dirs;
    const char *backend, *dtype, *json, *modes, *graph;
    int tokens, warmup, roof, profile;
    double sparsity; /* training-free, for models without routers */
    cli_tuning_args tuning;
} e2e_opts;

static void e2e_help(FILE *to) {
    fprintf(to, "usage: sprig bench-e2e MODEL_DIR [MODEL_DIR ...] [--backend cpu|cuda] [options]\n\n"
                "Times greedy decoding (batch 1) in milliseconds per token, for each model folder\n"
                "(up to %d) dense, then sparse (its LTE routers, or --sparsity S training-free\n"
                "thresholds for a model without routers), all in the same run on the same backend.\n"
                "Ratios are against the first row (the first folder, dense). To compare slicing:\n"
                "  sprig bench-e2e llama2-7b llama2-7b-sliced25 llama2-7b-sliced25-lte\n"
                "Make such 7B-shaped test models with `sprig synth --model llama2-7b [--slice 0.25]\n"
                "[--lte 32]`.\n\n"
                "On cuda each row also shows the weight bytes one token reads (a sparse MLP skips\n"
                "its share of W_gate, W_up, W_down), the time that takes at the streaming-read\n"
                "bandwidth measured at the start of the run (the roof), and `of bytes`: the speed-up\n"
                "over the first row divided by the ratio of bytes read (1.0: as fast as the bytes\n"
                "saved allow).\n\n"
                "options:\n"
                "  --backend cpu|cuda   where to run (default cuda)\n"
                "  --dtype fp16|bf16    compute type on cuda (default fp16)\n"
                "  --modes LIST         dense, sparse or dense,sparse (default dense,sparse)\n"
                "  --graph on|off|both  cuda: replay the decode step as a CUDA graph, launch kernel\n"
                "                       by kernel, or time both (default on)\n"
                "  --tokens N           decode steps timed per row (default 32)\n"
                "  --warmup N           untimed steps first (default 4; the graph is captured then)\n"
                "  --sparsity S         training-free sparsity when a model has no routers (default 0.5)\n"
                "  --no-roof            cuda: skip the bandwidth measurement\n"
                "  --profile            cuda: after each row, decode min(--tokens, 8) more tokens without\n"
                "                       a graph, each launch timed alone, and print per kernel: launches\n"
                "                       per token, us each, the static model's prediction, and how much of\n"
                "                       the row's ms/token lies outside the kernels\n"
                "  --json FILE          also write the rows as JSON (on cuda with \"tuning\": each kernel\n"
                "                       request, its parameters and their source)\n"
                "%s"
                "On cuda every run shares one kernel set; a line on standard error counts the kernels by\n"
                "where their parameters came from.\n",
                E2E_MAX_MODELS, cli_tuning_args_help);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One timed configuration. Bytes are 0 on the CPU backend (not measured). */
typedef struct e2e_row {
    const char *model;            /* the folder as given */
    char mode[12];                /* "dense", "lte", "threshold" */
    int graph;                    /* 1 graph, 0 launches, -1 not applicable (cpu) */
    double ms, sparsity;
    double weight_bytes;          /* on the device, the embedding excepted */
    double read_bytes;            /* per token: weight_bytes less the skipped share of the MLP */
    double predicted_ms;          /* the static model's decode step at the backend's defaults (0: none) */
    e2e_profile prof;             /* --profile: its kernels one by one (n 0: not profiled) */
} e2e_row;

typedef struct e2e_bench {
    const e2e_opts *o;
    int cuda;
    sp_exec *exec;
    sp_gpu_kernels *kernels;      /* every run's kernels, parameters from the tuning databases */
    double read_gbs;              /* measured streaming-read bandwidth; 0 when not measured */
    sprig_gen *gen;               /* for the static model's predictions (cuda) */
    sp_gpu_profile profile;
    int predict;
    e2e_row rows[E2E_MAX_MODELS * 4];
    int n_rows;
} e2e_bench;

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; ++i)
        if (v[i] > v[b]) b = i;
    return b;
}

/* n greedy decode steps from position pos, fed *tok first; *tok ends as the next token. */
static sprig_status decode_steps(sp_backend *be, int vocab, int pos, int n, int *tok) {
    const float *logits = NULL;
    for (int t = 0; t < n; ++t) {
        SP_TRY(sp_backend_forward(be, *tok, pos + t, &logits));
        *tok = argmax(logits, vocab);
    }
    return SPRIG_OK;
}

/* Decodes warmup + tokens greedy steps from token 1 and returns ms per timed token. */
static sprig_status time_decode(sp_backend *be, int vocab, int warmup, int tokens, double *ms, double *sparsity) {
    int tok = 1 % vocab;
    SP_TRY(decode_steps(be, vocab, 0, warmup, &tok));
    const double t0 = now_s();
    SP_TRY(decode_steps(be, vocab, warmup, tokens, &tok));
    *ms = (now_s() - t0) * 1e3 / tokens;
    *sparsity = sp_backend_mlp_sparsity(be);
    return SPRIG_OK;
}

static int has(const char *list, const char *item) {
    const size_t n = strlen(item);
    for (const char *p = list; (p = strstr(p, item)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

static int parse_e2e(int argc, char **argv, e2e_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cuda", o->dtype = "fp16", o->tokens = 32, o->warmup = 4, o->sparsity = 0.5, o->roof = 1;
    o->modes = "dense,sparse", o->graph = "on";
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { e2e_help(stdout); exit(0); }
        if (a[0] != '-') {
            if (o->n_dirs == E2E_MAX_MODELS) {
                fprintf(stderr, "sprig bench-e2e: at most %d model folders per run\n", E2E_MAX_MODELS);
                return 2;
            }
            o->dirs[o->n_dirs++] = a;
            continue;
        }
        if (!strcmp(a, "--no-roof")) { o->roof = 0; continue; }
        if (!strcmp(a, "--profile")) { o->profile = 1; continue; }
        const int t = cli_tuning_arg(&o->tuning, "bench-e2e", argc, argv, &i);
        if (t < 0) return 2;
        if (t > 0) continue;
        if (!v) { fprintf(stderr, "sprig bench-e2e: %s needs a value\n", a); return 2; }
        ++i;
        if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--dtype")) o->dtype = v;
        else if (!strcmp(a, "--modes")) o->modes = v;
        else if (!strcmp(a, "--graph")) o->graph = v;
        else if (!strcmp(a, "--tokens")) { if (cli_parse_int("bench-e2e", a, v, 1, 1 << 16, &o->tokens)) return 2; }
        else if (!strcmp(a, "--warmup")) { if (cli_parse_int("bench-e2e", a, v, 0, 1 << 16, &o->warmup)) return 2; }
        else if (!strcmp(a, "--sparsity")) { if (cli_parse_double("bench-e2e", a, v, 0, 1, &o->sparsity)) return 2; }
        else if (!strcmp(a, "--json")) o->json = v;
        else { fprintf(stderr, "sprig bench-e2e: unknown option '%s' (see --help)\n", a); return 2; }
    }
    if (!o->n_dirs) { fprintf(stderr, "sprig bench-e2e: give the model folder(s) (see --help)\n"); return 2; }
    if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda")) {
        fprintf(stderr, "sprig bench-e2e: --backend must be cpu or cuda\n");
        return 2;
    }
    if (!has(o->modes, "dense") && !has(o->modes, "sparse")) {
        fprintf(stderr, "sprig bench-e2e: --modes must name dense, sparse or both, not '%s'\n", o->modes);
        return 2;
    }
    if (strcmp(o->graph, "on") && strcmp(o->graph, "off") && strcmp(o->graph, "both")) {
        fprintf(stderr, "sprig bench-e2e: --graph must be on, off or both\n");
        return 2;
    }
    if (o->profile && strcmp(o->backend, "cuda")) {
        fprintf(stderr, "sprig bench-e2e: --profile times the kernels of --backend cuda\n");
        return 2;
    }
    if (o->tokens < 1 || o->warmup < 0) { fprintf(stderr, "sprig bench-e2e: --tokens >= 1, --warmup >= 0\n"); return 2; }
    if (!(o->sparsity > 0 && o->sparsity < 1)) { fprintf(stderr, "sprig bench-e2e: --sparsity must be in (0, 1)\n"); return 2; }
    return 0;
}

/* Training-free thresholds for a model without routers, calibrated once per
 * model on a short fixed prompt (the caller frees *out, [n_layers]). */
static sprig_status calibrate(const e2e_bench *b, const sp_model *model, float **out) {
    const int vocab = model->cfg->vocab_size;
    int prompt[16];
    for (int i = 0; i < 16; ++i) prompt[i] = (i * 7919 + 1) % vocab;
    *out = malloc(sizeof(float) * (size_t)model->cfg->num_hidden_layers);
    SP_CHECK_ALLOC(*out);
    return sp_calibrate_thresholds(model, prompt, 16, b->o->sparsity, *out);
}

/* Opens the backend for one row; thresholds (NULL unless a threshold row)
 * switch its MLP to the threshold rule. */
static sprig_status open_run(e2e_bench *b, const sp_model *model, int sparse, const float *thresholds, int graph,
                             sp_backend **be) {
    const e2e_opts *o = b->o;
    const int ctx = o->warmup + o->tokens + 1;
    const sp_mlp_mode mode = thresholds ? SP_MLP_THRESHOLD : sparse ? SP_MLP_AUTO : SP_MLP_DENSE;
    SP_TRY(b->cuda ? sp_backend_open_gpu(b->kernels, model, ctx, mode, o->dtype, be)
                   : sp_backend_open_cpu(model, ctx, mode, be));
    if (thresholds) SP_TRY(sp_backend_set_thresholds(*be, thresholds));
    sp_backend_set_graph(*be, graph);
    return SPRIG_OK;
}

/* The static model's ms/token for this row's step (sprig analyze --model-dir):
 * the backend's launches at their default parameters, the MLP at the measured
 * sparsity; launched with programmatic dependent launch, its PDL estimate. 0 when it cannot be predicted (said once on stderr). */
static double predict_ms(e2e_bench *b, const char *dir, int sparse, int thresholds, double sparsity) {
    sp_model_config cfg;
    sp_analyze_step st;
    sp_analyze_opts ao = {&b->profile, sparse ? 1.0 - sparsity : 1.0, 512, NULL, ""};
    const sp_mlp_mode mode = thresholds ? SP_MLP_THRESHOLD : sparse ? SP_MLP_AUTO : SP_MLP_DENSE;
    if (sp_model_keys_config(dir, &cfg) != SPRIG_OK || sp_analyze_step_of(b->gen, &cfg, mode, b->o->dtype, &ao, &st) != SPRIG_OK) {
        fprintf(stderr, "sprig bench-e2e: no prediction for %s: %s\n", dir, sprig_last_error());
        return 0;
    }
    const double ms = (b->exec && b->exec->pdl ? st.t_pdl_us : st.t_us) / 1e3; /* PDL's: uncalibrated */
    sp_analyze_step_free(&st);
    return ms;
}

/* --profile: the row's step again on a backend of its own without a graph
 * (one warm-up token, then up to 8 profiled). */
static sprig_status profile_row(e2e_bench *b, const sp_model *model, int sparse, const float *thresholds, e2e_row *row) {
    sp_backend *be = NULL;
    const int tokens = b->o->tokens < 8 ? b->o->tokens : 8, vocab = model->cfg->vocab_size;
    int tok = 1 % vocab;
    sprig_status s = open_run(b, model, sparse, thresholds, 0, &be);
    if (s == SPRIG_OK) s = decode_steps(be, vocab, 0, 1, &tok);
    if (s == SPRIG_OK) s = e2e_profile_begin(b->exec);
    if (s == SPRIG_OK) {
        s = decode_steps(be, vocab, 1, tokens, &tok);
        const sprig_status taken = e2e_profile_take(b->exec, tokens, &row->prof); /* always: it stops profiling */
        if (s == SPRIG_OK) s = taken;
        else e2e_profile_free(&row->prof);
    }
    sp_backend_close(be);
    if (s == SPRIG_OK && b->predict)
        e2e_profile_predict(&row->prof, b->gen, &b->profile, sparse ? 1.0 - row->sparsity : 1.0);
    return s == SPRIG_OK ? s : sp_wrap(s, "profiling");
}

static sprig_status time_row(e2e_bench *b, const sp_model *model, const char *dir, int sparse,
                             const float *thresholds, int graph) {
    e2e_row *row = &b->rows[b->n_rows];
    memset(row, 0, sizeof *row);
    row->model = dir;
    row->graph = b->cuda ? graph : -1;
    snprintf(row->mode, sizeof row->mode, "%s", !sparse ? "dense" : model->cfg->lte.enabled ? "lte" : "threshold");
    sp_backend *be = NULL;
    sprig_status s = open_run(b, model, sparse, thresholds, graph, &be);
    if (s == SPRIG_OK) s = time_decode(be, model->cfg->vocab_size, b->o->warmup, b->o->tokens, &row->ms, &row->sparsity);
    if (s == SPRIG_OK && graph && sp_backend_note(be)[0]) {
        fprintf(stderr, "sprig bench-e2e: %s\n", sp_backend_note(be));
        row->graph = 0; /* it ran without one */
    }
    if (s == SPRIG_OK) {
        size_t all = 0, mlp = 0;
        sp_backend_weight_bytes(be, &all, &mlp);
        row->weight_bytes = (double)all;
        row->read_bytes = all ? row->weight_bytes - row->sparsity * (double)mlp : 0;
    }
    sp_backend_close(be);
    if (s == SPRIG_OK && b->o->profile) s = profile_row(b, model, sparse, thresholds, row);
    if (s == SPRIG_OK && b->predict) row->predicted_ms = predict_ms(b, dir, sparse, thresholds != NULL, row->sparsity);
    if (s != SPRIG_OK) return sp_wrap(s, "%s, %s", dir, row->mode);
    fprintf(stderr, "  %s %s%s: %.3f ms/token\n", dir, row->mode, row->graph == 0 ? " (no graph)" : "", row->ms);
    ++b->n_rows;
    return SPRIG_OK;
}

static sprig_status time_model(e2e_bench *b, const char *dir) {
    sp_model *model = NULL;
    sprig_status s = sp_model_open(dir, &model);
    if (s != SPRIG_OK) return sp_wrap(s, "loading %s", dir);
    const char *g = b->o->graph;
    float *calib = NULL; /* thresholds, for the sparse rows of a model without routers */
    if (has(b->o->modes, "sparse") && !model->cfg->lte.enabled && (s = calibrate(b, model, &calib)) != SPRIG_OK)
        s = sp_wrap(s, "%s, calibrating thresholds", dir);
    for (int sparse = 0; sparse < 2 && s == SPRIG_OK; ++sparse) {
        if (!has(b->o->modes, sparse ? "sparse" : "dense")) continue;
        const float *thr = sparse ? calib : NULL;
        if (!b->cuda || strcmp(g, "off")) s = time_row(b, model, dir, sparse, thr, 1);
        if (s == SPRIG_OK && b->cuda && strcmp(g, "on")) s = time_row(b, model, dir, sparse, thr, 0);
    }
    free(calib);
    sp_model_close(model);
    return s;
}

/* ---- reporting ------------------------------------------------------------------- */

static double roof_ms(const e2e_bench *b, const e2e_row *r) {
    return b->read_gbs > 0 && r->read_bytes > 0 ? r->read_bytes / (b->read_gbs * 1e9) * 1e3 : 0;
}

static void print_table(const e2e_bench *b) {
    const e2e_row *first = &b->rows[0];
    printf("%-28s %-9s %-5s %9s %8s %8s %10s %10s %8s %7s %8s %7s\n", "model", "mode", "graph", "ms/token", "pred ms",
           "MLP sp", "weights MB", "read MB", "roof ms", "of roof", "speed-up", "of bytes");
    for (int i = 0; i < b->n_rows; ++i) {
        const e2e_row *r = &b->rows[i];
        const char *name = strrchr(r->model, '/') && strrchr(r->model, '/')[1] ? strrchr(r->model, '/') + 1 : r->model;
        const double roof = roof_ms(b, r), speedup = first->ms / r->ms;
        printf("%-28.28s %-9s %-5s %9.3f", name, r->mode, r->graph < 0 ? "-" : r->graph ? "on" : "off", r->ms);
        if (r->predicted_ms > 0) printf(" %8.3f", r->predicted_ms);
        else printf(" %8s", "-");
        printf(" %7.1f%%", 100 * r->sparsity);
        if (r->read_bytes > 0) printf(" %10.1f %10.1f", r->weight_bytes / 1e6, r->read_bytes / 1e6);
        else printf(" %10s %10s", "-", "-");
        if (roof > 0) printf(" %8.3f %6.0f%%", roof, 100 * roof / r->ms);
        else printf(" %8s %7s", "-", "-");
        printf(" %8.3f", speedup);
        if (r->read_bytes > 0 && first->read_bytes > 0) printf(" %7.2f\n", speedup / (first->read_bytes / r->read_bytes));
        else printf(" %7s\n", "-");
    }
    printf("(%s backend, %s, %s; %d timed tokens after %d warm-up%s%s)\n", b->o->backend,
           b->exec ? b->exec->device : "CPU", b->cuda ? b->o->dtype : "fp32", b->o->tokens, b->o->warmup,
           b->read_gbs > 0 ? "; roof at the streaming read measured now" : "",
           !b->exec ? "" : b->exec->pdl ? "; programmatic dependent launch (SPRIG_PDL=0 turns it off)" : "; plain launches");
    if (b->read_gbs > 0) printf("streaming read: %.0f GB/s\n", b->read_gbs);
    for (int i = 0; i < b->n_rows; ++i) {
        const e2e_row *r = &b->rows[i];
        char title[160];
        snprintf(title, sizeof title, "%s %s", r->model, r->mode);
        if (r->prof.n) e2e_profile_print(&r->prof, title, r->ms);
    }
}

static char *rows_json(const e2e_bench *b, const sp_runtime_tuning *tuning) {
    cJSON *root = cJSON_CreateObject(), *rows = cJSON_CreateArray();
    const e2e_row *first = &b->rows[0];
    cJSON_AddStringToObject(root, "backend", b->o->backend);
    cJSON_AddStringToObject(root, "device", b->exec ? b->exec->device : "CPU");
    cJSON_AddStringToObject(root, "dtype", b->cuda ? b->o->dtype : "fp32");
    cJSON_AddNumberToObject(root, "tokens", b->o->tokens);
    cJSON_AddNumberToObject(root, "warmup", b->o->warmup);
    if (b->read_gbs > 0) cJSON_AddNumberToObject(root, "read_gbs", b->read_gbs);
    if (b->exec) cJSON_AddBoolToObject(root, "pdl", b->exec->pdl);
    for (int i = 0; i < b->n_rows; ++i) {
        const e2e_row *r = &b->rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", r->model);
        cJSON_AddStringToObject(o, "mode", r->mode);
        if (r->graph >= 0) cJSON_AddBoolToObject(o, "graph", r->graph);
        cJSON_AddNumberToObject(o, "ms_per_token", r->ms);
        cJSON_AddNumberToObject(o, "mlp_sparsity", r->sparsity);
        cJSON_AddNumberToObject(o, "speedup_vs_first", first->ms / r->ms);
        if (r->read_bytes > 0) {
            cJSON_AddNumberToObject(o, "weight_bytes", r->weight_bytes);
            cJSON_AddNumberToObject(o, "read_bytes", r->read_bytes);
            if (first->read_bytes > 0)
                cJSON_AddNumberToObject(o, "speedup_of_bytes_ratio", (first->ms / r->ms) / (first->read_bytes / r->read_bytes));
        }
        if (roof_ms(b, r) > 0) cJSON_AddNumberToObject(o, "roof_ms", roof_ms(b, r));
        if (r->predicted_ms > 0) cJSON_AddNumberToObject(o, "predicted_ms", r->predicted_ms);
        if (r->prof.n) cJSON_AddItemToObject(o, "profile", e2e_profile_json(&r->prof));
        cJSON_AddItemToArray(rows, o);
    }
    cJSON_AddItemToObject(root, "rows", rows);
    if (b->cuda) {
        char *tj = cli_tuning_json(tuning);
        cJSON *t = tj ? cJSON_Parse(tj) : NULL;
        if (t) cJSON_AddItemToObject(root, "tuning", t);
        free(tj);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

static int write_json(const e2e_bench *b, const sp_runtime_tuning *tuning) {
    char *text = rows_json(b, tuning);
    FILE *fp = text ? fopen(b->o->json, "w") : NULL;
    int rc = 0;
    if (!fp || fprintf(fp, "%s\n", text) < 0) {
        fprintf(stderr, "sprig bench-e2e: cannot write %s\n", b->o->json);
        rc = 1;
    }
    if (fp && fclose(fp) != 0) rc = 1;
    free(text);
    return rc;
}

int cmd_bench_e2e(int argc, char **argv) {
    e2e_opts o;
    int rc = parse_e2e(argc, argv, &o);
    if (rc) return rc;
    static e2e_bench b; /* rows: a few KB, off the stack */
    memset(&b, 0, sizeof b);
    b.o = &o;
    b.cuda = !strcmp(o.backend, "cuda");
    sp_runtime_tuning *tuning = NULL;
    sprig_status s = SPRIG_OK;
    if (b.cuda && (s = cli_exec_open(&b.exec, 0)) != SPRIG_OK) {
        fprintf(stderr, "sprig bench-e2e: --backend cuda: %s (%s); --backend cpu runs without one\n",
                sprig_status_name(s), sprig_last_error());
        return 1;
    }
    if (b.cuda && cli_tuning_kernels_open(&o.tuning, "bench-e2e", b.exec, &tuning, &b.kernels)) {
        sp_exec_close(b.exec);
        return 1;
    }
    if (b.cuda && o.roof) {
        /* 1 GiB: far past the L2, as sprig bench measures it */
        s = sp_bench_read_bandwidth(b.exec, (size_t)1 << 30, 3, 10, &b.read_gbs);
        if (s != SPRIG_OK) {
            fprintf(stderr, "sprig bench-e2e: measuring the read bandwidth failed (%s); no roof column\n",
                    sprig_last_error());
            b.read_gbs = 0, s = SPRIG_OK;
        }
    }
    /* the static model's prediction beside each measurement (docs/perf-model.md) */
    if (b.cuda && sprig_gen_open(&b.gen, NULL) == SPRIG_OK)
        b.predict = !cli_model_profile(b.gen, NULL, b.exec->device, &b.profile);
    for (int i = 0; i < o.n_dirs && s == SPRIG_OK; ++i) s = time_model(&b, o.dirs[i]);
    if (b.cuda) cli_tuning_report(&o.tuning, "bench-e2e", tuning);
    if (s != SPRIG_OK) rc = cli_error("timing", s);
    if (b.n_rows > 0) {
        print_table(&b);
        if (o.json) rc |= write_json(&b, tuning);
    }
    for (int i = 0; i < b.n_rows; ++i) e2e_profile_free(&b.rows[i].prof);
    sp_gpu_kernels_close(b.kernels); /* after every backend on it */
    sprig_gen_close(b.gen);
    sp_runtime_tuning_close(tuning);
    sp_exec_close(b.exec);
    return rc;
}
