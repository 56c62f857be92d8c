/* gather_gemm (tensor-core gather GEMM, templates/gather_gemm.cu.lua), on the CPU:
 *   (a) the template's fragment mapping, emulated lane by lane against the PTX
 *       ISA's m16n8k16 layouts, gives a plain matrix product (and deliberately
 *       wrong mappings do not, so the emulation can fail);
 *   (b) renders for every model shape x fp16/bf16 x batch x g x stage, with
 *       the launch geometry and workspace the ABI needs;
 *   (c) requests the kernel cannot serve are SPRIG_E_INVALID with a reason;
 *   (d) NVRTC compiles the defaults for sm_80 and sm_90 without spills, the
 *       PTX holds the mma and streaming loads, and sm_75 fails with the
 *       template's #error;
 *   (e) the generated kernels run on the CPU emulator (tests/emu) against
 *       float64 references: K tails (d = 72), padded batches, empty unions,
 *       split-K atomic and deterministic, every K slice and token tiling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_runtime.h"
#include "family_harness.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "sprig.h"
#include "test_util.h"

/* ---- (a) fragment mapping ---------------------------------------------------------
 * PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"
 * (grp = lane >> 2, tig = lane & 3; element i of a lane's fragment lives in
 * register i / 2, low half for even i):
 *   A a0..a7: row grp for i in {0,1,4,5}, else grp + 8; col 2 tig + (i & 1) (+ 8 for i >= 4)
 *   B b0..b3: row 2 tig + (i & 1) (+ 8 for i >= 2); col grp
 *   C c0..c3: row grp (+ 8 for i >= 2); col 2 tig + (i & 1) */
static void ptx_a(int lane, int i, int *row, int *k) {
    *row = (lane >> 2) + ((i < 2 || (i >= 4 && i < 6)) ? 0 : 8);
    *k = 2 * (lane & 3) + (i & 1) + (i >= 4 ? 8 : 0);
}
static void ptx_b(int lane, int i, int *k, int *col) {
    *k = 2 * (lane & 3) + (i & 1) + (i >= 2 ? 8 : 0);
    *col = lane >> 2;
}
static void ptx_c(int lane, int i, int *row, int *col) {
    *row = (lane >> 2) + (i >= 2 ? 8 : 0);
    *col = 2 * (lane & 3) + (i & 1);
}

/* A mapping: for MMA step s (0, 1) of a 32-wide K chunk, which physical
 * element (row or token, k in 0..31) a lane puts in half h of register r,
 * and where the epilogue stores accumulator i. */
typedef struct gm_map {
    const char *name;
    void (*a_src)(int lane, int s, int r, int h, int *row, int *k);
    void (*b_src)(int lane, int s, int r, int h, int *tok, int *k);
    void (*c_dst)(int lane, int i, int *row, int *tok);
} gm_map;

/* templates/gather_gemm.cu.lua: a lane loads 8 contiguous elements (words
 * w0..w3) at k = 8 tig of row grp, row grp + 8 and token grp; step s uses
 * A {reg0, reg1, reg2, reg3} = {row grp w2s, row grp+8 w2s, row grp w2s+1,
 * row grp+8 w2s+1} and B {reg0, reg1} = {w2s, w2s+1}. */
static void tpl_a(int lane, int s, int r, int h, int *row, int *k) {
    *row = (lane >> 2) + 8 * (r & 1);
    *k = 8 * (lane & 3) + 2 * (2 * s + (r >> 1)) + h;
}
static void tpl_b(int lane, int s, int r, int h, int *tok, int *k) {
    *tok = lane >> 2;
    *k = 8 * (lane & 3) + 2 * (2 * s + r) + h;
}
static void tpl_c(int lane, int i, int *row, int *tok) {
    *row = (lane >> 2) + 8 * (i >> 1);
    *tok = 2 * (lane & 3) + (i & 1);
}

/* The PTX layout taken literally on two k16 halves (no permutation): also right. */
static void nat_a(int lane, int s, int r, int h, int *row, int *k) {
    *row = (lane >> 2) + 8 * (r & 1);
    *k = 16 * s + 2 * (lane & 3) + h + 8 * (r >> 1);
}
static void nat_b(int lane, int s, int r, int h, int *tok, int *k) {
    *tok = lane >> 2;
    *k = 16 * s + 2 * (lane & 3) + h + 8 * r;
}

/* Wrong on purpose: the lane split transposed (grp = lane & 7, tig = lane >> 3). */
static void bad_lane_a(int lane, int s, int r, int h, int *row, int *k) {
    *row = (lane & 7) + 8 * (r & 1);
    *k = 8 * (lane >> 3) + 2 * (2 * s + (r >> 1)) + h;
}
static void bad_lane_b(int lane, int s, int r, int h, int *tok, int *k) {
    *tok = lane & 7;
    *k = 8 * (lane >> 3) + 2 * (2 * s + r) + h;
}
/* Wrong: A registers 1 and 2 exchanged (row + 8 confused with k + 8). */
static void bad_a12(int lane, int s, int r, int h, int *row, int *k) {
    *row = (lane >> 2) + 8 * (r >> 1);
    *k = 8 * (lane & 3) + 2 * (2 * s + (r & 1)) + h;
}
/* Wrong: B's two words in the other order (A and B permute k differently). */
static void bad_bw(int lane, int s, int r, int h, int *tok, int *k) {
    *tok = lane >> 2;
    *k = 8 * (lane & 3) + 2 * (2 * s + 1 - r) + h;
}
/* Wrong: the accumulator read transposed (c1 and c2 exchanged). */
static void bad_c(int lane, int i, int *row, int *tok) {
    *row = (lane >> 2) + 8 * (i & 1);
    *tok = 2 * (lane & 3) + (i >> 1);
}

/* Emulates one warp over one 16-row x 8-token x 32-k chunk under map and
 * returns the number of wrong or missing outputs (0: the mapping is right).
 * Values are small integers, so every product and sum is exact. */
static int emulate_map(const gm_map *m, unsigned seed) {
    double A[16][32], X[8][32], ref[16][8], D[16][8], out[16][8];
    int hits[16][8];
    for (int r = 0; r < 16; ++r)
        for (int k = 0; k < 32; ++k) A[r][k] = (double)((int)((seed = seed * 1103515245u + 12345u) >> 16) % 9 - 4);
    for (int t = 0; t < 8; ++t)
        for (int k = 0; k < 32; ++k) X[t][k] = (double)((int)((seed = seed * 1103515245u + 12345u) >> 16) % 9 - 4);
    for (int r = 0; r < 16; ++r)
        for (int t = 0; t < 8; ++t) {
            ref[r][t] = 0;
            for (int k = 0; k < 32; ++k) ref[r][t] += A[r][k] * X[t][k];
            D[r][t] = 0, out[r][t] = NAN, hits[r][t] = 0;
        }
    int bad = 0;
    for (int s = 0; s < 2; ++s) {
        /* The logical operands the tensor core sees, assembled from every lane. */
        double Al[16][16], Bl[16][8];
        int seenA[16][16] = {{0}}, seenB[16][8] = {{0}};
        for (int lane = 0; lane < 32; ++lane) {
            for (int r = 0; r < 4; ++r)
                for (int h = 0; h < 2; ++h) {
                    int row, k, lr, lk;
                    m->a_src(lane, s, r, h, &row, &k);
                    ptx_a(lane, 2 * r + h, &lr, &lk);
                    if (row < 0 || row >= 16 || k < 0 || k >= 32) return -1;
                    Al[lr][lk] = A[row][k];
                    ++seenA[lr][lk];
                }
            for (int r = 0; r < 2; ++r)
                for (int h = 0; h < 2; ++h) {
                    int tok, k, lk, lc;
                    m->b_src(lane, s, r, h, &tok, &k);
                    ptx_b(lane, 2 * r + h, &lk, &lc);
                    if (tok < 0 || tok >= 8 || k < 0 || k >= 32) return -1;
                    Bl[lk][lc] = X[tok][k];
                    ++seenB[lk][lc];
                }
        }
        /* The PTX layouts cover each operand element exactly once. */
        for (int i = 0; i < 16; ++i)
            for (int j = 0; j < 16; ++j) bad += seenA[i][j] != 1 || (j < 8 && seenB[i][j] != 1);
        for (int r = 0; r < 16; ++r)
            for (int t = 0; t < 8; ++t)
                for (int k = 0; k < 16; ++k) D[r][t] += Al[r][k] * Bl[k][t];
    }
    /* Each lane's accumulators per the C layout, stored where the epilogue says. */
    for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < 4; ++i) {
            int r, c, row, tok;
            ptx_c(lane, i, &r, &c);
            m->c_dst(lane, i, &row, &tok);
            if (row < 0 || row >= 16 || tok < 0 || tok >= 8) return -1;
            out[row][tok] = D[r][c];
            ++hits[row][tok];
        }
    for (int r = 0; r < 16; ++r)
        for (int t = 0; t < 8; ++t) bad += hits[r][t] != 1 || out[r][t] != ref[r][t];
    return bad;
}

static void test_fragment_mapping(void) {
    const gm_map good[] = {
        {"template (k permuted for 16-byte loads)", tpl_a, tpl_b, tpl_c},
        {"PTX layout as written", nat_a, nat_b, tpl_c},
    };
    const gm_map wrong[] = {
        {"lane split transposed", bad_lane_a, bad_lane_b, tpl_c},
        {"A regs 1 and 2 exchanged", bad_a12, tpl_b, tpl_c},
        {"B words exchanged", tpl_a, bad_bw, tpl_c},
        {"C read transposed", tpl_a, tpl_b, bad_c},
    };
    for (unsigned seed = 1; seed <= 3; ++seed) {
        for (size_t i = 0; i < sizeof good / sizeof good[0]; ++i) {
            int bad = emulate_map(&good[i], seed);
            CHECK_MSG(bad == 0, "mapping '%s': %d wrong outputs", good[i].name, bad);
        }
        for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; ++i) {
            int bad = emulate_map(&wrong[i], seed);
            CHECK_MSG(bad != 0, "the emulation did not catch the wrong mapping '%s'", wrong[i].name);
        }
    }
}

/* ---- (b) renders ----------------------------------------------------------------- */
static const struct { const char *name; int d, f; } kShapes[] = {
    {"llama2-7b", 4096, 11008}, {"llama2-13b", 5120, 13824}, {"llama3-8b", 4096, 14336},
    {"slice20", 3272, 11008},   {"slice25", 3072, 11008},    {"slice30", 2864, 11008},
};
#define N_SHAPES (int)(sizeof kShapes / sizeof kShapes[0])

static sprig_plan *render(sprig_gen *gen, int d, int f, const char *dtype, int batch, int g, const char *params,
                          sprig_status *st) {
    sprig_request req = {"gather_gemm", d, f, dtype, batch, g, params};
    sprig_plan *plan = NULL;
    *st = sprig_gen_render(gen, &req, &plan);
    return plan;
}

static unsigned ceil_div(unsigned a, unsigned b) { return (a + b - 1) / b; }

/* Defaults: 4 warps = 1 row group x 4 K slices, 1 m tile: 16 rows per CTA. */
static void check_default_plan(const sprig_plan *p, int d, int f, const char *dtype, int B, int up) {
    CHECK(p->n_kernels >= 1 && strcmp(p->kernels[0].name, "sprig_gather_gemm") == 0);
    CHECK(p->kernels[0].block[0] == 128 && p->kernels[0].block[1] == 1);
    CHECK_MSG(p->kernels[0].grid[0] == ceil_div(up ? f : d, 16), "grid.x %u", p->kernels[0].grid[0]);
    CHECK(p->kernels[0].grid[2] == 1); /* n_tiles=0: every token tile in one warp */
    CHECK(sp_contains(p->source, "#error \"gather_gemm needs sm_80 or newer"));
    CHECK(sp_contains(p->source, strcmp(dtype, "bf16") == 0 ? ".f32.bf16.bf16.f32" : ".f32.f16.f16.f32"));
    char def[64];
    snprintf(def, sizeof def, "#define BATCH %d\n", B);
    CHECK(sp_contains(p->source, def));
    if (up) {
        CHECK(p->n_kernels == 1 && p->workspace_bytes == 0 && p->kernels[0].grid[1] == 1);
    } else {
        unsigned splits = p->kernels[0].grid[1];
        CHECK_MSG(splits > 1 && splits <= 32, "auto splits %u", splits);
        CHECK(p->n_kernels == 2 && strcmp(p->kernels[1].name, "sprig_gather_gemm_finalize") == 0);
        CHECK(p->workspace_bytes == (size_t)B * d * 4); /* reduce=atomic: one [B][d] sum */
        CHECK(p->kernels[1].grid[0] * p->kernels[1].block[0] * 4 >= (unsigned)(B * d));
    }
}

static void test_renders(sprig_gen *gen) {
    static const int batches[] = {8, 16, 32, 64}, gs[] = {16, 32, 64, 128};
    static const char *const dtypes[] = {"fp16", "bf16"}, *const stages[] = {"stage=upgate", "stage=down"};
    int n = 0;
    for (int s = 0; s < N_SHAPES; ++s)
        for (int t = 0; t < 2; ++t)
            for (int b = 0; b < 4; ++b)
                for (int gi = 0; gi < 4; ++gi)
                    for (int st = 0; st < 2; ++st) {
                        sprig_status rc;
                        sprig_plan *p = render(gen, kShapes[s].d, kShapes[s].f, dtypes[t], batches[b], gs[gi],
                                               stages[st], &rc);
                        CHECK_MSG(p && rc == SPRIG_OK, "%s %s B=%d g=%d %s: %s", kShapes[s].name, dtypes[t],
                                  batches[b], gs[gi], stages[st], sprig_last_error());
                        if (p) check_default_plan(p, kShapes[s].d, kShapes[s].f, dtypes[t], batches[b], st == 0);
                        sprig_plan_free(p);
                        ++n;
                    }
    CHECK(n == N_SHAPES * 2 * 4 * 4 * 2);

    /* Same request, same bytes. */
    sprig_status rc;
    sprig_plan *a = render(gen, 3272, 11008, "bf16", 24, 32, "stage=down,reduce=deterministic", &rc);
    sprig_plan *b = render(gen, 3272, 11008, "bf16", 24, 32, "stage=down,reduce=deterministic", &rc);
    CHECK(a && b && a->source_len == b->source_len && memcmp(a->source, b->source, a->source_len) == 0);
    if (a) {
        /* Deterministic: one [B][d] slice per split. */
        CHECK(a->workspace_bytes == (size_t)a->kernels[0].grid[1] * 24 * 3272 * 4);
        CHECK(sp_contains(a->key, "reduce=deterministic"));
    }
    sprig_plan_free(a);
    sprig_plan_free(b);

    /* One split: y stored directly, no workspace, no finalize. */
    a = render(gen, 4096, 11008, "fp16", 16, 32, "stage=down,splits=1", &rc);
    CHECK(a && a->n_kernels == 1 && a->workspace_bytes == 0 && a->kernels[0].grid[1] == 1);
    sprig_plan_free(a);
    /* Token tiles over grid z: 4 tiles of 8 in batch 32, one per warp. */
    a = render(gen, 4096, 11008, "fp16", 32, 32, "n_tiles=1", &rc);
    CHECK(a && a->kernels[0].grid[2] == 4);
    sprig_plan_free(a);
    /* 8 warps as 1 row group x 8 K slices, 2 m tiles: 32 rows per CTA. */
    a = render(gen, 4096, 11008, "fp16", 8, 32, "warps=8,kwarps=8,m_tiles=2", &rc);
    CHECK(a && a->kernels[0].grid[0] == 11008 / 32 && a->kernels[0].block[0] == 256);
    sprig_plan_free(a);
}

/* ---- (c) refusals ------------------------------------------------------------------- */
static void test_refusals(sprig_gen *gen) {
    struct {
        int batch, g;
        const char *params, *expect;
    } bad[] = {
        {16, 1, "", "gather_gemm needs g to be a multiple of 16; use gather_upgate/gather_down for g=1"},
        {16, 1, "stage=down", "gather_gemm needs g to be a multiple of 16"},
        {16, 32, "warps=2,kwarps=4", "kwarps=4 exceeds warps=2"},
        {16, 32, "n_tiles=4", "n_tiles=4 exceeds the 2 token tile(s)"},
        {16, 32, "stage=upgate,splits=4", "splits applies to stage=down only"},
        {16, 32, "reduce=deterministic", "reduce applies to stage=down only"},
        {64, 32, "warps=8,kwarps=8,m_tiles=2,n_tiles=8", "shared memory"},
        {64, 32, "m_tiles=2,k_unroll=4", "would spill"},
        {16, 32, "splits=5,stage=down", "splits=5 is out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        sprig_status rc;
        sprig_plan *p = render(gen, 4096, 11008, "fp16", bad[i].batch, bad[i].g, bad[i].params, &rc);
        CHECK_MSG(p == NULL && rc == SPRIG_E_INVALID, "case %zu (%s)", i, bad[i].params);
        CHECK_MSG(sp_contains(sprig_last_error(), bad[i].expect), "case %zu: got '%s'", i, sprig_last_error());
        sprig_plan_free(p);
    }
    /* A batch below 8 is padded, not refused. */
    sprig_status rc;
    sprig_plan *p = render(gen, 4096, 11008, "fp16", 3, 16, "stage=down", &rc);
    CHECK(p && rc == SPRIG_OK);
    sprig_plan_free(p);
}

/* ---- (d) NVRTC ---------------------------------------------------------------------- */
static void test_compile(sprig_gen *gen) {
    static const char *const archs[] = {"sm_80", "sm_90"};
    static const char *const stages[] = {"stage=upgate", "stage=down"};
    static const int shapes[] = {0, 3}; /* llama2-7b; d = 3272 (K tail, rows past d) */
    static const int batches[] = {16, 64};
    for (int a = 0; a < 2; ++a)
        for (int s = 0; s < 2; ++s)
            for (int si = 0; si < 2; ++si)
                for (int b = 0; b < 2; ++b)
                    for (int t = 0; t < 2; ++t) {
                        const char *dtype = t ? "bf16" : "fp16";
                        sprig_status rc;
                        sprig_plan *p = render(gen, kShapes[shapes[si]].d, kShapes[shapes[si]].f, dtype,
                                               batches[b], 32, stages[s], &rc);
                        CHECK(p != NULL);
                        if (!p) continue;
                        sprig_compile_opts o = {archs[a], 0, NULL, 0};
                        sprig_binary *bin = NULL;
                        rc = sprig_compile(p, &o, &bin);
                        CHECK_MSG(rc == SPRIG_OK, "%s %s: %s", archs[a], p->key, sprig_last_error());
                        for (int k = 0; bin && k < bin->n_kernels; ++k) {
                            const sprig_resources *r = &bin->res[k];
                            CHECK_MSG(r->registers > 0 && r->registers <= 255 && r->spill_store_bytes == 0 &&
                                          r->spill_load_bytes == 0 && r->stack_bytes == 0,
                                      "%s %s %s: %d registers, %d/%d bytes spilled, %d bytes stack", archs[a],
                                      p->key, bin->kernel_names[k], r->registers, r->spill_store_bytes,
                                      r->spill_load_bytes, r->stack_bytes);
                            if (a == 1 && si == 0 && b == 0 && t == 0)
                                printf("  %s %s %s: %d registers, %d bytes smem, 0 spills\n", archs[a],
                                       stages[s], bin->kernel_names[k], r->registers, r->static_smem_bytes);
                        }
                        sprig_binary_free(bin);
                        sprig_plan_free(p);
                    }

    /* The PTX: bf16 mma.sync m16n8k16 and 16-byte streaming weight loads. */
    for (int s = 0; s < 2; ++s) {
        sprig_status rc;
        sprig_plan *p = render(gen, 3272, 11008, "bf16", 16, 16, stages[s], &rc);
        sprig_compile_opts o = {"compute_80", 1, NULL, 0};
        sprig_binary *bin = NULL;
        CHECK(p && sprig_compile(p, &o, &bin) == SPRIG_OK);
        if (bin) {
            CHECK(sp_contains(bin->image, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"));
            CHECK(sp_contains(bin->image, "ld.global.cs.v4.u32"));
        }
        sprig_binary_free(bin);
        sprig_plan_free(p);
    }

    /* sm_75 has no bf16 mma: the template's #error, as a compile failure. */
    for (int s = 0; s < 2; ++s) {
        sprig_status rc;
        sprig_plan *p = render(gen, 4096, 11008, "fp16", 16, 32, stages[s], &rc);
        sprig_compile_opts o = {"sm_75", 0, NULL, 0};
        sprig_binary *bin = NULL;
        rc = p ? sprig_compile(p, &o, &bin) : SPRIG_E_INTERNAL;
        CHECK_MSG(rc == SPRIG_E_COMPILE, "sm_75 gave %s", sprig_status_name(rc));
        CHECK_MSG(sp_contains(sprig_last_error(), "needs sm_80"), "got: %s", sprig_last_error());
        sprig_binary_free(bin);
        sprig_plan_free(p);
    }
}

/* ---- (e) the kernels on the CPU emulator ------------------------------------------------ */
static unsigned g_rng = 12345u;
static double urand(void) {
    g_rng = g_rng * 1664525u + 1013904223u;
    return (double)(g_rng >> 8) / 16777216.0 * 2.0 - 1.0; /* [-1, 1) */
}

/* Values rounded to the storage type: the float copy the reference reads and the bits the kernel reads. */
static void fill(int bf16, double scale, size_t n, float *vals, uint16_t *bits) {
    for (size_t i = 0; i < n; ++i) {
        bits[i] = sp_ref_to_bits(bf16, (float)(scale * urand()));
        vals[i] = sp_ref_from_bits(bf16, bits[i]);
    }
}

/* ‖out − ref‖ / ‖ref‖ over rows x cols (row strides ld); NaN counts as a failure. */
static double rel_err(int bf16, const uint16_t *out, int ld_out, const double *ref, int ld_ref, int rows, int cols,
                      int *nan) {
    double num = 0, den = 0;
    *nan = 0;
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
            double o = sp_ref_from_bits(bf16, out[(size_t)r * ld_out + c]), e = ref[(size_t)r * ld_ref + c];
            if (!isfinite(o)) ++*nan;
            num += (o - e) * (o - e), den += e * e;
        }
    return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

typedef struct emu_case {
    int d, f, B, g, bf16;
    double frac;     /* probability that an expert is active for a token */
    const char *up_params, *down_params;
} emu_case;

/* Builds and loads a plan for the emulator; NULL (and a counted failure) if impossible. */
static sp_emu_module *emu_build(sprig_gen *gen, const emu_case *c, const char *params, sprig_plan **plan) {
    sprig_status rc;
    *plan = render(gen, c->d, c->f, c->bf16 ? "bf16" : "fp16", c->B, c->g, params, &rc);
    CHECK_MSG(*plan != NULL, "render [%s]: %s", params, sprig_last_error());
    if (!*plan) return NULL;
    sp_emu_module *m = NULL;
    rc = sp_emu_module_load(*plan, &m);
    CHECK_MSG(rc == SPRIG_OK, "emulator build [%s]: %s", params, sprig_last_error());
    return m;
}

/* One MLP through stage=upgate then stage=down (fed the upgate kernel's own h),
 * each launched twice over poisoned outputs: the second launch also checks
 * that the atomic workspace was left zeroed. */
static void emu_run_case(sprig_gen *gen, const emu_case *c) {
    const int d = c->d, f = c->f, B = c->B, g = c->g, E = f / g, bf16 = c->bf16;
    float *Wg = malloc(sizeof(float) * f * d), *Wu = malloc(sizeof(float) * f * d),
          *Wd = malloc(sizeof(float) * d * f), *x = malloc(sizeof(float) * B * d);
    uint16_t *Wgb = malloc(2u * f * d), *Wub = malloc(2u * f * d), *Wdb = malloc(2u * d * f),
             *xb = malloc(2u * B * d), *h = malloc(2u * B * f), *y = malloc(2u * B * d);
    unsigned char *mask = malloc((size_t)B * E);
    int *ids = malloc(sizeof(int) * B * E), *counts = malloc(sizeof(int) * B), *uids = malloc(sizeof(int) * E);
    double *hd = malloc(sizeof(double) * B * f), *hc = malloc(sizeof(double) * B * f),
           *yr = malloc(sizeof(double) * B * d), *hk = malloc(sizeof(double) * B * f);
    fill(bf16, 1.0 / sqrt(d), (size_t)f * d, Wg, Wgb);
    fill(bf16, 1.0 / sqrt(d), (size_t)f * d, Wu, Wub);
    fill(bf16, 1.0 / sqrt(f), (size_t)d * f, Wd, Wdb);
    fill(bf16, 2.0, (size_t)B * d, x, xb);
    for (int i = 0; i < B * E; ++i) mask[i] = (urand() + 1.0) * 0.5 < c->frac;
    int U = 0;
    sp_ref_routing(mask, B, E, ids, counts, uids, &U);
    for (int j = U; j < E; ++j) uids[j] = 1 << 28; /* slots past the union must never be read */
    sp_ref_swiglu(Wg, Wu, x, mask, B, d, f, g, hd);
    sp_ref_compact_h(hd, uids, U, B, f, g, hc);

    sprig_plan *pu = NULL, *pd = NULL;
    sp_emu_module *mu = emu_build(gen, c, c->up_params, &pu);
    sp_emu_module *md = emu_build(gen, c, c->down_params, &pd);
    float *ws = pd ? calloc(pd->workspace_bytes / 4 + 1, sizeof(float)) : NULL; /* zeroed once (the ABI) */
    char what[160];
    snprintf(what, sizeof what, "d=%d f=%d %s B=%d g=%d frac=%.2f U=%d", d, f, bf16 ? "bf16" : "fp16", B, g,
             c->frac, U);
    for (int run = 0; mu && md && run < 2; ++run) {
        memset(h, 0xff, 2u * B * f); /* NaN poison */
        /* arguments bound by name: the plan's declared order, checked */
        sp_kargs ku, kd;
        sp_kargs_init(&ku, pu);
        fh_ptr(&ku, "Wg", Wgb), fh_ptr(&ku, "Wu", Wub), fh_ptr(&ku, "x", xb);
        fh_ptr(&ku, "union_ids", uids), fh_ptr(&ku, "union_count", &U), fh_ptr(&ku, "mask", mask), fh_ptr(&ku, "h", h);
        sp_kargs_init(&kd, pd);
        fh_ptr(&kd, "Wd", Wdb), fh_ptr(&kd, "h", h), fh_ptr(&kd, "union_ids", uids), fh_ptr(&kd, "union_count", &U);
        fh_ptr(&kd, "ws", ws), fh_ptr(&kd, "y", y);
        void **up_args = NULL, **down_args = NULL;
        CHECK_MSG(sp_kargs_finish(&ku, &up_args) == SPRIG_OK && sp_kargs_finish(&kd, &down_args) == SPRIG_OK,
                  "%s: binding: %s", what, sprig_last_error());
        if (!up_args || !down_args) break;
        CHECK_MSG(sp_emu_plan_launch(mu, pu, up_args) == SPRIG_OK, "%s: upgate: %s", what, sprig_last_error());
        int nan = 0;
        double e = rel_err(bf16, h, f, hc, f, B, U * g, &nan);
        CHECK_MSG(e < 1e-2 && nan == 0, "%s [%s]: h rel err %.3g, %d NaN", what, c->up_params, e, nan);
        int zeros_ok = 1, tail_ok = 1;
        for (int t = 0; t < B; ++t) {
            for (int j = 0; j < U; ++j)
                if (!mask[t * E + uids[j]])
                    for (int i = 0; i < g; ++i) zeros_ok &= h[(size_t)t * f + j * g + i] == 0;
            for (int k = U * g; k < f; ++k) tail_ok &= h[(size_t)t * f + k] == 0xffff;
        }
        CHECK_MSG(zeros_ok, "%s: h not exactly 0 for a masked expert", what);
        CHECK_MSG(tail_ok, "%s: h written past the union", what);

        /* down, fed the kernel's own h: reference from that h (rounded as stored). */
        for (int t = 0; t < B; ++t)
            for (int k = 0; k < f; ++k) hk[(size_t)t * f + k] = 0;
        for (int t = 0; t < B; ++t)
            for (int j = 0; j < U; ++j)
                for (int i = 0; i < g; ++i)
                    hk[(size_t)t * f + uids[j] * g + i] = sp_ref_from_bits(bf16, h[(size_t)t * f + j * g + i]);
        sp_ref_down(Wd, hk, NULL, B, d, f, g, yr);
        memset(y, 0xff, 2u * B * d);
        CHECK_MSG(sp_emu_plan_launch(md, pd, down_args) == SPRIG_OK, "%s: down: %s", what, sprig_last_error());
        e = rel_err(bf16, y, d, yr, d, B, d, &nan);
        if (U == 0) {
            int all_zero = 1;
            for (int i = 0; i < B * d; ++i) all_zero &= y[i] == 0;
            CHECK_MSG(all_zero, "%s [%s]: empty union must give y = 0", what, c->down_params);
        } else {
            CHECK_MSG(e < 1e-2 && nan == 0, "%s [%s]: y rel err %.3g, %d NaN", what, c->down_params, e, nan);
        }
        if (run == 0) printf("  emu %s [%s] [%s]: y rel err %.2e\n", what, c->up_params, c->down_params, e);
    }
    if (pd && ws && sp_contains(pd->key, "reduce=atomic") && pd->n_kernels == 2) {
        int zero = 1;
        for (size_t i = 0; i < pd->workspace_bytes / 4; ++i) zero &= ws[i] == 0.0f;
        CHECK_MSG(zero, "%s: the atomic workspace was not left zeroed", what);
    }
    sp_emu_module_free(mu);
    sp_emu_module_free(md);
    sprig_plan_free(pu);
    sprig_plan_free(pd);
    free(ws);
    free(Wg), free(Wu), free(Wd), free(x), free(Wgb), free(Wub), free(Wdb), free(xb), free(h), free(y);
    free(mask), free(ids), free(counts), free(uids), free(hd), free(hc), free(yr), free(hk);
}

static void test_emulated(sprig_gen *gen) {
    /* d = 72: K tail of 8 past the last 32-chunk, rows past d in the last
     * 16-row tile; B = 12 and 5: padded token tiles. */
    const emu_case cases[] = {
        {72, 256, 12, 16, 0, 0.5, "stage=upgate", "stage=down"},
        {72, 256, 12, 32, 1, 0.5, "stage=upgate,kwarps=4", "stage=down,splits=3,reduce=deterministic"},
        {96, 192, 16, 16, 0, 0.3, "stage=upgate,warps=2,kwarps=1,m_tiles=2,k_unroll=1",
         "stage=down,splits=1,kwarps=4,k_unroll=4"},
        {72, 256, 5, 64, 1, 0.7, "stage=upgate,n_tiles=1,k_unroll=4", "stage=down,splits=2,m_tiles=2"},
        {80, 128, 24, 16, 0, 0.6, "stage=upgate,n_tiles=1,warps=8,kwarps=2",
         "stage=down,n_tiles=2,splits=4,warps=8,kwarps=8"},
        {72, 256, 8, 32, 0, 0.0, "stage=upgate", "stage=down"},                 /* empty union */
        {72, 256, 8, 32, 1, 0.0, "stage=upgate", "stage=down,splits=1"},        /* empty union, direct */
        {72, 256, 9, 16, 0, 1.0, "stage=upgate,m_tiles=2,kwarps=2", "stage=down,reduce=deterministic,splits=2,kwarps=2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) emu_run_case(gen, &cases[i]);
}

int main(void) {
    test_fragment_mapping();
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    if (!gen) return sp_test_finish("test_gather_gemm", 0);
    test_renders(gen);
    test_refusals(gen);
    test_compile(gen);
    test_emulated(gen);
    sprig_gen_close(gen);
    return sp_test_finish("test_gather_gemm", 0);
}
