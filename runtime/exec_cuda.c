/* The CUDA executor: sp_exec over the driver API (runtime/device.c). Plans are
 * compiled with NVRTC for the device's architecture through the cubin cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cuda_timing.h"
#include "sp_device.h"
#include "sp_error.h"
#include "sp_exec.h"

struct sp_exec_module {
    sp_module *mod;
};

/* e->impl: the device, and the stream timing runs on (created on first use:
 * graphs cannot be captured on the legacy default stream). */
typedef struct cu_impl {
    sp_device *dev;
    CUstream stream;
} cu_impl;

static sp_device *dev_of(sp_exec *e) { return ((cu_impl *)e->impl)->dev; }

sp_device *sp_exec_cuda_device(sp_exec *e) { return e && !strcmp(e->kind, "cuda") ? dev_of(e) : NULL; }

static sprig_status cu_alloc(sp_exec *e, sp_dptr *out, size_t n) {
    (void)e;
    CUdeviceptr p = 0;
    SP_TRY(sp_buf_alloc(&p, n));
    *out = (sp_dptr)p;
    return SPRIG_OK;
}
static void cu_free(sp_exec *e, sp_dptr p) { (void)e; sp_buf_free((CUdeviceptr)p); }
static sprig_status cu_upload(sp_exec *e, sp_dptr d, const void *s, size_t n) { (void)e; return sp_buf_upload((CUdeviceptr)d, s, n); }
static sprig_status cu_download(sp_exec *e, void *d, sp_dptr s, size_t n) { (void)e; return sp_buf_download(d, (CUdeviceptr)s, n); }
static sprig_status cu_fill(sp_exec *e, sp_dptr p, unsigned char b, size_t n) { (void)e; return sp_buf_fill((CUdeviceptr)p, b, n); }

static sprig_status cu_load(sp_exec *e, const sprig_plan *plan, sp_exec_module **out) {
    *out = NULL;
    sprig_compile_opts opts = {0};
    opts.arch = e->arch;
    opts.want_ptx = strncmp(e->arch, "compute_", 8) == 0;
    sprig_binary *bin = NULL;
    SP_TRY(sprig_compile(plan, &opts, &bin));
    sp_exec_module *m = calloc(1, sizeof *m);
    if (!m) {
        sprig_binary_free(bin);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    sprig_status s = sp_module_load(dev_of(e), bin, &m->mod);
    sprig_binary_free(bin);
    if (s == SPRIG_OK) s = sp_module_prepare(m->mod, plan);
    if (s != SPRIG_OK) {
        sp_module_unload(m->mod);
        free(m);
        return s;
    }
    *out = m;
    return SPRIG_OK;
}

static void cu_unload(sp_exec *e, sp_exec_module *m) {
    (void)e;
    sp_module_unload(m->mod);
    free(m);
}

static sprig_status cu_launch(sp_exec *e, sp_exec_module *m, const sprig_plan *plan, void **args) {
    (void)e;
    return sp_plan_launch(m->mod, plan, args, NULL);
}

static sprig_status cu_sync(sp_exec *e) { return sp_device_sync(dev_of(e)); }

static void cu_close(sp_exec *e) {
    cu_impl *impl = e->impl;
    if (impl->stream) sp_cu.cuStreamDestroy(impl->stream);
    sp_device_close(impl->dev);
    free(impl);
    free(e);
}

/* ---- timing ------------------------------------------------------------------ */

typedef struct cu_seq {
    const sp_exec_step *steps;
    int n_steps;
} cu_seq;

static sprig_status cu_enqueue(void *ctx, int set, CUstream stream) {
    const cu_seq *q = ctx;
    for (int i = 0; i < q->n_steps; ++i) {
        const sp_exec_step *st = &q->steps[i];
        SP_TRY(sp_plan_launch(st->module->mod, st->plan, st->arg_sets[set], stream));
    }
    return SPRIG_OK;
}

static sprig_status cu_time_seq(sp_exec *e, const sp_exec_step *steps, int n_steps, int n_sets, int warmup, int reps,
                                sp_timing *out) {
    cu_impl *impl = e->impl;
    if (!steps || n_steps < 1 || !out) return sp_fail(SPRIG_E_INVALID, "time_seq: no steps");
    for (int i = 0; i < n_steps; ++i)
        if (!steps[i].module || !steps[i].plan || !steps[i].arg_sets)
            return sp_fail(SPRIG_E_INVALID, "time_seq: step %d lacks a module, plan or argument sets", i);
    if (!impl->stream) SP_CHECK_CU(sp_cu.cuStreamCreate(&impl->stream, CU_STREAM_NON_BLOCKING));
    sp_cuda_time_opts o;
    sp_cuda_time_opts_init(&o);
    o.n_sets = n_sets, o.warmup = warmup, o.reps = reps;
    cu_seq q = {steps, n_steps};
    SP_TRY(sp_cuda_time(impl->stream, cu_enqueue, &q, &o, out));
    /* The clocks the driver reports (the SM clock attribute is the typical
     * clock, the memory one the peak); 0 when the driver no longer says. */
    out->sm_clock_mhz = impl->dev->props.clock_khz / 1e3;
    out->mem_clock_mhz = impl->dev->props.mem_clock_khz / 1e3;
    return SPRIG_OK;
}

static const sp_exec_ops kCudaOps = {cu_alloc, cu_free, cu_upload, cu_download, cu_fill, cu_load,
                                     cu_unload, cu_launch, cu_sync, cu_close, cu_time_seq};

/* The device's own sm_XY when NVRTC knows it, else PTX for the newest older
 * architecture (the driver JIT-compiles it for a GPU newer than the toolkit). */
static void pick_arch(const sp_device *dev, char *buf, size_t cap) {
    const int want = dev->props.cc_major * 10 + dev->props.cc_minor;
    int archs[64], best = 0;
    const int n = sprig_supported_archs(archs, 64);
    for (int i = 0; i < n && i < 64; ++i) {
        if (archs[i] == want) {
            snprintf(buf, cap, "sm_%d", want);
            return;
        }
        if (archs[i] < want && archs[i] > best) best = archs[i];
    }
    snprintf(buf, cap, "compute_%d", best ? best : want);
}

sprig_status sp_exec_open_cuda(sp_exec **out, int ordinal) {
    *out = NULL;
    sp_device *dev = NULL;
    SP_TRY(sp_device_open(&dev, ordinal));
    sp_exec *e = calloc(1, sizeof *e);
    cu_impl *impl = calloc(1, sizeof *impl);
    if (!e || !impl) {
        free(e);
        free(impl);
        sp_device_close(dev);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    impl->dev = dev;
    e->ops = &kCudaOps, e->kind = "cuda", e->impl = impl;
    e->sm_count = dev->props.sm_count;
    e->cc_major = dev->props.cc_major, e->cc_minor = dev->props.cc_minor;
    e->l2_bytes = dev->props.l2_bytes > 0 ? (size_t)dev->props.l2_bytes : 0;
    e->driver_version = dev->props.driver_version;
    snprintf(e->device, sizeof e->device, "%s", dev->props.name);
    pick_arch(dev, e->arch, sizeof e->arch);
    *out = e;
    return SPRIG_OK;
}
