/* Shared machinery of the GPU tests (label gpu): open the GPU or skip (exit
 * 77), build kernels for the device's own architecture, random operands from
 * a printed seed, poisoned outputs, and the ‖out − ref‖/‖ref‖ < 1e-2 check
 * with one printed line per case.
 *
 * Failures of the test infrastructure itself (allocation, copies, a kernel
 * that faults and so kills the context) end the process with exit(1) after
 * printing why; wrong results are counted (sp_test_failures) and the test
 * goes on with the next case. */
#ifndef SP_GPU_HARNESS_H
#define SP_GPU_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "sp_device.h"
#include "sp_kargs.h"
#include "sprig.h"

#define GH_TOL 1e-2 /* ‖out − ref‖ / ‖ref‖ for fp16/bf16 operands (DESIGN.md) */

typedef struct gh_ctx {
    const char *test;
    sprig_gen *gen;
    sp_device *dev;
    char arch[24];   /* "sm_90", or "compute_XX" when NVRTC does not know the GPU */
    uint64_t seed;
    uint64_t rng;    /* xorshift64* state */
    int cases;
    int quick;       /* SPRIG_TEST_QUICK=1 (always under the emulator): small shapes only */
    int fail_mark;   /* sp_test_failures at the last gh_report */
    int emu;         /* built with GH_EMU: kernels run on the CPU emulator (tests/emu) */
} gh_ctx;

/* Opens GPU 0 or exits 77 (skip) when there is no driver or no GPU; exits 1
 * on any other failure. Prints the device, the arch and the seed (from
 * SPRIG_TEST_SEED when set, else fresh from the clock).
 *
 * Built with -DGH_EMU (and linked with sprig_emu), the same tests run their
 * kernels on the CPU emulator instead: "device" buffers are host memory and
 * only the quick (small-shape) cases run, since emulation is slow.
 * SPRIG_TEST_TEMPLATE_DIR renders from that folder's templates (sprig_gen_open);
 * SPRIG_TEST_FILTER=TEXT runs only the kernels whose description
 * ("family d=.. f=.. dtype B=.. g=.. [params]") contains TEXT. Operands are
 * drawn whether or not a kernel is filtered out, so SPRIG_TEST_SEED plus
 * SPRIG_TEST_FILTER reruns one failing case on exactly the same data. */
void gh_open(gh_ctx *h, const char *test);
/* Closes everything and returns the exit code (sp_test_finish). */
int gh_finish(gh_ctx *h);

/* ---- kernels ----------------------------------------------------------------------- */
typedef struct gh_kernel {
    sprig_request req;
    char params[256];
    sprig_plan *plan;
    sprig_binary *bin;
    sp_module *mod;
    void *emu;        /* sp_emu_module under GH_EMU */
    CUdeviceptr ws;   /* plan->workspace_bytes, zeroed once (the ABI) */
} gh_kernel;

/* Renders, compiles and loads one kernel. Returns 1 when ready. When the
 * family refuses the request (SPRIG_E_INVALID) and allow_invalid is set it
 * prints "skip" and returns 0 without counting a failure; any other failure
 * is printed, counted, and returns 0. Returns 0 silently for a kernel that
 * SPRIG_TEST_FILTER excludes. k is zeroed whenever 0 is returned. */
int gh_build(gh_ctx *h, const char *family, int d, int f, const char *dtype, int batch, int g,
             const char *params, int allow_invalid, gh_kernel *k);
void gh_kernel_free(gh_kernel *k);

/* Launches the plan with its arguments bound by name (exec/sp_kargs.h: the
 * plan's declared list; bind with sp_kargs_init(&a, k->plan) and
 * sp_kargs_ptr/_f32) and waits. A binding, launch or kernel failure prints
 * the kernel key and exits 1 (the context is lost). */
void gh_run(gh_ctx *h, gh_kernel *k, sp_kargs *args);
/* The same without waiting (plans queued back to back on the default stream,
 * no host round trip between them); gh_sync waits and reports faults. */
void gh_launch(gh_ctx *h, gh_kernel *k, sp_kargs *args);
void gh_sync(gh_ctx *h);

/* ---- random operands ---------------------------------------------------------------- */
uint64_t gh_next(gh_ctx *h);
double gh_uniform(gh_ctx *h); /* in [-1, 1) */
double gh_unit(gh_ctx *h);    /* in [0, 1) */
/* n values uniform in ±scale, rounded to the storage type: vals (floats the
 * reference reads) and bits (what is uploaded). Either may be NULL. */
void gh_fill(gh_ctx *h, int bf16, double scale, size_t n, float *vals, uint16_t *bits);

/* Host allocation that exits 1 when memory runs out (calloc: zeroed). */
void *gh_xalloc(size_t bytes);

/* ---- device buffers (exit 1 on failure) ---------------------------------------------- */
CUdeviceptr gh_alloc(size_t bytes);
CUdeviceptr gh_upload_new(const void *src, size_t bytes);
void gh_upload(CUdeviceptr dst, const void *src, size_t bytes);
void gh_download(void *dst, CUdeviceptr src, size_t bytes);
void gh_poison(CUdeviceptr p, size_t bytes); /* 0xFF bytes: NaN in fp16 and bf16, -1 as int */
void gh_free(CUdeviceptr p);

/* Output buffers carry a poisoned guard of GH_GUARD bytes after their `bytes`:
 * gh_alloc_out allocates bytes + GH_GUARD; gh_poison_out poisons both; and
 * gh_guard_intact says whether the kernel left the guard alone (no write past
 * the end of its output). */
#define GH_GUARD 4096
CUdeviceptr gh_alloc_out(size_t bytes);
void gh_poison_out(CUdeviceptr p, size_t bytes);
int gh_guard_intact(CUdeviceptr p, size_t bytes);
/* Whether bytes [from, to) of p still hold the poison (0xFF). */
int gh_still_poisoned(CUdeviceptr p, size_t from, size_t to);

/* ---- checking ---------------------------------------------------------------------- */
typedef struct gh_cmp {
    double rel;    /* ‖out − ref‖ / ‖ref‖; with ‖ref‖ = 0: 0 if out is all zero, else inf */
    long nan;      /* elements that are NaN/inf (never written, or overflowed) */
    long n;        /* elements compared */
} gh_cmp;

/* out: rows × cols storage values (row stride ld_out); ref: row stride ld_ref. */
gh_cmp gh_compare(int bf16, const uint16_t *out, size_t ld_out, const double *ref, size_t ld_ref, int rows,
                  int cols);
/* Merges the result of a repeated run (worst of both). */
gh_cmp gh_worse(gh_cmp a, gh_cmp b);

/* Prints one line for the case and counts a failure unless nan == 0 and
 * rel < GH_TOL. The line says FAIL also when gh_fail_case recorded a failure
 * since the previous report, so call it after a case's other checks.
 * Returns 1 when the case passed. */
int gh_report(gh_ctx *h, const gh_kernel *k, const char *what, double active, gh_cmp c);

/* Prints a failure line for the case (a check other than the norm) and counts it. */
void gh_fail_case(gh_ctx *h, const gh_kernel *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- MLP fixtures (gather, gemm, fused and pipeline tests) ----------------------------- */
/* The weights of one SwiGLU MLP, random and scaled like a real layer, on the
 * host (floats for the references, bits) and on the GPU in every layout. */
typedef struct gh_mlp {
    int d, f, bf16;
    float *Wg, *Wu, *Wd;          /* [f][d], [f][d], W_down [d][f] */
    uint16_t *Wgb, *Wub, *Wdb;
    CUdeviceptr dWg, dWu;         /* [f][d] */
    CUdeviceptr dWd_n, dWd_t;     /* W_down [d][f], W_downᵀ [f][d] */
    CUdeviceptr dWgu_il;          /* interleaved gate/up [E][2][g][d] for il_g (0: none yet) */
    int il_g;
} gh_mlp;

void gh_mlp_open(gh_ctx *h, gh_mlp *w, int d, int f, int bf16);
/* The interleaved gate/up copy for expert size g, packed on the host on first use. */
CUdeviceptr gh_mlp_interleaved(gh_mlp *w, int g);
void gh_mlp_close(gh_mlp *w);

/* B tokens for one MLP, their dense float64 SwiGLU, and the device buffers a
 * gather pipeline uses (outputs carry guards). */
typedef struct gh_batch {
    int B;
    float *x;                     /* [B][d] */
    uint16_t *xb;
    double *h_dense;              /* [B][f]: SwiGLU of every neuron, no mask */
    CUdeviceptr dx, dh, dh_in, dy;/* x [B][d]; h, h_in [B][f]; y [B][d] */
    CUdeviceptr duids, ducount, dmask, dids, dcounts; /* routing, sized for E = f */
} gh_batch;

void gh_batch_open(gh_ctx *h, gh_batch *b, const gh_mlp *w, int B);
void gh_batch_close(gh_batch *b);

/* One routing case: per-token masks, the ABI's routing arrays (uploaded to
 * the batch's buffers), and every reference derived from them. */
typedef struct gh_route {
    int g, E, U;                  /* U = union size */
    double frac;                  /* active fraction (of B*E) */
    unsigned char *mask;          /* [B][E] */
    int *ids, *counts, *uids;
    double *hc;                   /* compact reference h [B][f] (first U*g columns) */
    double *y;                    /* float64 MLP output [B][d] */
    double *y_from_hin;           /* y from hin (what an isolated down kernel is fed) */
    uint16_t *hin;                /* compact h rounded to the storage type; NaN past the union */
} gh_route;

/* Random masks: every token gets exactly round(frac*E) experts. */
void gh_route_random(gh_ctx *h, gh_route *r, const gh_mlp *w, gh_batch *b, int g, double frac);
/* From a given mask [B][E] (e.g. the router kernel's decisions). */
void gh_route_from_mask(gh_route *r, const gh_mlp *w, gh_batch *b, int g, const unsigned char *mask);
void gh_route_close(gh_route *r);

/* Runs an up/gate kernel (gather_upgate signature) twice over poisoned h and
 * checks it: values against the compact reference (dense with all_active),
 * exact zeros for masked experts, nothing written past the union or the end. */
void gh_check_upgate(gh_ctx *h, gh_kernel *k, gh_mlp *w, gh_batch *b, const gh_route *r, int interleave,
                     int all_active);
/* Runs a down kernel (gather_down signature) twice over poisoned y, fed h_in,
 * and checks y against ref. */
void gh_check_down(gh_ctx *h, gh_kernel *k, const gh_mlp *w, gh_batch *b, const gh_route *r, int layout_t,
                   int all_active, CUdeviceptr h_in, const double *ref, const char *what);
/* Runs an up/gate kernel once (no checks), writing b->dh: the first stage of a pipeline. */
void gh_run_upgate(gh_ctx *h, gh_kernel *k, gh_mlp *w, gh_batch *b, int g, int interleave, int all_active);

#endif
