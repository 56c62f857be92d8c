/* The router and gather_upgate families through the public API: they render
 * for every model shape, dtype, expert size and batch 1/8/64 with the ABI's
 * kernel names, argument lists and launch shapes; every parameter value
 * renders and is named in the key; impossible combinations are
 * SPRIG_E_INVALID with a message that says what to change; the defaults
 * compile for sm_90 with zero spills and no stack frame; and a few small
 * problems run on the CPU emulator (tests/emu) against the float64
 * references of tests/ref.c: scores, mask, ids, counts and the union exactly,
 * h to 1e-2 with masked entries exactly 0 and slots past the union untouched. */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_runtime.h"
#include "family_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "sprig.h"
#include "test_util.h"

static int checks;

static const struct {
    int d, f;
} shapes[] = {{4096, 11008}, {5120, 13824}, {4096, 14336}, {3272, 11008}, {3072, 11008}, {2864, 11008}};
static const char *const dtypes[] = {"fp16", "bf16"};
static const int expert_sizes[] = {1, 16, 32, 64, 128};
static const int batches[] = {1, 8, 64};

/* A wrong order, to show has_signature can fail. */
static const char *const upgate_wrong_order[] = {"Wg", "x", "Wu", "union_ids", "union_count", "mask", "h", NULL};
/* The argument names of each family's signature, in ABI order (docs/kernel-abi.md). */
static const char *const router_args[] = {"Wr", "x", "scores", "threshold", "ids", "counts",
                                          "union_ids", "union_count", "mask", "ws", NULL};
static const char *const upgate_abi[] = {"Wg", "Wu", "x", "union_ids", "union_count", "mask", "h", NULL};

static sprig_plan *render(sprig_gen *gen, const char *family, int d, int f, const char *dtype, int batch, int g,
                          const char *params, sprig_status *st) {
    sprig_request req = {family, d, f, dtype, batch, g, params};
    sprig_plan *plan = NULL;
    *st = sprig_gen_render(gen, &req, &plan);
    return plan;
}

static int is_ident(char c) { return c == '_' || isalnum((unsigned char)c); }

/* True when the definition of `kernel` in src lists exactly `names` as its
 * parameters, in order (each parameter's last identifier before ',' or ')'). */
static int has_signature(const char *src, const char *kernel, const char *const *names) {
    char head[96];
    snprintf(head, sizeof head, "\n%s(", kernel);
    const char *p = strstr(src, head);
    if (!p) return 0;
    p += strlen(head);
    const char *end = strchr(p, ')');
    if (!end) return 0;
    int i = 0;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        const char *q = stop;
        while (q > p && !is_ident(q[-1])) --q;
        const char *id_end = q;
        while (q > p && is_ident(q[-1])) --q;
        if (!names[i] || strlen(names[i]) != (size_t)(id_end - q) || strncmp(names[i], q, (size_t)(id_end - q)))
            return 0;
        ++i;
        p = stop + 1;
    }
    return names[i] == NULL;
}

static unsigned ceil_div(unsigned a, unsigned b) { return (a + b - 1) / b; }

/* Every shape x dtype x g x batch renders, with the ABI's kernels and launches. */
static void test_render_all(sprig_gen *gen) {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
        for (int t = 0; t < 2; ++t)
            for (size_t gi = 0; gi < sizeof expert_sizes / sizeof expert_sizes[0]; ++gi)
                for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; ++bi) {
                    const int d = shapes[s].d, f = shapes[s].f, g = expert_sizes[gi], b = batches[bi];
                    const unsigned E = (unsigned)(f / g);
                    sprig_status st;
                    sprig_plan *r = render(gen, "router", d, f, dtypes[t], b, g, NULL, &st);
                    ++checks;
                    CHECK_MSG(r && st == SPRIG_OK, "router %dx%d %s g=%d b=%d: %s", d, f, dtypes[t], g, b,
                              sprig_last_error());
                    if (r) {
                        /* one kernel: 8 warps on one expert (ksplit=8), the last CTA compacts */
                        CHECK(r->n_kernels == 1);
                        CHECK(!strcmp(r->kernels[0].name, "sprig_router"));
                        CHECK(has_signature(r->source, "sprig_router", router_args));
                        CHECK(r->kernels[0].block[0] == 256 && r->kernels[0].grid[0] == E);
                        /* the arrival counter and (b + 1) bitmaps of ceil(E/32) words, in 16 bytes */
                        CHECK(r->workspace_bytes == (1 + (size_t)(b + 1) * ceil_div(E, 32) + 3) / 4 * 16);
                    }
                    sprig_plan_free(r);

                    sprig_plan *u = render(gen, "gather_upgate", d, f, dtypes[t], b, g, NULL, &st);
                    ++checks;
                    CHECK_MSG(u && st == SPRIG_OK, "gather_upgate %dx%d %s g=%d b=%d: %s", d, f, dtypes[t], g, b,
                              sprig_last_error());
                    if (u) {
                        CHECK(u->n_kernels == 1 && !strcmp(u->kernels[0].name, "sprig_gather_upgate"));
                        CHECK(has_signature(u->source, "sprig_gather_upgate", upgate_abi));
                        /* worst case: all f rows, 8 warps of one row each */
                        CHECK(u->kernels[0].block[0] == 256 && u->kernels[0].grid[0] == ceil_div((unsigned)f, 8));
                    }
                    sprig_plan_free(u);
                }
}

/* The signature checker itself rejects a wrong order (so the checks above can fail). */
static void test_signature_checker(sprig_gen *gen) {
    sprig_status st;
    sprig_plan *u = render(gen, "gather_upgate", 4096, 11008, "fp16", 1, 32, NULL, &st);
    CHECK(u != NULL);
    if (u) CHECK(!has_signature(u->source, "sprig_gather_upgate", upgate_wrong_order));
    sprig_plan_free(u);
}

/* True when every "k=v" of the comma-separated settings appears in the key. */
static int key_has_all(const char *key, const char *settings) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", settings);
    for (char *item = strtok(buf, ","); item; item = strtok(NULL, ",")) {
        char want[96];
        snprintf(want, sizeof want, "%s", item);
        /* "threads=64" must not match "threads=640": require a delimiter after it */
        const char *at = strstr(key, want);
        while (at && at[strlen(want)] != ',' && at[strlen(want)] != '\0') at = strstr(at + 1, want);
        if (!at) return 0;
    }
    return 1;
}

/* Each declared value of each parameter renders, and is named in the key. */
static void test_each_param(sprig_gen *gen, const char *family, const char *const *settings) {
    sprig_status st;
    for (const char *const *s = settings; *s; ++s) {
        sprig_plan *p = render(gen, family, 3272, 11008, "bf16", 1, 32, *s, &st);
        ++checks;
        CHECK_MSG(p && st == SPRIG_OK, "%s %s: %s", family, *s, sprig_last_error());
        if (p) CHECK_MSG(key_has_all(p->key, *s), "%s: key '%s' lacks '%s'", family, p->key, *s);
        sprig_plan_free(p);
    }
}

static void test_params(sprig_gen *gen) {
    static const char *const router[] = {
        "score=sigmoid", "score=silu_abs", "threads=64,ksplit=2", "threads=128,ksplit=4", "threads=256", "threads=512",
        "rows_per_warp=1", "rows_per_warp=2", "rows_per_warp=4", "vec=2", "vec=4", "vec=8",
        "unroll=1", "unroll=2", "unroll=4", "ksplit=1", "ksplit=2", "ksplit=4", "ksplit=8", "min_blocks=0", "min_blocks=1",
        "min_blocks=2", "min_blocks=4", NULL};
    static const char *const upgate[] = {
        "threads=64", "threads=128", "threads=256", "threads=512", "rows_per_warp=1", "rows_per_warp=2",
        "rows_per_warp=4", "vec=2", "vec=4", "vec=8", "unroll=1", "unroll=2", "unroll=4", "ksplit=1", "ksplit=2",
        "ksplit=4", "ksplit=8", "min_blocks=0", "min_blocks=1", "min_blocks=2", "min_blocks=4", "interleave=0",
        "interleave=1", "all_active=0", "all_active=1", "x_smem=0", "x_smem=1", NULL};
    test_each_param(gen, "router", router);
    test_each_param(gen, "gather_upgate", upgate);

    /* The parameters reach the source, not only the key. */
    sprig_status st;
    sprig_plan *a = render(gen, "router", 4096, 11008, "fp16", 1, 1, "score=silu_abs", &st);
    sprig_plan *b = render(gen, "router", 4096, 11008, "fp16", 1, 1, "score=sigmoid", &st);
    CHECK(a && b);
    if (a && b) {
        /* the rule is chosen by a macro of the shared routing code (templates/routing.cuh.lua) */
        CHECK(sp_contains(a->source, "#define SP_ROUTE_SIGMOID 0") && !sp_contains(a->source, "#define SP_ROUTE_SIGMOID 1"));
        CHECK(sp_contains(b->source, "#define SP_ROUTE_SIGMOID 1") && !sp_contains(b->source, "#define SP_ROUTE_SIGMOID 0"));
        CHECK(sp_contains(a->source, "fabsf(s / (1.0f + expf(-s))) > threshold"));
        CHECK(sp_contains(b->source, "return s > threshold;"));
    }
    sprig_plan_free(a);
    sprig_plan_free(b);
    /* ksplit warps share a row group: fewer rows per CTA, more CTAs. */
    a = render(gen, "router", 4096, 11008, "fp16", 1, 32, "ksplit=4", &st);
    b = render(gen, "gather_upgate", 4096, 11008, "fp16", 1, 32, "ksplit=8,rows_per_warp=2", &st);
    CHECK(a && b);
    if (a && b) {
        CHECK(a->kernels[0].grid[0] == ceil_div(344, 2) && sp_contains(a->source, "#define KSPLIT 4"));
        CHECK(b->kernels[0].grid[0] == ceil_div(11008, 2) && sp_contains(b->source, "#define KSPLIT 8"));
    }
    sprig_plan_free(a);
    sprig_plan_free(b);
    a = render(gen, "gather_upgate", 4096, 11008, "fp16", 2, 32, "interleave=1,all_active=1,x_smem=1", &st);
    b = render(gen, "gather_upgate", 4096, 11008, "fp16", 2, 32, NULL, &st);
    CHECK(a && b);
    if (a && b) {
        CHECK(sp_contains(a->source, "x_shared[") && !sp_contains(b->source, "x_shared["));
        CHECK(sp_contains(a->source, "w[0][r] + (size_t)G * D_COLS") && !sp_contains(b->source, "(size_t)G * D_COLS"));
        CHECK(!sp_contains(a->source, "__ldg(union_count)") && sp_contains(b->source, "__ldg(union_count)"));
        CHECK(!sp_contains(a->source, "mask +") && sp_contains(b->source, "mask +"));
    }
    sprig_plan_free(a);
    sprig_plan_free(b);
}

/* Impossible combinations: SPRIG_E_INVALID and a message that says what to do. */
static void test_invalid(sprig_gen *gen) {
    static const struct {
        const char *family;
        int d, batch;
        const char *params, *expect;
    } bad[] = {
        {"router", 4096, 1, "score=softmax", "score=softmax is out of range (allowed: sigmoid, silu_abs)"},
        {"router", 4096, 64, "rows_per_warp=2", "rows_per_warp*batch=128 exceeds 64 accumulators"},
        {"router", 4096, 1, "threads=64", "ksplit=8 needs at least 8 warps per CTA, threads=64 has 2"},
        {"router", 4096, 1, "compact_threads=1024", "unknown parameter 'compact_threads'"},
        {"router", 4096, 1, "vec=16", "vec=16 is out of range"},
        {"gather_upgate", 4096, 64, "rows_per_warp=2", "rows_per_warp*batch*2=256 exceeds 128"},
        {"gather_upgate", 4096, 64, "rows_per_warp=2", "use gather_gemm"},
        {"gather_upgate", 4096, 33, "rows_per_warp=4", "lower rows_per_warp"},
        {"gather_upgate", 4096, 8, "x_smem=1", "x_smem=1 needs batch*d*2=65536 bytes"},
        {"gather_upgate", 3272, 8, "x_smem=1", "use x_smem=0"},
        {"gather_upgate", 4096, 1, "interleave=2", "interleave=2 is out of range"},
        {"gather_upgate", 4096, 1, "score=sigmoid", "unknown parameter 'score'"},
        {"router", 4096, 1, "threads=512,min_blocks=4", "lower min_blocks"},
        {"router", 4096, 1, "threads=64,ksplit=4", "ksplit=4 needs at least 4 warps per CTA, threads=64 has 2"},
        {"gather_upgate", 4096, 1, "threads=128,ksplit=8", "ksplit=8 needs at least 8 warps per CTA"},
        {"gather_upgate", 4096, 1, "threads=512,min_blocks=4", "more than every architecture holds"},
        {"gather_upgate", 4096, 6, "x_smem=1,ksplit=2", "49152 bytes of shared memory (plus 384 for ksplit=2)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        sprig_status st;
        sprig_plan *p = render(gen, bad[i].family, bad[i].d, 11008, "fp16", bad[i].batch, 32, bad[i].params, &st);
        ++checks;
        CHECK_MSG(p == NULL && st == SPRIG_E_INVALID, "case %zu (%s %s)", i, bad[i].family, bad[i].params);
        CHECK_MSG(sp_contains(sprig_last_error(), bad[i].expect), "case %zu: got '%s'", i, sprig_last_error());
        sprig_plan_free(p);
    }
    /* The largest allowed settings are accepted. */
    sprig_status st;
    sprig_plan *p = render(gen, "gather_upgate", 4096, 11008, "fp16", 64, 32, "rows_per_warp=1", &st);
    CHECK_MSG(p != NULL, "%s", sprig_last_error());
    sprig_plan_free(p);
    p = render(gen, "gather_upgate", 4096, 11008, "fp16", 6, 32, "x_smem=1", &st); /* 49152 bytes */
    CHECK_MSG(p != NULL, "%s", sprig_last_error());
    sprig_plan_free(p);
}

/* Defaults compile for sm_90 with zero spills and no stack (batch <= 8, and the
 * sliced d=3272 whose last K chunk is partial). */
static void test_compile_defaults(sprig_gen *gen) {
    static const struct {
        const char *family;
        int d, f, batch, g;
        const char *dtype, *params;
    } cases[] = {
        {"router", 3272, 11008, 1, 32, "fp16", NULL},
        {"router", 4096, 11008, 8, 32, "bf16", NULL},
        {"router", 4096, 14336, 8, 1, "fp16", "score=silu_abs"},
        {"gather_upgate", 3272, 11008, 1, 32, "fp16", NULL},
        {"gather_upgate", 4096, 11008, 8, 32, "bf16", NULL},
        {"gather_upgate", 2864, 11008, 8, 1, "fp16", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        sprig_status st;
        sprig_plan *p = render(gen, cases[i].family, cases[i].d, cases[i].f, cases[i].dtype, cases[i].batch,
                               cases[i].g, cases[i].params, &st);
        CHECK_MSG(p != NULL, "%s", sprig_last_error());
        if (!p) continue;
        sprig_compile_opts o = {"sm_90", 0, NULL, 0};
        sprig_binary *bin = NULL;
        st = sprig_compile(p, &o, &bin);
        ++checks;
        CHECK_MSG(st == SPRIG_OK, "compiling %s: %s", p->key, sprig_last_error());
        if (bin) {
            CHECK(bin->n_kernels == p->n_kernels);
            for (int k = 0; k < bin->n_kernels; ++k) {
                const sprig_resources *r = &bin->res[k];
                CHECK_MSG(r->registers > 0 && r->spill_store_bytes == 0 && r->spill_load_bytes == 0 &&
                              r->stack_bytes == 0,
                          "%s %s: %d registers, spills %d/%d, stack %d", p->key, bin->kernel_names[k],
                          r->registers, r->spill_store_bytes, r->spill_load_bytes, r->stack_bytes);
            }
        }
        sprig_binary_free(bin);
        sprig_plan_free(p);
    }
}

/* ---- running on the emulator ----------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* xorshift64, uniform in [0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform values in [-scale, scale) as storage bits, and the same values as floats. */
static void fill(int bf16, float *vals, uint16_t *bits, size_t n, double scale) {
    for (size_t i = 0; i < n; ++i) {
        bits[i] = sp_ref_to_bits(bf16, (float)((urand() * 2 - 1) * scale));
        vals[i] = sp_ref_from_bits(bf16, bits[i]);
    }
}

/* Renders and loads one kernel for the emulator; NULL (and a failed check) on error. */
static sprig_plan *emu_plan(sprig_gen *gen, const char *family, int d, int f, const char *dtype, int batch, int g,
                            const char *params, sp_emu_module **mod) {
    sprig_status st;
    sprig_plan *p = render(gen, family, d, f, dtype, batch, g, params, &st);
    CHECK_MSG(p != NULL, "%s %s: %s", family, params, sprig_last_error());
    if (!p) return NULL;
    st = sp_emu_module_load(p, mod);
    CHECK_MSG(st == SPRIG_OK, "emulator build of %s: %s", p->key, sprig_last_error());
    if (st != SPRIG_OK) {
        sprig_plan_free(p);
        return NULL;
    }
    return p;
}

/* The routing outputs of a kernel that routes (router, gather_upgate
 * route=sigmoid) against the float64 scores `ref` and the rule applied to the
 * kernel's own scores (so a near-tie cannot fail it): scores to 1e-5 relative,
 * then mask, ids, counts and the union exactly (ids past counts still -7).
 * rmask [B][E] and ruids [E] get the reference decisions; returns the union's size. */
static int check_routing(const char *key, sp_ref_rule rule, float threshold, int B, int E, const float *scores,
                         const double *ref, const unsigned char *mask, const int *ids, const int *counts,
                         const int *uids, int ucount, unsigned char *rmask, int *ruids) {
    const size_t BE = (size_t)B * E;
    double *got = malloc(sizeof(double) * BE);
    int *rids = malloc(sizeof(int) * BE), *rcounts = malloc(sizeof(int) * B), rucount = 0;
    double num = 0, den = 0;
    for (size_t i = 0; i < BE; ++i) {
        num += (scores[i] - ref[i]) * (scores[i] - ref[i]), den += ref[i] * ref[i];
        got[i] = scores[i];
    }
    CHECK_MSG(sqrt(num / den) < 1e-5, "%s: scores off by %g (relative)", key, sqrt(num / den));
    sp_ref_router_mask(rule, got, threshold, B, E, rmask);
    sp_ref_routing(rmask, B, E, rids, rcounts, ruids, &rucount);
    int active = 0, wrong = 0;
    for (size_t i = 0; i < BE; ++i) active += rmask[i], wrong += mask[i] != rmask[i];
    for (int t = 0; t < B; ++t) {
        wrong += counts[t] != rcounts[t];
        for (int j = 0; j < E; ++j) wrong += ids[(size_t)t * E + j] != (j < rcounts[t] ? rids[(size_t)t * E + j] : -7);
    }
    wrong += ucount != rucount;
    for (int j = 0; j < E; ++j) wrong += uids[j] != (j < rucount ? ruids[j] : -7);
    CHECK_MSG(active > 0 && active < (int)BE, "%s: degenerate test, %d of %zu active", key, active, BE);
    CHECK_MSG(wrong == 0, "%s: %d routing entries differ from the reference", key, wrong);
    free(got), free(rids), free(rcounts);
    return rucount;
}

/* Router: scores near the float64 ones; the routing arrays exactly those the
 * rule gives on the kernel's own scores (ids past counts untouched). */
static void emu_router(sprig_gen *gen, int d, int f, const char *dtype, int B, int g, const char *params, int silu) {
    const int bf16 = !strcmp(dtype, "bf16"), E = f / g;
    sp_emu_module *mod = NULL;
    sprig_plan *p = emu_plan(gen, "router", d, f, dtype, B, g, params, &mod);
    if (!p) return;
    const size_t BE = (size_t)B * E;
    float *Wr = malloc(sizeof(float) * E * d), *x = malloc(sizeof(float) * B * d), *scores = malloc(sizeof(float) * BE);
    uint16_t *Wr_bits = malloc(2 * (size_t)E * d), *x_bits = malloc(2 * (size_t)B * d);
    double *ref = malloc(sizeof(double) * BE);
    int *ids = malloc(sizeof(int) * BE), *counts = malloc(sizeof(int) * B), *uids = malloc(sizeof(int) * E);
    int *ruids = malloc(sizeof(int) * E);
    unsigned char *mask = malloc(BE), *rmask = malloc(BE);
    fill(bf16, Wr, Wr_bits, (size_t)E * d, 1.0 / sqrt(d));
    fill(bf16, x, x_bits, (size_t)B * d, 1.0);
    for (size_t i = 0; i < BE; ++i) scores[i] = NAN, ids[i] = -7, mask[i] = 9; /* poison */
    for (int i = 0; i < B; ++i) counts[i] = -7;
    for (int i = 0; i < E; ++i) uids[i] = -7;
    int ucount = -7;
    float threshold = silu ? 0.15f : (float)log(0.6 / 0.4) * 0.5f; /* a fraction of each active */
    sp_kargs k;
    sp_kargs_init(&k, p);
    fh_ptr(&k, "Wr", Wr_bits), fh_ptr(&k, "x", x_bits), fh_ptr(&k, "scores", scores);
    sp_kargs_f32(&k, "threshold", threshold);
    fh_ptr(&k, "ids", ids), fh_ptr(&k, "counts", counts), fh_ptr(&k, "union_ids", uids);
    fh_ptr(&k, "union_count", &ucount), fh_ptr(&k, "mask", mask);
    unsigned *ws = calloc(p->workspace_bytes / 4 + 1, 4); /* the ABI: zero once, at allocation */
    fh_ptr(&k, "ws", ws);
    void **args = NULL;
    ++checks;
    sprig_status st = sp_kargs_finish(&k, &args);
    /* twice: the first call must leave the workspace as it found it (zero) */
    for (int run = 0; run < 2 && st == SPRIG_OK; ++run) {
        for (size_t i = 0; i < BE; ++i) scores[i] = NAN, ids[i] = -7, mask[i] = 9; /* poison */
        for (int i = 0; i < B; ++i) counts[i] = -7;
        for (int i = 0; i < E; ++i) uids[i] = -7;
        ucount = -7;
        st = sp_emu_plan_launch(mod, p, args);
    }
    size_t dirty = 0;
    for (size_t i = 0; i < p->workspace_bytes / 4; ++i) dirty += ws[i] != 0;
    CHECK_MSG(dirty == 0, "%s: %zu workspace words left non-zero", p->key, dirty);
    free(ws);
    CHECK_MSG(st == SPRIG_OK, "%s: %s", p->key, sprig_last_error());
    if (st == SPRIG_OK) {
        sp_ref_router_scores(Wr, x, ref, E, d, B);
        check_routing(p->key, silu ? SP_REF_RULE_SILU_ABS : SP_REF_RULE_SIGMOID, threshold, B, E, scores, ref, mask, ids,
                      counts, uids, ucount, rmask, ruids);
    }
    free(Wr), free(x), free(scores), free(Wr_bits), free(x_bits), free(ref);
    free(ids), free(counts), free(uids), free(ruids), free(mask), free(rmask);
    sp_emu_module_free(mod);
    sprig_plan_free(p);
}

/* gather_upgate against sp_ref_swiglu + sp_ref_compact_h with a random mask (about
 * 30% of experts per token): relative error < 1e-2, masked entries exactly 0,
 * rows past union_count*g still poisoned. gate=scores in params: the gates come
 * from fp32 scores W_gate·x (as the training-free router leaves them) and W_gate
 * is not passed at all. */
static void emu_upgate(sprig_gen *gen, int d, int f, const char *dtype, int B, int g, const char *params,
                       int interleave, int all_active) {
    const int from_scores = params && strstr(params, "gate=scores") != NULL;
    const int bf16 = !strcmp(dtype, "bf16"), E = f / g;
    sp_emu_module *mod = NULL;
    sprig_plan *p = emu_plan(gen, "gather_upgate", d, f, dtype, B, g, params, &mod);
    if (!p) return;
    const size_t fd = (size_t)f * d, Bf = (size_t)B * f;
    float *Wg = malloc(4 * fd), *Wu = malloc(4 * fd), *x = malloc(4 * (size_t)B * d);
    uint16_t *Wg_bits = malloc(2 * fd), *Wu_bits = malloc(2 * fd), *x_bits = malloc(2 * (size_t)B * d);
    uint16_t *Wi_bits = malloc(4 * fd), *h = malloc(2 * Bf);
    unsigned char *mask = malloc((size_t)B * E);
    int *ids = malloc(sizeof(int) * B * E), *counts = malloc(sizeof(int) * B), *uids = malloc(sizeof(int) * E);
    double *hd = malloc(sizeof(double) * Bf), *hc = malloc(sizeof(double) * Bf);
    float *gscores = malloc(sizeof(float) * Bf);
    int ucount = 0;
    fill(bf16, Wg, Wg_bits, fd, 2.0 / sqrt(d));
    fill(bf16, Wu, Wu_bits, fd, 2.0 / sqrt(d));
    fill(bf16, x, x_bits, (size_t)B * d, 1.0);
    if (interleave) sp_ref_interleave_gate_up(Wg_bits, Wu_bits, Wi_bits, f, d, g, 2);
    for (int i = 0; i < B * E; ++i) mask[i] = all_active || urand() < 0.3;
    sp_ref_routing(mask, B, E, ids, counts, uids, &ucount);
    sp_ref_swiglu(Wg, Wu, x, all_active ? NULL : mask, B, d, f, g, hd);
    sp_ref_gemv(Wg, x, hc, f, d, B); /* the router's scores, rounded to its fp32 */
    for (size_t i = 0; i < Bf; ++i) gscores[i] = (float)hc[i];
    if (all_active) memcpy(hc, hd, sizeof(double) * Bf);
    else sp_ref_compact_h(hd, uids, ucount, B, f, g, hc);
    for (size_t i = 0; i < Bf; ++i) h[i] = 0x7e01; /* poison: a NaN in both types */
    sp_kargs k;
    sp_kargs_init(&k, p);
    fh_ptr(&k, "Wg", from_scores ? NULL : interleave ? (void *)Wi_bits : (void *)Wg_bits);
    if (from_scores) fh_ptr(&k, "gate_scores", gscores);
    fh_ptr(&k, "Wu", interleave ? NULL : Wu_bits);
    fh_ptr(&k, "x", x_bits), fh_ptr(&k, "h", h);
    fh_ptr(&k, "union_ids", all_active ? NULL : uids);
    fh_ptr(&k, "union_count", all_active ? NULL : &ucount);
    fh_ptr(&k, "mask", all_active ? NULL : mask);
    void **args = NULL;
    ++checks;
    sprig_status st = sp_kargs_finish(&k, &args);
    if (st == SPRIG_OK) st = sp_emu_plan_launch(mod, p, args);
    CHECK_MSG(st == SPRIG_OK, "%s: %s", p->key, sprig_last_error());
    if (st == SPRIG_OK) {
        const int rows = all_active ? f : ucount * g;
        double num = 0, den = 0;
        int wrong = 0, zeros = 0;
        for (int t = 0; t < B; ++t)
            for (int r = 0; r < f; ++r) {
                const uint16_t o = h[(size_t)t * f + r];
                if (r >= rows) {
                    wrong += o != 0x7e01;
                } else if (!all_active && !mask[t * E + uids[r / g]]) {
                    wrong += o != 0, ++zeros;
                } else {
                    const double v = sp_ref_from_bits(bf16, o), ref = hc[(size_t)t * f + r];
                    wrong += isnan(v);
                    num += (v - ref) * (v - ref), den += ref * ref;
                }
            }
        CHECK_MSG(den > 0 && sqrt(num / den) < 1e-2, "%s: h off by %g (relative)", p->key, sqrt(num / den));
        CHECK_MSG(wrong == 0, "%s: %d entries not 0 where masked, NaN, or written past the union", p->key, wrong);
        CHECK_MSG(all_active || B == 1 || zeros > 0, "%s: no masked entry was exercised", p->key);
        CHECK_MSG(rows < f || all_active, "%s: the union covered every expert", p->key);
    }
    free(Wg), free(Wu), free(x), free(Wg_bits), free(Wu_bits), free(x_bits), free(Wi_bits), free(h), free(mask);
    free(ids), free(counts), free(uids), free(hd), free(hc), free(gscores);
    sp_emu_module_free(mod);
    sprig_plan_free(p);
}

/* gather_upgate route=sigmoid (the LTE router folded in), then gather_down
 * h_index=neuron on what it wrote, twice (the workspace must come back zero):
 * scores near the float64 ones; mask, ids, counts and the union exactly the
 * rule on the kernel's own scores; h by neuron near sp_ref_swiglu for every
 * expert in the union (exactly 0 for a token that does not use it) and still
 * poisoned for the others; y near sp_ref_down over the same mask.
 * bits (gather_upgate union_out=bits -> gather_down list=bits): no lists; the two
 * runs take two bitmaps in turn, as two layers do (each run's bits_clear, the
 * other, poisoned first, must come back zero), and the union is read from the
 * second run's bitmap and gather_down's union_count. */
static void emu_fused(sprig_gen *gen, int d, int f, const char *dtype, int B, int g, const char *params,
                      const char *down_params, int bits) {
    const int bf16 = !strcmp(dtype, "bf16"), E = f / g, words = (E + 31) / 32;
    sp_emu_module *mod = NULL, *dmod = NULL;
    char up_params[256], dn_params[256];
    snprintf(up_params, sizeof up_params, "route=sigmoid%s%s%s", bits ? ",union_out=bits" : "", params ? "," : "",
             params ? params : "");
    snprintf(dn_params, sizeof dn_params, "h_index=neuron%s%s%s", bits ? ",list=bits" : "", down_params ? "," : "",
             down_params ? down_params : "");
    sprig_plan *p = emu_plan(gen, "gather_upgate", d, f, dtype, B, g, up_params, &mod);
    sprig_plan *dp = emu_plan(gen, "gather_down", d, f, dtype, B, g, dn_params, &dmod);
    const size_t fd = (size_t)f * d, Bf = (size_t)B * f, BE = (size_t)B * E, Ed = (size_t)E * d;
    float *Wg = malloc(4 * fd), *Wu = malloc(4 * fd), *Wd = malloc(4 * fd), *Wr = malloc(4 * Ed);
    float *x = malloc(4 * (size_t)B * d), *scores = malloc(4 * BE);
    uint16_t *Wg_bits = malloc(2 * fd), *Wu_bits = malloc(2 * fd), *Wd_bits = malloc(2 * fd), *WdT_bits = malloc(2 * fd);
    uint16_t *Wr_bits = malloc(2 * Ed), *x_bits = malloc(2 * (size_t)B * d), *h = malloc(2 * Bf);
    uint16_t *y = malloc(2 * (size_t)B * d);
    unsigned char *mask = malloc(BE), *rmask = malloc(BE);
    int *ids = malloc(sizeof(int) * BE), *counts = malloc(sizeof(int) * B), *uids = malloc(sizeof(int) * E);
    int *ruids = malloc(sizeof(int) * E);
    double *sref = malloc(sizeof(double) * BE), *hd = malloc(sizeof(double) * Bf);
    double *yref = malloc(sizeof(double) * B * d);
    int ucount = -7, rucount = 0;
    fill(bf16, Wr, Wr_bits, Ed, 1.0 / sqrt(d));
    fill(bf16, Wg, Wg_bits, fd, 2.0 / sqrt(d));
    fill(bf16, Wu, Wu_bits, fd, 2.0 / sqrt(d));
    fill(bf16, Wd, Wd_bits, fd, 2.0 / sqrt(f)); /* W_down [d][f] */
    fill(bf16, x, x_bits, (size_t)B * d, 1.0);
    sp_ref_transpose(Wd_bits, WdT_bits, d, f, 2); /* layout=t: [f][d] */
    const float threshold = (float)log(0.6 / 0.4) * 0.5f;
    unsigned *ws = calloc((p ? p->workspace_bytes : 0) / 4 + 1, 4), *dws = calloc((dp ? dp->workspace_bytes : 0) / 4 + 1, 4);
    unsigned *ubits[2] = {calloc((size_t)words, 4), calloc((size_t)words, 4)};
    sp_kargs k, kd;
    void **args = NULL, **dargs = NULL;
    sprig_status st = p && dp ? SPRIG_OK : SPRIG_E_INVALID;
    ++checks;
    for (int run = 0; run < 2 && st == SPRIG_OK; ++run) {
        sp_kargs_init(&k, p);
        fh_ptr(&k, "Wg", Wg_bits), fh_ptr(&k, "Wu", Wu_bits), fh_ptr(&k, "x", x_bits);
        fh_ptr(&k, "union_ids", uids), fh_ptr(&k, "union_count", &ucount), fh_ptr(&k, "mask", mask);
        fh_ptr(&k, "h", h), fh_ptr(&k, "Wr", Wr_bits), fh_ptr(&k, "scores", scores);
        sp_kargs_f32(&k, "threshold", threshold);
        fh_ptr(&k, "ids", ids), fh_ptr(&k, "counts", counts), fh_ptr(&k, "ws", ws);
        if (bits) fh_ptr(&k, "union_bits", ubits[run % 2]), fh_ptr(&k, "bits_clear", ubits[(run + 1) % 2]);
        st = sp_kargs_finish(&k, &args);
        if (st != SPRIG_OK) break;
        sp_kargs_init(&kd, dp);
        const int layout_n = down_params && strstr(down_params, "layout=n") != NULL; /* W_down as stored */
        fh_ptr(&kd, "Wd", layout_n ? Wd_bits : WdT_bits), fh_ptr(&kd, "h", h), fh_ptr(&kd, "union_ids", uids);
        fh_ptr(&kd, "union_count", &ucount), fh_ptr(&kd, "ws", dws), fh_ptr(&kd, "y", y);
        if (bits) fh_ptr(&kd, "union_bits", ubits[run % 2]);
        st = sp_kargs_finish(&kd, &dargs);
        if (st != SPRIG_OK) break;
        if (bits) memset(ubits[(run + 1) % 2], 0xa5, 4 * (size_t)words); /* poison: the run must clear it */
        for (size_t i = 0; i < BE; ++i) scores[i] = NAN, ids[i] = -7, mask[i] = 9; /* poison */
        for (int i = 0; i < B; ++i) counts[i] = -7;
        for (int i = 0; i < E; ++i) uids[i] = -7;
        for (size_t i = 0; i < Bf; ++i) h[i] = 0x7e01; /* a NaN in both types */
        for (size_t i = 0; i < (size_t)B * d; ++i) y[i] = 0x7e01;
        ucount = -7;
        st = sp_emu_plan_launch(mod, p, args);
        if (st == SPRIG_OK) st = sp_emu_plan_launch(dmod, dp, dargs);
    }
    size_t dirty = 0;
    for (size_t i = 0; p && i < p->workspace_bytes / 4; ++i) dirty += ws[i] != 0;
    CHECK_MSG(dirty == 0, "%s: %zu workspace words left non-zero", p ? p->key : "", dirty);
    CHECK_MSG(st == SPRIG_OK, "%s: %s", p ? p->key : up_params, sprig_last_error());
    if (st == SPRIG_OK && bits) {
        /* no lists: those the bitmap and the mask name, for check_routing; the other bitmap cleared */
        int cleared = 1, n = 0;
        for (int w = 0; w < words; ++w) cleared &= ubits[0][w] == 0u;
        CHECK_MSG(cleared, "%s: bits_clear was not cleared", p->key);
        for (int e = 0; e < E; ++e)
            if (ubits[1][e / 32] >> (e % 32) & 1u) uids[n++] = e;
        for (int t = 0; t < B; ++t) {
            counts[t] = 0;
            for (int e = 0; e < E; ++e)
                if (mask[(size_t)t * E + e] == 1) ids[(size_t)t * E + counts[t]++] = e;
        }
    }
    if (st == SPRIG_OK) {
        sp_ref_router_scores(Wr, x, sref, E, d, B);
        rucount = check_routing(p->key, SP_REF_RULE_SIGMOID, threshold, B, E, scores, sref, mask, ids, counts, uids,
                                ucount, rmask, ruids);
        CHECK_MSG(rucount < E, "%s: the union covered every expert", p->key);
        double num = 0, den = 0;
        /* h by neuron: the union's experts computed, the rest untouched */
        sp_ref_swiglu(Wg, Wu, x, rmask, B, d, f, g, hd);
        unsigned char *in_union = calloc((size_t)E, 1);
        for (int j = 0; j < rucount; ++j) in_union[ruids[j]] = 1;
        int hwrong = 0, zeros = 0;
        num = den = 0;
        for (int t = 0; t < B; ++t)
            for (int n = 0; n < f; ++n) {
                const uint16_t o = h[(size_t)t * f + n];
                const int e = n / g;
                if (!in_union[e]) hwrong += o != 0x7e01;
                else if (!rmask[(size_t)t * E + e]) hwrong += o != 0, ++zeros;
                else {
                    const double v = sp_ref_from_bits(bf16, o), ref = hd[(size_t)t * f + n];
                    hwrong += isnan(v);
                    num += (v - ref) * (v - ref), den += ref * ref;
                }
            }
        CHECK_MSG(den > 0 && sqrt(num / den) < 1e-2, "%s: h off by %g (relative)", p->key, sqrt(num / den));
        CHECK_MSG(hwrong == 0, "%s: %d h entries not 0 where masked, NaN, or written outside the union", p->key, hwrong);
        CHECK_MSG(B == 1 || zeros > 0, "%s: no masked entry was exercised", p->key);
        free(in_union);
        /* y from h by neuron */
        sp_ref_down(Wd, hd, rmask, B, d, f, g, yref);
        num = den = 0;
        int ynan = 0;
        for (size_t i = 0; i < (size_t)B * d; ++i) {
            const double v = sp_ref_from_bits(bf16, y[i]);
            ynan += isnan(v);
            num += (v - yref[i]) * (v - yref[i]), den += yref[i] * yref[i];
        }
        CHECK_MSG(ynan == 0 && den > 0 && sqrt(num / den) < 1e-2, "%s: y off by %g (relative), %d NaN", dp->key,
                  sqrt(num / den), ynan);
    }
    free(Wg), free(Wu), free(Wd), free(Wr), free(x), free(scores), free(Wg_bits), free(Wu_bits), free(Wd_bits);
    free(WdT_bits), free(Wr_bits), free(x_bits), free(h), free(y), free(mask), free(rmask), free(ids), free(counts);
    free(uids), free(ruids), free(sref), free(hd), free(yref), free(ws), free(dws), free(ubits[0]), free(ubits[1]);
    if (mod) sp_emu_module_free(mod);
    if (dmod) sp_emu_module_free(dmod);
    sprig_plan_free(p);
    sprig_plan_free(dp);
}

/* Small shapes with a partial last K chunk (d = 264, 520: not multiples of 256). */
static void test_emulated(sprig_gen *gen) {
    emu_router(gen, 520, 512, "bf16", 3, 16, "ksplit=4", 0);
    emu_router(gen, 264, 512, "fp16", 5, 1, "score=silu_abs,threads=64,ksplit=1", 1); /* 256 CTAs, 16 words a list */
    emu_router(gen, 520, 11008, "fp16", 1, 1, "score=silu_abs,threads=64,ksplit=2", 1); /* 344 words: 6 a thread */
    emu_router(gen, 264, 512, "bf16", 64, 1, "score=silu_abs,threads=64,ksplit=1", 1); /* 65 lists, 16 at a time */
    emu_upgate(gen, 520, 512, "fp16", 3, 16, NULL, 0, 0);
    emu_upgate(gen, 264, 384, "bf16", 7, 1, "ksplit=4,threads=128,rows_per_warp=4,interleave=1,x_smem=1", 1, 0);
    emu_upgate(gen, 264, 256, "fp16", 2, 32, "all_active=1,vec=4,unroll=4", 0, 1);
    /* the gates from the training-free router's scores (g = 1): one warp a row, and ksplit */
    emu_upgate(gen, 520, 384, "fp16", 3, 1, "gate=scores", 0, 0);
    emu_upgate(gen, 264, 256, "bf16", 2, 1, "gate=scores,ksplit=4,threads=128,rows_per_warp=2", 0, 0);
    /* the router folded in: a CTA per expert's share (8 rows of 16), two experts a CTA (64 rows of 32:
       rows_per_warp 4, 16 warps), and ksplit warps sharing rows; layouts t and n of the down side */
    emu_fused(gen, 520, 512, "fp16", 1, 16, NULL, NULL, 0);
    emu_fused(gen, 264, 1024, "bf16", 3, 32, "threads=512,rows_per_warp=4", "layout=n,vec=8", 0);
    emu_fused(gen, 520, 512, "bf16", 5, 16, "ksplit=4,threads=256,rows_per_warp=2,x_smem=1", "splits=2", 0);
    /* the union as a bitmap, compacted by every gather_down CTA: one token; five, 2 splits; 1056 experts
     * (33 words on 64 threads, 5 column blocks); layout n */
    emu_fused(gen, 520, 512, "fp16", 1, 16, NULL, NULL, 1);
    emu_fused(gen, 520, 512, "bf16", 5, 16, "ksplit=4,threads=256,rows_per_warp=2", "splits=2", 1);
    emu_fused(gen, 264, 1056, "fp16", 2, 1, "threads=64,ksplit=2", "threads=64,cols_per_cta=64,vec=2", 1);
    emu_fused(gen, 264, 1024, "bf16", 3, 32, "threads=512,rows_per_warp=4", "layout=n,vec=8", 1);
}

int main(void) {
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    if (!gen) return sp_test_finish("test_router_gather_upgate", 0);
    test_render_all(gen);
    test_signature_checker(gen);
    test_params(gen);
    test_invalid(gen);
    test_compile_defaults(gen);
    test_emulated(gen);
    sprig_gen_close(gen);
    return sp_test_finish("test_router_gather_upgate", checks);
}
