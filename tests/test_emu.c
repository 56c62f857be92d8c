/* The CPU emulator itself: barriers and shared memory across warps (with a
 * partial last warp), shuffles, ballots, the mma.sync fragment layout, and
 * that a divergent barrier is reported rather than hanging. The kernels here
 * are hand-written, the expected values computed independently. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "emu_runtime.h"
#include "test_util.h"

static const char *const kSource =
    "extern \"C\" __global__ void block_sum(const float *x, float *out, int n) {\n"
    "    __shared__ float part[32];\n"
    "    float v = 0.f;\n"
    "    for (int i = threadIdx.x; i < n; i += blockDim.x) v += x[blockIdx.x * n + i];\n"
    "    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n"
    "    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;\n"
    "    __syncthreads();\n"
    "    if (threadIdx.x == 0) {\n"
    "        float s = 0.f;\n"
    "        for (int w = 0; w < (int)(blockDim.x + 31) / 32; ++w) s += part[w];\n"
    "        out[blockIdx.x] = s;\n"
    "    }\n"
    "}\n"
    "extern \"C\" __global__ void scan_ballot(const int *flags, int *pos, unsigned *ballots) {\n"
    "    int lane = threadIdx.x & 31;\n"
    "    unsigned b = __ballot_sync(0xffffffffu, flags[threadIdx.x]);\n"
    "    int up = __shfl_up_sync(0xffffffffu, (int)threadIdx.x, 1);\n"
    "    pos[threadIdx.x] = __popc(b & ((1u << lane) - 1u)) * 1000 + up;\n"
    "    if (lane == 0) ballots[threadIdx.x >> 5] = b;\n"
    "}\n"
    "extern \"C\" __global__ void mma_tile(const unsigned short *A, const unsigned short *B, float *C) {\n"
    "    /* A 16x16 row-major, B 16x8 stored as B[n][k] (col layout), C 16x8 row-major. */\n"
    "    int l = threadIdx.x, g = l >> 2, t = l & 3;\n"
    "    unsigned a[4], b[2];\n"
    "    a[0] = A[g * 16 + 2 * t] | (unsigned)A[g * 16 + 2 * t + 1] << 16;\n"
    "    a[1] = A[(g + 8) * 16 + 2 * t] | (unsigned)A[(g + 8) * 16 + 2 * t + 1] << 16;\n"
    "    a[2] = A[g * 16 + 2 * t + 8] | (unsigned)A[g * 16 + 2 * t + 9] << 16;\n"
    "    a[3] = A[(g + 8) * 16 + 2 * t + 8] | (unsigned)A[(g + 8) * 16 + 2 * t + 9] << 16;\n"
    "    b[0] = B[g * 16 + 2 * t] | (unsigned)B[g * 16 + 2 * t + 1] << 16;\n"
    "    b[1] = B[g * 16 + 2 * t + 8] | (unsigned)B[g * 16 + 2 * t + 9] << 16;\n"
    "    float c[4] = {0, 0, 0, 0}, d[4];\n"
    "    sp_emu_mma_m16n8k16(d, a, b, c, 0);\n"
    "    C[g * 8 + 2 * t] = d[0]; C[g * 8 + 2 * t + 1] = d[1];\n"
    "    C[(g + 8) * 8 + 2 * t] = d[2]; C[(g + 8) * 8 + 2 * t + 1] = d[3];\n"
    "}\n"
    "extern \"C\" __global__ void divergent(int *x) {\n"
    "    if (threadIdx.x < 16) __syncthreads();\n"
    "    else x[0] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);\n"
    "}\n";

static sprig_plan make_plan(const char *kernel, unsigned grid, unsigned block) {
    sprig_plan p;
    memset(&p, 0, sizeof p);
    p.source = (char *)kSource;
    p.source_len = strlen(kSource);
    p.n_kernels = 1;
    snprintf(p.kernels[0].name, sizeof p.kernels[0].name, "%s", kernel);
    p.kernels[0].grid[0] = grid, p.kernels[0].grid[1] = p.kernels[0].grid[2] = 1;
    p.kernels[0].block[0] = block, p.kernels[0].block[1] = p.kernels[0].block[2] = 1;
    return p;
}

/* Small integers in fp16 bits: exact, so the mma result must match exactly. */
static unsigned short half_of_small_int(int v) {
    if (v == 0) return 0;
    unsigned short sign = v < 0 ? 0x8000 : 0;
    int a = abs(v), e = 0;
    while ((a >> e) > 1) ++e;
    return (unsigned short)(sign | (unsigned)(e + 15) << 10 | (unsigned)((a << (10 - e)) & 1023));
}

int main(void) {
    srand(12345);
    /* Barriers, shared memory, shuffles: 3 CTAs of 96 threads. */
    {
        sprig_plan p = make_plan("block_sum", 3, 96);
        sp_emu_module *m = NULL;
        CHECK(sp_emu_module_load(&p, &m) == SPRIG_OK);
        if (!m) fprintf(stderr, "%s\n", sprig_last_error());
        const int n = 300;
        float x[3 * 300], out[3] = {NAN, NAN, NAN};
        double ref[3] = {0, 0, 0};
        for (int i = 0; i < 3 * n; ++i) x[i] = (float)(rand() % 17 - 8), ref[i / n] += x[i];
        float *px = x, *pout = out;
        int nn = n;
        void *args[] = {&px, &pout, &nn};
        if (m) CHECK(sp_emu_plan_launch(m, &p, args) == SPRIG_OK);
        for (int b = 0; b < 3; ++b) CHECK_MSG(out[b] == (float)ref[b], "CTA %d: %g vs %g", b, out[b], ref[b]);
        sp_emu_module_free(m);
    }
    /* Ballot and shuffle-up over 64 threads. */
    {
        sprig_plan p = make_plan("scan_ballot", 1, 64);
        sp_emu_module *m = NULL;
        CHECK(sp_emu_module_load(&p, &m) == SPRIG_OK);
        int flags[64], pos[64];
        unsigned ballots[2] = {0, 0};
        for (int i = 0; i < 64; ++i) flags[i] = rand() & 1;
        int *pf = flags, *pp = pos;
        unsigned *pb = ballots;
        void *args[] = {&pf, &pp, &pb};
        if (m) CHECK(sp_emu_plan_launch(m, &p, args) == SPRIG_OK);
        for (int w = 0; w < 2; ++w) {
            unsigned expect = 0;
            int before = 0;
            for (int l = 0; l < 32; ++l) expect |= (unsigned)flags[w * 32 + l] << l;
            CHECK(ballots[w] == expect);
            for (int l = 0; l < 32; ++l) {
                int up = l == 0 ? w * 32 : w * 32 + l - 1;
                CHECK_MSG(pos[w * 32 + l] == before * 1000 + up, "thread %d", w * 32 + l);
                before += flags[w * 32 + l];
            }
        }
        sp_emu_module_free(m);
    }
    /* mma.sync m16n8k16 layout: C = A * B exactly on small integers. */
    {
        sprig_plan p = make_plan("mma_tile", 1, 32);
        sp_emu_module *m = NULL;
        CHECK(sp_emu_module_load(&p, &m) == SPRIG_OK);
        int Ai[16][16], Bi[8][16];
        unsigned short A[256], B[128];
        float C[128];
        for (int r = 0; r < 16; ++r)
            for (int k = 0; k < 16; ++k) Ai[r][k] = rand() % 9 - 4, A[r * 16 + k] = half_of_small_int(Ai[r][k]);
        for (int n = 0; n < 8; ++n)
            for (int k = 0; k < 16; ++k) Bi[n][k] = rand() % 9 - 4, B[n * 16 + k] = half_of_small_int(Bi[n][k]);
        unsigned short *pa = A, *pb = B;
        float *pc = C;
        void *args[] = {&pa, &pb, &pc};
        if (m) CHECK(sp_emu_plan_launch(m, &p, args) == SPRIG_OK);
        int bad = 0;
        for (int r = 0; r < 16; ++r)
            for (int n = 0; n < 8; ++n) {
                int s = 0;
                for (int k = 0; k < 16; ++k) s += Ai[r][k] * Bi[n][k];
                bad += C[r * 8 + n] != (float)s;
            }
        CHECK_MSG(bad == 0, "%d of 128 mma outputs differ", bad);
        sp_emu_module_free(m);
    }
    /* A full-mask shuffle in a partial warp (80 threads) reads absent lanes: reported. */
    {
        sprig_plan p = make_plan("block_sum", 1, 80);
        sp_emu_module *m = NULL;
        CHECK(sp_emu_module_load(&p, &m) == SPRIG_OK);
        float x[300] = {0}, out[1];
        float *px = x, *pout = out;
        int nn = 300;
        void *args[] = {&px, &pout, &nn};
        if (m) {
            CHECK(sp_emu_plan_launch(m, &p, args) == SPRIG_E_CUDA);
            CHECK_MSG(sp_contains(sprig_last_error(), "does not exist"), "got: %s", sprig_last_error());
        }
        sp_emu_module_free(m);
    }
    /* A barrier that only half the warp reaches is reported, not hung. */
    {
        sprig_plan p = make_plan("divergent", 1, 32);
        sp_emu_module *m = NULL;
        CHECK(sp_emu_module_load(&p, &m) == SPRIG_OK);
        int x = 0;
        int *px = &x;
        void *args[] = {&px};
        if (m) {
            sprig_status s = sp_emu_plan_launch(m, &p, args);
            CHECK(s == SPRIG_E_CUDA);
            CHECK_MSG(sp_contains(sprig_last_error(), "deadlock"), "got: %s", sprig_last_error());
        }
        sp_emu_module_free(m);
    }
    return sp_test_finish("test_emu", 0);
}
