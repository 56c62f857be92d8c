/* gather_down and fused_mlp (and the split-K finalize they share), on the CPU:
 *  - render for every model shape, dtype, expert size and batch 1/8 (gather_down
 *    also 64 with a batch tile): kernel names in the source, launches and
 *    workspace as the reduce mode says (docs/kernel-abi.md);
 *  - every value of every parameter renders or is refused with SPRIG_E_INVALID
 *    and a message naming the family; the documented refusals say why;
 *  - NVRTC at default parameters (sm_90, and sm_75 for the pre-sm_90 atomics):
 *    every kernel of the plan, zero spills, zero stack;
 *  - the generated source run by the CPU emulator (tests/emu) against the
 *    float64 references on small odd shapes: every reduce mode, both layouts,
 *    batch tiles with a partial last tile, all_active, an empty union, masked
 *    tokens, compact-h slots past union_count poisoned with NaN, y poisoned
 *    before each run, the atomic workspace zero again afterwards and the
 *    deterministic mode bit-reproducible.
 * Nothing here needs a GPU; timing and the GPU memory model are not covered. */
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

static const struct {
    const char *name;
    int d, f;
} shapes[] = {
    {"llama2-7b", 4096, 11008}, {"llama2-13b", 5120, 13824}, {"llama3-8b", 4096, 14336},
    {"slice20", 3272, 11008},   {"slice25", 3072, 11008},    {"slice30", 2864, 11008},
};
static const char *const dtypes[] = {"fp16", "bf16"};
static const int expert_sizes[] = {1, 16, 32, 64, 128};

static sprig_plan *render(sprig_gen *gen, const char *family, int d, int f, const char *dtype, int batch, int g,
                          const char *params, sprig_status *st) {
    sprig_request req = {family, d, f, dtype, batch, g, params};
    sprig_plan *plan = NULL;
    *st = sprig_gen_render(gen, &req, &plan);
    return plan;
}

static unsigned ceil_div(unsigned a, unsigned b) { return (a + b - 1) / b; }

/* ---- rendering --------------------------------------------------------------------- */

/* The workspace of layout t: the sums (parts x B x d floats), then one arrival
 * counter per output block (grid x by z), rounded up to 16 bytes. */
static size_t down_ws(const sprig_plan *p, size_t parts, int batch, int d) {
    const size_t blocks = (size_t)p->kernels[0].grid[0] * p->kernels[0].grid[2];
    return (parts * batch * d + (blocks + 3) / 4 * 4) * 4;
}

/* gather_down at defaults: layout t, atomic, auto splits, 256 columns per CTA;
 * one kernel (the last split to arrive at a column block finalizes it). */
static void check_gather_down_default(const sprig_plan *p, int d, int batch, const char *what) {
    CHECK_MSG(p->n_kernels == 1, "%s: %d kernels", what, p->n_kernels);
    if (p->n_kernels != 1) return;
    CHECK(strcmp(p->kernels[0].name, "sprig_gather_down") == 0);
    CHECK(sp_contains(p->source, "sprig_gather_down(") && !sp_contains(p->source, "sprig_gather_down_finalize("));
    CHECK_MSG(p->workspace_bytes == down_ws(p, 1, batch, d), "%s: workspace %zu", what, p->workspace_bytes);
    const sprig_launch *k = &p->kernels[0];
    unsigned tiles = ceil_div(batch, 8);
    CHECK_MSG(k->grid[0] == ceil_div(d, 256) && k->grid[2] == tiles && k->block[0] == 256, "%s: grid %u,%u,%u",
              what, k->grid[0], k->grid[1], k->grid[2]);
    /* auto splits: a power of two <= 32 giving about two CTAs per SM of an H100 */
    unsigned s = k->grid[1], ctas = k->grid[0] * k->grid[1] * k->grid[2];
    CHECK_MSG(s >= 1 && s <= 32 && (s & (s - 1)) == 0 && (ctas >= 256 || s == 32), "%s: splits %u", what, s);
}

static void check_fused_default(const sprig_plan *p, int d, int f, int batch, const char *what) {
    CHECK_MSG(p->n_kernels == 2, "%s: %d kernels", what, p->n_kernels);
    if (p->n_kernels != 2) return;
    CHECK(strcmp(p->kernels[0].name, "sprig_fused_mlp") == 0);
    CHECK(strcmp(p->kernels[1].name, "sprig_fused_mlp_finalize") == 0);
    CHECK(sp_contains(p->source, "sprig_fused_mlp(") && sp_contains(p->source, "sprig_fused_mlp_finalize("));
    CHECK_MSG(p->workspace_bytes == (size_t)batch * d * 4, "%s: workspace %zu", what, p->workspace_bytes);
    CHECK_MSG(p->kernels[0].grid[0] == ceil_div(f, 16) && p->kernels[0].block[0] == 256, "%s: grid %u", what,
              p->kernels[0].grid[0]);
    CHECK(p->kernels[1].grid[0] * p->kernels[1].block[0] * 4 >= (unsigned)(batch * d));
}

static void test_render_all(sprig_gen *gen) {
    sprig_status st;
    char what[160];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
        for (int t = 0; t < 2; ++t)
            for (size_t gi = 0; gi < sizeof expert_sizes / sizeof expert_sizes[0]; ++gi) {
                int d = shapes[s].d, f = shapes[s].f, g = expert_sizes[gi];
                for (int batch = 1; batch <= 8; batch += 7) {
                    snprintf(what, sizeof what, "%s %s g=%d b=%d", shapes[s].name, dtypes[t], g, batch);
                    sprig_plan *p = render(gen, "gather_down", d, f, dtypes[t], batch, g, NULL, &st);
                    CHECK_MSG(p, "gather_down %s: %s", what, sprig_last_error());
                    if (p) check_gather_down_default(p, d, batch, what);
                    sprig_plan_free(p);
                    p = render(gen, "fused_mlp", d, f, dtypes[t], batch, g, NULL, &st);
                    CHECK_MSG(p, "fused_mlp %s: %s", what, sprig_last_error());
                    if (p) check_fused_default(p, d, f, batch, what);
                    sprig_plan_free(p);
                }
                /* batch 64: token tiles of batch_tile on grid z */
                snprintf(what, sizeof what, "%s %s g=%d b=64", shapes[s].name, dtypes[t], g);
                sprig_plan *p = render(gen, "gather_down", d, f, dtypes[t], 64, g, "batch_tile=4", &st);
                CHECK_MSG(p, "gather_down %s: %s", what, sprig_last_error());
                if (p) CHECK_MSG(p->n_kernels == 1 && p->kernels[0].grid[2] == 16, "%s", what);
                sprig_plan_free(p);
                p = render(gen, "gather_down", d, f, dtypes[t], 64, g, NULL, &st);
                CHECK_MSG(p, "gather_down %s: %s", what, sprig_last_error());
                if (p) check_gather_down_default(p, d, 64, what);
                sprig_plan_free(p);
            }
}

/* Launches and workspace follow the reduce mode and layout. */
static void test_modes(sprig_gen *gen) {
    sprig_status st;
    const int d = 3272, f = 11008, B = 4;
    sprig_plan *p = render(gen, "gather_down", d, f, "fp16", B, 32, "reduce=deterministic,splits=8", &st);
    CHECK(p && p->n_kernels == 1 && p->workspace_bytes == down_ws(p, 8, B, d));
    if (p) CHECK(p->kernels[0].grid[0] == ceil_div(d, 256) && p->kernels[0].grid[1] == 8);
    sprig_plan_free(p);
    p = render(gen, "gather_down", d, f, "fp16", B, 32, "reduce=deterministic", &st); /* auto splits */
    CHECK(p && p->n_kernels == 1);
    if (p) CHECK(p->workspace_bytes == down_ws(p, p->kernels[0].grid[1], B, d));
    sprig_plan_free(p);
    p = render(gen, "gather_down", d, f, "bf16", B, 32, "reduce=direct,splits=1,cols_per_cta=64,vec=4", &st);
    CHECK(p && p->n_kernels == 1 && p->workspace_bytes == 0);
    if (p) CHECK(p->kernels[0].grid[0] == ceil_div(d, 64) && p->kernels[0].grid[1] == 1);
    if (p) CHECK(!sp_contains(p->source, "sprig_gather_down_finalize"));
    sprig_plan_free(p);
    p = render(gen, "gather_down", d, f, "fp16", B, 32, "layout=n,rows_per_warp=2,threads=128", &st);
    CHECK(p && p->n_kernels == 1 && p->workspace_bytes == 0);
    if (p) CHECK(p->kernels[0].grid[0] == ceil_div(d, 4 * 2) && p->kernels[0].block[0] == 128);
    sprig_plan_free(p);
    p = render(gen, "fused_mlp", d, f, "fp16", B, 32, "reduce=deterministic,rows_per_cta=64", &st);
    CHECK(p && p->n_kernels == 2 && p->workspace_bytes == (size_t)ceil_div(f, 64) * B * d * 4);
    if (p) CHECK(p->kernels[0].grid[0] == ceil_div(f, 64));
    sprig_plan_free(p);
    /* Different modes are different kernels. */
    sprig_plan *a = render(gen, "gather_down", d, f, "fp16", 1, 32, "reduce=atomic", &st);
    sprig_plan *b = render(gen, "gather_down", d, f, "fp16", 1, 32, "reduce=deterministic", &st);
    CHECK(a && b && strcmp(a->source, b->source) != 0 && strcmp(a->key, b->key) != 0);
    sprig_plan_free(a);
    sprig_plan_free(b);
}

/* Every declared value of every parameter, one at a time over the defaults:
 * it renders, or SPRIG_E_INVALID with a message that names the family. */
static void test_each_value(sprig_gen *gen, const char *family, const char *const *settings, int g, int batch) {
    for (int i = 0; settings[i]; ++i) {
        sprig_status st;
        sprig_plan *p = render(gen, family, 4096, 11008, "fp16", batch, g, settings[i], &st);
        CHECK_MSG(p || (st == SPRIG_E_INVALID && sp_contains(sprig_last_error(), family)), "%s %s g=%d b=%d: %s %s",
                  family, settings[i], g, batch, sprig_status_name(st), sprig_last_error());
        if (p) CHECK(p->n_kernels >= 1 && p->source_len > 0);
        sprig_plan_free(p);
    }
}

static void test_params(sprig_gen *gen) {
    static const char *const down[] = {
        "layout=t", "layout=n", "threads=64", "threads=128", "threads=256", "threads=512", "vec=2", "vec=4",
        "vec=8", "cols_per_cta=64", "cols_per_cta=128", "cols_per_cta=256", "cols_per_cta=512",
        "cols_per_cta=1024", "splits=0", "splits=1", "splits=2", "splits=4", "splits=8", "splits=16", "splits=32",
        "reduce=atomic", "reduce=deterministic", "reduce=direct", "rows_per_warp=1", "rows_per_warp=2",
        "rows_per_warp=4", "batch_tile=1", "batch_tile=2", "batch_tile=4", "batch_tile=8", "unroll=1", "unroll=2",
        "unroll=4", "unroll=8", "all_active=0", "all_active=1",
        /* combinations that must work */
        "layout=n,rows_per_warp=4,vec=4", "splits=1,reduce=direct", "layout=t,threads=64,cols_per_cta=512",
        "reduce=deterministic,splits=32,batch_tile=2", "layout=n,all_active=1", NULL};
    static const char *const fused[] = {
        "threads=64", "threads=128", "threads=256", "threads=512", "rows_per_cta=8", "rows_per_cta=16",
        "rows_per_cta=32", "rows_per_cta=64", "rows_per_cta=128", "vec=2", "vec=4", "vec=8", "unroll=1",
        "unroll=2", "unroll=4", "interleave=0", "interleave=1", "reduce=atomic", "reduce=deterministic",
        "all_active=0", "all_active=1", "interleave=1,reduce=deterministic,rows_per_cta=8,threads=512", NULL};
    static const int gs[] = {1, 32};
    static const int batches[] = {1, 8, 64};
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) {
            test_each_value(gen, "gather_down", down, gs[i], batches[j]);
            test_each_value(gen, "fused_mlp", fused, gs[i], batches[j]);
        }
    /* The combinations that must work do. */
    static const char *const ok[] = {"layout=n,rows_per_warp=4,vec=4", "splits=1,reduce=direct",
                                     "layout=t,threads=64,cols_per_cta=512", "layout=n,all_active=1", NULL};
    for (int i = 0; ok[i]; ++i) {
        sprig_status st;
        sprig_plan *p = render(gen, "gather_down", 4096, 11008, "bf16", 8, 32, ok[i], &st);
        CHECK_MSG(p != NULL, "%s: %s", ok[i], sprig_last_error());
        sprig_plan_free(p);
    }
}

/* The documented refusals, each with its reason. */
static void test_invalid(sprig_gen *gen) {
    static const struct {
        const char *family;
        int batch, g;
        const char *params, *expect;
    } bad[] = {
        {"gather_down", 1, 1, "layout=n", "layout=n needs g >= vec"},
        {"gather_down", 1, 1, "layout=n", "use layout=t"},
        {"gather_down", 1, 32, "reduce=direct", "reduce=direct needs splits=1"},
        {"gather_down", 1, 32, "reduce=direct,splits=4", "reduce=direct needs splits=1"},
        {"gather_down", 1, 32, "layout=n,splits=4", "splits applies to layout=t only"},
        {"gather_down", 1, 32, "layout=n,reduce=deterministic", "reduce applies to layout=t only"},
        {"gather_down", 1, 32, "layout=n,batch_tile=2", "batch_tile applies to layout=t only"},
        {"gather_down", 1, 32, "layout=n,cols_per_cta=512", "cols_per_cta applies to layout=t only"},
        {"gather_down", 1, 32, "rows_per_warp=2", "rows_per_warp applies to layout=n only"},
        {"gather_down", 1, 32, "cols_per_cta=1024,vec=2", "needs 512 threads across, more than threads=256"},
        {"gather_down", 64, 32, "layout=n,rows_per_warp=2", "rows_per_warp*batch=128 exceeds 64"},
        {"gather_down", 1, 32, "splits=3", "splits=3 is out of range"},
        {"gather_down", 1, 32, "layout=x", "layout=x is out of range"},
        {"fused_mlp", 16, 32, "", "batch=16 is more than 8"},
        {"fused_mlp", 1, 32, "reduce=direct", "reduce=direct is out of range"},
        {"fused_mlp", 1, 32, "rows_per_cta=12", "rows_per_cta=12 is out of range"},
        {"fused_mlp", 1, 32, "splits=2", "unknown parameter 'splits'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        sprig_status st;
        sprig_plan *p = render(gen, bad[i].family, 4096, 11008, "fp16", bad[i].batch, bad[i].g, bad[i].params, &st);
        CHECK_MSG(p == NULL && st == SPRIG_E_INVALID, "case %zu (%s %s)", i, bad[i].family, bad[i].params);
        CHECK_MSG(sp_contains(sprig_last_error(), bad[i].expect), "case %zu: got '%s'", i, sprig_last_error());
        sprig_plan_free(p);
    }
}

/* ---- NVRTC ---------------------------------------------------------------------------- */

static void compile_clean(const sprig_plan *p, const char *arch, const char *what) {
    sprig_compile_opts o = {arch, 0, NULL, 0}; /* cache: $SPRIG_CACHE_DIR */
    sprig_binary *b = NULL;
    sprig_status s = sprig_compile(p, &o, &b);
    CHECK_MSG(s == SPRIG_OK, "%s %s: %s", what, arch, sprig_last_error());
    if (!b) return;
    CHECK(b->n_kernels == p->n_kernels);
    for (int k = 0; k < b->n_kernels; ++k) {
        const sprig_resources *r = &b->res[k];
        CHECK_MSG(strcmp(b->kernel_names[k], p->kernels[k].name) == 0, "%s: kernel %d", what, k);
        CHECK_MSG(r->registers > 0 && r->spill_store_bytes == 0 && r->spill_load_bytes == 0 && r->stack_bytes == 0,
                  "%s %s %s: registers %d, spills %d/%d, stack %d", what, arch, b->kernel_names[k], r->registers,
                  r->spill_store_bytes, r->spill_load_bytes, r->stack_bytes);
    }
    sprig_binary_free(b);
}

static void test_compile(sprig_gen *gen) {
    static const struct {
        const char *family, *params, *arch;
        int d, batch, g;
    } cases[] = {
        {"gather_down", NULL, "sm_90", 4096, 1, 32},
        {"gather_down", NULL, "sm_90", 3272, 8, 32},
        {"gather_down", NULL, "sm_75", 2864, 8, 1},
        {"gather_down", NULL, "sm_90", 5120, 64, 128},
        {"gather_down", "reduce=deterministic", "sm_90", 3272, 8, 16},
        {"gather_down", "splits=1,reduce=direct", "sm_90", 3272, 8, 32},
        {"gather_down", "layout=n", "sm_90", 3272, 8, 32},
        {"fused_mlp", NULL, "sm_90", 4096, 1, 32},
        {"fused_mlp", NULL, "sm_90", 3272, 8, 32},
        {"fused_mlp", NULL, "sm_75", 2864, 8, 1},
        {"fused_mlp", "reduce=deterministic,interleave=1", "sm_90", 3272, 8, 64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        sprig_status st;
        char what[128];
        snprintf(what, sizeof what, "%s d=%d b=%d g=%d %s", cases[i].family, cases[i].d, cases[i].batch, cases[i].g,
                 cases[i].params ? cases[i].params : "(defaults)");
        sprig_plan *p = render(gen, cases[i].family, cases[i].d, 11008, "bf16", cases[i].batch, cases[i].g,
                               cases[i].params, &st);
        CHECK_MSG(p, "%s: %s", what, sprig_last_error());
        if (p) compile_clean(p, cases[i].arch, what);
        sprig_plan_free(p);
    }
}

/* ---- the CPU emulator ------------------------------------------------------------------ */

static uint32_t rng_state = 12345u;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

/* n values uniform in [-scale, scale), rounded to the storage type; bits too. */
static void random_operand(float *v, uint16_t *bits, size_t n, float scale, int bf16) {
    for (size_t i = 0; i < n; ++i) {
        bits[i] = sp_ref_to_bits(bf16, frand() * scale);
        v[i] = sp_ref_from_bits(bf16, bits[i]);
    }
}

/* ‖y − ref‖ / ‖ref‖ over B*d outputs (y in storage bits); a NaN gives INFINITY. */
static double rel_error(const uint16_t *y, const double *ref, size_t n, int bf16) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        double v = sp_ref_from_bits(bf16, y[i]);
        if (isnan(v)) return INFINITY;
        num += (v - ref[i]) * (v - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* One emulator problem: shapes, routing, operands and references. */
typedef struct emu_case {
    int d, f, g, E, B, bf16, empty;
    float density;          /* chance an expert is active for a token */
    unsigned char *mask;    /* [B][E] */
    int *ids, *counts, *union_ids, union_count;
    float *Wg, *Wu, *Wd, *x; /* Wd = W_down [d][f] */
    uint16_t *Wg_b, *Wu_b, *Wgi_b, *Wd_b, *WdT_b, *x_b, *h_b; /* h_b: compact [B][f] */
    double *h, *y_ref;       /* h dense [B][f] (the SwiGLU reference), y [B][d] */
    double *y_down_ref;      /* y from h rounded to T (what gather_down sees) */
} emu_case;

static void emu_case_free(emu_case *c) {
    free(c->mask), free(c->ids), free(c->counts), free(c->union_ids);
    free(c->Wg), free(c->Wu), free(c->Wd), free(c->x);
    free(c->Wg_b), free(c->Wu_b), free(c->Wgi_b), free(c->Wd_b), free(c->WdT_b), free(c->x_b), free(c->h_b);
    free(c->h), free(c->y_ref), free(c->y_down_ref);
}

/* Builds operands and references; all_active makes every expert active. */
static void emu_case_build(emu_case *c, int all_active) {
    int d = c->d, f = c->f, B = c->B, E = c->E = f / c->g;
    c->mask = malloc((size_t)B * E);
    for (int i = 0; i < B * E; ++i) c->mask[i] = all_active || (!c->empty && (frand() + 1.0f) * 0.5f < c->density);
    c->ids = malloc(sizeof(int) * B * E), c->counts = malloc(sizeof(int) * B);
    c->union_ids = malloc(sizeof(int) * E);
    sp_ref_routing(c->mask, B, E, c->ids, c->counts, c->union_ids, &c->union_count);
    size_t fd = (size_t)f * d;
    c->Wg = malloc(4 * fd), c->Wu = malloc(4 * fd), c->Wd = malloc(4 * fd), c->x = malloc(4 * (size_t)B * d);
    c->Wg_b = malloc(2 * fd), c->Wu_b = malloc(2 * fd), c->Wgi_b = malloc(4 * fd), c->Wd_b = malloc(2 * fd);
    c->WdT_b = malloc(2 * fd), c->x_b = malloc(2 * (size_t)B * d), c->h_b = malloc(2 * (size_t)B * f);
    random_operand(c->Wg, c->Wg_b, fd, 0.25f, c->bf16);
    random_operand(c->Wu, c->Wu_b, fd, 0.25f, c->bf16);
    random_operand(c->Wd, c->Wd_b, fd, 0.25f, c->bf16);
    random_operand(c->x, c->x_b, (size_t)B * d, 1.0f, c->bf16);
    sp_ref_transpose(c->Wd_b, c->WdT_b, d, f, 2);
    sp_ref_interleave_gate_up(c->Wg_b, c->Wu_b, c->Wgi_b, f, d, c->g, 2);
    c->h = malloc(sizeof(double) * B * f), c->y_ref = malloc(sizeof(double) * B * d);
    c->y_down_ref = malloc(sizeof(double) * B * d);
    sp_ref_swiglu(c->Wg, c->Wu, c->x, c->mask, B, d, f, c->g, c->h);
    sp_ref_down(c->Wd, c->h, c->mask, B, d, f, c->g, c->y_ref);
    /* gather_down reads h in T: round it, compact it; slots past the union hold NaN. */
    double *hr = malloc(sizeof(double) * B * f), *hc = malloc(sizeof(double) * B * f);
    for (int i = 0; i < B * f; ++i) hr[i] = sp_ref_round(c->bf16, (float)c->h[i]);
    sp_ref_down(c->Wd, hr, c->mask, B, d, f, c->g, c->y_down_ref);
    for (int i = 0; i < B * f; ++i) hc[i] = NAN;
    sp_ref_compact_h(hr, c->union_ids, c->union_count, B, f, c->g, hc);
    for (int i = 0; i < B * f; ++i) c->h_b[i] = sp_ref_to_bits(c->bf16, (float)hc[i]);
    free(hr);
    free(hc);
}

/* Runs plan in the emulator twice over fresh poisoned outputs; checks y
 * against ref, NaN-free, ws zero afterwards for atomic plans, and the two
 * runs bit-identical when `deterministic`. */
/* Runs the plan twice with the arguments bound in k (its workspace, zeroed
 * once as the ABI says, bound here), checking y against ref each time. */
static void emu_run(const sprig_plan *plan, sp_kargs *k, uint16_t *y, const double *ref, const emu_case *c,
                    int atomic, int deterministic, const char *what) {
    sp_emu_module *m = NULL;
    sprig_status st = sp_emu_module_load(plan, &m);
    CHECK_MSG(st == SPRIG_OK, "%s: emulator compile: %s", what, sprig_last_error());
    if (!m) return;
    size_t n = (size_t)c->B * c->d, wsn = plan->workspace_bytes / 4;
    float *ws = calloc(wsn ? wsn : 1, sizeof(float)); /* zeroed once, as the ABI says */
    fh_ptr(k, "ws", ws);
    void **args = NULL;
    st = sp_kargs_finish(k, &args);
    CHECK_MSG(st == SPRIG_OK, "%s: binding: %s", what, sprig_last_error());
    uint16_t *first = malloc(2 * n);
    for (int run = 0; run < 2 && args; ++run) {
        for (size_t i = 0; i < n; ++i) y[i] = 0xffff; /* NaN in both types */
        st = sp_emu_plan_launch(m, plan, args);
        CHECK_MSG(st == SPRIG_OK, "%s: %s", what, sprig_last_error());
        double err = rel_error(y, ref, n, c->bf16);
        CHECK_MSG(err < (c->bf16 ? 1e-2 : 2e-3), "%s run %d: relative error %g", what, run, err);
        if (c->empty || c->union_count == 0) {
            int zeros = 1;
            for (size_t i = 0; i < n; ++i) zeros &= (y[i] & 0x7fff) == 0;
            CHECK_MSG(zeros, "%s: empty union must give y = 0", what);
        }
        if (atomic) {
            int clean = 1;
            for (size_t i = 0; i < wsn; ++i) clean &= ws[i] == 0.0f;
            CHECK_MSG(clean, "%s run %d: atomic workspace not zero after the plan", what, run);
        }
        if (run == 0) memcpy(first, y, 2 * n);
        else if (deterministic) CHECK_MSG(memcmp(first, y, 2 * n) == 0, "%s: runs differ", what);
    }
    free(first);
    free(ws);
    sp_emu_module_free(m);
}

static void emu_gather_down(sprig_gen *gen, emu_case *c, const char *params) {
    const char *dt = c->bf16 ? "bf16" : "fp16";
    char what[256];
    snprintf(what, sizeof what, "emu gather_down d=%d f=%d g=%d B=%d %s union=%d/%d [%s]", c->d, c->f, c->g, c->B,
             dt, c->union_count, c->E, params);
    sprig_status st;
    sprig_plan *p = render(gen, "gather_down", c->d, c->f, dt, c->B, c->g, params, &st);
    CHECK_MSG(p, "%s: %s", what, sprig_last_error());
    if (!p) return;
    int layout_n = sp_contains(p->key, "layout=n"), all = sp_contains(p->key, "all_active=1");
    int atomic = !layout_n && sp_contains(p->key, "reduce=atomic");
    uint16_t *y = malloc(2 * (size_t)c->B * c->d);
    sp_kargs k;
    sp_kargs_init(&k, p);
    fh_ptr(&k, "Wd", layout_n ? c->Wd_b : c->WdT_b);
    fh_ptr(&k, "h", c->h_b);
    fh_ptr(&k, "union_ids", all ? NULL : c->union_ids);
    fh_ptr(&k, "union_count", all ? NULL : &c->union_count);
    fh_ptr(&k, "y", y);
    emu_run(p, &k, y, c->y_down_ref, c, atomic, !atomic, what);
    free(y);
    sprig_plan_free(p);
}

static void emu_fused(sprig_gen *gen, emu_case *c, const char *params) {
    const char *dt = c->bf16 ? "bf16" : "fp16";
    char what[256];
    snprintf(what, sizeof what, "emu fused_mlp d=%d f=%d g=%d B=%d %s union=%d/%d [%s]", c->d, c->f, c->g, c->B, dt,
             c->union_count, c->E, params);
    sprig_status st;
    sprig_plan *p = render(gen, "fused_mlp", c->d, c->f, dt, c->B, c->g, params, &st);
    CHECK_MSG(p, "%s: %s", what, sprig_last_error());
    if (!p) return;
    int inter = sp_contains(p->key, "interleave=1"), all = sp_contains(p->key, "all_active=1");
    int atomic = sp_contains(p->key, "reduce=atomic");
    uint16_t *y = malloc(2 * (size_t)c->B * c->d);
    sp_kargs k;
    sp_kargs_init(&k, p);
    fh_ptr(&k, "Wg", inter ? c->Wgi_b : c->Wg_b);
    fh_ptr(&k, "Wu", inter ? NULL : c->Wu_b);
    fh_ptr(&k, "WdT", c->WdT_b);
    fh_ptr(&k, "x", c->x_b);
    fh_ptr(&k, "union_ids", all ? NULL : c->union_ids);
    fh_ptr(&k, "union_count", all ? NULL : &c->union_count);
    fh_ptr(&k, "mask", all ? NULL : c->mask);
    fh_ptr(&k, "y", y);
    emu_run(p, &k, y, c->y_ref, c, atomic, !atomic, what);
    free(y);
    sprig_plan_free(p);
}

static void test_emulated(sprig_gen *gen) {
    /* d = 200: a multiple of 8 only, a partial column block for every cols_per_cta. */
    struct {
        int d, f, g, B, bf16, empty, all_active;
        float density;
        const char *down[4], *fused[3];
    } cases[] = {
        {200, 256, 16, 3, 0, 0, 0, 0.3f,
         {"", "cols_per_cta=64,reduce=deterministic,splits=4", "splits=1,reduce=direct,vec=4,cols_per_cta=128",
          "layout=n,rows_per_warp=2,threads=64"},
         {"", "reduce=deterministic,rows_per_cta=8,threads=64", NULL}},
        {200, 96, 1, 5, 1, 0, 0, 0.4f,
         {"cols_per_cta=64,vec=2,threads=64,unroll=2,batch_tile=2", "reduce=deterministic,splits=8,vec=4,cols_per_cta=64", NULL,
          NULL},
         {"vec=4,rows_per_cta=8,threads=128", "reduce=deterministic,interleave=1,rows_per_cta=32,unroll=1", NULL}},
        {104, 128, 32, 12, 0, 0, 0, 0.6f,
         {"cols_per_cta=64,vec=4,threads=128", "batch_tile=4,reduce=deterministic,cols_per_cta=64,vec=8,threads=64",
          "layout=n,vec=4,rows_per_warp=4,threads=128,unroll=1", NULL},
         {NULL, NULL, NULL}},
        {200, 128, 16, 8, 1, 0, 0, 0.15f, {"", "layout=n", NULL, NULL},
         {"", "interleave=1,vec=2,unroll=4,rows_per_cta=16,threads=128", NULL}},
        {200, 128, 32, 2, 0, 0, 1, 1.0f, {"all_active=1,cols_per_cta=64", "all_active=1,layout=n", NULL, NULL},
         {"all_active=1", "all_active=1,reduce=deterministic,interleave=1,rows_per_cta=8", NULL}},
        {200, 128, 16, 3, 0, 1, 0, 0.0f,
         {"cols_per_cta=64", "reduce=deterministic,cols_per_cta=64", "splits=1,reduce=direct,cols_per_cta=64", NULL},
         {"reduce=deterministic", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        emu_case c;
        memset(&c, 0, sizeof c);
        c.d = cases[i].d, c.f = cases[i].f, c.g = cases[i].g, c.B = cases[i].B, c.bf16 = cases[i].bf16;
        c.empty = cases[i].empty, c.density = cases[i].density;
        emu_case_build(&c, cases[i].all_active);
        /* a non-trivial union: some experts off for some tokens (unless all or none are active) */
        if (!cases[i].empty && !cases[i].all_active) CHECK(c.union_count > 0 && c.union_count <= c.E);
        for (int k = 0; k < 4; ++k)
            if (cases[i].down[k]) emu_gather_down(gen, &c, cases[i].down[k]);
        for (int k = 0; k < 3; ++k)
            if (cases[i].fused[k]) emu_fused(gen, &c, cases[i].fused[k]);
        emu_case_free(&c);
    }
}

int main(void) {
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    if (!gen) return sp_test_finish("test_gather_down_fused_mlp", 0);
    test_render_all(gen);
    test_modes(gen);
    test_params(gen);
    test_invalid(gen);
    test_compile(gen);
    test_emulated(gen);
    sprig_gen_close(gen);
    return sp_test_finish("test_gather_down_fused_mlp", 0);
}
