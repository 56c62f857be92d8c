/* Graph capture on an executor (sp_exec_capture_begin/_end, graph_launch,
 * graph_free; exec/sp_exec.h), on the CPU emulator's executor with real
 * generated kernels: rmsnorm (mode=embed: the row to embed is read from
 * device memory, as the runtime reads its token) feeding dense_gemv op=up.
 *
 * Shown: a capture runs nothing (poisoned outputs stay poisoned); a replay
 * computes what direct launches compute (bit for bit) and what a float64
 * reference says; the two captured launches replay in order (the second
 * reads the first's output, poisoned before the replay); argument values are
 * snapshotted at capture (a local pointer and a local float changed after the
 * capture do not reach the replay); device memory changed between replays is
 * seen; operations other than launches are refused while capturing and leave
 * the capture intact; a free while capturing fails the capture; capture_begin
 * twice is refused. The emulator's parameter-size table is checked on the
 * real plans and on hand-written kernels (a later kernel taking a prefix of
 * the argument list records and replays; disagreeing kernels are refused).
 *
 * The CUDA executor implements the same contract with stream capture; it
 * cannot run here (no GPU), so this test covers the emulator only. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_runtime.h"
#include "exec_emu.h"
#include "sp_half.h"
#include "sp_reference.h"
#include "sprig.h"
#include "test_util.h"

#define D 64   /* hidden size */
#define F 96   /* rows of the GEMV */
#define V 5    /* rows of the embedding table */
#define EPS 1e-5f

static int checks;

static uint32_t rng_state = 12345u;
static float urand(float lo, float hi) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return lo + (hi - lo) * (float)(rng_state & 0xffffffu) / (float)0x1000000;
}

/* Host copies of the inputs (values already rounded to fp16) and their fp16 bits. */
typedef struct inputs {
    float emb[V * D], w[D], W[F * D];
    uint16_t emb16[V * D], w16[D], W16[F * D];
} inputs;

static void random_inputs(inputs *in) {
    for (int i = 0; i < V * D; ++i) in->emb16[i] = sp_f32_to_f16(urand(-2.f, 2.f));
    for (int i = 0; i < D; ++i) in->w16[i] = sp_f32_to_f16(urand(0.5f, 1.5f));
    for (int i = 0; i < F * D; ++i) in->W16[i] = sp_f32_to_f16(urand(-0.25f, 0.25f));
    for (int i = 0; i < V * D; ++i) in->emb[i] = sp_f16_to_f32(in->emb16[i]);
    for (int i = 0; i < D; ++i) in->w[i] = sp_f16_to_f32(in->w16[i]);
    for (int i = 0; i < F * D; ++i) in->W[i] = sp_f16_to_f32(in->W16[i]);
}

/* float64 reference of the pair: out = rmsnorm(emb[row]) * w rounded to fp16,
 * y = W out. */
static void reference(const inputs *in, int row, float eps, float *out, double *y) {
    const float *x = in->emb + (size_t)row * D;
    double ss = 0;
    for (int i = 0; i < D; ++i) ss += (double)x[i] * x[i];
    const double r = 1.0 / sqrt(ss / D + eps);
    for (int i = 0; i < D; ++i) out[i] = sp_ref_round(0, (float)(x[i] * r * in->w[i]));
    sp_ref_gemv(in->W, out, y, F, D, 1);
}

/* Device buffers of the pair. */
typedef struct bufs {
    sp_dptr x, emb, row, w, out, W, y, y2;
} bufs;

typedef struct fixture {
    sprig_gen *gen;
    sp_exec *e;
    sprig_plan *norm, *gemv;
    sp_exec_module *norm_m, *gemv_m;
    bufs b;
    inputs in;
} fixture;

static sprig_plan *render(sprig_gen *gen, const char *family, int d, int f, const char *params) {
    sprig_request req = {family, d, f, "fp16", 1, 1, params};
    sprig_plan *plan = NULL;
    if (sprig_gen_render(gen, &req, &plan) != SPRIG_OK)
        fprintf(stderr, "rendering %s: %s\n", family, sprig_last_error());
    return plan;
}

static int setup(fixture *fx) {
    memset(fx, 0, sizeof *fx);
    if (sprig_gen_open(&fx->gen, NULL) != SPRIG_OK || sp_exec_open_emu(&fx->e) != SPRIG_OK) return 0;
    /* the emulator's parameters of the GPU backend (backend/gpu_backend.c) */
    fx->norm = render(fx->gen, "rmsnorm", D, D, "mode=embed,threads=64");
    fx->gemv = render(fx->gen, "dense_gemv", D, F, "op=up,threads=64,rows_per_warp=4");
    if (!fx->norm || !fx->gemv) return 0;
    if (sp_exec_load(fx->e, fx->norm, &fx->norm_m) != SPRIG_OK ||
        sp_exec_load(fx->e, fx->gemv, &fx->gemv_m) != SPRIG_OK)
        return 0;
    bufs *b = &fx->b;
    const struct {
        sp_dptr *p;
        size_t n;
    } all[] = {{&b->x, D * 4}, {&b->emb, V * D * 2}, {&b->row, 4}, {&b->w, D * 2},
               {&b->out, D * 2}, {&b->W, F * D * 2}, {&b->y, F * 2}, {&b->y2, F * 2}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        if (sp_exec_alloc(fx->e, all[i].p, all[i].n) != SPRIG_OK) return 0;
    return 1;
}

static void teardown(fixture *fx) {
    if (fx->e) {
        const sp_dptr *p = &fx->b.x;
        for (size_t i = 0; i < sizeof fx->b / sizeof *p; ++i) sp_exec_free(fx->e, p[i]);
        sp_exec_unload(fx->e, fx->norm_m);
        sp_exec_unload(fx->e, fx->gemv_m);
    }
    sp_exec_close(fx->e);
    sprig_plan_free(fx->norm);
    sprig_plan_free(fx->gemv);
    sprig_gen_close(fx->gen);
}

static int upload_inputs(fixture *fx, int row) {
    const bufs *b = &fx->b;
    return sp_exec_upload(fx->e, b->emb, fx->in.emb16, sizeof fx->in.emb16) == SPRIG_OK &&
           sp_exec_upload(fx->e, b->w, fx->in.w16, sizeof fx->in.w16) == SPRIG_OK &&
           sp_exec_upload(fx->e, b->W, fx->in.W16, sizeof fx->in.W16) == SPRIG_OK &&
           sp_exec_upload(fx->e, b->row, &row, sizeof row) == SPRIG_OK;
}

/* Launches the pair; `y` and `eps` are the caller's variables, so that the
 * argument arrays point at them as a real caller's would. (Raw argument
 * arrays on purpose: this tests the executor's contract -- values copied at
 * capture, read from the caller's memory otherwise -- below sp_kargs.) */
static sprig_status launch_pair(fixture *fx, sp_dptr *y, float *eps) {
    bufs *b = &fx->b;
    void *norm_args[] = {&b->x, &b->emb, &b->row, &b->w, &b->out, eps};
    void *gemv_args[] = {&b->W, &b->out, y};
    sprig_status s = sp_exec_launch(fx->e, fx->norm_m, fx->norm, norm_args);
    if (s == SPRIG_OK) s = sp_exec_launch(fx->e, fx->gemv_m, fx->gemv, gemv_args);
    return s;
}

static void download16(fixture *fx, sp_dptr p, uint16_t *h, size_t n) {
    CHECK(sp_exec_download(fx->e, h, p, n * 2) == SPRIG_OK);
}

static int all_poison(const uint16_t *h, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (h[i] != 0xFFFFu) return 0;
    return 1;
}

/* Largest |got - ref| / (1 + |ref|) (infinite on NaN). */
static double max_err(const uint16_t *got, const double *ref, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; ++i) {
        const double g = sp_f16_to_f32(got[i]), e = fabs(g - ref[i]) / (1.0 + fabs(ref[i]));
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

/* Checks y (and out) against the reference for `row`. */
static void check_against_ref(fixture *fx, sp_dptr y, int row, float eps, const char *what) {
    float out_ref[D];
    double y_ref[F], out_ref_d[D];
    reference(&fx->in, row, eps, out_ref, y_ref);
    for (int i = 0; i < D; ++i) out_ref_d[i] = out_ref[i];
    uint16_t got[F], out[D];
    download16(fx, y, got, F);
    download16(fx, fx->b.out, out, D);
    ++checks;
    const double ey = max_err(got, y_ref, F), eo = max_err(out, out_ref_d, D);
    CHECK_MSG(ey < 1e-2, "%s: y differs from the float64 reference by %g (relative)", what, ey);
    CHECK_MSG(eo < 1e-2, "%s: out differs from the float64 reference by %g (relative)", what, eo);
}

static void poison(fixture *fx, sp_dptr p, size_t bytes) { CHECK(sp_exec_fill(fx->e, p, 0xFF, bytes) == SPRIG_OK); }

/* Capture runs nothing; replay == direct == reference; order; device memory
 * changes between replays are seen; fresh inputs. */
static void test_replay(fixture *fx) {
    const bufs *b = &fx->b;
    random_inputs(&fx->in);
    CHECK(upload_inputs(fx, 2));
    sp_dptr y = b->y;
    float eps = EPS;
    /* direct launches, into y2 */
    sp_dptr y_direct = b->y2;
    CHECK(launch_pair(fx, &y_direct, &eps) == SPRIG_OK);
    CHECK(sp_exec_sync(fx->e) == SPRIG_OK);
    check_against_ref(fx, b->y2, 2, EPS, "direct launches");
    uint16_t direct[F];
    download16(fx, b->y2, direct, F);

    /* capture: nothing runs */
    poison(fx, b->x, D * 4);
    poison(fx, b->out, D * 2);
    poison(fx, b->y, F * 2);
    CHECK(sp_exec_capture_begin(fx->e) == SPRIG_OK);
    CHECK(launch_pair(fx, &y, &eps) == SPRIG_OK);
    sp_exec_graph *g = NULL;
    CHECK_MSG(sp_exec_capture_end(fx->e, &g) == SPRIG_OK && g, "%s", sprig_last_error());
    uint16_t h[F];
    download16(fx, b->out, h, D);
    ++checks;
    CHECK_MSG(all_poison(h, D), "the captured rmsnorm ran at capture time");
    download16(fx, b->y, h, F);
    CHECK_MSG(all_poison(h, F), "the captured GEMV ran at capture time");
    if (!g) return;

    /* replay: out is still poisoned, so the GEMV is right only if the rmsnorm ran first */
    CHECK(sp_exec_graph_launch(fx->e, g) == SPRIG_OK);
    CHECK(sp_exec_sync(fx->e) == SPRIG_OK);
    download16(fx, b->y, h, F);
    ++checks;
    CHECK_MSG(memcmp(h, direct, sizeof h) == 0, "the replay differs from the direct launches");
    check_against_ref(fx, b->y, 2, EPS, "first replay");

    /* device memory between replays: another row (as the runtime's token), then new weights */
    int row = 4;
    CHECK(sp_exec_upload(fx->e, b->row, &row, sizeof row) == SPRIG_OK);
    poison(fx, b->y, F * 2);
    CHECK(sp_exec_graph_launch(fx->e, g) == SPRIG_OK);
    check_against_ref(fx, b->y, 4, EPS, "replay after a new row");
    download16(fx, b->y, h, F);
    ++checks;
    CHECK_MSG(memcmp(h, direct, sizeof h) != 0, "the replay did not follow the new row");

    random_inputs(&fx->in);
    CHECK(upload_inputs(fx, 1));
    poison(fx, b->out, D * 2);
    poison(fx, b->y, F * 2);
    CHECK(sp_exec_graph_launch(fx->e, g) == SPRIG_OK);
    check_against_ref(fx, b->y, 1, EPS, "replay on fresh random inputs");
    sp_exec_graph_free(fx->e, g);
}

/* Argument values are copied at capture: a local pointer and a local float
 * changed afterwards do not reach the replay. */
static void test_snapshot(fixture *fx) {
    const bufs *b = &fx->b;
    random_inputs(&fx->in);
    CHECK(upload_inputs(fx, 3));
    sp_dptr dst = b->y;
    float eps = EPS;
    CHECK(sp_exec_capture_begin(fx->e) == SPRIG_OK);
    CHECK(launch_pair(fx, &dst, &eps) == SPRIG_OK);
    sp_exec_graph *g = NULL;
    CHECK(sp_exec_capture_end(fx->e, &g) == SPRIG_OK && g);
    dst = b->y2;  /* what the argument array points at now */
    eps = 1e3f;   /* would scale the output down by ~30 */
    poison(fx, b->y, F * 2);
    poison(fx, b->y2, F * 2);
    if (g) CHECK(sp_exec_graph_launch(fx->e, g) == SPRIG_OK);
    check_against_ref(fx, b->y, 3, EPS, "replay after changing the captured locals");
    uint16_t h[F];
    download16(fx, b->y2, h, F);
    ++checks;
    CHECK_MSG(all_poison(h, F), "the replay wrote through the pointer as changed after the capture");
    sp_exec_graph_free(fx->e, g);
}

/* Everything but launches is refused while capturing and leaves the capture
 * intact; capture_begin twice is refused; capture_end without a capture too. */
static void test_refusals(fixture *fx) {
    const bufs *b = &fx->b;
    sp_exec *e = fx->e;
    random_inputs(&fx->in);
    CHECK(upload_inputs(fx, 0));
    sp_exec_graph *g = NULL;
    ++checks;
    CHECK(sp_exec_capture_end(e, &g) == SPRIG_E_INVALID && !g);
    CHECK(sp_contains(sprig_last_error(), "not capturing"));

    CHECK(sp_exec_capture_begin(e) == SPRIG_OK);
    CHECK(sp_exec_capture_begin(e) == SPRIG_E_INVALID);
    CHECK(sp_contains(sprig_last_error(), "already capturing"));
    sp_dptr y = b->y;
    float eps = EPS;
    CHECK(launch_pair(fx, &y, &eps) == SPRIG_OK);

    int row = 1;
    CHECK(sp_exec_upload(e, b->row, &row, sizeof row) == SPRIG_E_INVALID);
    CHECK_MSG(sp_contains(sprig_last_error(), "upload while capturing"), "%s", sprig_last_error());
    sp_dptr p = 1;
    CHECK(sp_exec_alloc(e, &p, 64) == SPRIG_E_INVALID && p == 0);
    uint16_t h[F];
    CHECK(sp_exec_download(e, h, b->y, sizeof h) == SPRIG_E_INVALID);
    CHECK(sp_exec_fill(e, b->y, 0, F * 2) == SPRIG_E_INVALID);
    sp_exec_module *m = NULL;
    CHECK(sp_exec_load(e, fx->gemv, &m) == SPRIG_E_INVALID && !m);
    CHECK(sp_exec_sync(e) == SPRIG_E_INVALID);
    sp_dptr W = b->W, out = b->out;
    void *gemv_args[] = {&W, &out, &y};
    void **sets[] = {gemv_args};
    sp_timing t;
    CHECK(sp_exec_time(e, fx->gemv_m, fx->gemv, sets, 1, 0, 1, &t) == SPRIG_E_INVALID);
    CHECK(sp_exec_capture_end(e, &g) == SPRIG_OK && g);
    ++checks;

    /* the refused upload did nothing (row is still 0), and the capture holds the pair */
    poison(fx, b->out, D * 2);
    poison(fx, b->y, F * 2);
    if (g) CHECK(sp_exec_graph_launch(e, g) == SPRIG_OK);
    check_against_ref(fx, b->y, 0, EPS, "replay of a capture with refused operations in it");

    /* graph_launch is refused while capturing; graph_free is postponed, harmlessly */
    CHECK(sp_exec_capture_begin(e) == SPRIG_OK);
    CHECK(sp_exec_graph_launch(e, g) == SPRIG_E_INVALID);
    CHECK(launch_pair(fx, &y, &eps) == SPRIG_OK);
    sp_exec_graph_free(e, g);
    g = NULL;
    CHECK_MSG(sp_exec_capture_end(e, &g) == SPRIG_OK && g, "%s", sprig_last_error());
    sp_exec_graph_free(e, g);
    g = NULL;

    /* free while capturing: postponed, and the capture fails saying why */
    sp_dptr tmp = 0;
    CHECK(sp_exec_alloc(e, &tmp, 256) == SPRIG_OK);
    CHECK(sp_exec_capture_begin(e) == SPRIG_OK);
    CHECK(launch_pair(fx, &y, &eps) == SPRIG_OK);
    sp_exec_free(e, tmp);
    CHECK(sp_exec_capture_end(e, &g) == SPRIG_E_INVALID && !g);
    CHECK_MSG(sp_contains(sprig_last_error(), "free while capturing"), "%s", sprig_last_error());

    /* the executor works on after a failed capture */
    CHECK(sp_exec_capture_begin(e) == SPRIG_OK);
    CHECK(sp_exec_capture_end(e, &g) == SPRIG_OK && g);
    if (g) CHECK(sp_exec_graph_launch(e, g) == SPRIG_OK); /* empty: runs nothing */
    sp_exec_graph_free(e, g);
    CHECK(sp_exec_upload(e, b->row, &row, sizeof row) == SPRIG_OK);
}

/* The emulator's per-kernel parameter sizes (what a recording copies). */
static void test_param_sizes(fixture *fx) {
    size_t s[SP_EMU_MAX_PARAMS];
    const sp_emu_module *norm = sp_exec_emu_module(fx->norm_m), *gemv = sp_exec_emu_module(fx->gemv_m);
    ++checks;
    /* sprig_rmsnorm(float *x, const T *src, const int *row, const T *w, T *out, float eps) */
    CHECK(sp_emu_plan_param_sizes(norm, s, SP_EMU_MAX_PARAMS) == 6);
    CHECK(s[0] == 8 && s[3] == 8 && s[4] == 8 && s[5] == sizeof(float));
    CHECK(sp_emu_plan_param_sizes(gemv, s, SP_EMU_MAX_PARAMS) == 3 && s[2] == 8);
    CHECK(sp_emu_kernel_param_sizes(gemv, 0, s, SP_EMU_MAX_PARAMS) == 3);
    CHECK(sp_emu_kernel_param_sizes(gemv, 1, s, SP_EMU_MAX_PARAMS) == -1);
}

static sprig_plan handmade(const char *src, const char *k0, const char *k1) {
    sprig_plan p;
    memset(&p, 0, sizeof p);
    p.family = (char *)"handmade";
    p.source = (char *)src;
    p.source_len = strlen(src);
    p.n_kernels = 2;
    snprintf(p.kernels[0].name, sizeof p.kernels[0].name, "%s", k0);
    snprintf(p.kernels[1].name, sizeof p.kernels[1].name, "%s", k1);
    for (int k = 0; k < 2; ++k) {
        p.kernels[k].grid[0] = p.kernels[k].grid[1] = p.kernels[k].grid[2] = 1;
        p.kernels[k].block[0] = 32, p.kernels[k].block[1] = p.kernels[k].block[2] = 1;
    }
    return p;
}

/* A later kernel taking a prefix of the list records and replays (the
 * widest kernel's sizes are copied); kernels disagreeing are refused at load. */
static void test_prefix_kernels(fixture *fx) {
    static const char ok_src[] =
        "extern \"C\" __global__ void t_set(float *a, int n, float v) {\n"
        "  int i = threadIdx.x; if (i < n) a[i] = v + i; }\n"
        "extern \"C\" __global__ void t_twice(float *a, int n) {\n"
        "  int i = threadIdx.x; if (i < n) a[i] *= 2.0f; }\n";
    static const char bad_src[] = "extern \"C\" __global__ void t_a(float *a, int n) {}\n"
                                  "extern \"C\" __global__ void t_b(float *a, double n) {}\n";
    sp_exec *e = fx->e;
    sprig_plan ok = handmade(ok_src, "t_set", "t_twice"), bad = handmade(bad_src, "t_a", "t_b");
    sp_exec_module *m = NULL;
    ++checks;
    CHECK(sp_exec_load(e, &bad, &m) == SPRIG_E_INTERNAL && !m);
    CHECK_MSG(sp_contains(sprig_last_error(), "disagree on parameter 1"), "%s", sprig_last_error());
    CHECK_MSG(sp_exec_load(e, &ok, &m) == SPRIG_OK, "%s", sprig_last_error());
    if (!m) return;
    size_t s[SP_EMU_MAX_PARAMS];
    const sp_emu_module *em = sp_exec_emu_module(m);
    CHECK(sp_emu_plan_param_sizes(em, s, SP_EMU_MAX_PARAMS) == 3 && s[0] == 8 && s[1] == 4 && s[2] == 4);
    CHECK(sp_emu_kernel_param_sizes(em, 1, s, SP_EMU_MAX_PARAMS) == 2);

    sp_dptr a = 0;
    CHECK(sp_exec_alloc(e, &a, 32 * sizeof(float)) == SPRIG_OK);
    CHECK(sp_exec_fill(e, a, 0, 32 * sizeof(float)) == SPRIG_OK);
    int n = 20;
    float v = 1.5f;
    void *args[] = {&a, &n, &v};
    CHECK(sp_exec_capture_begin(e) == SPRIG_OK);
    CHECK(sp_exec_launch(e, m, &ok, args) == SPRIG_OK);
    sp_exec_graph *g = NULL;
    CHECK(sp_exec_capture_end(e, &g) == SPRIG_OK && g);
    n = 32, v = -7.f;
    if (g) CHECK(sp_exec_graph_launch(e, g) == SPRIG_OK);
    float h[32];
    CHECK(sp_exec_download(e, h, a, sizeof h) == SPRIG_OK);
    int good = 1;
    for (int i = 0; i < 32; ++i) good &= h[i] == (i < 20 ? 2.f * (1.5f + (float)i) : 0.f);
    ++checks;
    CHECK_MSG(good, "prefix replay: h[0]=%g h[19]=%g h[20]=%g", h[0], h[19], h[20]);
    sp_exec_graph_free(e, g);
    sp_exec_free(e, a);
    sp_exec_unload(e, m);
}

int main(void) {
    fixture fx;
    if (!setup(&fx)) {
        fprintf(stderr, "setup: %s\n", sprig_last_error());
        teardown(&fx);
        return 1;
    }
    test_param_sizes(&fx);
    test_replay(&fx);
    test_snapshot(&fx);
    test_refusals(&fx);
    test_prefix_kernels(&fx);
    teardown(&fx);
    return sp_test_finish("test_exec_graph", checks);
}
