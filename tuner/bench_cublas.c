/* The dense baseline of `sprig bench`: the MLP as cuBLAS runs it — gate and
 * up with cublasGemmEx (fp16/bf16 operands, fp32 compute), an elementwise
 * SwiGLU kernel, down with cublasGemmEx — timed with CUDA events over
 * rotating weight copies. libcublas is loaded with dlopen, like libcuda, so
 * sprig starts on machines without it. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>

#include "tuner_internal.h"
#include "sp_bench.h"
#include "sp_cuda_timing.h"
#include "sp_device.h"
#include "sp_error.h"
#include "sp_kargs.h"
#include "sp_reference.h"

/* The entry points used; cublas_v2.h's macros map the names to the _v2
 * symbols, for the member and the lookup alike (as in sp_cuda.h). */
#define CB_FUNCS(X) X(cublasCreate) X(cublasDestroy) X(cublasSetStream) X(cublasGemmEx)
#define CB_MEMBER(name) __typeof__(name) *name;
typedef struct cb_api {
    CB_FUNCS(CB_MEMBER)
} cb_api;
#undef CB_MEMBER
#define CB_STR_(x) #x
#define CB_STR(x) CB_STR_(x)

#define CB_MAX_SETS 64

/* The names handed to dlsym, in table order (sp_cublas_symbol_names shows them). */
#define CB_NAME(name) CB_STR(name),
static const char *const cb_names[] = {CB_FUNCS(CB_NAME)};
#undef CB_NAME
#define CB_N_FUNCS ((int)(sizeof cb_names / sizeof cb_names[0]))

static cb_api cb;
static void *cb_lib;
static pthread_once_t cb_once = PTHREAD_ONCE_INIT;
static char cb_error[768];

static void cb_load_once(void) {
    const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !cb_lib; ++i) cb_lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!cb_lib) {
        const char *why = dlerror();
        snprintf(cb_error, sizeof cb_error, "cannot load libcublas (libcublas.so.13/.12): %s", why ? why : "not found");
        return;
    }
    int ok = 1;
#define CB_SLOT(name) (void **)&cb.name,
    void **const slots[] = {CB_FUNCS(CB_SLOT)};
#undef CB_SLOT
    for (int i = 0; i < CB_N_FUNCS && ok; ++i)
        if (!(*slots[i] = dlsym(cb_lib, cb_names[i]))) {
            snprintf(cb_error, sizeof cb_error, "libcublas lacks %s", cb_names[i]);
            ok = 0;
        }
    if (!ok) {
        dlclose(cb_lib);
        cb_lib = NULL;
        memset(&cb, 0, sizeof cb);
    }
}

sprig_status sp_cublas_load(void) {
    pthread_once(&cb_once, cb_load_once);
    return cb_lib ? SPRIG_OK : sp_fail(SPRIG_E_NO_DRIVER, "%s", cb_error);
}

int sp_cublas_symbol_names(const char **names, int cap) {
    for (int i = 0; i < CB_N_FUNCS && i < cap; ++i) names[i] = cb_names[i];
    return CB_N_FUNCS;
}

struct sp_cublas_baseline {
    sp_device *dev;
    sprig_gen *gen;           /* borrowed: renders the swiglu family */
    char arch[24], dtype[8];
    cublasHandle_t handle;
    CUstream stream;
    int bf16;
};

void sp_cublas_baseline_close(sp_cublas_baseline *b) {
    if (!b) return;
    if (b->handle) cb.cublasDestroy(b->handle);
    if (b->stream) sp_cu.cuStreamDestroy(b->stream);
    free(b);
}

static sprig_status cb_create_stream(sp_cublas_baseline *b) {
    SP_CHECK_CU(sp_cu.cuStreamCreate(&b->stream, CU_STREAM_NON_BLOCKING));
    return SPRIG_OK;
}

/* Waits for the baseline's stream: a fault inside cuBLAS or the SwiGLU surfaces here. */
static sprig_status cb_sync(sp_cublas_baseline *b) {
    SP_CHECK_CU(sp_cu.cuStreamSynchronize(b->stream));
    return SPRIG_OK;
}

sprig_status sp_cublas_baseline_open(sp_exec *e, sprig_gen *gen, const char *dtype, sp_cublas_baseline **out) {
    *out = NULL;
    sp_device *dev = sp_exec_cuda_device(e);
    if (!dev) return sp_fail(SPRIG_E_INVALID, "the cuBLAS baseline needs a CUDA executor");
    SP_TRY(sp_cublas_load());
    sp_cublas_baseline *b = calloc(1, sizeof *b);
    SP_CHECK_ALLOC(b);
    b->dev = dev, b->gen = gen;
    b->bf16 = dtype && !strcmp(dtype, "bf16");
    snprintf(b->arch, sizeof b->arch, "%s", e->arch);
    snprintf(b->dtype, sizeof b->dtype, "%s", b->bf16 ? "bf16" : "fp16");
    sprig_status st = sp_device_make_current(dev);
    cublasStatus_t cs = CUBLAS_STATUS_SUCCESS;
    if (st == SPRIG_OK && (cs = cb.cublasCreate(&b->handle)) != CUBLAS_STATUS_SUCCESS) {
        b->handle = NULL;
        st = sp_fail(SPRIG_E_CUDA, "cublasCreate failed (status %d)", (int)cs);
    }
    if (st == SPRIG_OK) st = cb_create_stream(b);
    if (st != SPRIG_OK) {
        sp_cublas_baseline_close(b);
        return st;
    }
    *out = b;
    return SPRIG_OK;
}

/* ---- one timing ---------------------------------------------------------------------------- */

typedef struct cb_run {
    sp_cublas_baseline *b;
    const sp_bench_operands *ops;
    int n_sets;
    CUdeviceptr Wg[CB_MAX_SETS], Wu[CB_MAX_SETS], Wd[CB_MAX_SETS];
    CUdeviceptr x, gate, up, h, y;
    sprig_plan *swiglu;       /* the swiglu family at this shape, its defaults */
    sp_module *mod;
    sp_kargs args;
    void **list;
} cb_run;

/* Up to n_sets inclusive: a set whose allocation failed half-way holds
 * buffers too (the rest are 0, which sp_buf_free ignores). */
static void cb_run_free(cb_run *r) {
    for (int i = 0; i <= r->n_sets && i < CB_MAX_SETS; ++i)
        sp_buf_free(r->Wg[i]), sp_buf_free(r->Wu[i]), sp_buf_free(r->Wd[i]);
    sp_buf_free(r->x), sp_buf_free(r->gate), sp_buf_free(r->up), sp_buf_free(r->h), sp_buf_free(r->y);
    sp_module_unload(r->mod);
    sprig_plan_free(r->swiglu);
}

/* The SwiGLU between the GEMMs: the swiglu family at this batch and width
 * (its defaults: 16-byte loads, two vectors in flight per thread), compiled
 * for the GPU through the cubin cache, its arguments bound once. */
static sprig_status cb_swiglu(cb_run *r) {
    const sp_bench_operands *o = r->ops;
    sprig_request req = {"swiglu", o->d, o->f, r->b->dtype, o->batch, 1, ""};
    SP_TRY(sprig_gen_render(r->b->gen, &req, &r->swiglu));
    sprig_compile_opts co = {r->b->arch, strncmp(r->b->arch, "compute_", 8) == 0, NULL, 0};
    sprig_binary *bin = NULL;
    SP_TRY(sprig_compile(r->swiglu, &co, &bin));
    sprig_status st = sp_module_load(r->b->dev, bin, &r->mod);
    sprig_binary_free(bin);
    SP_TRY(st);
    SP_TRY(sp_module_prepare(r->mod, r->swiglu));
    sp_kargs_init(&r->args, r->swiglu);
    sp_kargs_ptr(&r->args, "gate", r->gate);
    sp_kargs_ptr(&r->args, "up", r->up);
    sp_kargs_ptr(&r->args, "h", r->h);
    return sp_kargs_finish(&r->args, &r->list);
}

static sprig_status cb_upload_new(CUdeviceptr *p, const void *src, size_t bytes) {
    SP_TRY(sp_buf_alloc(p, bytes));
    return sp_buf_upload(*p, src, bytes);
}

static sprig_status cb_run_alloc(cb_run *r) {
    const sp_bench_operands *o = r->ops;
    size_t fd = 2 * (size_t)o->f * o->d, per_set = 3 * fd;
    size_t want = (2 * o->l2_bytes + per_set) / per_set;
    if (want < 2) want = 2;
    if (want > CB_MAX_SETS) want = CB_MAX_SETS;
    while (want > 1 && want * per_set > ((size_t)4 << 30)) --want;
    for (; r->n_sets < (int)want; ++r->n_sets) {
        SP_TRY(cb_upload_new(&r->Wg[r->n_sets], o->Wg, fd));
        SP_TRY(cb_upload_new(&r->Wu[r->n_sets], o->Wu, fd));
        SP_TRY(cb_upload_new(&r->Wd[r->n_sets], o->Wd, fd));
    }
    size_t B = (size_t)o->batch;
    SP_TRY(cb_upload_new(&r->x, o->x, 2 * B * o->d));
    SP_TRY(sp_buf_alloc(&r->gate, 2 * B * o->f));
    SP_TRY(sp_buf_alloc(&r->up, 2 * B * o->f));
    SP_TRY(sp_buf_alloc(&r->h, 2 * B * o->f));
    SP_TRY(sp_buf_alloc(&r->y, 2 * B * o->d));
    return SPRIG_OK;
}

/* y = W x for every token: W row-major [m][k] is column-major k x m, so
 * C (m x B, column-major = row-major [B][m]) = op_T(W) * x. */
static sprig_status cb_gemm(cb_run *r, CUdeviceptr W, CUdeviceptr x, CUdeviceptr y, int m, int k) {
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType t = r->b->bf16 ? CUDA_R_16BF : CUDA_R_16F;
    cublasStatus_t s = cb.cublasGemmEx(r->b->handle, CUBLAS_OP_T, CUBLAS_OP_N, m, r->ops->batch, k, &one,
                                       (const void *)(uintptr_t)W, t, k, (const void *)(uintptr_t)x, t, k, &zero,
                                       (void *)(uintptr_t)y, t, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return sp_fail(SPRIG_E_CUDA, "cublasGemmEx (m=%d, n=%d, k=%d) failed with status %d", m, r->ops->batch, k,
                       (int)s);
    return SPRIG_OK;
}

static sprig_status cb_enqueue(void *ctx, int set, CUstream stream) {
    cb_run *r = ctx;
    const sp_bench_operands *o = r->ops;
    cublasStatus_t s = cb.cublasSetStream(r->b->handle, (cudaStream_t)stream);
    if (s != CUBLAS_STATUS_SUCCESS) return sp_fail(SPRIG_E_CUDA, "cublasSetStream failed with status %d", (int)s);
    SP_TRY(cb_gemm(r, r->Wg[set], r->x, r->gate, o->f, o->d));
    SP_TRY(cb_gemm(r, r->Wu[set], r->x, r->up, o->f, o->d));
    SP_TRY(sp_plan_launch(r->mod, r->swiglu, r->list, stream));
    return cb_gemm(r, r->Wd[set], r->h, r->y, o->d, o->f);
}

static sprig_status cb_check(cb_run *r, double *rel) {
    const sp_bench_operands *o = r->ops;
    size_t n = (size_t)o->batch * o->d;
    uint16_t *y = malloc(2 * n);
    SP_CHECK_ALLOC(y);
    sprig_status st = sp_buf_download(y, r->y, 2 * n);
    double d2 = 0, r2 = 0;
    long bad = 0;
    for (size_t i = 0; st == SPRIG_OK && i < n; ++i) {
        double v = sp_ref_from_bits(o->bf16, y[i]);
        if (!isfinite(v)) ++bad;
        else d2 += (v - o->y_ref[i]) * (v - o->y_ref[i]), r2 += o->y_ref[i] * o->y_ref[i];
    }
    free(y);
    *rel = bad ? INFINITY : r2 > 0 ? sqrt(d2 / r2) : INFINITY;
    return st;
}

sprig_status sp_cublas_time_mlp(void *ctx, const sp_bench_operands *ops, double *median_us, double *rel_err) {
    sp_cublas_baseline *b = ctx;
    *median_us = -1, *rel_err = INFINITY;
    cb_run *r = calloc(1, sizeof *r);
    SP_CHECK_ALLOC(r);
    r->b = b, r->ops = ops;
    sprig_status st = cb_run_alloc(r);
    if (st == SPRIG_OK) st = cb_swiglu(r);
    /* The uploads ran on the legacy stream, which b->stream (non-blocking)
     * does not wait for, and a pageable cuMemcpyHtoD may return before its
     * DMA has landed: wait for them before cuBLAS reads the operands. */
    if (st == SPRIG_OK) st = sp_device_sync(b->dev);
    if (st == SPRIG_OK) st = cb_enqueue(r, 0, b->stream); /* one checked run first */
    if (st == SPRIG_OK && (st = cb_sync(b)) != SPRIG_OK) st = sp_wrap(st, "the cuBLAS MLP failed");
    if (st == SPRIG_OK) st = cb_check(r, rel_err);
    if (st == SPRIG_OK) {
        sp_cuda_time_opts o;
        sp_cuda_time_opts_init(&o);
        o.n_sets = r->n_sets, o.warmup = ops->warmup, o.reps = ops->reps;
        o.target_us = 0; /* cuBLAS is not graph-captured: direct launches, as users call it */
        sp_timing t;
        st = sp_cuda_time(b->stream, cb_enqueue, r, &o, &t);
        if (st == SPRIG_OK) *median_us = t.median_us;
    }
    cb_run_free(r);
    free(r);
    return st;
}
