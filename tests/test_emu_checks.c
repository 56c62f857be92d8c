/* The emulator's checks of what a GPU enforces or leaves undefined
 * (tests/emu/emu_check.h), each shown on a planted bug and on the same kernel
 * without it: the buggy kernel must fail naming the bug and its source line,
 * and the fixed one must run and compute the right values, so a check that
 * fires on everything fails here as surely as one that fires on nothing.
 *
 *  - a misaligned 16-byte load;
 *  - a store one element before a buffer, and a load past its end (the hook
 *    catches it) and one that only the guard page catches (uninstrumented);
 *  - a read of shared memory no thread wrote;
 *  - a missing __syncthreads between a shared store and another warp's load,
 *    and a missing __syncwarp between two lanes of one warp (in order, the
 *    writer runs first, so this is reported as a race; in another order the
 *    reader would find the bytes unwritten, reported as such);
 *  - launch limits: __launch_bounds__ and the grid's y limit;
 *  - the random schedule (SPRIG_EMU_SEED): CTAs and threads in another order,
 *    which an order-dependent kernel shows and a correct one does not;
 *  - sm_90's vector reduction (sp_emu_red_add_f32) and its alignment;
 *  - programmatic dependent launch (a module of its own, since the check
 *    holds every kernel of a module that waits): a store before
 *    griddepcontrol.wait, a load before it of what the launch before stored,
 *    and a prefetch past the end of a buffer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_emu.h"
#include "sp_error.h"
#include "test_util.h"

static const char *const kSource =
    /* line 1 */ "extern \"C\" __global__ void load16(const float *x, float *y, int offset) {\n"
    /* 2 */ "    const uint4 v = *reinterpret_cast<const uint4 *>(x + offset);\n"
    /* 3 */ "    y[threadIdx.x] = __uint_as_float(v.x) + __uint_as_float(v.w) + (float)threadIdx.x;\n"
    /* 4 */ "}\n"
    /* 5 */ "extern \"C\" __global__ void store_at(const float *x, float *y, int index) {\n"
    /* 6 */ "    if (threadIdx.x == 0) y[index] = x[0];\n"
    /* 7 */ "}\n"
    /* 8 */ "extern \"C\" __global__ void load_at(const float *x, float *y, int index) {\n"
    /* 9 */ "    if (threadIdx.x == 0) y[0] = x[index];\n"
    /* 10 */ "}\n"
    /* 11 */ "__attribute__((no_sanitize(\"thread\"))) static float unchecked_load(const float *p) { return *(volatile const float *)p; }\n"
    /* 12 */ "extern \"C\" __global__ void load_unchecked(const float *x, float *y, int index) {\n"
    /* 13 */ "    if (threadIdx.x == 0) y[0] = unchecked_load(x + index);\n"
    /* 14 */ "}\n"
    /* 15 */ "extern \"C\" __global__ void shared_partial(const float *x, float *y, int written) {\n"
    /* 16 */ "    __shared__ float s[64];\n"
    /* 17 */ "    if ((int)threadIdx.x < written) s[threadIdx.x] = x[threadIdx.x];\n"
    /* 18 */ "    __syncthreads();\n"
    /* 19 */ "    y[threadIdx.x] = s[threadIdx.x];\n"
    /* 20 */ "}\n"
    /* 21 */ "extern \"C\" __global__ void shared_rotate(const float *x, float *y, int sync) {\n"
    /* 22 */ "    __shared__ float s[64];\n"
    /* 23 */ "    s[threadIdx.x] = x[threadIdx.x];\n"
    /* 24 */ "    if (sync) __syncthreads();\n"
    /* 25 */ "    y[threadIdx.x] = s[threadIdx.x % 32]; /* warp 1 reads warp 0's */\n"
    /* 26 */ "}\n"
    /* 27 */ "extern \"C\" __global__ void warp_exchange(const float *x, float *y, int sync) {\n"
    /* 28 */ "    __shared__ float s[32];\n"
    /* 29 */ "    s[threadIdx.x] = x[threadIdx.x];\n"
    /* 30 */ "    if (sync) __syncwarp();\n"
    /* 31 */ "    y[threadIdx.x] = s[threadIdx.x & ~1u]; /* odd lanes read the even lane's */\n"
    /* 32 */ "}\n"
    /* 33 */ "#define BOUNDED_THREADS 64\n"
    /* 34 */ "extern \"C\" __global__ void __launch_bounds__(BOUNDED_THREADS) bounded(const float *x, float *y, int n) {\n"
    /* 35 */ "    y[threadIdx.x] = x[threadIdx.x];\n"
    /* 36 */ "}\n"
    /* 37 */ "extern \"C\" __global__ void cta_order(const float *x, float *y, int n) {\n"
    /* 38 */ "    if (blockIdx.x == 0) { if (threadIdx.x == 0) y[0] = 1.f; }\n"
    /* 39 */ "    else if (threadIdx.x == 0) y[blockIdx.x] = y[0] + x[blockIdx.x]; /* assumes CTA 0 ran first */\n"
    /* 40 */ "}\n"
    /* 41 */ "extern \"C\" __global__ void thread_order(const float *x, float *y, int n) {\n"
    /* 42 */ "    if (threadIdx.x == 0) y[0] = 1.f;\n"
    /* 43 */ "    else y[threadIdx.x] = y[0] + x[threadIdx.x]; /* assumes thread 0 ran first */\n"
    /* 44 */ "}\n"
    /* 45 */ "extern \"C\" __global__ void vector_red(const float *x, float *y, int offset) {\n"
    /* 46 */ "    float v[4] = {x[4 * threadIdx.x], x[4 * threadIdx.x + 1], x[4 * threadIdx.x + 2], x[4 * threadIdx.x + 3]};\n"
    /* 47 */ "    sp_emu_red_add_f32(y + offset + 4 * (threadIdx.x % 2), v, 4, __FILE__, __LINE__);\n"
    /* 48 */ "}\n";

/* Kernels that wait on the kernel before them (SP_GRID_DEP_WAIT in the templates). */
static const char *const kPdlSource =
    /* line 1 */ "extern \"C\" __global__ void pdl_store(const float *x, float *y, int early) {\n"
    /* 2 */ "    if (early) y[threadIdx.x] = 0.f;\n"
    /* 3 */ "    sp_emu_grid_dep_wait();\n"
    /* 4 */ "    y[threadIdx.x] = 2.f * x[threadIdx.x];\n"
    /* 5 */ "}\n"
    /* 6 */ "extern \"C\" __global__ void pdl_load(const float *x, float *y, int from_y) {\n"
    /* 7 */ "    const float v = from_y ? y[threadIdx.x] : x[threadIdx.x];\n"
    /* 8 */ "    sp_emu_grid_dep_wait();\n"
    /* 9 */ "    y[threadIdx.x] = v + 1.f;\n"
    /* 10 */ "}\n"
    /* 11 */ "extern \"C\" __global__ void pdl_prefetch(const float *x, float *y, int offset) {\n"
    /* 12 */ "    sp_emu_prefetch(x + offset);\n"
    /* 13 */ "    sp_emu_grid_dep_wait();\n"
    /* 14 */ "    y[threadIdx.x] = x[threadIdx.x];\n"
    /* 15 */ "}\n";

enum { N = 256 }; /* floats per buffer: 1 KiB, a multiple of 16 bytes, so it ends at the guard page */

typedef struct {
    sp_exec *e;
    sp_dptr x, y;
    float hx[N], hy[N];
} bench;

static sprig_plan plan_for(const char *kernel, unsigned grid_x, unsigned grid_y, unsigned block) {
    sprig_plan p;
    memset(&p, 0, sizeof p);
    const char *src = strncmp(kernel, "pdl_", 4) ? kSource : kPdlSource;
    p.source = (char *)src;
    p.source_len = strlen(src);
    p.n_kernels = 1;
    snprintf(p.kernels[0].name, sizeof p.kernels[0].name, "%s", kernel);
    p.kernels[0].grid[0] = grid_x, p.kernels[0].grid[1] = grid_y, p.kernels[0].grid[2] = 1;
    p.kernels[0].block[0] = block, p.kernels[0].block[1] = p.kernels[0].block[2] = 1;
    return p;
}

/* Fresh random x, y poisoned with NaN, then one launch of `kernel`. */
static sprig_status launch(bench *b, const char *kernel, unsigned grid_x, unsigned grid_y, unsigned block, int arg) {
    for (int i = 0; i < N; ++i) b->hx[i] = (float)(rand() % 64 + 1), b->hy[i] = NAN;
    CHECK(sp_exec_upload(b->e, b->x, b->hx, sizeof b->hx) == SPRIG_OK);
    CHECK(sp_exec_upload(b->e, b->y, b->hy, sizeof b->hy) == SPRIG_OK);
    sprig_plan p = plan_for(kernel, grid_x, grid_y, block);
    sp_exec_module *m = NULL;
    sprig_status s = sp_exec_load(b->e, &p, &m);
    CHECK_MSG(s == SPRIG_OK, "%s: %s", kernel, sprig_last_error());
    if (s != SPRIG_OK) return s;
    void *args[] = {&b->x, &b->y, &arg};
    s = sp_exec_launch(b->e, m, &p, args);
    char saved[2048];
    snprintf(saved, sizeof saved, "%s", sprig_last_error());
    sp_exec_unload(b->e, m);
    CHECK(sp_exec_download(b->e, b->hy, b->y, sizeof b->hy) == SPRIG_OK);
    return s == SPRIG_OK ? s : sp_fail(s, "%s", saved); /* the error as the launch left it */
}

/* The launch must fail with every one of the phrases (NULL-terminated). */
static void expect_caught(bench *b, const char *kernel, unsigned grid_x, unsigned grid_y, unsigned block, int arg,
                          const char *const *phrases) {
    const sprig_status s = launch(b, kernel, grid_x, grid_y, block, arg);
    CHECK_MSG(s == SPRIG_E_CUDA, "%s(%d): not caught (status %d)", kernel, arg, (int)s);
    const char *err = s == SPRIG_OK ? "" : sprig_last_error();
    for (const char *const *p = phrases; *p; ++p)
        CHECK_MSG(sp_contains(err, *p), "%s(%d): the error lacks \"%s\": %s", kernel, arg, *p, err);
}

static void expect_runs(bench *b, const char *kernel, unsigned grid_x, unsigned block, int arg) {
    const sprig_status s = launch(b, kernel, grid_x, 1, block, arg);
    CHECK_MSG(s == SPRIG_OK, "%s(%d) should run: %s", kernel, arg, s == SPRIG_OK ? "" : sprig_last_error());
}

static void check_memory(bench *b) {
    /* misaligned: x + 1 is 4 mod 16 */
    expect_caught(b, "load16", 1, 1, 32, 1,
                  (const char *const[]){"misaligned", "uint4", "needs 16-byte alignment", "line 2:", "reinterpret_cast<const uint4", NULL});
    expect_runs(b, "load16", 1, 32, 4);
    for (int t = 0; t < 32; ++t) {
        const float want = b->hx[4] + b->hx[7] + (float)t;
        CHECK_MSG(b->hy[t] == want, "load16 thread %d: %g, want %g", t, b->hy[t], want);
    }
    /* one element before y */
    expect_caught(b, "store_at", 1, 1, 32, -1,
                  (const char *const[]){"out-of-bounds 4-byte store", "4 bytes before a buffer of 1024 bytes",
                                        "line 6:", NULL});
    expect_runs(b, "store_at", 1, 32, N - 1);
    CHECK(b->hy[N - 1] == b->hx[0] && isnan(b->hy[0]));
    /* one element past the end of x: the hook, then the guard page alone */
    expect_caught(b, "load_at", 1, 1, 32, N,
                  (const char *const[]){"out-of-bounds 4-byte load", "0 bytes after the end of a buffer of 1024 bytes",
                                        "line 9:", NULL});
    expect_caught(b, "load_unchecked", 1, 1, 32, N,
                  (const char *const[]){"illegal address", "SIGSEGV", "after the end of a buffer of 1024 bytes", NULL});
    expect_runs(b, "load_unchecked", 1, 32, N - 1);
    CHECK(b->hy[0] == b->hx[N - 1]);
}

static void check_shared(bench *b) {
    expect_caught(b, "shared_partial", 1, 1, 64, 48,
                  (const char *const[]){"shared memory no thread wrote", "thread (48,0,0)", "line 19:", NULL});
    expect_runs(b, "shared_partial", 1, 64, 64);
    for (int t = 0; t < 64; ++t) CHECK_MSG(b->hy[t] == b->hx[t], "shared_partial thread %d", t);

    expect_caught(b, "shared_rotate", 1, 1, 64, 0,
                  (const char *const[]){"race on shared memory", "no __syncthreads", "line 25:", NULL});
    expect_runs(b, "shared_rotate", 1, 64, 1);
    for (int t = 0; t < 64; ++t) CHECK_MSG(b->hy[t] == b->hx[t % 32], "shared_rotate thread %d", t);

    expect_caught(b, "warp_exchange", 1, 1, 32, 0, (const char *const[]){"race on shared memory", "line 31:", NULL});
    expect_runs(b, "warp_exchange", 1, 32, 1);
    for (int t = 0; t < 32; ++t) CHECK_MSG(b->hy[t] == b->hx[t & ~1], "warp_exchange thread %d", t);
}

static void check_launch_limits(bench *b) {
    expect_caught(b, "bounded", 1, 1, 128, 0,
                  (const char *const[]){"128 threads exceeds its __launch_bounds__(64)", NULL});
    expect_runs(b, "bounded", 1, 64, 0);
    CHECK(b->hy[63] == b->hx[63]);
    expect_caught(b, "bounded", 1, 70000, 32, 0, (const char *const[]){"exceeds CUDA's limits", NULL});
}

/* In order, the order-dependent kernels look right; a seed that reorders
 * shows them wrong; the correct kernels stay right under every seed tried. */
static void check_random_schedule(bench *b) {
    const unsigned ctas = 16;
    CHECK(launch(b, "cta_order", ctas, 1, 32, 0) == SPRIG_OK);
    int in_order_ok = 1;
    for (unsigned c = 1; c < ctas; ++c) in_order_ok &= b->hy[c] == 1.f + b->hx[c];
    CHECK_MSG(in_order_ok, "cta_order in order should look right");
    int cta_wrong = 0, thread_wrong = 0, correct_runs = 0;
    for (int seed = 1; seed <= 4; ++seed) {
        char text[16];
        snprintf(text, sizeof text, "%d", seed);
        setenv("SPRIG_EMU_SEED", text, 1);
        if (launch(b, "cta_order", ctas, 1, 32, 0) == SPRIG_OK)
            for (unsigned c = 1; c < ctas; ++c) cta_wrong += b->hy[c] != 1.f + b->hx[c];
        if (launch(b, "thread_order", 1, 1, 64, 0) == SPRIG_OK)
            for (int t = 1; t < 64; ++t) thread_wrong += b->hy[t] != 1.f + b->hx[t];
        if (launch(b, "shared_rotate", 1, 1, 64, 1) == SPRIG_OK) {
            int ok = 1;
            for (int t = 0; t < 64; ++t) ok &= b->hy[t] == b->hx[t % 32];
            correct_runs += ok;
        }
    }
    unsetenv("SPRIG_EMU_SEED");
    CHECK_MSG(cta_wrong > 0, "the random schedule never ran a CTA before CTA 0");
    CHECK_MSG(thread_wrong > 0, "the random schedule never ran a thread before thread 0");
    CHECK_MSG(correct_runs == 4, "a correct kernel went wrong under the random schedule (%d of 4 right)", correct_runs);
}

static void check_vector_red(bench *b) {
    /* 8 threads add their 4 floats to y[offset..offset+8): threads of one parity share 4 floats */
    expect_caught(b, "vector_red", 1, 1, 8, 2, (const char *const[]){"misaligned 16-byte store", "line 47:", NULL});
    /* y[4..12) starts at 0 (a reduction adds to what is there); fresh x */
    float zero[8] = {0};
    for (int i = 0; i < N; ++i) b->hx[i] = (float)(rand() % 64 + 1);
    CHECK(sp_exec_upload(b->e, b->x, b->hx, sizeof b->hx) == SPRIG_OK);
    CHECK(sp_exec_upload(b->e, b->y + 4 * sizeof(float), zero, sizeof zero) == SPRIG_OK);
    sprig_plan p = plan_for("vector_red", 1, 1, 8);
    sp_exec_module *m = NULL;
    CHECK(sp_exec_load(b->e, &p, &m) == SPRIG_OK);
    int offset = 4;
    void *args[] = {&b->x, &b->y, &offset};
    if (m) CHECK_MSG(sp_exec_launch(b->e, m, &p, args) == SPRIG_OK, "%s", sprig_last_error());
    sp_exec_unload(b->e, m);
    float y[8];
    CHECK(sp_exec_download(b->e, y, b->y + 4 * sizeof(float), sizeof y) == SPRIG_OK);
    for (int j = 0; j < 8; ++j) {
        double want = 0;
        for (int t = j / 4; t < 8; t += 2) want += b->hx[4 * t + j % 4];
        CHECK_MSG(y[j] == (float)want, "vector_red y[%d] = %g, want %g", 4 + j, y[j], want);
    }
}

static void check_pdl(bench *b) {
    expect_caught(b, "pdl_store", 1, 1, 32, 1,
                  (const char *const[]){"store to global memory before griddepcontrol.wait", "line 2:", NULL});
    expect_runs(b, "pdl_store", 1, 32, 0); /* stores y */
    for (int t = 0; t < 32; ++t) CHECK_MSG(b->hy[t] == 2.f * b->hx[t], "pdl_store thread %d", t);
    expect_caught(b, "pdl_load", 1, 1, 32, 1,
                  (const char *const[]){"load before griddepcontrol.wait", "the kernel before it stored to", "line 7:",
                                        NULL});
    expect_runs(b, "pdl_load", 1, 32, 0); /* x: no kernel wrote it */
    for (int t = 0; t < 32; ++t) CHECK_MSG(b->hy[t] == b->hx[t] + 1.f, "pdl_load thread %d", t);
    expect_caught(b, "pdl_prefetch", 1, 1, 32, N,
                  (const char *const[]){"prefetch.global.L2", "outside its buffer", "line 12:", NULL});
    expect_runs(b, "pdl_prefetch", 1, 32, N - 1);
    for (int t = 0; t < 32; ++t) CHECK_MSG(b->hy[t] == b->hx[t], "pdl_prefetch thread %d", t);
}

int main(void) {
    srand(20261204);
    unsetenv("SPRIG_EMU_SEED");
    bench b;
    memset(&b, 0, sizeof b);
    CHECK(sp_exec_open_emu(&b.e) == SPRIG_OK);
    CHECK(sp_exec_alloc(b.e, &b.x, sizeof b.hx) == SPRIG_OK);
    CHECK(sp_exec_alloc(b.e, &b.y, sizeof b.hy) == SPRIG_OK);
    if (b.e && b.x && b.y) {
        check_memory(&b);
        check_shared(&b);
        check_launch_limits(&b);
        check_random_schedule(&b);
        check_vector_red(&b);
        check_pdl(&b);
    }
    sp_exec_free(b.e, b.x);
    sp_exec_free(b.e, b.y);
    sp_exec_close(b.e);
    return sp_test_finish("test_emu_checks", 0);
}
