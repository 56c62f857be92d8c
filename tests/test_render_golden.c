/* Rendered kernels are pinned: every family's tuning space (and its defaults
 * and the emulator's cheap parameters) at the reference shapes of DESIGN.md
 * renders to the same bytes as recorded in tests/golden/render_hashes.txt.
 *
 * One line per case: the request, the number of candidates rendered, and one
 * XXH3-64 over every candidate's parameters, plan key, launch plan and CUDA
 * source, in space order. Spaces are sampled (every k-th candidate, at most
 * QUICK_CANDIDATES) unless --full renders all of them (about 230 000 plans,
 * six minutes: for checking a refactor by hand against a --full recording). A change to a template, a spec's plan or the
 * engine that alters any kernel fails here, naming the case; a deliberate
 * change rewrites the file with
 *     test_render_golden --write tests/golden/render_hashes.txt
 * and says why in its commit. Refactors must leave it untouched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "sp_space.h"
#include "sprig.h"
#include "test_util.h"

typedef struct golden_case {
    const char *family;
    int d, f;
    const char *dtype;
    int batch, g;
    const char *fixed;     /* the request's fixed params */
    int whole_space;       /* 1: candidates of the space (every one with --full); 0: defaults + the extra sets */
} golden_case;

/* The parameter sets rendered besides the defaults when a case is not a whole
 * space: the cheap plans the emulator tests run (runtime's emulator params). */
static const char *extra_params(const char *family) {
    static const struct {
        const char *family, *params;
    } extra[] = {
        {"dense_gemv", "threads=64,rows_per_warp=4"},
        {"rmsnorm", "threads=64"},
        {"attention_decode", "threads=32,splits=2"},
        {"router", "threads=64,ksplit=2"},
        {"gather_upgate", "threads=64,rows_per_warp=4"},
        {"gather_down", "threads=64,cols_per_cta=64,splits=2"},
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; ++i)
        if (!strcmp(extra[i].family, family)) return extra[i].params;
    return NULL;
}

static void join(char *out, size_t cap, const char *a, const char *b) {
    snprintf(out, cap, "%s%s%s", a ? a : "", a && *a && b && *b ? "," : "", b ? b : "");
}

/* Adds one rendered plan to the running hash; a request the family refuses
 * adds its error text instead (refusals are behaviour too). */
static void hash_one(sprig_gen *gen, const golden_case *c, const char *params, XXH3_state_t *h) {
    sprig_request req = {c->family, c->d, c->f, c->dtype, c->batch, c->g, params};
    sprig_plan *plan = NULL;
    XXH3_64bits_update(h, params, strlen(params) + 1);
    if (sprig_gen_render(gen, &req, &plan) != SPRIG_OK) {
        const char *err = sprig_last_error();
        XXH3_64bits_update(h, err, strlen(err) + 1);
        return;
    }
    char launch[512];
    size_t at = 0;
    for (int k = 0; k < plan->n_kernels; ++k) {
        const sprig_launch *l = &plan->kernels[k];
        at += (size_t)snprintf(launch + at, sizeof launch - at, "%s %u,%u,%u %u,%u,%u %u;", l->name, l->grid[0],
                               l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2], l->smem_bytes);
        if (at >= sizeof launch) at = sizeof launch - 1;
    }
    snprintf(launch + at, sizeof launch - at, "ws=%zu", plan->workspace_bytes);
    XXH3_64bits_update(h, plan->key, strlen(plan->key) + 1);
    XXH3_64bits_update(h, plan->params_json, strlen(plan->params_json) + 1);
    XXH3_64bits_update(h, launch, strlen(launch) + 1);
    XXH3_64bits_update(h, plan->source, plan->source_len);
    sprig_plan_free(plan);
}

/* "family d,f dtype b= g= [fixed] space|defaults: n=N hash=H" */
/* Without --full a space contributes at most this many candidates, evenly
 * strided over it (the whole spaces take minutes to render). */
#define QUICK_CANDIDATES 200
static int full_spaces;

static int golden_line(sprig_gen *gen, const golden_case *c, char *line, size_t cap) {
    XXH3_state_t *h = XXH3_createState();
    XXH3_64bits_reset(h);
    long n = 0;
    const char *fixed = c->fixed ? c->fixed : "";
    if (c->whole_space) {
        sprig_request req = {c->family, c->d, c->f, c->dtype, c->batch, c->g, fixed};
        sp_space *space = NULL;
        if (sp_space_build(gen, &req, &space) != SPRIG_OK) {
            fprintf(stderr, "space %s: %s\n", c->family, sprig_last_error());
            XXH3_freeState(h);
            return -1;
        }
        const size_t stride = full_spaces || space->n <= QUICK_CANDIDATES ? 1 : (space->n + QUICK_CANDIDATES - 1) / QUICK_CANDIDATES;
        for (size_t i = 0; i < space->n; i += stride, ++n) hash_one(gen, c, space->params[i], h);
        sp_space_free(space);
    } else {
        char params[1024];
        hash_one(gen, c, fixed, h), ++n;
        if (extra_params(c->family)) {
            join(params, sizeof params, fixed, extra_params(c->family));
            hash_one(gen, c, params, h), ++n;
        }
    }
    snprintf(line, cap, "%s %d,%d %s b=%d g=%d [%s] %s: n=%ld hash=%016llx", c->family, c->d, c->f, c->dtype,
             c->batch, c->g, fixed, c->whole_space ? "space" : "defaults", n, (unsigned long long)XXH3_64bits_digest(h));
    XXH3_freeState(h);
    return 0;
}

/* Every case, in a fixed order. */
static int build_cases(golden_case *out, int cap) {
    static const int shapes[][2] = {{4096, 11008}, {5120, 13824}, {4096, 14336},
                                    {3272, 11008}, {3072, 11008}, {2864, 11008}};
    static const char *const dtypes[] = {"fp16", "bf16"};
    /* family, batch, g, fixed: each rendered at every shape and dtype */
    static const struct {
        const char *family;
        int batch, g;
        const char *fixed;
    } kinds[] = {
        {"dense_gemv", 1, 32, "op=up"},
        {"dense_gemv", 1, 32, "op=down"},
        {"dense_gemv", 1, 32, "op=up,accumulate=1"},
        {"dense_gemv", 8, 32, "op=up"},
        {"router", 1, 32, "score=sigmoid"},
        {"router", 1, 1, "score=silu_abs"},
        {"router", 8, 32, "score=sigmoid"},
        {"gather_upgate", 1, 32, "all_active=0"},
        {"gather_upgate", 1, 32, "all_active=1"},
        {"gather_upgate", 1, 1, "interleave=0"},
        {"gather_upgate", 8, 32, "all_active=0"},
        {"gather_down", 1, 32, "all_active=0"},
        {"gather_down", 1, 32, "all_active=1"},
        {"gather_down", 1, 1, "layout=t"},
        {"gather_down", 8, 32, "all_active=0"},
        {"fused_mlp", 1, 32, "all_active=0"},
        {"fused_mlp", 8, 32, "all_active=1"},
        {"gather_gemm", 16, 32, "stage=upgate"},
        {"gather_gemm", 16, 32, "stage=down"},
        {"rmsnorm", 1, 32, "mode=add"},
        {"rmsnorm", 1, 32, "mode=embed"},
        {"rmsnorm", 1, 32, "mode=set,norm_dim=4096,weightless=1,raw_out=1"},
        {"attention_decode", 1, 32, "heads=32,kv_heads=8,head_dim=128"},
        {"attention_decode", 1, 32, "heads=32,kv_heads=32,head_dim=128"},
    };
    int n = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; ++k)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
            for (size_t t = 0; t < 2; ++t) {
                if (n >= cap) return -1;
                /* whole spaces at LLaMA-2-7B and the 20% slice in fp16; defaults elsewhere */
                const int whole = t == 0 && (s == 0 || s == 3);
                out[n++] = (golden_case){kinds[k].family, shapes[s][0], shapes[s][1], dtypes[t],
                                         kinds[k].batch, kinds[k].g, kinds[k].fixed, whole};
            }
    return n;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--full")) full_spaces = 1, --argc, ++argv;
    const char *write_to = argc == 3 && !strcmp(argv[1], "--write") ? argv[2] : NULL;
    const char *golden = argc == 2 ? argv[1] : NULL;
    if (!write_to && !golden) {
        fprintf(stderr, "usage: test_render_golden [--full] GOLDEN_FILE | [--full] --write GOLDEN_FILE\n"
                        "  --full: every candidate of each space (minutes), not a strided sample\n");
        return 2;
    }
    sprig_gen *gen = NULL;
    if (sprig_gen_open(&gen, NULL) != SPRIG_OK) {
        fprintf(stderr, "sprig_gen_open: %s\n", sprig_last_error());
        return 1;
    }
    golden_case cases[512];
    const int n = build_cases(cases, 512);
    CHECK(n > 0);
    FILE *out = write_to ? fopen(write_to, "w") : NULL;
    FILE *in = golden ? fopen(golden, "r") : NULL;
    CHECK_MSG(write_to ? out != NULL : in != NULL, "cannot open %s", write_to ? write_to : golden);
    int checks = 0;
    char line[512], want[512];
    for (int i = 0; i < n && (out || in); ++i) {
        if (golden_line(gen, &cases[i], line, sizeof line) != 0) {
            CHECK_MSG(0, "case %d (%s) could not be built", i, cases[i].family);
            continue;
        }
        ++checks;
        if (out) {
            fprintf(out, "%s\n", line);
            continue;
        }
        if (!fgets(want, sizeof want, in)) want[0] = '\0';
        want[strcspn(want, "\n")] = '\0';
        CHECK_MSG(!strcmp(line, want), "rendered kernels changed:\n  recorded: %s\n  now:      %s", want, line);
    }
    if (in && fgets(want, sizeof want, in)) CHECK_MSG(0, "the golden file has more cases than the test renders");
    if (out) fclose(out);
    if (in) fclose(in);
    sprig_gen_close(gen);
    return sp_test_finish("test_render_golden", checks);
}
