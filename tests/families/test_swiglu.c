/* swiglu (elementwise h = silu(gate) * up, templates/swiglu.cu.lua):
 *  - renders for every model shape, dtype and batch 1/8/64 with a grid that
 *    covers batch * f once, and every parameter value renders;
 *  - NVRTC compiles the defaults for sm_80 and sm_90 with no spills and no stack;
 *  - the kernel runs on the CPU emulator against a float64 reference written
 *    here from the math, on fresh random inputs with h poisoned first:
 *    shapes whose n is not a multiple of a CTA's share (ragged last CTA),
 *    every vec and unroll, fp16 and bf16; and the comparison does catch a
 *    kernel that computed something else (silu(up) * gate);
 *  - the tuner measures it (verified against the spec's own reference) and
 *    sprig bench --family times it against the bytes of its three arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "family_harness.h"
#include "test_util.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) { /* xorshift64*, uniform in [-4, 4): silu's curved part */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return 8.0f * (float)((rng * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1 << 24) - 4.0f;
}

static double silu(double v) { return v / (1.0 + exp(-v)); }

/* Max relative error of h against silu(a) * b over n values (a, b as uploaded). */
static double max_err(int bf16, const uint16_t *h, const uint16_t *a, const uint16_t *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; ++i) {
        const double want = silu(fh_from_bits(bf16, a[i])) * fh_from_bits(bf16, b[i]);
        const double got = fh_from_bits(bf16, h[i]);
        const double err = isfinite(got) ? fabs(got - want) / (fabs(want) + 1e-3) : INFINITY;
        if (err > worst) worst = err;
    }
    return worst;
}

static void run_case(fh_ctx *c, int f, int batch, const char *dtype, const char *params) {
    const int bf16 = !strcmp(dtype, "bf16");
    const size_t n = (size_t)batch * f;
    uint16_t *gate = malloc(2 * n), *up = malloc(2 * n);
    for (size_t i = 0; i < n; ++i) gate[i] = fh_to_bits(bf16, frand()), up[i] = fh_to_bits(bf16, frand());
    fh_run r;
    if (fh_prepare(c, &r, "swiglu", 64, f, dtype, batch, 1, params) == 0 && fh_input(c, &r, "gate", gate) == 0 &&
        fh_input(c, &r, "up", up) == 0 && fh_launch(c, &r) == 0) {
        const uint16_t *h = fh_output(&r, "h");
        /* one rounding to T of a value computed in fp32: 2^-8 relative for bf16, 2^-11 for fp16, plus expf */
        const double tol = bf16 ? 8e-3 : 1.5e-3, err = max_err(bf16, h, gate, up, n);
        CHECK_MSG(err < tol, "f=%d batch=%d %s [%s]: max rel err %.3g", f, batch, dtype, params, err);
        /* the comparison can fail: the same output against the wrong function */
        CHECK_MSG(max_err(bf16, h, up, gate, n) > 10 * tol, "f=%d: a swapped reference went unnoticed", f);
    }
    fh_release(c, &r);
    free(gate), free(up);
}

static void test_render(fh_ctx *c) {
    static const int shapes[][2] = {{4096, 11008}, {5120, 13824}, {4096, 14336}, {3272, 11008}, {3072, 11008},
                                    {2864, 11008}};
    static const int batches[] = {1, 8, 64};
    for (size_t s = 0; s < 6; ++s)
        for (int t = 0; t < 2; ++t)
            for (size_t b = 0; b < 3; ++b) {
                sprig_request req = {"swiglu", shapes[s][0], shapes[s][1], t ? "bf16" : "fp16", batches[b], 1, ""};
                sprig_plan *p = NULL;
                CHECK(sprig_gen_render(c->gen, &req, &p) == SPRIG_OK);
                if (!p) continue;
                const unsigned per_cta = 256 * 8 * 2, n = (unsigned)(batches[b] * shapes[s][1]);
                CHECK(p->n_kernels == 1 && !strcmp(p->kernels[0].name, "sprig_swiglu"));
                CHECK_MSG(p->kernels[0].grid[0] == (n + per_cta - 1) / per_cta && p->kernels[0].block[0] == 256,
                          "grid %u for n=%u", p->kernels[0].grid[0], n);
                CHECK(p->n_args == 3 && p->args[0].count == n && p->args[2].dir == SPRIG_ARG_OUT);
                sprig_plan_free(p);
            }
    static const char *const params[] = {"threads=64", "threads=1024", "vec=2", "vec=4", "unroll=1", "unroll=8"};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; ++i) {
        sprig_request req = {"swiglu", 4096, 11008, "fp16", 1, 1, params[i]};
        sprig_plan *p = NULL;
        CHECK_MSG(sprig_gen_render(c->gen, &req, &p) == SPRIG_OK, "%s: %s", params[i], sprig_last_error());
        sprig_plan_free(p);
    }
    sprig_request bad = {"swiglu", 4096, 11008, "fp16", 1, 1, "vec=3"};
    sprig_plan *p = NULL;
    CHECK(sprig_gen_render(c->gen, &bad, &p) == SPRIG_E_INVALID && !p);
}

static void test_compile(fh_ctx *c) {
    static const char *const archs[] = {"sm_80", "sm_90"};
    for (int a = 0; a < 2; ++a) {
        sprig_request req = {"swiglu", 4096, 11008, "bf16", 8, 1, ""};
        sprig_plan *p = NULL;
        sprig_binary *bin = NULL;
        sprig_compile_opts co = {archs[a], 0, "", 0};
        CHECK(sprig_gen_render(c->gen, &req, &p) == SPRIG_OK);
        CHECK_MSG(p && sprig_compile(p, &co, &bin) == SPRIG_OK, "%s: %s", archs[a], sprig_last_error());
        if (bin) {
            CHECK_MSG(bin->res[0].spill_store_bytes == 0 && bin->res[0].spill_load_bytes == 0 &&
                          bin->res[0].stack_bytes == 0,
                      "%s: spills %d/%d, stack %d", archs[a], bin->res[0].spill_store_bytes,
                      bin->res[0].spill_load_bytes, bin->res[0].stack_bytes);
            printf("swiglu %s: %d registers, 0 spills\n", archs[a], bin->res[0].registers);
        }
        sprig_binary_free(bin);
        sprig_plan_free(p);
    }
}

int main(void) {
    fh_ctx c;
    if (fh_open(&c) != 0) return sp_test_finish("test_swiglu", 0);
    test_render(&c);
    test_compile(&c);
    /* n = batch * f: 72 * 3 = 216 is no multiple of a CTA's 64*8*2 = 1024 */
    run_case(&c, 72, 3, "fp16", "threads=64");
    run_case(&c, 72, 3, "bf16", "threads=64,vec=2,unroll=8");
    run_case(&c, 256, 5, "fp16", "threads=64,vec=4,unroll=1");
    run_case(&c, 1040, 1, "bf16", "threads=128,vec=8,unroll=4");
    CHECK(fh_tuned(&c, "swiglu", 64, 200, "fp16", 3, 1, 0, "threads=64"));
    CHECK(fh_benched(&c, "swiglu", 64, 200, "fp16", 3, 1, "threads=64", 3.0 * 2 * 3 * 200));
    fh_close(&c);
    return sp_test_finish("test_swiglu", 0);
}
