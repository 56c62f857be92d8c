/* sprig run: load a model folder and generate, streaming text. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_chat.h"
#include "cli_tuning.h"
#include "sp_backend.h"
#include "sp_error.h"
#include "sp_generate.h"
#include "sp_gguf.h"
#include "sp_tokenizer.h"

static void run_help(FILE *to) {
    fprintf(to,
            "usage: sprig run MODEL_DIR (--prompt TEXT | --tokens IDS) [options]\n\n"
            "Generates from a Hugging Face LLaMA folder (config.json, model.safetensors or an\n"
            "index of shards, tokenizer.json) or a llama GGUF file (F32/F16/BF16/Q8_0/Q4_0/Q4_1/\n"
            "Q4_K/Q6_K, dequantized at load; its tokenizer from its metadata), streaming the text\n"
            "to standard output. LTE\n"
            "routers in the checkpoint (see README) select the MLP experts per token.\n\n"
            "options:\n"
            "  --prompt TEXT         the prompt (tokenized with the folder's tokenizer.json, BOS added)\n"
            "  --tokens 1,2,3        the prompt as token ids instead; output is printed as ids\n"
            "  --chat                the prompt is a user message in the model's chat template (the\n"
            "                        folder's chat_template.jinja or tokenizer_config.json), rendered with\n"
            "                        the assistant's turn opened and tokenized without adding BOS (the\n"
            "                        template writes it); generation also stops at the template's\n"
            "                        end-of-turn token (<|eot_id|>, <|im_end|>, ...)\n"
            "  --system TEXT         with --chat: a system message first\n"
            "  --messages FILE       with --chat, instead of --prompt: a whole conversation, a JSON list\n"
            "                        of {\"role\": ..., \"content\": ...}\n"
            "  --chat-template FILE  with --chat: this Jinja template instead of the folder's\n"
            "  --backend cpu|cuda    where to run (cpu: the fp32 reference; cuda: generated kernels on\n"
            "                        GPU 0; default cpu)\n"
            "  --dtype fp16|bf16     compute type of --backend cuda (default fp16)\n"
            "  --max-tokens N        tokens to generate (default 64)\n"
            "  --temperature T       0 for greedy (default 0)\n"
            "  --top-p P             nucleus sampling mass (default 0.9)\n"
            "  --seed S              sampling seed (default: from the clock)\n"
            "  --context N           positions to allocate (default: the model's maximum, at most 4096)\n"
            "  --dense               ignore LTE routers: every neuron\n"
            "  --sparsity S          training-free sparsity in [0,1): per-layer |silu(gate)| thresholds\n"
            "                        calibrated on the prompt\n"
            "  --json                print one JSON object (tokens, text, speed, sparsity; with --backend\n"
            "                        cuda also \"tuning\": each kernel request, its parameters and their source)\n"
            "%s"
            "At the end: tokens/s and the measured MLP sparsity on standard error; with --backend cuda\n"
            "first a line counting the kernels by where their parameters came from.\n",
            cli_tuning_args_help);
}

typedef struct run_opts {
    const char *dir, *prompt, *tokens, *backend, *dtype;
    const char *system, *messages, *chat_template; /* --chat */
    int max_tokens, context, dense, json, chat;
    double temperature, top_p, sparsity;
    unsigned long long seed;
    cli_tuning_args tuning;
} run_opts;

typedef struct run_out {
    sp_tok_stream *stream;   /* NULL in --tokens mode */
    int *ids;
    int n, cap, as_ids, json;
} run_out;

static sprig_status emit_token(void *ctx, int token) {
    run_out *o = ctx;
    if (o->n == o->cap) {
        int *grown = realloc(o->ids, sizeof(int) * (size_t)(o->cap = o->cap ? 2 * o->cap : 64));
        if (!grown) return SPRIG_E_NOMEM;
        o->ids = grown;
    }
    o->ids[o->n++] = token;
    if (o->json) return SPRIG_OK;
    if (o->as_ids) {
        printf("%s%d", o->n > 1 ? "," : "", token);
    } else {
        const char *text;
        size_t len;
        sprig_status s = sp_tok_stream_push(o->stream, token, &text, &len);
        if (s != SPRIG_OK) return s;
        fwrite(text, 1, len, stdout);
    }
    fflush(stdout);
    return SPRIG_OK;
}

static int parse_ids(const char *text, int **ids, int *n) {
    int cap = 16;
    *ids = malloc(sizeof(int) * (size_t)cap), *n = 0;
    for (const char *p = text; *p;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 0x7fffffff) return -1;
        if (*n == cap) *ids = realloc(*ids, sizeof(int) * (size_t)(cap *= 2));
        (*ids)[(*n)++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return 0;
}

static int parse_run_args(int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu", o->dtype = "fp16", o->max_tokens = 64, o->top_p = 0.9;
    o->seed = (unsigned long long)time(NULL);
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const int t = cli_tuning_arg(&o->tuning, "run", argc, argv, &i);
        if (t < 0) return 2;
        if (t > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { run_help(stdout); exit(0); }
        else if (!strcmp(a, "--dense")) o->dense = 1;
        else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--chat")) o->chat = 1;
        else if (a[0] != '-' && !o->dir) o->dir = a;
        else if (!v) { fprintf(stderr, "sprig run: %s needs a value\n", a); return 2; }
        else if (!strcmp(a, "--prompt")) o->prompt = v, ++i;
        else if (!strcmp(a, "--tokens")) o->tokens = v, ++i;
        else if (!strcmp(a, "--system")) o->system = v, ++i;
        else if (!strcmp(a, "--messages")) o->messages = v, ++i;
        else if (!strcmp(a, "--chat-template")) o->chat_template = v, ++i;
        else if (!strcmp(a, "--backend")) o->backend = v, ++i;
        else if (!strcmp(a, "--dtype")) o->dtype = v, ++i;
        else if (!strcmp(a, "--max-tokens")) { if (cli_parse_int("run", a, v, 0, 1 << 20, &o->max_tokens)) return 2; ++i; }
        else if (!strcmp(a, "--context")) { if (cli_parse_int("run", a, v, 1, 1 << 20, &o->context)) return 2; ++i; }
        else if (!strcmp(a, "--temperature")) { if (cli_parse_double("run", a, v, 0, 100, &o->temperature)) return 2; ++i; }
        else if (!strcmp(a, "--top-p")) { if (cli_parse_double("run", a, v, 0, 1, &o->top_p)) return 2; ++i; }
        else if (!strcmp(a, "--sparsity")) { if (cli_parse_double("run", a, v, 0, 0.999, &o->sparsity)) return 2; ++i; }
        else if (!strcmp(a, "--seed")) {
            double seed;
            if (cli_parse_double("run", a, v, 0, 1e15, &seed)) return 2;
            o->seed = (unsigned long long)seed, ++i;
        }
        else { fprintf(stderr, "sprig run: unknown option '%s' (see --help)\n", a); return 2; }
    }
    if (!o->dir) { fprintf(stderr, "sprig run: give the model folder (see --help)\n"); return 2; }
    if ((o->system || o->messages || o->chat_template) && !o->chat) {
        fprintf(stderr, "sprig run: --system, --messages and --chat-template go with --chat\n");
        return 2;
    }
    if (o->chat && (o->tokens || !o->prompt == !o->messages || (o->messages && o->system))) {
        fprintf(stderr, "sprig run: --chat takes --prompt TEXT [--system TEXT] or --messages FILE\n");
        return 2;
    }
    if (!o->chat && !o->prompt == !o->tokens) { fprintf(stderr, "sprig run: give exactly one of --prompt or --tokens\n"); return 2; }
    if (o->max_tokens < 0) { fprintf(stderr, "sprig run: --max-tokens must be >= 0\n"); return 2; }
    if (strcmp(o->backend, "cpu") != 0 && strcmp(o->backend, "cuda") != 0) {
        fprintf(stderr, "sprig run: unknown backend '%s' (cpu or cuda)\n", o->backend);
        return 2;
    }
    if (strcmp(o->dtype, "fp16") != 0 && strcmp(o->dtype, "bf16") != 0) {
        fprintf(stderr, "sprig run: --dtype must be fp16 or bf16\n");
        return 2;
    }
    if (o->sparsity < 0 || o->sparsity >= 1) { fprintf(stderr, "sprig run: --sparsity must be in [0, 1)\n"); return 2; }
    return 0;
}

/* The prompt as ids: parsed (--tokens) or tokenized with BOS (--prompt). */
static int prompt_ids(const run_opts *o, const sp_tokenizer *tok, int **ids, int *n) {
    if (o->tokens) {
        if (parse_ids(o->tokens, ids, n) != 0) {
            fprintf(stderr, "sprig run: --tokens expects comma-separated ids, got '%s'\n", o->tokens);
            return 2;
        }
        return 0;
    }
    int32_t *t = NULL;
    size_t nt = 0;
    sprig_status s = sp_tok_encode(tok, o->prompt, strlen(o->prompt), 1, &t, &nt);
    if (s != SPRIG_OK) return cli_error("tokenizing the prompt", s);
    *ids = malloc(sizeof(int) * (nt ? nt : 1));
    for (size_t i = 0; i < nt; ++i) (*ids)[i] = t[i];
    *n = (int)nt;
    free(t);
    return 0;
}

/* --chat: the conversation (--system and --prompt, or --messages) through
 * the chat template, as ids. */
static int chat_prompt_ids(const run_opts *o, const sp_tokenizer *tok, const sp_model_config *cfg, cli_chat *chat,
                           int **ids, int *n) {
    int rc = cli_chat_open(chat, "run", o->dir, o->chat_template, tok, cfg);
    if (rc) return rc;
    if (o->messages) {
        sp_chat_msg *m = NULL;
        size_t nm = 0;
        void *store = NULL;
        if ((rc = cli_chat_read_messages("run", o->messages, &m, &nm, &store))) return rc;
        rc = cli_chat_tokens(chat, "run", m, nm, ids, n);
        free(m);
        cJSON_Delete(store);
        return rc;
    }
    sp_chat_msg m[2];
    size_t nm = 0;
    if (o->system) m[nm++] = (sp_chat_msg){"system", o->system};
    m[nm++] = (sp_chat_msg){"user", o->prompt};
    return cli_chat_tokens(chat, "run", m, nm, ids, n);
}

/* What the CUDA backend needs besides itself, closed in reverse order of opening. */
typedef struct run_cuda {
    sp_exec *exec;
    sp_runtime_tuning *tuning;   /* NULL with --no-tuning or unusable databases */
    sp_gpu_kernels *kernels;
} run_cuda;

static void run_cuda_close(run_cuda *c) {
    sp_gpu_kernels_close(c->kernels);
    sp_runtime_tuning_close(c->tuning);
    sp_exec_close(c->exec);
}

/* --backend cuda: GPU 0 through the driver, the kernels' parameters from the
 * tuning databases. Prints why and returns nonzero on failure. */
static int open_cuda(const run_opts *o, run_cuda *c) {
    sprig_status s = cli_exec_open(&c->exec, 0);
    if (s == SPRIG_E_NO_DRIVER || s == SPRIG_E_NO_DEVICE) {
        fprintf(stderr, "sprig run: --backend cuda: %s (%s); --backend cpu runs without one\n",
                s == SPRIG_E_NO_DRIVER ? "no CUDA driver found" : "no CUDA GPU found", sprig_last_error());
        return 1;
    }
    if (s != SPRIG_OK) return cli_error("opening the GPU", s);
    return cli_tuning_kernels_open(&o->tuning, "run", c->exec, &c->tuning, &c->kernels);
}

/* The backend the options ask for, its MLP mode set: with --sparsity the
 * thresholds are calibrated on the prompt by the CPU reference (for either
 * backend, so both skip the same neurons). */
static sprig_status open_backend(const run_opts *o, const sp_model *model, int context, const int *prompt,
                                 int n_prompt, run_cuda *cu, sp_backend **be) {
    const sp_mlp_mode mode = o->dense ? SP_MLP_DENSE : SP_MLP_AUTO;
    SP_TRY(cu->kernels ? sp_backend_open_gpu(cu->kernels, model, context, mode, o->dtype, be)
                       : sp_backend_open_cpu(model, context, mode, be));
    if (o->sparsity <= 0) return SPRIG_OK;
    float *thresholds = malloc(sizeof(float) * (size_t)model->cfg->num_hidden_layers);
    SP_CHECK_ALLOC(thresholds);
    sprig_status s = sp_calibrate_thresholds(model, prompt, n_prompt, o->sparsity, thresholds);
    if (s == SPRIG_OK) s = sp_backend_set_thresholds(*be, thresholds);
    free(thresholds);
    return s;
}

/* tuning: the "tuning" member's JSON (--backend cuda), or NULL for none. */
static void print_json(const run_out *out, const sp_tokenizer *tok, const sp_gen_stats *st, double sparsity,
                       const char *backend, const char *tuning) {
    printf("{\"backend\":\"%s\",\"prompt_tokens\":%d,\"tokens\":[", backend, st->prompt_tokens);
    for (int i = 0; i < out->n; ++i) printf("%s%d", i ? "," : "", out->ids[i]);
    printf("]");
    if (tok) {
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)(out->n + 1));
        for (int i = 0; i < out->n; ++i) ids[i] = out->ids[i];
        char *text = NULL;
        size_t len = 0;
        if (sp_tok_decode(tok, ids, (size_t)out->n, 1, &text, &len) == SPRIG_OK) {
            printf(",\"text\":\"");
            for (size_t i = 0; i < len; ++i) {
                unsigned char c = (unsigned char)text[i];
                if (c == '"' || c == '\\') printf("\\%c", c);
                else if (c < 0x20) printf("\\u%04x", c);
                else putchar(c);
            }
            printf("\"");
        }
        free(text);
        free(ids);
    }
    const double tps = st->decode_seconds > 0 ? st->generated / st->decode_seconds : 0;
    printf(",\"prompt_seconds\":%.6f,\"decode_seconds\":%.6f,\"tokens_per_second\":%.3f,"
           "\"mlp_sparsity\":%.4f,\"stopped_at_eos\":%s%s%s}\n",
           st->prompt_seconds, st->decode_seconds, tps, sparsity, st->stopped_at_eos ? "true" : "false",
           tuning ? ",\"tuning\":" : "", tuning ? tuning : "");
}

int cmd_run(int argc, char **argv) {
    run_opts o;
    int rc = parse_run_args(argc, argv, &o);
    if (rc) return rc;
    sp_model *model = NULL;
    sp_tokenizer *tok = NULL;
    sp_backend *be = NULL;
    run_cuda cu = {0};
    int *prompt = NULL, n_prompt = 0;
    run_out out = {0};
    sp_sampler sampler = {0};
    cli_chat chat = {0};
    sprig_status s = sp_model_open(o.dir, &model);
    if (s != SPRIG_OK) return cli_error("loading the model", s);
    const sp_model_config *cfg = model->cfg;
    if (o.prompt || o.chat || !o.json) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", o.dir);
        /* a GGUF file carries its tokenizer in its metadata */
        s = sp_gguf_is_file(o.dir) ? sp_gguf_tokenizer(o.dir, &tok) : sp_tok_open(path, &tok);
        if (s != SPRIG_OK && (o.prompt || o.chat)) { rc = cli_error("loading the tokenizer", s); goto done; }
    }
    if (o.chat) rc = chat_prompt_ids(&o, tok, cfg, &chat, &prompt, &n_prompt);
    else rc = prompt_ids(&o, tok, &prompt, &n_prompt);
    if (rc) goto done;
    int context = o.context ? o.context : (cfg->max_position_embeddings < 4096 ? cfg->max_position_embeddings : 4096);
    if (n_prompt > context) {
        fprintf(stderr, "sprig run: the prompt has %d tokens but the context holds %d\n", n_prompt, context);
        rc = 1;
        goto done;
    }
    const int cuda = strcmp(o.backend, "cuda") == 0;
    if (cuda && (rc = open_cuda(&o, &cu))) goto done;
    s = open_backend(&o, model, context, prompt, n_prompt, &cu, &be);
    if (s == SPRIG_OK && cuda) cli_tuning_report(&o.tuning, "run", cu.tuning);
    if (s == SPRIG_OK) s = sp_sampler_init(&sampler, cfg->vocab_size, (float)o.temperature, (float)o.top_p, o.seed);
    if (s != SPRIG_OK) { rc = cli_error(cuda ? "starting the CUDA backend" : "starting the backend", s); goto done; }
    out.as_ids = o.tokens != NULL, out.json = o.json;
    if (!out.as_ids && tok && (s = sp_tok_stream_open(tok, 1, &out.stream)) != SPRIG_OK) {
        rc = cli_error("decoding", s);
        goto done;
    }
    sp_gen_stats st;
    int eos[SP_MAX_EOS + 1], n_eos = 0;
    for (int i = 0; i < cfg->n_eos; ++i) eos[n_eos++] = cfg->eos_token_ids[i];
    if (!n_eos && tok && sp_tok_eos_id(tok) >= 0) eos[n_eos++] = sp_tok_eos_id(tok);
    const int *stops = eos;
    if (o.chat) stops = chat.stop, n_eos = chat.n_stop; /* the config's and the template's end-of-turn tokens */
    s = sp_generate(be, prompt, n_prompt, o.max_tokens, context, &sampler, stops, n_eos, emit_token, &out, &st);
    if (s != SPRIG_OK) { rc = cli_error("generating", s); goto done; }
    if (out.stream) {
        const char *text;
        size_t len;
        if (sp_tok_stream_finish(out.stream, &text, &len) == SPRIG_OK && !o.json) fwrite(text, 1, len, stdout);
    }
    if (o.json) {
        char *tuning = cuda ? cli_tuning_json(cu.tuning) : NULL;
        print_json(&out, tok, &st, sp_backend_mlp_sparsity(be), be->name, tuning);
        free(tuning);
    } else {
        printf("\n");
        fprintf(stderr, "[%s] prompt %d tokens in %.3f s; generated %d tokens at %.2f tokens/s; MLP sparsity %.1f%%\n",
                be->name, st.prompt_tokens, st.prompt_seconds, st.generated,
                st.decode_seconds > 0 ? st.generated / st.decode_seconds : 0.0, 100 * sp_backend_mlp_sparsity(be));
    }
done:
    sp_tok_stream_close(out.stream);
    free(out.ids);
    free(prompt);
    sp_sampler_free(&sampler);
    if (be && sp_backend_note(be)[0]) fprintf(stderr, "sprig run: %s\n", sp_backend_note(be));
    sp_backend_close(be);
    run_cuda_close(&cu);
    cli_chat_close(&chat);
    sp_tok_close(tok);
    sp_model_close(model);
    return rc;
}
