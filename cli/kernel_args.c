/* Parsing of the options that name one kernel, shared by gen, compile, tune. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "sp_exec.h"
#include "sp_gen_perf.h"

const char *const cli_kernel_args_help =
    "  --family NAME       kernel family (sprig families lists them)\n"
    "  --model NAME        named shape, e.g. llama2-7b (sprig models lists them)\n"
    "  --shape D,F         model width and MLP width, multiples of 8\n"
    "  --dtype fp16|bf16   operand type (default fp16)\n"
    "  --batch N           tokens per call, 1..64 (default 1)\n"
    "  --g N               neurons per expert: 1, 16, 32, 64, 128 (default 32)\n"
    "  --param K=V         a family parameter; repeat for several (default: the family's)\n"
    "  --template-dir DIR  render templates from DIR instead of the embedded ones\n";

void cli_kernel_args_init(cli_kernel_args *a) {
    memset(a, 0, sizeof *a);
    a->dtype = "fp16";
    a->batch = 1;
    a->g = 32;
}

static int parse_int(const char *opt, const char *text, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < -2147483647L || v > 2147483647L) {
        fprintf(stderr, "sprig: %s expects an integer, got '%s'\n", opt, text);
        return -1;
    }
    *out = (int)v;
    return 1;
}

int cli_parse_int(const char *cmd, const char *opt, const char *text, long lo, long hi, int *out) {
    char *end = NULL;
    errno = 0;
    const long v = text ? strtol(text, &end, 10) : 0;
    if (!text || errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "sprig %s: %s expects an integer in %ld..%ld, got '%s'\n", cmd, opt, lo, hi, text ? text : "");
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *text, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    const double v = text ? strtod(text, &end) : 0;
    if (!text || errno || end == text || *end || !(v >= lo && v <= hi)) { /* NaN fails the range */
        fprintf(stderr, "sprig %s: %s expects a number in %g..%g, got '%s'\n", cmd, opt, lo, hi, text ? text : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_kernel_arg(cli_kernel_args *a, int argc, char **argv, int *i) {
    const char *opt = argv[*i];
    static const char *const with_value[] = {"--family", "--model", "--shape", "--dtype", "--batch",
                                             "--g", "--param", "--template-dir"};
    int known = 0;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; ++k) known |= !strcmp(opt, with_value[k]);
    if (!known) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sprig: %s needs a value\n", opt);
        return -1;
    }
    const char *val = argv[++*i];
    if (!strcmp(opt, "--family")) a->family = val;
    else if (!strcmp(opt, "--model")) a->model = val;
    else if (!strcmp(opt, "--dtype")) a->dtype = val;
    else if (!strcmp(opt, "--template-dir")) a->template_dir = val;
    else if (!strcmp(opt, "--batch")) return parse_int(opt, val, &a->batch);
    else if (!strcmp(opt, "--g")) return parse_int(opt, val, &a->g);
    else if (!strcmp(opt, "--shape")) {
        /* strtol, not sscanf's %d: a number past int must be refused, not wrapped */
        char *comma = NULL, *end = NULL;
        errno = 0;
        const long d = strtol(val, &comma, 10);
        const long f = comma && *comma == ',' ? strtol(comma + 1, &end, 10) : 0;
        if (errno || comma == val || *comma != ',' || !end || end == comma + 1 || *end || d < 1 || f < 1 ||
            d > 1048576 || f > 1048576) {
            fprintf(stderr, "sprig: --shape expects D,F, each 1..1048576 (for example 4096,11008), got '%s'\n", val);
            return -1;
        }
        a->d = (int)d, a->f = (int)f;
    } else if (!strcmp(opt, "--param")) {
        size_t used = strlen(a->params);
        if (used + strlen(val) + 2 > sizeof a->params) {
            fprintf(stderr, "sprig: too many --param values\n");
            return -1;
        }
        snprintf(a->params + used, sizeof a->params - used, "%s%s", used ? "," : "", val);
    }
    return 1;
}

int cli_resolve_model(sprig_gen *gen, cli_kernel_args *a) {
    if (!a->model) {
        if (a->d == 0 || a->f == 0) {
            fprintf(stderr, "sprig: give --model NAME or --shape D,F\n");
            return 1;
        }
        return 0;
    }
    char *json = NULL;
    sprig_status s = sprig_gen_models_json(gen, &json);
    if (s != SPRIG_OK) return cli_error("reading model shapes", s);
    cJSON *list = cJSON_Parse(json);
    free(json);
    int found = 0;
    cJSON *m;
    cJSON_ArrayForEach(m, list) {
        const cJSON *name = cJSON_GetObjectItem(m, "name");
        if (cJSON_IsString(name) && !strcmp(name->valuestring, a->model)) {
            a->d = cJSON_GetObjectItem(m, "d")->valueint;
            a->f = cJSON_GetObjectItem(m, "f")->valueint;
            found = 1;
        }
    }
    cJSON_Delete(list);
    if (!found) {
        fprintf(stderr, "sprig: unknown model '%s' (sprig models lists them)\n", a->model);
        return 1;
    }
    return 0;
}

sprig_status (*cli_exec_open)(struct sp_exec **out, int device) = sp_exec_open_cuda;

int cli_model_profile(sprig_gen *gen, const char *name, const char *device, sp_gpu_profile *out) {
    static const struct { const char *needle, *profile; } known[] = {
        {"H200", "h200"}, {"H100", "h100"}, {"A100", "a100"}, {"L40S", "l40s"}, {"4090", "rtx4090"}, {"B200", "b200"}};
    for (size_t i = 0; !name && device && i < sizeof known / sizeof known[0]; ++i)
        if (strstr(device, known[i].needle)) name = known[i].profile;
    sprig_status s = sp_gen_gpu_profile(gen, name ? name : "h100", out);
    return s == SPRIG_OK ? 0 : cli_error("the GPU profile (--gpu)", s);
}

int cli_error(const char *what, sprig_status s) {
    fprintf(stderr, "sprig: %s: %s: %s\n", what, sprig_status_name(s), sprig_last_error());
    return 1;
}
