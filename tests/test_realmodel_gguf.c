/* SmolLM2-135M-Instruct from its Q4_1 GGUF (scripts/fetch-smollm2.sh puts it
 * in the cache; exit 77 when it is not there): the config sprig builds from
 * the metadata, then `sprig run GGUF --tokens ... --max-tokens 8` greedy on
 * the CPU backend gives the tokens transformers gave on the same file
 * (tests/fixtures/gguf/smollm2_greedy.json, tools/smollm2_gguf_reference.py),
 * through --tokens, --prompt and one --chat turn in the GGUF's chat template;
 * and sprig perplexity against transformers' (argv[3], optional).
 * argv: the fixture, the sprig binary[, the perplexity fixture]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sp_file.h"
#include "sp_model.h"
#include "test_util.h"

static int checks;

static void model_path(char *buf, size_t cap) {
    const char *env = getenv("SPRIG_SMOLLM2_GGUF");
    if (env && env[0]) {
        snprintf(buf, cap, "%s", env);
        return;
    }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0]) snprintf(buf, cap, "%s/sprig/models/SmolLM2-135M-Instruct.Q4_1.gguf", xdg);
    else snprintf(buf, cap, "%s/.cache/sprig/models/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : ".");
}

static void check_config(const char *path) {
    sp_model *m = NULL;
    ++checks;
    sprig_status s = sp_model_open(path, &m);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    if (!m) return;
    const sp_model_config *c = m->cfg;
    CHECK_MSG(c->hidden_size == 576 && c->intermediate_size == 1536 && c->num_hidden_layers == 30,
              "d=%d f=%d layers=%d", c->hidden_size, c->intermediate_size, c->num_hidden_layers);
    CHECK_MSG(c->num_attention_heads == 9 && c->num_key_value_heads == 3 && c->head_dim == 64, "heads %d/%d hd %d",
              c->num_attention_heads, c->num_key_value_heads, c->head_dim);
    CHECK(c->tie_word_embeddings && m->lm_head == m->embed);
    CHECK(c->vocab_size == 49152 && c->bos_token_id == 1 && c->n_eos == 1 && c->eos_token_ids[0] == 2);
    CHECK(c->rope_theta == 100000.0 && c->max_position_embeddings == 8192);
    sp_model_close(m);
}

/* Runs a sprig command that prints one JSON object; the object (the caller
 * deletes it), or NULL after a failed CHECK naming what came back. */
static cJSON *run_json(const char *cmd) {
    ++checks;
    FILE *p = popen(cmd, "r");
    static char out[1 << 16];
    const size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    if (p) CHECK_MSG(pclose(p) == 0, "%s failed", cmd);
    cJSON *j = cJSON_Parse(out);
    CHECK_MSG(j != NULL, "%s: not JSON: %s", cmd, out);
    return j;
}

/* Two JSON arrays of the same integers. */
static int same_ids(const cJSON *a, const cJSON *b) {
    int same = cJSON_GetArraySize(a) == cJSON_GetArraySize(b);
    for (int i = 0; same && i < cJSON_GetArraySize(a); ++i)
        same = cJSON_GetArrayItem(a, i)->valueint == cJSON_GetArrayItem(b, i)->valueint;
    return same;
}

static void check_greedy(const char *path, const char *sprig, const cJSON *cs) {
    char cmd[8192];
    int at = snprintf(cmd, sizeof cmd, "'%s' run '%s' --backend cpu --max-tokens 8 --tokens ", sprig, path);
    const cJSON *id;
    int first = 1;
    cJSON_ArrayForEach(id, cJSON_GetObjectItem(cs, "prompt")) {
        at += snprintf(cmd + at, sizeof cmd - (size_t)at, "%s%d", first ? "" : ",", id->valueint);
        first = 0;
    }
    snprintf(cmd + at, sizeof cmd - (size_t)at, " 2>/dev/null");
    char want[1024] = "";
    size_t w = 0;
    first = 1;
    cJSON_ArrayForEach(id, cJSON_GetObjectItem(cs, "greedy")) {
        w += (size_t)snprintf(want + w, sizeof want - w, "%s%d", first ? "" : ",", id->valueint);
        first = 0;
    }
    ++checks;
    FILE *p = popen(cmd, "r");
    char got[1024] = "";
    if (p) {
        if (!fgets(got, sizeof got, p)) got[0] = '\0';
        got[strcspn(got, "\n")] = '\0';
        CHECK_MSG(pclose(p) == 0, "%s failed", cmd);
    }
    printf("%s: sprig %s, transformers %s\n", cJSON_GetObjectItem(cs, "text")->valuestring, got, want);
    CHECK_MSG(strcmp(got, want) == 0, "greedy tokens for '%s' differ", cJSON_GetObjectItem(cs, "text")->valuestring);
    /* the same through --prompt: the tokenizer comes from the GGUF's metadata */
    const char *text = cJSON_GetObjectItem(cs, "text")->valuestring;
    snprintf(cmd, sizeof cmd, "'%s' run '%s' --backend cpu --max-tokens 8 --json --prompt '%s' 2>/dev/null", sprig,
             path, text);
    cJSON *j = run_json(cmd);
    if (!j) return;
    const cJSON *pt = cJSON_GetObjectItem(j, "prompt_tokens"), *toks = cJSON_GetObjectItem(j, "tokens");
    CHECK_MSG(cJSON_IsNumber(pt) && pt->valueint == cJSON_GetArraySize(cJSON_GetObjectItem(cs, "prompt")),
              "'%s': %d prompt tokens", text, cJSON_IsNumber(pt) ? pt->valueint : -1);
    CHECK_MSG(same_ids(toks, cJSON_GetObjectItem(cs, "greedy")), "'%s' through --prompt: tokens differ from transformers'", text);
    const cJSON *dt = cJSON_GetObjectItem(j, "text");
    CHECK_MSG(cJSON_IsString(dt) && strcmp(dt->valuestring, cJSON_GetObjectItem(cs, "decoded")->valuestring) == 0,
              "'%s': decoded text differs from transformers'", text);
    cJSON_Delete(j);
}

/* One chat turn through the GGUF's own tokenizer.chat_template: the prompt
 * transformers' apply_chat_template gives (its length) and its greedy tokens,
 * the end-of-turn token included, where sprig stops. */
static void check_chat(const char *path, const char *sprig, const cJSON *chat) {
    const cJSON *msg = cJSON_GetArrayItem(cJSON_GetObjectItem(chat, "messages"), 0);
    const char *text = cJSON_GetObjectItem(msg, "content")->valuestring;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' run '%s' --backend cpu --max-tokens 8 --json --chat --prompt '%s' 2>/dev/null",
             sprig, path, text);
    cJSON *j = run_json(cmd);
    if (!j) return;
    const cJSON *pt = cJSON_GetObjectItem(j, "prompt_tokens"), *toks = cJSON_GetObjectItem(j, "tokens");
    const cJSON *want = cJSON_GetObjectItem(chat, "greedy");
    CHECK_MSG(cJSON_IsNumber(pt) && pt->valueint == cJSON_GetArraySize(cJSON_GetObjectItem(chat, "prompt")),
              "--chat: %d prompt tokens, transformers %d", cJSON_IsNumber(pt) ? pt->valueint : -1,
              cJSON_GetArraySize(cJSON_GetObjectItem(chat, "prompt")));
    const int same = same_ids(toks, want);
    CHECK_MSG(same, "--chat '%s': tokens differ from transformers'", text);
    printf("--chat '%s': %d prompt tokens, tokens %s\n", text, cJSON_IsNumber(pt) ? pt->valueint : -1,
           same ? "as transformers" : "DIFFERENT");
    cJSON_Delete(j);
}

/* sprig perplexity (dense) over the first tokens of the perplexity fixture's
 * text, against transformers over the same windows (tools/perplexity_reference.py
 * --gguf): the same counts, perplexity within 0.5%. */
static void check_perplexity(const char *path, const char *sprig, const char *fixture) {
    char *json = NULL;
    size_t len = 0;
    CHECK_MSG(sp_file_read(fixture, 1 << 20, &json, &len, NULL) == SPRIG_OK, "%s", sprig_last_error());
    cJSON *root = json ? cJSON_Parse(json) : NULL, *want = cJSON_GetArrayItem(root, 0);
    free(json);
    CHECK_MSG(want != NULL, "%s: no case", fixture);
    if (!want) {
        cJSON_Delete(root);
        return;
    }
    char text[4096], cmd[16384];
    snprintf(text, sizeof text, "%.*s/text.txt", (int)(strrchr(fixture, '/') ? strrchr(fixture, '/') - fixture : 1),
             strrchr(fixture, '/') ? fixture : ".");
    snprintf(cmd, sizeof cmd,
             "'%s' perplexity '%s' --text '%s' --context %d --stride %d --max-tokens %d --dense --json 2>/dev/null",
             sprig, path, text, cJSON_GetObjectItem(want, "context")->valueint,
             cJSON_GetObjectItem(want, "stride")->valueint, cJSON_GetObjectItem(want, "max_tokens")->valueint);
    cJSON *got = run_json(cmd);
    if (got) {
        const double g = cJSON_GetObjectItem(got, "perplexity")->valuedouble;
        const double w = cJSON_GetObjectItem(want, "perplexity")->valuedouble;
        CHECK_MSG(cJSON_GetObjectItem(got, "scored")->valueint == cJSON_GetObjectItem(want, "scored")->valueint,
                  "perplexity: %d tokens scored, transformers %d", cJSON_GetObjectItem(got, "scored")->valueint,
                  cJSON_GetObjectItem(want, "scored")->valueint);
        CHECK_MSG(fabs(g - w) <= 0.005 * w, "perplexity %.6g, transformers %.6g", g, w);
        printf("perplexity over %d tokens: sprig %.6g, transformers %.6g\n",
               cJSON_GetObjectItem(got, "tokens")->valueint, g, w);
    }
    cJSON_Delete(got);
    cJSON_Delete(root);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_realmodel_gguf FIXTURE.json SPRIG\n");
        return 2;
    }
    char path[4096];
    model_path(path, sizeof path);
    if (access(path, R_OK) != 0) {
        printf("test_realmodel_gguf: %s not found (scripts/fetch-smollm2.sh fetches it); skipped\n", path);
        return 77;
    }
    char *json = NULL;
    size_t len;
    if (sp_file_read(argv[1], 1 << 20, &json, &len, NULL) != SPRIG_OK) {
        fprintf(stderr, "%s\n", sprig_last_error());
        return 1;
    }
    cJSON *root = cJSON_Parse(json);
    free(json);
    CHECK(root != NULL);
    check_config(path);
    const cJSON *cs;
    if (root) cJSON_ArrayForEach(cs, cJSON_GetObjectItem(root, "cases")) check_greedy(path, argv[2], cs);
    const cJSON *chat = root ? cJSON_GetObjectItem(root, "chat") : NULL;
    CHECK_MSG(chat != NULL, "the fixture has no chat case (tools/smollm2_gguf_reference.py writes it)");
    if (chat) check_chat(path, argv[2], chat);
    if (argc > 3) check_perplexity(path, argv[2], argv[3]);
    cJSON_Delete(root);
    return sp_test_finish("test_realmodel_gguf", checks);
}
