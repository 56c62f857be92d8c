/* The template engine through the public API: rendering, determinism, #line
 * directives, errors that name file and line, the sandbox, bad requests. */
#include <stdlib.h>
#include <string.h>

#include "sprig.h"
#include "test_util.h"

static sprig_plan *render(sprig_gen *gen, const char *family, int d, int f, const char *dtype, int batch,
                          int g, const char *params, sprig_status *st) {
    sprig_request req = {family, d, f, dtype, batch, g, params};
    sprig_plan *plan = NULL;
    *st = sprig_gen_render(gen, &req, &plan);
    return plan;
}

int main(void) {
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    if (!gen) return sp_test_finish("test_template", 0);
    sprig_status st;

    /* Deterministic: same request, same bytes, same key and hash. */
    sprig_plan *a = render(gen, "dense_gemv", 4096, 11008, "fp16", 1, 32, "threads=128", &st);
    sprig_plan *b = render(gen, "dense_gemv", 4096, 11008, "fp16", 1, 32, "threads=128", &st);
    CHECK(a && b);
    if (a && b) {
        CHECK(a->source_len == b->source_len && memcmp(a->source, b->source, a->source_len) == 0);
        CHECK(strcmp(a->key, b->key) == 0);
        CHECK(a->template_hash == b->template_hash && a->template_hash != 0);
        CHECK(sp_contains(a->source, "#line"));
        CHECK(sp_contains(a->source, "\"templates/dense_gemv.cu.lua\""));
        CHECK(sp_contains(a->source, "\"templates/common.cuh.lua\""));
        CHECK(sp_contains(a->key, "threads=128"));
        CHECK(sp_contains(a->params_json, "\"threads\":128"));
        CHECK(a->n_kernels == 1 && strcmp(a->kernels[0].name, "sprig_dense_gemv") == 0);
        CHECK(a->kernels[0].block[0] == 128);
        CHECK(a->kernels[0].grid[0] == 11008 / 4); /* 4 warps, one row each */
    }
    sprig_plan_free(a);
    sprig_plan_free(b);

    /* A different parameter changes the source. */
    a = render(gen, "dense_gemv", 4096, 11008, "fp16", 1, 32, "vec=4", &st);
    b = render(gen, "dense_gemv", 4096, 11008, "bf16", 1, 32, "vec=4", &st);
    CHECK(a && b && strcmp(a->source, b->source) != 0);
    sprig_plan_free(a);
    sprig_plan_free(b);

    /* Bad requests: each a clear SPRIG_E_INVALID naming the problem. */
    struct {
        const char *family;
        int d, f, batch, g;
        const char *dtype, *params, *expect;
    } bad[] = {
        {"no_such_family", 4096, 11008, 1, 32, "fp16", "", "unknown kernel family 'no_such_family'"},
        {"dense_gemv", 4100, 11008, 1, 32, "fp16", "", "d=4100 is not a positive multiple of 8"},
        {"dense_gemv", 4096, 11004, 1, 32, "fp16", "", "f=11004 is not a positive multiple of 8"},
        /* LLaMA-2-7B sliced 20% / 30% with SliceGPT's round_interval 1: the width round_interval 8 gives */
        {"gather_upgate", 3276, 11008, 1, 32, "fp16", "", "d=3276 is not a positive multiple of 8 (sprig needs 16-byte rows; for a SliceGPT-sliced model, slice with round_interval 8 (width 3272))"},
        {"gather_down", 2867, 11008, 1, 32, "fp16", "", "width 2864"},
        {"dense_gemv", 4096, 11008, 1, 32, "fp8", "", "unknown dtype 'fp8'"},
        {"dense_gemv", 4096, 11008, 65, 32, "fp16", "", "batch=65 is outside 1..64"},
        {"dense_gemv", 4096, 11008, 1, 24, "fp16", "", "g=24 is not a supported expert size"},
        {"dense_gemv", 4096, 11000, 1, 16, "fp16", "", "g=16 does not divide f=11000"},
        {"dense_gemv", 4096, 11008, 1, 32, "fp16", "threads=100", "threads=100 is out of range"},
        {"dense_gemv", 4096, 11008, 1, 32, "fp16", "colour=red", "unknown parameter 'colour'"},
        {"dense_gemv", 4096, 11008, 1, 32, "fp16", "threads", "malformed parameter 'threads'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        sprig_plan *p = render(gen, bad[i].family, bad[i].d, bad[i].f, bad[i].dtype, bad[i].batch, bad[i].g,
                               bad[i].params, &st);
        CHECK_MSG(p == NULL && st == SPRIG_E_INVALID, "case %zu", i);
        CHECK_MSG(sp_contains(sprig_last_error(), bad[i].expect), "case %zu: got '%s'", i, sprig_last_error());
        sprig_plan_free(p);
    }
    sprig_gen_close(gen);
    return sp_test_finish("test_template", 0);
}
