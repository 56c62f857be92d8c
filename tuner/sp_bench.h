/* `sprig bench`: the whole MLP with our tuned kernels against a dense
 * baseline (cuBLAS, tuner/bench_cublas.c) and the bandwidth roof measured in
 * the same run, per batch and sparsity; the report as a table, JSON and an
 * SVG chart.
 *
 * "Ours" is the fastest verified of the pipelines that can serve the case,
 * each stage's parameters looked up in the tuning databases with the
 * documented fallback (tuner/sp_mlp_keys.h):
 *   sparse (s > 0):  router + gather_upgate + gather_down
 *                    router + fused_mlp                       (batch <= 8)
 *                    router + gather_gemm upgate + down        (g % 16 == 0)
 *   dense (s = 0):   the same without the router, all experts active
 *                    (all_active=1; gather_gemm with every expert routed).
 * The router's threshold is set from the float64 scores so that the target
 * share of experts is inactive for the batch's tokens; each pipeline's output
 * is checked against the float64 MLP for the router's own decisions, before
 * and after timing, and a wrong one is reported and not timed.
 * Roof = bytes the MLP must read (router, plus gate, up and down rows of the
 * union of active experts, plus x) / the measured streaming-read bandwidth.
 *
 * Everything runs on an sp_exec, so the pipelines also run on the CPU
 * emulator (tests); the timings only mean something on a GPU. */
#ifndef SP_BENCH_H
#define SP_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sp_db.h"
#include "sp_gen_perf.h"
#include "sp_exec.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_bench_row {
    int batch;
    double sparsity;          /* percent of experts inactive (the target) */
    double active_frac;       /* union of the batch's active experts / E, as routed */
    char ours_what[96];       /* the winning pipeline ("router+gather_upgate+gather_down") or "" */
    char ours_source[192];    /* per stage, where its params came from ("exact", "generic_default", ...) */
    double ours_us;           /* median; < 0 when no pipeline verified */
    double ours_rel_err;
    double cublas_us;         /* the dense baseline at this batch; < 0 when not measured */
    double cublas_rel_err;
    double roof_us;           /* bytes / read bandwidth; < 0 when unknown */
    double predicted_us;      /* the static model's time for ours (its kernels, sp_analyze.h, at the
                                 routed share of experts, plus a launch gap between stages); < 0: none */
    double bytes;             /* what the MLP must read */
    char note[512];           /* pipelines that failed and why */
} sp_bench_row;

typedef struct sp_bench_report {
    char device[256];
    int cc_major, cc_minor, sm_count;
    char shape[64];           /* model name, or "D,F" */
    int d, f, g;
    char dtype[8];
    double read_gbs;          /* measured streaming-read bandwidth, 1e9 bytes/s (0: not measured) */
    double read_bytes;        /* bytes one roof-kernel run read */
    char date[32];            /* UTC, ISO 8601 */
    sp_bench_row *rows;       /* owned, [n], batch-major */
    size_t n;
} sp_bench_report;

void sp_bench_report_free(sp_bench_report *r);

/* ---- writers (no GPU) -------------------------------------------------------------------- */
/* The aligned table: case, ours us, cuBLAS us, roof us, ours/cuBLAS, ours/roof, source. */
void sp_bench_print(const sp_bench_report *r, FILE *to);
/* The report as JSON (malloc'ed; NULL on no memory). */
char *sp_bench_json(const sp_bench_report *r);
/* An SVG line chart of time against sparsity, one panel per batch, lines for
 * ours, cuBLAS dense and the roof (malloc'ed; NULL on no memory). */
char *sp_bench_svg(const sp_bench_report *r);
/* Writes text to path (temp file + rename). */
sprig_status sp_bench_write_file(const char *path, const char *text);

/* ---- running ------------------------------------------------------------------------------ */

/* The dense problem a baseline times, on the host. */
typedef struct sp_bench_operands {
    int d, f, bf16, batch;
    const uint16_t *Wg, *Wu;  /* [f][d] */
    const uint16_t *Wd;       /* W_down [d][f] */
    const uint16_t *x;        /* [batch][d] */
    const double *y_ref;      /* float64 dense MLP output [batch][d] */
    size_t l2_bytes;          /* rotate weight copies beyond twice this */
    int warmup, reps;
    double tolerance;
} sp_bench_operands;

/* A dense baseline: times the MLP of ops, checking its output (*rel_err). */
typedef sprig_status (*sp_bench_baseline_fn)(void *ctx, const sp_bench_operands *ops, double *median_us,
                                             double *rel_err);

typedef struct sp_bench_opts {
    int d, f, g;
    const char *dtype;            /* "fp16" or "bf16" */
    const char *shape_name;       /* for the report (NULL: "D,F") */
    const int *batches;
    int n_batches;
    const double *sparsities;     /* percent inactive, 0 <= s < 100 */
    int n_sparsities;
    int warmup, reps;             /* per timing (3, 50) */
    double tolerance;             /* 1e-2 */
    uint64_t seed;                /* operands (1) */
    size_t read_bytes;            /* the roof kernel streams this much (1 GiB); 0: no roof */
    int min_sets;                 /* weight copies at least (2) */
    size_t max_rotation_bytes;    /* (4 GiB) */
    const sp_db_set *dbs;         /* where tuned params are looked up (may be empty) */
    const sp_gpu_id *gpu;
    const sp_gpu_profile *model_gpu; /* the static model's profile for predicted_us (NULL: no prediction) */
    sp_bench_baseline_fn baseline;/* NULL: no baseline */
    void *baseline_ctx;
    void (*log)(void *ctx, const char *line); /* progress and lookup sources (NULL: quiet) */
    void *log_ctx;
} sp_bench_opts;

void sp_bench_opts_init(sp_bench_opts *o);

/* Runs every case on e. A pipeline's own failure (wrong result, launch
 * refused, compile error) is noted in its row; errors of the device or of
 * memory stop the run and are returned (rows done so far are kept).
 * The caller frees *out with sp_bench_report_free. */
sprig_status sp_bench_run(sp_exec *e, sprig_gen *gen, const sp_bench_opts *o, sp_bench_report *out);

/* Streaming-read bandwidth (1e9 bytes/s) of a fixed kernel reading `bytes`
 * (rounded down to 16) from one buffer, median of reps runs. */
sprig_status sp_bench_read_bandwidth(sp_exec *e, size_t bytes, int warmup, int reps, double *gbs);

/* ---- one family's kernel: sprig bench --family --------------------------------------------- */

/* Every key of a family (its MLP key variants at each batch and sparsity, or
 * the given fixed params), with the params the databases give (as sp_bench_run
 * looks them up), verified and timed by the tuner's measurement (sp_measure.h:
 * the spec's reference, rotating weight copies), next to the roof of the bytes
 * its declared arguments occupy: each input read once, each output written
 * once (an inout one both). For a gather family at sparsity > 0 that counts
 * every expert, more than it must read; sp_bench_run has the MLP's own roof. */
typedef struct sp_bench_kernel_row {
    char family[32], fixed[128], params[512], source[32];
    int batch;
    double sparsity;
    double us;                /* median; < 0 when it failed (note says why) */
    double rel_err;
    double bytes;             /* the declared arguments' bytes */
    double roof_us;           /* bytes / read bandwidth; < 0 when unknown */
    double predicted_us;      /* the static model's time for ours (its kernels, sp_analyze.h, at the
                                 routed share of experts, plus a launch gap between stages); < 0: none */
    char note[256];
} sp_bench_kernel_row;

typedef struct sp_bench_kernel_report {
    char device[256];
    char shape[64], dtype[8];
    int d, f, g;
    double read_gbs;
    char date[32];
    sp_bench_kernel_row *rows; /* owned, [n] */
    size_t n;
} sp_bench_kernel_report;

typedef struct sp_bench_kernel_opts {
    const char *family;
    const char *fixed;        /* NULL: the family's MLP key variants; else these fixed params only */
    int d, f, g;
    const char *dtype, *shape_name;
    const int *batches;
    int n_batches;
    const double *sparsities;
    int n_sparsities;
    int warmup, reps;
    uint64_t seed;
    size_t read_bytes;        /* the roof kernel streams this much; 0: no roof */
    const sp_db_set *dbs;
    const sp_gpu_id *gpu;
} sp_bench_kernel_opts;

sprig_status sp_bench_kernels(sp_exec *e, sprig_gen *gen, const sp_bench_kernel_opts *o, sp_bench_kernel_report *out);
void sp_bench_kernel_report_free(sp_bench_kernel_report *r);
void sp_bench_kernel_print(const sp_bench_kernel_report *r, FILE *to);
char *sp_bench_kernel_json(const sp_bench_kernel_report *r);

/* ---- the cuBLAS baseline (tuner/bench_cublas.c; CUDA executors only) ------------------------ */
typedef struct sp_cublas_baseline sp_cublas_baseline;
/* Loads libcublas (dlopen) and creates a handle on e's GPU; gen (borrowed,
 * must outlive the baseline) renders the swiglu family it runs between its
 * GEMMs. SPRIG_E_NO_DRIVER when libcublas cannot be loaded; SPRIG_E_INVALID
 * when e is not a CUDA executor. The caller owns *out. */
sprig_status sp_cublas_baseline_open(sp_exec *e, sprig_gen *gen, const char *dtype, sp_cublas_baseline **out);
void sp_cublas_baseline_close(sp_cublas_baseline *b);
/* sp_bench_baseline_fn: gate and up with cublasGemmEx (dtype in, fp32
 * compute), the swiglu family, down with cublasGemmEx; ctx is the sp_cublas_baseline. */
sprig_status sp_cublas_time_mlp(void *ctx, const sp_bench_operands *ops, double *median_us, double *rel_err);
/* dlopens libcublas and resolves its entry points, once per process (no GPU
 * needed). SPRIG_E_NO_DRIVER, with the reason, when it cannot. */
sprig_status sp_cublas_load(void);
/* The symbol names handed to dlsym (cublas_v2.h's: "cublasCreate_v2", ...), in
 * table order; stores at most cap, returns the count. */
int sp_cublas_symbol_names(const char **names, int cap);

#pragma GCC visibility pop
#endif
