/* Each family's declared arguments (its spec's args(), carried by the plan)
 * are the signature its template renders: for every family, over a sample
 * of its tuning space and every value of every declared parameter, every
 * kernel of the plan takes exactly the declared list -- the same names in
 * the same order, pointers where declared pointers, the declared element
 * type, and const exactly on the inputs. So the runtime, the tuner and the
 * tests, which bind arguments by name from the plan, cannot drift from the
 * kernels. The declarations are also self-consistent (counts = rows * cols,
 * alignment a multiple of the element size, scratch only with a workspace).
 * The family list comes from sprig_gen_families_json: a new family is
 * covered without touching this file. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sp_space.h"
#include "sprig.h"
#include "test_util.h"

#define SAMPLE 40 /* space candidates per request, evenly strided */

static int checks;

typedef struct parsed_param {
    char name[64], type[16];
    int is_const, pointer;
} parsed_param;

/* Parses "const T *__restrict__ W" / "float threshold" / "unsigned char *mask". */
static int parse_param(const char *p, size_t n, parsed_param *out) {
    char buf[256];
    if (n >= sizeof buf) return 0;
    memcpy(buf, p, n);
    buf[n] = '\0';
    memset(out, 0, sizeof *out);
    out->pointer = strchr(buf, '*') != NULL;
    char *tok[16];
    int nt = 0;
    for (char *s = strtok(buf, " \t\n*"); s && nt < 16; s = strtok(NULL, " \t\n*")) tok[nt++] = s;
    if (nt < 2) return 0;
    snprintf(out->name, sizeof out->name, "%s", tok[nt - 1]);
    for (int i = 0; i < nt - 1; ++i) {
        if (!strcmp(tok[i], "const")) out->is_const = 1;
        else if (!strcmp(tok[i], "__restrict__")) continue;
        else if (!strcmp(tok[i], "unsigned")) snprintf(out->type, sizeof out->type, "unsigned");
        else if (!strcmp(tok[i], "char") && !strcmp(out->type, "unsigned")) snprintf(out->type, sizeof out->type, "u8");
        else snprintf(out->type, sizeof out->type, "%s", tok[i]);
    }
    if (!strcmp(out->type, "float")) snprintf(out->type, sizeof out->type, "f32");
    else if (!strcmp(out->type, "int")) snprintf(out->type, sizeof out->type, "i32");
    return 1;
}

/* The parameter list of kernel `name` in src; returns the count, -1 if absent. */
static int kernel_params(const char *src, const char *name, parsed_param *out, int cap) {
    char head[96];
    snprintf(head, sizeof head, "\n%s(", name);
    const char *p = strstr(src, head);
    if (!p) return -1;
    p += strlen(head);
    const char *end = strchr(p, ')');
    if (!end) return -1;
    int n = 0;
    while (p < end && n < cap) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        /* skip #line directives a template may emit inside a wrapped signature */
        while (p < stop && (isspace((unsigned char)*p))) ++p;
        if (!parse_param(p, (size_t)(stop - p), &out[n])) return -1;
        ++n;
        p = stop + 1;
    }
    return n;
}

static void check_plan(const sprig_plan *plan, const char *what) {
    static const char *const dirs[] = {"in", "out", "inout", "scratch"};
    ++checks;
    CHECK_MSG(plan->n_args > 0 && plan->n_args <= SPRIG_MAX_ARGS, "%s: %d args", what, plan->n_args);
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        const int size = !strcmp(a->type, "T") ? 2 : !strcmp(a->type, "u8") ? 1 : 4;
        CHECK_MSG(a->align > 0 && a->align % size == 0, "%s: %s align %d", what, a->name, a->align);
        CHECK_MSG(!a->pointer || a->count == a->rows * a->cols, "%s: %s count %zu != %zu x %zu", what, a->name,
                  a->count, a->rows, a->cols);
        CHECK_MSG(a->dir != SPRIG_ARG_SCRATCH || a->optional || a->count * 4 <= plan->workspace_bytes,
                  "%s: scratch %s holds %zu floats, the plan's workspace %zu bytes", what, a->name, a->count,
                  plan->workspace_bytes);
        CHECK_MSG(a->role[0], "%s: %s has no role", what, a->name);
    }
    for (int k = 0; k < plan->n_kernels; ++k) {
        parsed_param got[SPRIG_MAX_ARGS + 4];
        const int n = kernel_params(plan->source, plan->kernels[k].name, got, SPRIG_MAX_ARGS + 4);
        CHECK_MSG(n == plan->n_args, "%s: kernel %s has %d parameters, the spec declares %d", what,
                  plan->kernels[k].name, n, plan->n_args);
        for (int i = 0; i < n && i < plan->n_args; ++i) {
            const sprig_arg *a = &plan->args[i];
            const int in = a->dir == SPRIG_ARG_IN;
            CHECK_MSG(!strcmp(got[i].name, a->name), "%s: kernel %s parameter %d is '%s', declared '%s'", what,
                      plan->kernels[k].name, i, got[i].name, a->name);
            CHECK_MSG(got[i].pointer == a->pointer, "%s: %s: pointer %d, declared %d", what, a->name, got[i].pointer,
                      a->pointer);
            CHECK_MSG(!strcmp(got[i].type, a->type), "%s: %s is %s, declared %s", what, a->name, got[i].type,
                      a->type);
            CHECK_MSG(!a->pointer || got[i].is_const == in, "%s: kernel %s: %s is %sconst but declared %s", what,
                      plan->kernels[k].name, a->name, got[i].is_const ? "" : "not ", dirs[a->dir]);
        }
    }
}

static void render_check(sprig_gen *gen, const char *family, int batch, int g, const char *params) {
    sprig_request req = {family, 4096, 11008, "fp16", batch, g, params};
    sprig_plan *plan = NULL;
    if (sprig_gen_render(gen, &req, &plan) != SPRIG_OK) return; /* refused combinations are not plans */
    char what[512];
    snprintf(what, sizeof what, "%s b=%d g=%d [%s]", family, batch, g, params);
    check_plan(plan, what);
    sprig_plan_free(plan);
}

/* Every value of every declared parameter, the others at their defaults. */
static void each_value(sprig_gen *gen, const cJSON *fam, int batch, int g) {
    const char *name = cJSON_GetObjectItem(fam, "name")->valuestring;
    const cJSON *param;
    cJSON_ArrayForEach(param, cJSON_GetObjectItem(fam, "params")) {
        const cJSON *values = cJSON_GetObjectItem(param, "values"), *v;
        cJSON_ArrayForEach(v, values) {
            char p[256];
            if (cJSON_IsString(v)) snprintf(p, sizeof p, "%s=%s", cJSON_GetObjectItem(param, "name")->valuestring, v->valuestring);
            else snprintf(p, sizeof p, "%s=%d", cJSON_GetObjectItem(param, "name")->valuestring, v->valueint);
            render_check(gen, name, batch, g, p);
        }
    }
}

static void sampled_space(sprig_gen *gen, const char *family, int batch, int g) {
    sprig_request req = {family, 4096, 11008, "fp16", batch, g, ""};
    sp_space *s = NULL;
    if (sp_space_build(gen, &req, &s) != SPRIG_OK) return;
    const size_t stride = s->n > SAMPLE ? s->n / SAMPLE : 1;
    for (size_t i = 0; i < s->n; i += stride) render_check(gen, family, batch, g, s->params[i]);
    sp_space_free(s);
}

int main(void) {
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    char *json = NULL;
    CHECK(gen && sprig_gen_families_json(gen, &json) == SPRIG_OK);
    cJSON *families = json ? cJSON_Parse(json) : NULL;
    CHECK(cJSON_GetArraySize(families) >= 8);
    const cJSON *fam;
    cJSON_ArrayForEach(fam, families) {
        const char *name = cJSON_GetObjectItem(fam, "name")->valuestring;
        const int before = checks;
        static const int batches[] = {1, 8, 16}, gs[] = {32, 1};
        for (size_t b = 0; b < 3; ++b)
            for (size_t j = 0; j < 2; ++j) {
                sampled_space(gen, name, batches[b], gs[j]);
                each_value(gen, fam, batches[b], gs[j]);
            }
        printf("%-18s %d plans checked against their declared arguments\n", name, checks - before);
        CHECK_MSG(checks > before, "%s: no plan rendered", name);
    }
    /* the check can fail: a plan whose declared order differs from its kernel's */
    printf("planting a swapped declaration (the failures it prints are expected):\n");
    fflush(stdout);
    sprig_request req = {"dense_gemv", 4096, 11008, "fp16", 1, 32, ""};
    sprig_plan *plan = NULL;
    if (sprig_gen_render(gen, &req, &plan) == SPRIG_OK) {
        const int failures = sp_test_failures;
        sprig_arg t = plan->args[0];
        plan->args[0] = plan->args[1], plan->args[1] = t;
        check_plan(plan, "planted swap");
        CHECK_MSG(sp_test_failures > failures, "a swapped declaration went unnoticed");
        sp_test_failures = failures;
        sprig_plan_free(plan);
    }
    cJSON_Delete(families);
    free(json);
    sprig_gen_close(gen);
    return sp_test_finish("test_family_args", checks);
}
