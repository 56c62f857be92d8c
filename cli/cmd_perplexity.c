/* sprig perplexity: a model's perplexity over a text file, in windows of
 * --context tokens moved by --stride, each token scored once with as much
 * context as its window gives it: the Hugging Face recipe ("Perplexity of
 * fixed-length models"), so a transformers run over the same windows gives
 * the same number (tools/perplexity_reference.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_tuning.h"
#include "sp_backend.h"
#include "sp_error.h"
#include "sp_file.h"
#include "sp_gguf.h"
#include "sp_tokenizer.h"

#define PPL_MAX_TEXT_BYTES ((size_t)1 << 30)

static void ppl_help(FILE *to) {
    fprintf(to,
            "usage: sprig perplexity MODEL --text FILE [options]\n\n"
            "Perplexity of MODEL (a Hugging Face folder or a llama GGUF file, as sprig run takes)\n"
            "over the text in FILE, tokenized whole with BOS first. Windows of --context tokens\n"
            "start every --stride tokens; a window scores only the tokens past the previous\n"
            "window's end, each predicted from the tokens before it in its window (the Hugging\n"
            "Face recipe: transformers over the same windows gives the same number). With LTE\n"
            "routers in the model the MLP is routed (the default); the measured MLP sparsity is\n"
            "printed beside the perplexity.\n\n"
            "options:\n"
            "  --text FILE           the text (UTF-8)\n"
            "  --context N           tokens per window (default: the model's maximum, at most 1024)\n"
            "  --stride N            tokens between window starts (default: half the context)\n"
            "  --max-tokens N        score only the first N tokens of the text (default: all)\n"
            "  --dense               ignore LTE routers: every neuron\n"
            "  --sparsity S          training-free sparsity in [0,1): per-layer |silu(gate)| thresholds\n"
            "                        calibrated on the first window\n"
            "  --backend cpu|cuda    where to run (default cpu)\n"
            "  --dtype fp16|bf16     compute type of --backend cuda (default fp16)\n"
            "  --json                one JSON object on standard output instead of the table\n"
            "%s"
            "A progress line goes to standard error when it is a terminal.\n",
            cli_tuning_args_help);
}

typedef struct ppl_opts {
    const char *model, *text, *backend, *dtype;
    int context, stride, max_tokens, dense, json;
    double sparsity;
    cli_tuning_args tuning;
} ppl_opts;

static int parse_ppl_args(int argc, char **argv, ppl_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu", o->dtype = "fp16";
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        int t = cli_tuning_arg(&o->tuning, "perplexity", argc, argv, &i);
        if (t < 0) return 2;
        if (t > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            ppl_help(stdout);
            exit(0);
        } else if (!strcmp(a, "--text") && has_value) {
            o->text = argv[++i];
        } else if (!strcmp(a, "--context") && has_value) {
            if (cli_parse_int("perplexity", a, argv[++i], 2, 1 << 20, &o->context)) return 2;
        } else if (!strcmp(a, "--stride") && has_value) {
            if (cli_parse_int("perplexity", a, argv[++i], 1, 1 << 20, &o->stride)) return 2;
        } else if (!strcmp(a, "--max-tokens") && has_value) {
            if (cli_parse_int("perplexity", a, argv[++i], 2, 1 << 30, &o->max_tokens)) return 2;
        } else if (!strcmp(a, "--sparsity") && has_value) {
            if (cli_parse_double("perplexity", a, argv[++i], 0, 0.999999, &o->sparsity)) return 2;
        } else if (!strcmp(a, "--backend") && has_value) {
            o->backend = argv[++i];
        } else if (!strcmp(a, "--dtype") && has_value) {
            o->dtype = argv[++i];
        } else if (!strcmp(a, "--dense")) {
            o->dense = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (a[0] != '-' && !o->model) {
            o->model = a;
        } else {
            fprintf(stderr, "sprig perplexity: unknown or incomplete option '%s'\n", a);
            ppl_help(stderr);
            return 2;
        }
    }
    if (!o->model || !o->text) {
        fprintf(stderr, "sprig perplexity: %s\n", !o->model ? "no model given" : "--text FILE is required");
        ppl_help(stderr);
        return 2;
    }
    if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda")) {
        fprintf(stderr, "sprig perplexity: --backend expects cpu or cuda, got '%s'\n", o->backend);
        return 2;
    }
    if (o->dense && o->sparsity > 0) {
        fprintf(stderr, "sprig perplexity: --dense and --sparsity exclude each other\n");
        return 2;
    }
    return 0;
}

/* The text's ids, BOS first (as tokenizer(text) in transformers). */
static sprig_status tokenize_file(const ppl_opts *o, const sp_tokenizer *tok, int32_t **ids, size_t *n) {
    char *text = NULL;
    size_t len = 0;
    SP_TRY(sp_file_read(o->text, PPL_MAX_TEXT_BYTES, &text, &len, NULL));
    sprig_status s = sp_tok_encode(tok, text, len, 1, ids, n);
    free(text);
    if (s == SPRIG_OK && o->max_tokens && *n > (size_t)o->max_tokens) *n = (size_t)o->max_tokens;
    return s;
}

/* -log softmax(logits)[target], in double. */
static double nll_of(const float *logits, int vocab, int target) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < vocab; ++i) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < vocab; ++i) sum += exp((double)logits[i] - mx);
    return log(sum) + mx - logits[target];
}

typedef struct ppl_result {
    double nll;           /* summed over the scored tokens */
    long scored, windows, forwards;
    double seconds, sparsity;
} ppl_result;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress(const ppl_result *r, long done, long total, int on) {
    if (!on) return;
    const double rate = r->seconds > 0 ? r->forwards / r->seconds : 0;
    fprintf(stderr, "\r\033[Kperplexity: %ld/%ld tokens scored, window %ld, ppl %.4g, %.0f tokens/s", done, total,
            r->windows, r->scored ? exp(r->nll / r->scored) : 0.0, rate);
}

/* The windows of the recipe: [begin, end) every stride; a window scores the
 * tokens from the previous window's end (from begin + 1 in the first), each
 * from the logits one position before it. */
static sprig_status score(sp_backend *be, const int32_t *ids, size_t n, int context, int stride, int vocab,
                          int show, ppl_result *r) {
    const double t0 = now_s();
    size_t prev_end = 0;
    for (size_t begin = 0; begin < n; begin += (size_t)stride) {
        const size_t end = begin + (size_t)context < n ? begin + (size_t)context : n;
        const size_t first_target = prev_end > begin + 1 ? prev_end : begin + 1;
        for (size_t at = begin; at + 1 < end; ++at) { /* the last position predicts nothing here */
            const float *logits = NULL;
            SP_TRY(sp_backend_forward(be, ids[at], (int)(at - begin), &logits));
            ++r->forwards;
            if (at + 1 >= first_target) {
                r->nll += nll_of(logits, vocab, ids[at + 1]);
                ++r->scored;
            }
        }
        ++r->windows;
        prev_end = end;
        r->seconds = now_s() - t0;
        progress(r, r->scored, (long)n - 1, show);
        if (end == n) break;
    }
    if (show) fprintf(stderr, "\r\033[K");
    r->sparsity = sp_backend_mlp_sparsity(be);
    return SPRIG_OK;
}

static void print_result(const ppl_opts *o, const sp_backend *be, size_t n, int context, int stride,
                         const ppl_result *r) {
    const double ppl = exp(r->nll / (double)r->scored);
    const char *mlp = o->dense ? "dense" : o->sparsity > 0 ? "thresholds" : "auto";
    if (o->json) {
        printf("{\"model\":\"%s\",\"text\":\"%s\",\"backend\":\"%s\",\"dtype\":\"%s\",\"mlp\":\"%s\","
               "\"sparsity_target\":%g,\"tokens\":%zu,\"context\":%d,\"stride\":%d,\"windows\":%ld,"
               "\"scored\":%ld,\"nll\":%.10g,\"perplexity\":%.10g,\"mlp_sparsity\":%.6f,\"seconds\":%.3f}\n",
               o->model, o->text, be->name, be->dtype, mlp, o->sparsity, n, context, stride, r->windows, r->scored,
               r->nll, ppl, r->sparsity, r->seconds);
        return;
    }
    printf("%-10s %-6s %-10s %8s %7s %7s %8s %12s %12s %10s\n", "backend", "dtype", "mlp", "tokens", "context",
           "stride", "scored", "perplexity", "mlp sparsity", "seconds");
    printf("%-10s %-6s %-10s %8zu %7d %7d %8ld %12.4f %11.1f%% %10.1f\n", be->name, be->dtype, mlp, n, context,
           stride, r->scored, ppl, 100 * r->sparsity, r->seconds);
}

int cmd_perplexity(int argc, char **argv) {
    ppl_opts o;
    int rc = parse_ppl_args(argc, argv, &o);
    if (rc) return rc;
    sp_model *model = NULL;
    sp_tokenizer *tok = NULL;
    sp_backend *be = NULL;
    sp_exec *exec = NULL;
    sp_runtime_tuning *tuning = NULL;
    sp_gpu_kernels *kernels = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    float *thresholds = NULL;
    sprig_status s = sp_model_open(o.model, &model);
    if (s != SPRIG_OK) return cli_error("loading the model", s);
    const sp_model_config *cfg = model->cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", o.model);
    s = sp_gguf_is_file(o.model) ? sp_gguf_tokenizer(o.model, &tok) : sp_tok_open(path, &tok);
    if (s != SPRIG_OK) { rc = cli_error("loading the tokenizer", s); goto done; }
    if ((s = tokenize_file(&o, tok, &ids, &n)) != SPRIG_OK) { rc = cli_error("reading the text", s); goto done; }
    if (n < 2) {
        fprintf(stderr, "sprig perplexity: %s has %zu tokens; at least 2 are needed\n", o.text, n);
        rc = 1;
        goto done;
    }
    const int context = o.context ? o.context : (cfg->max_position_embeddings < 1024 ? cfg->max_position_embeddings : 1024);
    const int stride = o.stride ? o.stride : (context / 2 > 0 ? context / 2 : 1);
    if (context > cfg->max_position_embeddings || stride > context) {
        fprintf(stderr, "sprig perplexity: --context %d must be at most the model's %d positions and --stride %d at "
                "most the context\n", context, cfg->max_position_embeddings, stride);
        rc = 2;
        goto done;
    }
    const sp_mlp_mode mode = o.dense ? SP_MLP_DENSE : SP_MLP_AUTO;
    if (!strcmp(o.backend, "cuda")) {
        s = cli_exec_open(&exec, 0);
        if (s != SPRIG_OK) { rc = cli_error("opening the GPU (--backend cpu runs without one)", s); goto done; }
        if ((rc = cli_tuning_kernels_open(&o.tuning, "perplexity", exec, &tuning, &kernels))) goto done;
        s = sp_backend_open_gpu(kernels, model, context, mode, o.dtype, &be);
    } else {
        s = sp_backend_open_cpu(model, context, mode, &be);
    }
    if (s == SPRIG_OK && o.sparsity > 0) { /* thresholds from the first window, on the CPU reference */
        thresholds = malloc(sizeof(float) * (size_t)cfg->num_hidden_layers);
        if (!thresholds) s = sp_fail(SPRIG_E_NOMEM, "out of memory");
        if (s == SPRIG_OK) {
            const int cal = (size_t)context < n ? context : (int)n;
            int *cal_ids = malloc(sizeof(int) * (size_t)cal);
            if (!cal_ids) s = sp_fail(SPRIG_E_NOMEM, "out of memory");
            for (int i = 0; cal_ids && i < cal; ++i) cal_ids[i] = ids[i];
            if (s == SPRIG_OK) s = sp_calibrate_thresholds(model, cal_ids, cal, o.sparsity, thresholds);
            free(cal_ids);
        }
        if (s == SPRIG_OK) s = sp_backend_set_thresholds(be, thresholds);
    }
    if (s != SPRIG_OK) { rc = cli_error("starting the backend", s); goto done; }
    ppl_result r = {0};
    s = score(be, ids, n, context, stride, cfg->vocab_size, !o.json && isatty(2), &r);
    if (s != SPRIG_OK) { rc = cli_error("scoring", s); goto done; }
    print_result(&o, be, n, context, stride, &r);
done:
    free(thresholds);
    free(ids);
    sp_backend_close(be);
    sp_gpu_kernels_close(kernels);
    sp_runtime_tuning_close(tuning);
    sp_exec_close(exec);
    sp_tok_close(tok);
    sp_model_close(model);
    return rc;
}
