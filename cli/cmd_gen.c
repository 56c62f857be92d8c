/* sprig gen: render one kernel and print (or write) its CUDA source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void gen_help(FILE *to) {
    fprintf(to, "usage: sprig gen --family NAME (--model NAME | --shape D,F) [options] [-o FILE]\n\n"
                "Renders the family's template for the request and prints the CUDA source\n"
                "(with #line directives back to the template).\n\noptions:\n%s"
                "  -o, --output FILE   write the source to FILE instead of standard output\n"
                "  --json              print the plan (key, parameters, launches) as JSON, not the source\n",
            cli_kernel_args_help);
}

static int print_plan_json(const sprig_plan *p) {
    printf("{\"family\":\"%s\",\"key\":\"%s\",\"template_hash\":\"%016llx\",\"params\":%s,"
           "\"workspace_bytes\":%zu,\"kernels\":[",
           p->family, p->key, (unsigned long long)p->template_hash, p->params_json, p->workspace_bytes);
    for (int k = 0; k < p->n_kernels; ++k) {
        const sprig_launch *l = &p->kernels[k];
        printf("%s{\"name\":\"%s\",\"grid\":[%u,%u,%u],\"block\":[%u,%u,%u],\"smem_bytes\":%u}", k ? "," : "",
               l->name, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2], l->smem_bytes);
    }
    static const char *const dirs[] = {"in", "out", "inout", "scratch"};
    printf("],\"args\":[");
    for (int i = 0; i < p->n_args; ++i) {
        const sprig_arg *a = &p->args[i];
        printf("%s{\"name\":\"%s\",\"type\":\"%s\",\"role\":\"%s\",\"dir\":\"%s\",\"pointer\":%s,"
               "\"optional\":%s,\"count\":%zu,\"rows\":%zu,\"cols\":%zu,\"align\":%d,\"fan_in\":%d}",
               i ? "," : "", a->name, a->type, a->role, dirs[a->dir], a->pointer ? "true" : "false",
               a->optional ? "true" : "false", a->count, a->rows, a->cols, a->align, a->fan_in);
    }
    printf("],\"verify\":\"%s\"}\n", p->verify);
    return 0;
}

int cmd_gen(int argc, char **argv) {
    cli_kernel_args a;
    cli_kernel_args_init(&a);
    const char *output = NULL;
    int json = 0;
    for (int i = 1; i < argc; ++i) {
        int r = cli_kernel_arg(&a, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            gen_help(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc) {
            output = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "sprig gen: unknown option '%s'\n", argv[i]);
            gen_help(stderr);
            return 2;
        }
    }
    if (!a.family) {
        fprintf(stderr, "sprig gen: --family is required (sprig families lists them)\n");
        return 2;
    }
    sprig_gen *gen = NULL;
    sprig_status s = sprig_gen_open(&gen, a.template_dir);
    if (s != SPRIG_OK) return cli_error("starting the generator", s);
    int rc = cli_resolve_model(gen, &a);
    sprig_plan *plan = NULL;
    if (!rc) {
        sprig_request req = {a.family, a.d, a.f, a.dtype, a.batch, a.g, a.params};
        s = sprig_gen_render(gen, &req, &plan);
        if (s != SPRIG_OK) rc = cli_error("rendering", s);
    }
    if (!rc && json) {
        rc = print_plan_json(plan);
    } else if (!rc) {
        FILE *to = output ? fopen(output, "wb") : stdout;
        if (!to) {
            fprintf(stderr, "sprig gen: cannot write '%s'\n", output);
            rc = 1;
        } else {
            if (fwrite(plan->source, 1, plan->source_len, to) != plan->source_len) rc = 1;
            if (output && fclose(to) != 0) rc = 1;
            if (rc) fprintf(stderr, "sprig gen: writing '%s' failed\n", output ? output : "stdout");
        }
    }
    sprig_plan_free(plan);
    sprig_gen_close(gen);
    return rc;
}

int cmd_families(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: sprig families\n\nPrints every kernel family with its parameters as JSON.\n");
        return 0;
    }
    sprig_gen *gen = NULL;
    sprig_status s = sprig_gen_open(&gen, NULL);
    if (s != SPRIG_OK) return cli_error("starting the generator", s);
    char *json = NULL;
    s = sprig_gen_families_json(gen, &json);
    sprig_gen_close(gen);
    if (s != SPRIG_OK) return cli_error("listing families", s);
    printf("%s\n", json);
    free(json);
    return 0;
}

int cmd_models(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: sprig models\n\nPrints the named model shapes as JSON.\n");
        return 0;
    }
    sprig_gen *gen = NULL;
    sprig_status s = sprig_gen_open(&gen, NULL);
    if (s != SPRIG_OK) return cli_error("starting the generator", s);
    char *json = NULL;
    s = sprig_gen_models_json(gen, &json);
    sprig_gen_close(gen);
    if (s != SPRIG_OK) return cli_error("listing models", s);
    printf("%s\n", json);
    free(json);
    return 0;
}
