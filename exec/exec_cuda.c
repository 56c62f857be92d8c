/* The CUDA executor: sp_exec over the driver API (exec/device.c). Plans are
 * compiled with NVRTC for the device's architecture through the cubin cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cuda_timing.h"
#include "sp_device.h"
#include "sp_error.h"
#include "sp_exec.h"

/* The first driver whose stream capture keeps programmatic launches as graph edges. */
#define PDL_MIN_DRIVER 12030

struct sp_exec_module {
    sp_module *mod;
};

/* Work the executor put off while capturing (see cu_defer): a buffer or a
 * module to free, or a graph to destroy, once the capture has ended. */
typedef struct cu_deferred {
    sp_dptr buf;
    sp_exec_module *module;
    sp_exec_graph *graph;
} cu_deferred;

/* One profiled launch: its plan and the events recorded before and after it. */
typedef struct cu_profiled {
    const sprig_plan *plan;
    CUevent start, end;
} cu_profiled;

/* e->impl.
 *
 * `stream` is the executor's own stream: every launch and every graph replay
 * goes there (the legacy default stream cannot be captured). It is created
 * with CU_STREAM_DEFAULT, i.e. *blocking*, on purpose: upload, download and
 * fill use the synchronous cuMemcpyHtoD/DtoH and cuMemsetD8, which run on the
 * legacy default stream, and the legacy stream is ordered with every blocking
 * stream both ways (it waits for work enqueued before it on blocking streams,
 * and their later work waits for it). So an upload is seen by the next launch
 * and a download sees everything launched before it, exactly as when every
 * launch went to the legacy stream. A CU_STREAM_NON_BLOCKING stream would
 * race with them. The price: while this stream captures, the legacy stream of
 * the whole context is unusable (CUDA_ERROR_STREAM_CAPTURE_IMPLICIT), which
 * is one more reason why upload/download/fill are refused while capturing,
 * and why no other code may use the legacy stream of this context then.
 *
 * `timing_stream` is time_seq's (created on first use, non-blocking: it
 * synchronises the context before it starts, see cuda_timing.c).
 *
 * While `capturing`, `capture_status` keeps the first failure (a refused
 * free/unload, a launch the driver refused) with its message, for
 * capture_end to report; `deferred` holds what free/unload/graph_free were
 * asked to release during the capture. */
typedef struct cu_impl {
    sp_device *dev;
    CUstream stream;
    CUstream timing_stream;
    int capturing;
    sprig_status capture_status;
    char capture_error[1024];
    cu_deferred *deferred;
    int n_deferred, cap_deferred;
    int profiling;            /* between profile_begin and profile_end */
    cu_profiled *profiled;
    int n_profiled, cap_profiled;
} cu_impl;

/* A captured launch sequence: the graph and its instantiation (both owned). */
struct sp_exec_graph {
    CUgraph graph;
    CUgraphExec exec;
};

static cu_impl *impl_of(sp_exec *e) { return e->impl; }
static sp_device *dev_of(sp_exec *e) { return impl_of(e)->dev; }

sp_device *sp_exec_cuda_device(sp_exec *e) { return e && !strcmp(e->kind, "cuda") ? dev_of(e) : NULL; }

/* ---- capture bookkeeping -------------------------------------------------------- */

/* An operation that must not run while the stream captures (it would run
 * outside the graph, or be an unsafe call that invalidates the capture). It
 * does nothing, and the capture goes on unharmed. */
static sprig_status cu_refuse(const char *op) {
    return sp_fail(SPRIG_E_INVALID,
                   "%s while capturing a CUDA graph is not allowed: only launches may come between "
                   "capture_begin and capture_end",
                   op);
}

/* Keeps the first failure of a capture for capture_end, with the message
 * sp_fail just recorded (the thread-local message is overwritten later). */
static void cu_capture_failed(cu_impl *impl, sprig_status s) {
    if (impl->capture_status != SPRIG_OK) return;
    impl->capture_status = s;
    snprintf(impl->capture_error, sizeof impl->capture_error, "%s", sprig_last_error());
}

/* free, unload or graph_free while capturing: releasing now would be an
 * unsafe call inside the capture (cuMemFree synchronises), so it happens at
 * capture_end instead. Freeing a buffer or a module also fails the capture
 * (`fails`): its launches may use what was freed, and a graph that does would
 * replay into freed memory. When even the list cannot grow, the object leaks
 * and the capture fails saying so. */
static void cu_defer(cu_impl *impl, cu_deferred d, const char *what, int fails) {
    if (impl->n_deferred == impl->cap_deferred) {
        const int cap = impl->cap_deferred ? 2 * impl->cap_deferred : 8;
        cu_deferred *p = realloc(impl->deferred, (size_t)cap * sizeof *p);
        if (!p) {
            cu_capture_failed(impl, sp_fail(SPRIG_E_NOMEM, "%s while capturing: out of memory postponing it (leaked)",
                                            what));
            return;
        }
        impl->deferred = p, impl->cap_deferred = cap;
    }
    impl->deferred[impl->n_deferred++] = d;
    if (fails)
        cu_capture_failed(impl, sp_fail(SPRIG_E_INVALID,
                                        "%s while capturing a CUDA graph: postponed to capture_end, and the "
                                        "capture is discarded since its launches may use what was freed",
                                        what));
}

static void cu_module_free(sp_exec_module *m) {
    sp_module_unload(m->mod);
    free(m);
}

static void cu_graph_destroy(sp_exec_graph *g) {
    if (g->exec) sp_cu.cuGraphExecDestroy(g->exec); /* one still running is freed when it completes */
    if (g->graph) sp_cu.cuGraphDestroy(g->graph);
    free(g);
}

/* Releases what was postponed during the capture (the stream no longer captures). */
static void cu_release_deferred(cu_impl *impl) {
    for (int i = 0; i < impl->n_deferred; ++i) {
        const cu_deferred *d = &impl->deferred[i];
        if (d->buf) sp_buf_free((CUdeviceptr)d->buf);
        if (d->module) cu_module_free(d->module);
        if (d->graph) cu_graph_destroy(d->graph);
    }
    impl->n_deferred = 0;
}

/* ---- memory and modules ------------------------------------------------------------ */

static sprig_status cu_alloc(sp_exec *e, sp_dptr *out, size_t n) {
    *out = 0;
    if (impl_of(e)->capturing) return cu_refuse("alloc");
    CUdeviceptr p = 0;
    SP_TRY(sp_buf_alloc(&p, n));
    *out = (sp_dptr)p;
    return SPRIG_OK;
}
static void cu_free(sp_exec *e, sp_dptr p) {
    cu_impl *impl = impl_of(e);
    if (impl->capturing) cu_defer(impl, (cu_deferred){.buf = p}, "free", 1);
    else sp_buf_free((CUdeviceptr)p);
}
/* The synchronous copies and memset below run on the legacy default stream,
 * ordered with the executor's blocking stream (see cu_impl). */
static sprig_status cu_upload(sp_exec *e, sp_dptr d, const void *s, size_t n) {
    if (impl_of(e)->capturing) return cu_refuse("upload");
    return sp_buf_upload((CUdeviceptr)d, s, n);
}
static sprig_status cu_download(sp_exec *e, void *d, sp_dptr s, size_t n) {
    if (impl_of(e)->capturing) return cu_refuse("download");
    return sp_buf_download(d, (CUdeviceptr)s, n);
}
static sprig_status cu_fill(sp_exec *e, sp_dptr p, unsigned char b, size_t n) {
    if (impl_of(e)->capturing) return cu_refuse("fill");
    return sp_buf_fill((CUdeviceptr)p, b, n);
}

static sprig_status cu_load(sp_exec *e, const sprig_plan *plan, sp_exec_module **out) {
    *out = NULL;
    if (impl_of(e)->capturing) return cu_refuse("load");
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
    /* Resolving the kernels and raising their shared-memory limits here means
     * a launch inside a capture sets no function attribute. */
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
    cu_impl *impl = impl_of(e);
    if (impl->capturing) cu_defer(impl, (cu_deferred){.module = m}, "unload", 1);
    else cu_module_free(m);
}

/* ---- launches ---------------------------------------------------------------------- */

/* On the executor's stream; while capturing, cuLaunchKernel copies the
 * argument values into the graph's kernel node. A launch the driver refuses
 * during a capture also fails the capture (the graph would lack it). */
static sprig_status cu_launch_profiled(cu_impl *impl, sp_exec_module *m, const sprig_plan *plan, void **args,
                                       int pdl);

/* A programmatic launch the driver refuses is made again plain (sp_plan_launch_ex),
 * and if that goes, the executor launches plainly from then on (said once): PDL
 * only ever saves time. In a capture the refusal has failed the capture, and the
 * caller decides (sp_exec_pdl_off). */
static sprig_status cu_launch(sp_exec *e, sp_exec_module *m, const sprig_plan *plan, void **args) {
    cu_impl *impl = impl_of(e);
    if (impl->profiling && !impl->capturing) return cu_launch_profiled(impl, m, plan, args, e->pdl);
    CUresult refused = CUDA_SUCCESS;
    const sprig_status s = sp_plan_launch_ex(m->mod, plan, args, impl->stream, e->pdl, &refused);
    if (refused != CUDA_SUCCESS) sp_exec_pdl_off(e, sp_cu_error_name(refused));
    if (s != SPRIG_OK && impl->capturing) cu_capture_failed(impl, s);
    return s;
}

/* cuCtxSynchronize: the executor's stream, the legacy one and the timing one. */
static sprig_status cu_sync(sp_exec *e) {
    if (impl_of(e)->capturing) return cu_refuse("sync");
    return sp_device_sync(dev_of(e));
}

/* ---- graph capture ------------------------------------------------------------------
 * CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: this thread's potentially unsafe calls
 * (allocations, synchronous copies, synchronisation) made behind the
 * executor's back invalidate the capture, which capture_end then reports;
 * the executor's own unsafe operations are refused before they reach the
 * driver. GLOBAL would also make such calls fail on every other thread of the
 * process for as long as we capture (another executor, another GPU), coupling
 * what is independent; RELAXED would let this thread's unsafe calls through
 * unnoticed. THREAD_LOCAL requires capture_end on the thread that called
 * capture_begin, which holds anyway: the context is current per thread
 * (sp_device.h). cuda_timing.c captures the same way. */
static sprig_status cu_capture_begin(sp_exec *e) {
    cu_impl *impl = impl_of(e);
    if (impl->capturing)
        return sp_fail(SPRIG_E_INVALID, "capture_begin: this executor is already capturing (end that first with capture_end)");
    const CUresult r = sp_cu.cuStreamBeginCapture(impl->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
    if (r != CUDA_SUCCESS)
        return sp_fail(SPRIG_E_CUDA, "starting a CUDA graph capture on the executor's stream failed: %s",
                       sp_cu_error_name(r));
    impl->capturing = 1;
    impl->capture_status = SPRIG_OK;
    impl->capture_error[0] = '\0';
    return SPRIG_OK;
}

/* Takes ownership of graph: instantiates it into *out, or destroys it. */
static sprig_status cu_instantiate(CUgraph graph, sp_exec_graph **out) {
    sp_exec_graph *g = calloc(1, sizeof *g);
    if (!g) {
        sp_cu.cuGraphDestroy(graph);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    g->graph = graph;
    const CUresult r = sp_cu.cuGraphInstantiate(&g->exec, graph, 0);
    if (r != CUDA_SUCCESS) {
        g->exec = NULL;
        cu_graph_destroy(g);
        return sp_fail(SPRIG_E_CUDA, "instantiating the captured CUDA graph failed: %s", sp_cu_error_name(r));
    }
    *out = g;
    return SPRIG_OK;
}

static sprig_status cu_capture_end(sp_exec *e, sp_exec_graph **out) {
    cu_impl *impl = impl_of(e);
    if (out) *out = NULL;
    if (!impl->capturing) return sp_fail(SPRIG_E_INVALID, "capture_end: this executor is not capturing");
    CUgraph graph = NULL;
    const CUresult r = sp_cu.cuStreamEndCapture(impl->stream, &graph); /* ends the capture, valid or not */
    impl->capturing = 0;
    cu_release_deferred(impl);
    sprig_status s = SPRIG_OK;
    if (impl->capture_status != SPRIG_OK)
        s = sp_fail(impl->capture_status, "the CUDA graph capture failed, no graph was made: %s", impl->capture_error);
    else if (r != CUDA_SUCCESS || !graph)
        s = sp_fail(SPRIG_E_CUDA,
                    "ending the CUDA graph capture failed (%s): the driver invalidated the capture, e.g. after an "
                    "allocation, a synchronous copy or a synchronisation on this thread, or a use of the legacy "
                    "default stream, while capturing",
                    sp_cu_error_name(r));
    else if (!out)
        s = sp_fail(SPRIG_E_INVALID, "capture_end: no place for the graph (out is NULL)");
    if (s != SPRIG_OK) {
        if (graph) sp_cu.cuGraphDestroy(graph);
        return s;
    }
    return cu_instantiate(graph, out);
}

static sprig_status cu_graph_launch(sp_exec *e, sp_exec_graph *g) {
    cu_impl *impl = impl_of(e);
    if (!g) return sp_fail(SPRIG_E_INVALID, "graph_launch: no graph");
    if (impl->capturing) return cu_refuse("graph_launch");
    const CUresult r = sp_cu.cuGraphLaunch(g->exec, impl->stream);
    if (r != CUDA_SUCCESS) return sp_fail(SPRIG_E_CUDA, "replaying a CUDA graph failed: %s", sp_cu_error_name(r));
    return SPRIG_OK;
}

/* While capturing, destroying is postponed to capture_end (the capture does
 * not use other graphs, so it is not failed for it). */
static void cu_graph_free(sp_exec *e, sp_exec_graph *g) {
    cu_impl *impl = impl_of(e);
    if (impl->capturing) cu_defer(impl, (cu_deferred){.graph = g}, "graph_free", 0);
    else cu_graph_destroy(g);
}

/* Graphs and modules must be freed first; a capture still open is ended and dropped. */
/* ---- profiling --------------------------------------------------------------- */

static void cu_profile_clear(cu_impl *impl) {
    for (int i = 0; i < impl->n_profiled; ++i) {
        sp_cu.cuEventDestroy(impl->profiled[i].start);
        sp_cu.cuEventDestroy(impl->profiled[i].end);
    }
    impl->n_profiled = 0;
}

/* The launch between two events of its own (created per launch: a decode
 * step's few hundred launches need no pool). */
static sprig_status cu_launch_profiled(cu_impl *impl, sp_exec_module *m, const sprig_plan *plan, void **args,
                                       int pdl) {
    if (impl->n_profiled == impl->cap_profiled) {
        const int cap = impl->cap_profiled ? 2 * impl->cap_profiled : 256;
        cu_profiled *grown = realloc(impl->profiled, sizeof *grown * (size_t)cap);
        SP_CHECK_ALLOC(grown);
        impl->profiled = grown, impl->cap_profiled = cap;
    }
    cu_profiled p = {plan, NULL, NULL};
    SP_CHECK_CU(sp_cu.cuEventCreate(&p.start, CU_EVENT_DEFAULT));
    sprig_status s = SPRIG_OK;
    if (sp_cu.cuEventCreate(&p.end, CU_EVENT_DEFAULT) != CUDA_SUCCESS)
        s = sp_fail(SPRIG_E_CUDA, "cuEventCreate failed while profiling %s", plan->family);
    if (s == SPRIG_OK && sp_cu.cuEventRecord(p.start, impl->stream) != CUDA_SUCCESS)
        s = sp_fail(SPRIG_E_CUDA, "cuEventRecord failed while profiling %s", plan->family);
    if (s == SPRIG_OK) s = sp_plan_launch_ex(m->mod, plan, args, impl->stream, pdl, NULL);
    if (s == SPRIG_OK && sp_cu.cuEventRecord(p.end, impl->stream) != CUDA_SUCCESS)
        s = sp_fail(SPRIG_E_CUDA, "cuEventRecord failed while profiling %s", plan->family);
    if (s != SPRIG_OK) {
        sp_cu.cuEventDestroy(p.start);
        if (p.end) sp_cu.cuEventDestroy(p.end);
        return s;
    }
    impl->profiled[impl->n_profiled++] = p;
    return SPRIG_OK;
}

static sprig_status cu_profile_begin(sp_exec *e) {
    cu_impl *impl = impl_of(e);
    if (impl->capturing) return cu_refuse("profile_begin");
    cu_profile_clear(impl);
    impl->profiling = 1;
    return SPRIG_OK;
}

static sprig_status cu_profile_end(sp_exec *e, sp_launch_time **out, int *n) {
    cu_impl *impl = impl_of(e);
    *out = NULL, *n = 0;
    if (impl->capturing) return cu_refuse("profile_end");
    impl->profiling = 0;
    sprig_status s = sp_device_sync(impl->dev);
    sp_launch_time *times = NULL;
    if (s == SPRIG_OK && impl->n_profiled) {
        times = malloc(sizeof *times * (size_t)impl->n_profiled);
        if (!times) s = sp_fail(SPRIG_E_NOMEM, "out of memory reading %d profiled launches", impl->n_profiled);
    }
    for (int i = 0; s == SPRIG_OK && i < impl->n_profiled; ++i) {
        float ms = 0;
        if (sp_cu.cuEventElapsedTime(&ms, impl->profiled[i].start, impl->profiled[i].end) != CUDA_SUCCESS)
            s = sp_fail(SPRIG_E_CUDA, "cuEventElapsedTime failed for a profiled launch of %s",
                        impl->profiled[i].plan->family);
        else times[i] = (sp_launch_time){impl->profiled[i].plan, ms * 1e3};
    }
    if (s == SPRIG_OK) *out = times, *n = impl->n_profiled;
    else free(times);
    cu_profile_clear(impl);
    return s;
}

static void cu_close(sp_exec *e) {
    cu_impl *impl = e->impl;
    cu_profile_clear(impl);
    free(impl->profiled);
    if (impl->capturing) {
        CUgraph graph = NULL;
        if (sp_cu.cuStreamEndCapture(impl->stream, &graph) == CUDA_SUCCESS && graph) sp_cu.cuGraphDestroy(graph);
        impl->capturing = 0;
    }
    cu_release_deferred(impl);
    free(impl->deferred);
    if (impl->stream) sp_cu.cuStreamDestroy(impl->stream);
    if (impl->timing_stream) sp_cu.cuStreamDestroy(impl->timing_stream);
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
    if (impl->capturing) return cu_refuse("time_seq");
    if (!steps || n_steps < 1 || !out) return sp_fail(SPRIG_E_INVALID, "time_seq: no steps");
    for (int i = 0; i < n_steps; ++i)
        if (!steps[i].module || !steps[i].plan || !steps[i].arg_sets)
            return sp_fail(SPRIG_E_INVALID, "time_seq: step %d lacks a module, plan or argument sets", i);
    if (!impl->timing_stream) SP_CHECK_CU(sp_cu.cuStreamCreate(&impl->timing_stream, CU_STREAM_NON_BLOCKING));
    sp_cuda_time_opts o;
    sp_cuda_time_opts_init(&o);
    o.n_sets = n_sets, o.warmup = warmup, o.reps = reps;
    cu_seq q = {steps, n_steps};
    SP_TRY(sp_cuda_time(impl->timing_stream, cu_enqueue, &q, &o, out));
    /* The clocks the driver reports (the SM clock attribute is the typical
     * clock, the memory one the peak); 0 when the driver no longer says. */
    out->sm_clock_mhz = impl->dev->props.clock_khz / 1e3;
    out->mem_clock_mhz = impl->dev->props.mem_clock_khz / 1e3;
    return SPRIG_OK;
}

static const sp_exec_ops kCudaOps = {
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .fill = cu_fill,
    .load = cu_load,
    .unload = cu_unload,
    .launch = cu_launch,
    .sync = cu_sync,
    .close = cu_close,
    .time_seq = cu_time_seq,
    .capture_begin = cu_capture_begin,
    .capture_end = cu_capture_end,
    .graph_launch = cu_graph_launch,
    .graph_free = cu_graph_free,
    .profile_begin = cu_profile_begin,
    .profile_end = cu_profile_end,
};

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

void sp_exec_pdl_off(sp_exec *e, const char *why) {
    if (!e->pdl) return;
    e->pdl = 0;
    fprintf(stderr, "sprig: programmatic dependent launch refused (%s): plain launches from now on\n", why);
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
    /* Blocking on purpose: ordered with the legacy stream's copies (see cu_impl). */
    const CUresult r = sp_cu.cuStreamCreate(&impl->stream, CU_STREAM_DEFAULT);
    if (r != CUDA_SUCCESS) {
        free(e);
        free(impl);
        sp_device_close(dev);
        return sp_fail(SPRIG_E_CUDA, "creating the executor's stream failed: %s", sp_cu_error_name(r));
    }
    e->ops = &kCudaOps, e->kind = "cuda", e->impl = impl;
    e->sm_count = dev->props.sm_count;
    e->cc_major = dev->props.cc_major, e->cc_minor = dev->props.cc_minor;
    e->l2_bytes = dev->props.l2_bytes > 0 ? (size_t)dev->props.l2_bytes : 0;
    e->driver_version = dev->props.driver_version;
    snprintf(e->device, sizeof e->device, "%s", dev->props.name);
    pick_arch(dev, e->arch, sizeof e->arch);
    /* Programmatic dependent launch wherever it can be had: sm_90 and later, a driver
     * with cuLaunchKernelEx that captures PDL's edges into graphs (12.3). SPRIG_PDL=0
     * turns it off; SPRIG_PDL=1 where it cannot be had is said once, and launches are
     * plain. (On by default since 2026-12-05, before a GPU has timed it: the kernels
     * compute what they compute serialised by construction, which the emulator and
     * the SASS check, and scripts/gpu-check.sh times the decode step both ways.) */
    const char *pdl = getenv("SPRIG_PDL");
    const int pdl_driver = sp_cu.cuLaunchKernelEx != NULL && e->driver_version >= PDL_MIN_DRIVER;
    e->pdl = !(pdl && !strcmp(pdl, "0")) && e->cc_major >= 9 && pdl_driver;
    if (pdl && !strcmp(pdl, "1") && !e->pdl)
        fprintf(stderr, "sprig: SPRIG_PDL=1 ignored: programmatic dependent launch needs sm_90 (this is sm_%d%d) "
                "and a CUDA 12.3 driver with cuLaunchKernelEx (this is %d.%d%s)\n", e->cc_major, e->cc_minor,
                e->driver_version / 1000, e->driver_version % 1000 / 10,
                sp_cu.cuLaunchKernelEx ? "" : ", without it");
    *out = e;
    return SPRIG_OK;
}
