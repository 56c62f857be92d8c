/* Chat templates against transformers: every case in tests/fixtures/chat/
 * (tools/make_chat_fixtures.py rendered them with transformers'
 * render_jinja_template) must come out byte for byte, or fail where
 * transformers failed (with raise_exception's message). Bad templates give a
 * one-line error; a model folder's template is found where transformers
 * looks for it. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_chat_template.h"
#include "sp_file.h"
#include "test_util.h"

static int checks;

static const char *str_or_null(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Prints where two renderings first differ. */
static void show_diff(const char *what, const char *got, size_t got_n, const char *want) {
    size_t i = 0, want_n = strlen(want);
    while (i < got_n && i < want_n && got[i] == want[i]) ++i;
    fprintf(stderr, "  %s: differs at byte %zu (got %zu bytes, want %zu)\n  got:  ...%.40s\n  want: ...%.40s\n", what, i,
            got_n, want_n, got + (i > 10 ? i - 10 : 0), want + (i > 10 ? i - 10 : 0));
}

static void run_case(const char *file, const cJSON *doc, const cJSON *cs, int *exact, int *total) {
    const char *name = str_or_null(cs, "name");
    const char *ttext = str_or_null(cs, "template");
    if (!ttext) ttext = str_or_null(doc, "template");
    char label[256];
    snprintf(label, sizeof label, "%s/%s", file, name);
    sp_chat_template *t = NULL;
    sprig_status s = sp_chat_template_parse(ttext, strlen(ttext), label, &t);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(cs, "messages");
    int n = cJSON_GetArraySize(msgs);
    sp_chat_msg *m = calloc((size_t)n + 1, sizeof *m);
    for (int i = 0; i < n; ++i) {
        const cJSON *e = cJSON_GetArrayItem(msgs, i);
        m[i].role = str_or_null(e, "role"), m[i].content = str_or_null(e, "content");
    }
    sp_chat_vars v = {str_or_null(doc, "bos_token"), str_or_null(doc, "eos_token"),
                      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cs, "add_generation_prompt"))};
    char *out = NULL;
    size_t len = 0;
    if (s == SPRIG_OK) s = sp_chat_template_render(t, m, (size_t)n, &v, &out, &len);
    const char *want = str_or_null(cs, "expected"), *err = str_or_null(cs, "error");
    ++*total, ++checks;
    if (want) {
        const int ok = s == SPRIG_OK && len == strlen(want) && memcmp(out, want, len) == 0;
        CHECK_MSG(ok, "%s: %s", label, s == SPRIG_OK ? "rendering differs" : sprig_last_error());
        if (!ok && s == SPRIG_OK) show_diff(label, out, len, want);
        *exact += ok;
    } else {
        const int raised = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cs, "raised"));
        const int ok = s != SPRIG_OK && (!raised || sp_contains(sprig_last_error(), err)) &&
                       !strchr(sprig_last_error(), '\n');
        CHECK_MSG(ok, "%s: expected the error '%s', got %s", label, err, s == SPRIG_OK ? out : sprig_last_error());
        *exact += ok;
    }
    free(out);
    free(m);
    sp_chat_template_free(t);
}

static void run_fixtures(const char *dir) {
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d) return;
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t nl = strlen(e->d_name);
        if (nl < 6 || strcmp(e->d_name + nl - 5, ".json")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *text = NULL;
        size_t len = 0;
        CHECK(sp_file_read(path, 1 << 24, &text, &len, NULL) == SPRIG_OK);
        cJSON *doc = cJSON_ParseWithLength(text, len);
        free(text);
        CHECK_MSG(doc != NULL, "%s is not JSON", path);
        if (!doc) continue;
        int exact = 0, total = 0;
        const cJSON *cs;
        cJSON_ArrayForEach(cs, cJSON_GetObjectItemCaseSensitive(doc, "cases")) run_case(e->d_name, doc, cs, &exact, &total);
        printf("%-24s %d/%d cases as transformers renders them\n", e->d_name, exact, total);
        CHECK_MSG(total >= 10, "%s: only %d cases", e->d_name, total);
        ++files;
        cJSON_Delete(doc);
    }
    closedir(d);
    CHECK_MSG(files >= 9, "only %d fixture files in %s", files, dir);
}

/* Malformed templates: an error of one line naming the line, never a crash. */
static void bad_templates(void) {
    static const struct { const char *text, *says; } bad[] = {
        {"{% if x %}never closed", "never closed"},
        {"{% for m in messages %}x", "never closed"},
        {"a\n{{ unterminated", "not closed"},
        {"{{ 'open string }}", "not closed"},
        {"{% endif %}", "without its if"},
        {"{% macro f() %}{% endmacro %}", "not supported"},
        {"{{ 1 + }}", "expected an expression"},
        {"{{ a b }}", "unexpected"},
        {"{% set %}", "expected a name"},
        {"{{ x[1:2:3] }}", "step"},
        {"{{ @ }}", "unexpected character"},
        {"{% if %}{% endif %}", "expected an expression"},
        {"{% for in x %}{% endfor %}", "expected 'in'"},
        {NULL, "nested deeper"}, /* 300 balanced parentheses, made below */
    };
    char deep[1024] = "{{ ";
    for (int i = 0; i < 300; ++i) strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 300; ++i) strcat(deep, ")");
    strcat(deep, " }}");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        sp_chat_template *t = NULL;
        const char *text = bad[i].text ? bad[i].text : deep;
        sprig_status s = sp_chat_template_parse(text, strlen(text), "bad", &t);
        ++checks;
        CHECK_MSG(s == SPRIG_E_FORMAT && t == NULL, "'%.60s' parsed (status %d)", text, (int)s);
        CHECK_MSG(sp_contains(sprig_last_error(), bad[i].says) && !strchr(sprig_last_error(), '\n'),
                  "'%.60s': the message '%s' does not say '%s'", text, sprig_last_error(), bad[i].says);
        sp_chat_template_free(t);
    }
    /* render-time failures: limits and types */
    static const struct { const char *text, *says; } fails[] = {
        {"{{ raise_exception('line one\nline two') }}", "line one line two"},
        {"{{ messages[0].role + 1 }}", "unsupported operand"},
        {"{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}",
         "limit"}, /* steps or memory, whichever runs out first */
        {"{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
         "limit"},
        {"{{ none.x.y }}", "undefined"},
    };
    for (size_t i = 0; i < sizeof fails / sizeof fails[0]; ++i) {
        sp_chat_template *t = NULL;
        CHECK(sp_chat_template_parse(fails[i].text, strlen(fails[i].text), "bad", &t) == SPRIG_OK);
        sp_chat_msg m = {"user", "hi"};
        char *out = NULL;
        sprig_status s = t ? sp_chat_template_render(t, &m, 1, NULL, &out, NULL) : SPRIG_E_INVALID;
        ++checks;
        CHECK_MSG(s != SPRIG_OK && out == NULL, "'%s' rendered", fails[i].text);
        CHECK_MSG(sp_contains(sprig_last_error(), fails[i].says) && !strchr(sprig_last_error(), '\n'),
                  "'%s': the message '%s' does not say '%s'", fails[i].text, sprig_last_error(), fails[i].says);
        free(out);
        sp_chat_template_free(t);
    }
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) fputs(text, f), fclose(f);
}

/* chat_template.jinja first, then tokenizer_config.json (string or named
 * list), tokens as strings or AddedToken objects, and a clear refusal. */
static void folder_lookup(void) {
    char dir[] = "/tmp/sprig_chat_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    sp_chat_source src;
    ++checks;
    CHECK(sp_chat_source_load(dir, &src) == SPRIG_E_IO);
    CHECK_MSG(sp_contains(sprig_last_error(), "no chat template") && sp_contains(sprig_last_error(), "chat_template.jinja"),
              "%s", sprig_last_error());

    write_file(dir, "tokenizer_config.json",
               "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\"}, \"eos_token\": \"</s>\","
               " \"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
               " {\"name\": \"default\", \"template\": \"D{{ bos_token }}\"}]}");
    CHECK(sp_chat_source_load(dir, &src) == SPRIG_OK);
    CHECK(src.text && !strcmp(src.text, "D{{ bos_token }}"));
    CHECK(src.bos_token && !strcmp(src.bos_token, "<s>"));
    CHECK(src.eos_token && !strcmp(src.eos_token, "</s>"));
    CHECK(src.origin && sp_contains(src.origin, "tokenizer_config.json"));
    sp_chat_source_free(&src);

    write_file(dir, "chat_template.jinja", "J");
    CHECK(sp_chat_source_load(dir, &src) == SPRIG_OK);
    CHECK(src.text && !strcmp(src.text, "J"));
    CHECK(src.bos_token && !strcmp(src.bos_token, "<s>")); /* tokens still from the config */
    CHECK(src.origin && sp_contains(src.origin, "chat_template.jinja"));
    sp_chat_source_free(&src);

    write_file(dir, "tokenizer_config.json", "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}");
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    unlink(path);
    CHECK(sp_chat_source_load(dir, &src) == SPRIG_E_FORMAT);
    CHECK(sp_contains(sprig_last_error(), "default"));
    write_file(dir, "tokenizer_config.json", "{\"chat_template\": \"S\", \"bos_token\": null}");
    CHECK(sp_chat_source_load(dir, &src) == SPRIG_OK);
    CHECK(src.text && !strcmp(src.text, "S") && src.bos_token == NULL);
    sp_chat_source_free(&src);
    sp_test_remove_dir(dir);
}

int main(int argc, char **argv) {
    run_fixtures(argc > 1 ? argv[1] : SPRIG_SOURCE_DIR "/tests/fixtures/chat");
    bad_templates();
    folder_lookup();
    return sp_test_finish("test_chat_template", checks);
}
