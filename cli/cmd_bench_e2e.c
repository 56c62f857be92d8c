/* sprig bench-e2e: decode speed (ms/token) of one model folder, dense against
 * its LTE routers (or training-free sparsity), measured in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_tuning.h"
#include "sp_cpu.h"
#include "sp_exec.h"
#include "sp_gpu.h"
#include "sp_model.h"

typedef struct e2e_opts {
    const char *dir, *backend, *dtype, *json;
    int tokens, warmup;
    double sparsity; /* training-free, for models without routers */
    cli_tuning_args tuning;
} e2e_opts;

static void e2e_help(FILE *to) {
    fprintf(to, "usage: sprig bench-e2e MODEL_DIR [--backend cpu|cuda] [options]\n\n"
                "Times greedy decoding (batch 1) in milliseconds per token: the model dense,\n"
                "then sparse (its LTE routers, or --sparsity S training-free thresholds for a\n"
                "model without routers), in the same run on the same backend, and prints both\n"
                "and their ratio. Make a 7B-shaped test model with `sprig synth --model llama2-7b --lte 32`.\n\n"
                "options:\n"
                "  --backend cpu|cuda   where to run (default cuda)\n"
                "  --dtype fp16|bf16    compute type on cuda (default fp16)\n"
                "  --tokens N           decode steps timed per mode (default 32)\n"
                "  --warmup N           untimed steps first (default 4)\n"
                "  --sparsity S         training-free sparsity when the model has no routers (default 0.5)\n"
                "  --json FILE          also write the results as JSON (on cuda with \"tuning\": each kernel\n"
                "                       request, its parameters and their source)\n"
                "%s"
                "On cuda both modes share one kernel set; a line on standard error counts the kernels by\n"
                "where their parameters came from.\n",
                cli_tuning_args_help);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One backend instance in one MLP mode. */
typedef struct e2e_run {
    sp_cpu *cpu;
    sp_gpu *gpu;
} e2e_run;

static sprig_status run_forward(e2e_run *r, int token, int pos, const float **logits) {
    return r->gpu ? sp_gpu_forward(r->gpu, token, pos, logits) : sp_cpu_forward(r->cpu, token, pos, logits);
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; ++i)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Decodes warmup + tokens greedy steps from token 1 and returns ms per timed token. */
static sprig_status time_decode(e2e_run *r, int vocab, int warmup, int tokens, double *ms, double *sparsity) {
    const float *logits = NULL;
    int tok = 1 % vocab;
    double t0 = 0;
    for (int pos = 0; pos < warmup + tokens; ++pos) {
        if (pos == warmup) t0 = now_s();
        sprig_status s = run_forward(r, tok, pos, &logits);
        if (s != SPRIG_OK) return s;
        tok = argmax(logits, vocab);
    }
    *ms = (now_s() - t0) * 1e3 / tokens;
    *sparsity = r->gpu ? sp_gpu_mlp_sparsity(r->gpu) : sp_cpu_mlp_sparsity(r->cpu);
    return SPRIG_OK;
}

static int parse_e2e(int argc, char **argv, e2e_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cuda", o->dtype = "fp16", o->tokens = 32, o->warmup = 4, o->sparsity = 0.5;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { e2e_help(stdout); exit(0); }
        if (a[0] != '-' && !o->dir) { o->dir = a; continue; }
        const int t = cli_tuning_arg(&o->tuning, "bench-e2e", argc, argv, &i);
        if (t < 0) return 2;
        if (t > 0) continue;
        if (!v) { fprintf(stderr, "sprig bench-e2e: %s needs a value\n", a); return 2; }
        ++i;
        if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--dtype")) o->dtype = v;
        else if (!strcmp(a, "--tokens")) o->tokens = atoi(v);
        else if (!strcmp(a, "--warmup")) o->warmup = atoi(v);
        else if (!strcmp(a, "--sparsity")) o->sparsity = atof(v);
        else if (!strcmp(a, "--json")) o->json = v;
        else { fprintf(stderr, "sprig bench-e2e: unknown option '%s' (see --help)\n", a); return 2; }
    }
    if (!o->dir) { fprintf(stderr, "sprig bench-e2e: give the model folder (see --help)\n"); return 2; }
    if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda")) {
        fprintf(stderr, "sprig bench-e2e: --backend must be cpu or cuda\n");
        return 2;
    }
    if (o->tokens < 1 || o->warmup < 0) { fprintf(stderr, "sprig bench-e2e: --tokens >= 1, --warmup >= 0\n"); return 2; }
    if (!(o->sparsity > 0 && o->sparsity < 1)) { fprintf(stderr, "sprig bench-e2e: --sparsity must be in (0, 1)\n"); return 2; }
    return 0;
}

int cmd_bench_e2e(int argc, char **argv) {
    e2e_opts o;
    int rc = parse_e2e(argc, argv, &o);
    if (rc) return rc;
    sp_model *model = NULL;
    sp_exec *exec = NULL;
    sp_runtime_tuning *tuning = NULL;
    sp_gpu_kernels *kernels = NULL; /* both modes' kernels, parameters from the tuning databases */
    sprig_status s = sp_model_open(o.dir, &model);
    if (s != SPRIG_OK) return cli_error("loading the model", s);
    const int cuda = !strcmp(o.backend, "cuda");
    if (cuda && (s = sp_exec_open_cuda(&exec, 0)) != SPRIG_OK) {
        fprintf(stderr, "sprig bench-e2e: --backend cuda: %s (%s); --backend cpu runs without one\n",
                sprig_status_name(s), sprig_last_error());
        sp_model_close(model);
        return 1;
    }
    if (cuda && cli_tuning_kernels_open(&o.tuning, "bench-e2e", exec, &tuning, &kernels)) {
        sp_exec_close(exec);
        sp_model_close(model);
        return 1;
    }
    const int ctx = o.warmup + o.tokens + 1, vocab = model->cfg->vocab_size;
    const int has_routers = model->cfg->lte.enabled;
    const char *names[2] = {"dense", has_routers ? "lte" : "threshold"};
    double ms[2] = {0, 0}, sp[2] = {0, 0};
    for (int m = 0; m < 2 && s == SPRIG_OK; ++m) {
        e2e_run r = {0};
        const sp_mlp_mode mode = m == 0 ? SP_MLP_DENSE : SP_MLP_AUTO;
        /* training-free thresholds are calibrated by the CPU backend on a short prompt */
        sp_cpu *calib = NULL;
        if (m == 1 && !has_routers) {
            int prompt[16];
            for (int i = 0; i < 16; ++i) prompt[i] = (i * 7919 + 1) % vocab;
            s = sp_cpu_open(model, 16, SP_MLP_DENSE, &calib);
            if (s == SPRIG_OK) s = sp_cpu_calibrate(calib, prompt, 16, o.sparsity);
        }
        if (s == SPRIG_OK) {
            if (cuda) {
                s = sp_gpu_open_with(kernels, model, ctx, calib ? SP_MLP_THRESHOLD : mode, o.dtype, &r.gpu);
                if (s == SPRIG_OK && calib) s = sp_gpu_set_thresholds(r.gpu, calib->thresholds);
            } else {
                s = sp_cpu_open(model, ctx, calib ? SP_MLP_THRESHOLD : mode, &r.cpu);
                if (s == SPRIG_OK && calib) memcpy(r.cpu->thresholds, calib->thresholds,
                                                   sizeof(float) * (size_t)model->cfg->num_hidden_layers);
            }
        }
        if (s == SPRIG_OK) s = time_decode(&r, vocab, o.warmup, o.tokens, &ms[m], &sp[m]);
        sp_gpu_close(r.gpu);
        sp_cpu_close(r.cpu);
        sp_cpu_close(calib);
    }
    if (cuda) cli_tuning_report(&o.tuning, "bench-e2e", tuning);
    if (s != SPRIG_OK) {
        rc = cli_error("timing", s);
    } else {
        printf("%-10s %12s %14s\n", "mode", "ms/token", "MLP sparsity");
        for (int m = 0; m < 2; ++m) printf("%-10s %12.3f %13.1f%%\n", names[m], ms[m], 100 * sp[m]);
        printf("%s / dense = %.3f  (%s backend, %s, %d timed tokens after %d warm-up)\n", names[1], ms[1] / ms[0],
               o.backend, exec ? exec->device : "CPU", o.tokens, o.warmup);
        if (o.json) {
            FILE *fp = fopen(o.json, "w");
            if (!fp) {
                fprintf(stderr, "sprig bench-e2e: cannot write %s\n", o.json);
                rc = 1;
            } else {
                char *tj = cuda ? cli_tuning_json(tuning) : NULL;
                fprintf(fp, "{\"model\":\"%s\",\"backend\":\"%s\",\"device\":\"%s\",\"tokens\":%d,\"warmup\":%d,"
                            "\"dense_ms_per_token\":%.6f,\"%s_ms_per_token\":%.6f,\"%s_mlp_sparsity\":%.6f,"
                            "\"ratio\":%.6f%s%s}\n",
                        o.dir, o.backend, exec ? exec->device : "CPU", o.tokens, o.warmup, ms[0], names[1], ms[1],
                        names[1], sp[1], ms[1] / ms[0], tj ? ",\"tuning\":" : "", tj ? tj : "");
                free(tj);
                fclose(fp);
            }
        }
    }
    sp_gpu_kernels_close(kernels); /* after every backend on it */
    sp_runtime_tuning_close(tuning);
    sp_exec_close(exec);
    sp_model_close(model);
    return rc;
}
