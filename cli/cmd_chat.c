/* sprig chat: an interactive conversation through the model's chat template,
 * the history kept in the KV cache; and the chat helpers `sprig run --chat`
 * shares (cli_chat.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_chat.h"
#include "sp_backend.h"
#include "sp_error.h"
#include "sp_gguf.h"
#include "sp_file.h"
#include "sp_generate.h"

static void add_stop(cli_chat *c, int id) {
    if (id < 0 || c->n_stop == CLI_CHAT_MAX_STOP) return;
    for (int i = 0; i < c->n_stop; ++i)
        if (c->stop[i] == id) return;
    c->stop[c->n_stop++] = id;
}

/* The special tokens the template writes right after an assistant message's
 * text end the model's turn: render a probe and look. A template that cannot
 * render the probe (one that refuses some roles) adds nothing. */
static void template_stops(cli_chat *c) {
    static const char probe[] = "sprig-probe-reply";
    const sp_chat_msg m[2] = {{"user", "hi"}, {"assistant", probe}};
    const sp_chat_vars v = {c->bos, c->eos, 0};
    char *text = NULL;
    size_t len = 0;
    if (sp_chat_template_render(c->tmpl, m, 2, &v, &text, &len) != SPRIG_OK) return;
    const char *after = strstr(text, probe);
    int32_t *ids = NULL;
    size_t n = 0;
    if (after && sp_tok_encode(c->tok, after + strlen(probe), len - (size_t)(after + strlen(probe) - text), 0, &ids,
                               &n) == SPRIG_OK)
        for (size_t i = 0; i < n; ++i)
            if (sp_tok_is_special(c->tok, ids[i])) add_stop(c, ids[i]);
    free(ids);
    free(text);
}

int cli_chat_open(cli_chat *c, const char *cmd, const char *dir, const char *template_file, const sp_tokenizer *tok,
                  const sp_model_config *cfg) {
    memset(c, 0, sizeof *c);
    c->tok = tok;
    sprig_status s = sp_chat_source_load(dir, &c->src);
    if (template_file) { /* --chat-template: its text; the folder still gives the tokens when it has them */
        if (s != SPRIG_OK) memset(&c->src, 0, sizeof c->src);
        free(c->src.text), free(c->src.origin);
        size_t len = 0;
        s = sp_file_read(template_file, 16 << 20, &c->src.text, &len, NULL);
        c->src.origin = strdup(template_file);
    }
    if (s != SPRIG_OK) {
        fprintf(stderr, "sprig %s: %s\n", cmd, sprig_last_error());
        sp_chat_source_free(&c->src);
        return 1;
    }
    s = sp_chat_template_parse(c->src.text, strlen(c->src.text), c->src.origin, &c->tmpl);
    if (s != SPRIG_OK) {
        fprintf(stderr, "sprig %s: %s\n", cmd, sprig_last_error());
        cli_chat_close(c);
        return 1;
    }
    c->bos = c->src.bos_token ? c->src.bos_token : sp_tok_text(tok, sp_tok_bos_id(tok));
    c->eos = c->src.eos_token ? c->src.eos_token : sp_tok_text(tok, sp_tok_eos_id(tok));
    for (int i = 0; i < cfg->n_eos; ++i) add_stop(c, cfg->eos_token_ids[i]);
    add_stop(c, sp_tok_eos_id(tok));
    if (c->eos) add_stop(c, sp_tok_find(tok, c->eos));
    template_stops(c);
    return 0;
}

void cli_chat_close(cli_chat *c) {
    sp_chat_template_free(c->tmpl);
    sp_chat_source_free(&c->src);
    memset(c, 0, sizeof *c);
}

int cli_chat_tokens(cli_chat *c, const char *cmd, const sp_chat_msg *m, size_t n, int **ids, int *n_ids) {
    const sp_chat_vars v = {c->bos, c->eos, 1};
    char *text = NULL;
    size_t len = 0;
    sprig_status s = sp_chat_template_render(c->tmpl, m, n, &v, &text, &len);
    if (s != SPRIG_OK) {
        fprintf(stderr, "sprig %s: %s\n", cmd, sprig_last_error());
        return 1;
    }
    int32_t *t = NULL;
    size_t nt = 0;
    s = sp_tok_encode(c->tok, text, len, 0, &t, &nt);
    free(text);
    if (s != SPRIG_OK) return cli_error("tokenizing the conversation", s);
    *ids = malloc(sizeof(int) * (nt ? nt : 1));
    for (size_t i = 0; i < nt; ++i) (*ids)[i] = t[i];
    *n_ids = (int)nt;
    free(t);
    return 0;
}

int cli_chat_read_messages(const char *cmd, const char *path, sp_chat_msg **msgs, size_t *n, void **store) {
    char *text = NULL;
    size_t len = 0;
    *msgs = NULL, *n = 0, *store = NULL;
    sprig_status s = sp_file_read(path, 64 << 20, &text, &len, NULL);
    if (s != SPRIG_OK) return cli_error("reading the messages", s);
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    const int count = cJSON_IsArray(doc) ? cJSON_GetArraySize(doc) : -1;
    *msgs = calloc((size_t)(count > 0 ? count : 1), sizeof **msgs);
    for (int i = 0; i < count; ++i) {
        const cJSON *e = cJSON_GetArrayItem(doc, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            fprintf(stderr, "sprig %s: %s: message %d needs string \"role\" and \"content\"\n", cmd, path, i);
            free(*msgs), *msgs = NULL;
            cJSON_Delete(doc);
            return 2;
        }
        (*msgs)[i].role = role->valuestring, (*msgs)[i].content = content->valuestring;
    }
    if (count < 1) {
        fprintf(stderr, "sprig %s: %s: expected a non-empty JSON list of {\"role\", \"content\"}\n", cmd, path);
        free(*msgs), *msgs = NULL;
        cJSON_Delete(doc);
        return 2;
    }
    *n = (size_t)count, *store = doc; /* the strings live in the parsed document */
    return 0;
}

void cli_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; ++i) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

/* --- sprig chat ------------------------------------------------------------ */

static void chat_help(FILE *to) {
    fprintf(to,
            "usage: sprig chat MODEL_DIR [options]\n\n"
            "Talks with an instruct model through its chat template (chat_template.jinja, or\n"
            "\"chat_template\" in tokenizer_config.json). Reads one user message per line from\n"
            "standard input and streams each answer to standard output, on the CPU backend.\n"
            "The conversation stays in the KV cache: each turn renders the whole conversation\n"
            "and prefills only the tokens after the part the cache already holds.\n"
            "Lines \"/reset\" (forget the conversation) and \"/quit\" are commands; end of input quits.\n"
            "A turn that would not fit the context is refused (the conversation is kept; /reset).\n\n"
            "options:\n"
            "  --system TEXT         a system message first\n"
            "  --chat-template FILE  use this Jinja template instead of the folder's\n"
            "  --max-tokens N        most tokens per answer (default 256); an answer also ends at the\n"
            "                        model's end-of-turn token (config eos ids, the template's <|eot_id|>,\n"
            "                        <|im_end|>, ...)\n"
            "  --temperature T       0 for greedy (default 0)\n"
            "  --top-p P             nucleus sampling mass (default 0.9)\n"
            "  --seed S              sampling seed (default: from the clock)\n"
            "  --context N           positions to allocate (default: the model's maximum, at most 4096)\n"
            "  --json                per turn one JSON line instead of the streamed text: turn, prompt_tokens\n"
            "                        (the rendered conversation), reused (held in the KV cache), prefilled,\n"
            "                        tokens (generated ids) and text\n"
            "  --verbose             per turn a line on standard error: tokens reused, prefilled, generated\n");
}

typedef struct chat_opts {
    const char *dir, *system, *template_file;
    int max_tokens, context, json, verbose;
    double temperature, top_p;
    unsigned long long seed;
} chat_opts;

static int parse_chat_args(int argc, char **argv, chat_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_tokens = 256, o->top_p = 0.9, o->seed = (unsigned long long)time(NULL);
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { chat_help(stdout); exit(0); }
        else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--verbose")) o->verbose = 1;
        else if (a[0] != '-' && !o->dir) o->dir = a;
        else if (!v) { fprintf(stderr, "sprig chat: %s needs a value\n", a); return 2; }
        else if (!strcmp(a, "--system")) o->system = v, ++i;
        else if (!strcmp(a, "--chat-template")) o->template_file = v, ++i;
        else if (!strcmp(a, "--max-tokens")) { if (cli_parse_int("chat", a, v, 1, 1 << 20, &o->max_tokens)) return 2; ++i; }
        else if (!strcmp(a, "--context")) { if (cli_parse_int("chat", a, v, 1, 1 << 20, &o->context)) return 2; ++i; }
        else if (!strcmp(a, "--temperature")) { if (cli_parse_double("chat", a, v, 0, 100, &o->temperature)) return 2; ++i; }
        else if (!strcmp(a, "--top-p")) { if (cli_parse_double("chat", a, v, 0, 1, &o->top_p)) return 2; ++i; }
        else if (!strcmp(a, "--seed")) {
            double seed;
            if (cli_parse_double("chat", a, v, 0, 1e15, &seed)) return 2;
            o->seed = (unsigned long long)seed, ++i;
        }
        else { fprintf(stderr, "sprig chat: unknown option '%s' (see --help)\n", a); return 2; }
    }
    if (!o->dir) { fprintf(stderr, "sprig chat: give the model folder (see --help)\n"); return 2; }
    return 0;
}

/* The conversation so far (owned copies) and what the backend holds. */
typedef struct chat_state {
    sp_chat_msg *msgs;
    size_t n, cap;
    int *kv;          /* the tokens at positions 0..n_kv-1 of the KV cache */
    int n_kv, cap_kv;
    int turn;
} chat_state;

static void push_msg(chat_state *st, const char *role, const char *content, size_t len) {
    if (st->n == st->cap) st->msgs = realloc(st->msgs, sizeof *st->msgs * (st->cap = st->cap ? 2 * st->cap : 8));
    char *copy = malloc(len + 1);
    memcpy(copy, content, len);
    copy[len] = 0;
    st->msgs[st->n++] = (sp_chat_msg){role, copy};
}

static void pop_msgs(chat_state *st, size_t keep) {
    while (st->n > keep) free((char *)st->msgs[--st->n].content);
}

typedef struct turn_out {
    const chat_opts *o;
    sp_tok_stream *stream;
    int *ids;
    int n, cap;
} turn_out;

static sprig_status on_token(void *ctx, int token) {
    turn_out *t = ctx;
    if (t->n == t->cap) t->ids = realloc(t->ids, sizeof(int) * (size_t)(t->cap = t->cap ? 2 * t->cap : 64));
    t->ids[t->n++] = token;
    if (t->o->json) return SPRIG_OK;
    const char *text;
    size_t len;
    SP_TRY(sp_tok_stream_push(t->stream, token, &text, &len));
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return SPRIG_OK;
}

/* One user message: render, reuse the cached prefix, generate, remember.
 * Returns nonzero only for errors that end the session. */
static int chat_turn(const chat_opts *o, cli_chat *cc, sp_backend *be, sp_sampler *sampler, int context,
                     chat_state *st, const char *line, size_t len) {
    const size_t keep = st->n;
    push_msg(st, "user", line, len);
    int *ids = NULL, n = 0;
    if (cli_chat_tokens(cc, "chat", st->msgs, st->n, &ids, &n)) {
        pop_msgs(st, keep); /* a template that refuses this conversation: say so, keep going */
        return 0;
    }
    if (n >= context) {
        fprintf(stderr, "sprig chat: the conversation would be %d tokens but the context holds %d; "
                        "/reset to start over (or a larger --context)\n", n, context);
        pop_msgs(st, keep);
        free(ids);
        return 0;
    }
    /* The cache holds st->kv; it stays valid up to the first token that differs. */
    int reused = 0;
    while (reused < st->n_kv && reused < n && st->kv[reused] == ids[reused]) ++reused;
    if (reused == n) --reused; /* at least one token to feed, for the logits */
    turn_out t = {o, NULL, NULL, 0, 0};
    sprig_status s = o->json ? SPRIG_OK : sp_tok_stream_open(cc->tok, 1, &t.stream);
    sp_gen_stats gs;
    if (s == SPRIG_OK)
        s = sp_generate_at(be, reused, ids + reused, n - reused, o->max_tokens, context, sampler, cc->stop, cc->n_stop,
                           on_token, &t, &gs);
    if (s != SPRIG_OK) {
        sp_tok_stream_close(t.stream);
        free(t.ids), free(ids);
        return cli_error("generating", s);
    }
    if (t.stream) {
        const char *text;
        size_t tl;
        if (sp_tok_stream_finish(t.stream, &text, &tl) == SPRIG_OK) fwrite(text, 1, tl, stdout);
        sp_tok_stream_close(t.stream);
    }
    /* The backend now holds the prompt and every generated token but the last
     * (sampled, never fed back). */
    const int held = n + (t.n > 0 ? t.n - 1 : 0);
    if (held > st->cap_kv) st->kv = realloc(st->kv, sizeof(int) * (size_t)(st->cap_kv = held));
    memcpy(st->kv, ids, sizeof(int) * (size_t)n);
    if (t.n > 1) memcpy(st->kv + n, t.ids, sizeof(int) * (size_t)(t.n - 1));
    st->n_kv = held;
    /* The answer goes into the history as text, without its stop token. */
    int n_text = t.n;
    for (int i = 0; i < cc->n_stop; ++i)
        if (n_text && t.ids[n_text - 1] == cc->stop[i]) { --n_text; break; }
    int32_t *tid = malloc(sizeof(int32_t) * (size_t)(n_text + 1));
    for (int i = 0; i < n_text; ++i) tid[i] = t.ids[i];
    char *answer = NULL;
    size_t alen = 0;
    if (sp_tok_decode(cc->tok, tid, (size_t)n_text, 1, &answer, &alen) != SPRIG_OK) answer = NULL, alen = 0;
    push_msg(st, "assistant", answer ? answer : "", alen);
    ++st->turn;
    if (o->json) {
        printf("{\"turn\":%d,\"prompt_tokens\":%d,\"reused\":%d,\"prefilled\":%d,\"stopped_at_eos\":%s,\"tokens\":[",
               st->turn, n, reused, n - reused, gs.stopped_at_eos ? "true" : "false");
        for (int i = 0; i < t.n; ++i) printf("%s%d", i ? "," : "", t.ids[i]);
        printf("],\"text\":");
        cli_json_string(stdout, answer ? answer : "", alen);
        printf("}\n");
    } else {
        printf("\n");
    }
    fflush(stdout);
    if (o->verbose)
        fprintf(stderr, "[%s] turn %d: %d tokens, %d reused from the cache, %d prefilled in %.3f s; "
                        "generated %d at %.2f tokens/s\n",
                be->name, st->turn, n, reused, n - reused, gs.prompt_seconds, gs.generated,
                gs.decode_seconds > 0 ? gs.generated / gs.decode_seconds : 0.0);
    free(answer), free(tid), free(t.ids), free(ids);
    return 0;
}

static void chat_reset(const chat_opts *o, chat_state *st) {
    pop_msgs(st, 0);
    st->n_kv = 0;
    if (o->system) push_msg(st, "system", o->system, strlen(o->system));
}

static int chat_loop(const chat_opts *o, cli_chat *cc, sp_backend *be, sp_sampler *sampler, int context) {
    chat_state st = {0};
    chat_reset(o, &st);
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    const int tty = isatty(0);
    for (;;) {
        if (tty) fprintf(stderr, "> "), fflush(stderr);
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break; /* end of input */
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            chat_reset(o, &st);
            if (!o->json) fprintf(stderr, "sprig chat: conversation reset\n");
            continue;
        }
        if (len == 0) continue;
        if ((rc = chat_turn(o, cc, be, sampler, context, &st, line, (size_t)len))) break;
    }
    free(line);
    pop_msgs(&st, 0);
    free(st.msgs), free(st.kv);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    chat_opts o;
    int rc = parse_chat_args(argc, argv, &o);
    if (rc) return rc;
    sp_model *model = NULL;
    sp_tokenizer *tok = NULL;
    sp_backend *be = NULL;
    sp_sampler sampler = {0};
    cli_chat cc = {0};
    sprig_status s = sp_model_open(o.dir, &model);
    if (s != SPRIG_OK) return cli_error("loading the model", s);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", o.dir);
    s = sp_gguf_is_file(o.dir) ? sp_gguf_tokenizer(o.dir, &tok) : sp_tok_open(path, &tok); /* a GGUF carries its own */
    if (s != SPRIG_OK) { rc = cli_error("loading the tokenizer", s); goto done; }
    if ((rc = cli_chat_open(&cc, "chat", o.dir, o.template_file, tok, model->cfg))) goto done;
    const int mp = model->cfg->max_position_embeddings;
    const int context = o.context ? o.context : (mp < 4096 ? mp : 4096);
    s = sp_backend_open_cpu(model, context, SP_MLP_AUTO, &be);
    if (s == SPRIG_OK) s = sp_sampler_init(&sampler, model->cfg->vocab_size, (float)o.temperature, (float)o.top_p, o.seed);
    if (s != SPRIG_OK) { rc = cli_error("starting the backend", s); goto done; }
    rc = chat_loop(&o, &cc, be, &sampler, context);
done:
    sp_sampler_free(&sampler);
    sp_backend_close(be);
    cli_chat_close(&cc);
    sp_tok_close(tok);
    sp_model_close(model);
    return rc;
}
