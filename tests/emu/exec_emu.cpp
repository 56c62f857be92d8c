#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <new>
#include <string>
#include <vector>

#include "emu_check.h"
#include "emu_runtime.h"
#include "exec_emu.h"

extern "C" sprig_status sp_fail(sprig_status status, const char *fmt, ...);

struct sp_exec_module {
    sp_emu_module *mod;
};

/* One recorded launch: the plan, and a copy of each argument's value (the
 * caller's args point at its locals, gone by replay). */
struct emu_launch_rec {
    sp_exec_module *module; /* borrowed, as the plan: they must outlive the graph */
    const sprig_plan *plan;
    std::vector<unsigned char> bytes;
    std::vector<size_t> offsets; /* of each argument in bytes */
};

/* A captured launch sequence: run in order at each graph_launch. */
struct sp_exec_graph {
    std::vector<emu_launch_rec> launches;
};

/* What free/unload/graph_free asked to release while capturing (capture_end does it). */
struct emu_deferred {
    sp_dptr buf;
    sp_exec_module *module;
    sp_exec_graph *graph;
};

/* e->impl: the capture and profiling state (the emulator has no other per-executor state). */
struct emu_impl {
    bool profiling = false;                 /* between profile_begin and profile_end */
    std::vector<sp_launch_time> profiled;   /* wall-clock times: plumbing only */
    bool capturing = false;
    sp_exec_graph *recording = nullptr;
    sprig_status capture_status = SPRIG_OK; /* the first failure while capturing */
    std::string capture_error;
    std::vector<emu_deferred> deferred;
};

static emu_impl *impl_of(sp_exec *e) { return (emu_impl *)e->impl; }
static void *host(sp_dptr p) { return (void *)(uintptr_t)p; }

/* The same rules and messages as the CUDA executor (exec/exec_cuda.c). */
static sprig_status emu_refuse(const char *op) {
    return sp_fail(SPRIG_E_INVALID,
                   "%s while capturing a graph is not allowed: only launches may come between capture_begin and "
                   "capture_end",
                   op);
}

static void emu_capture_failed(emu_impl *impl, sprig_status s) {
    if (impl->capture_status != SPRIG_OK) return;
    impl->capture_status = s;
    impl->capture_error = sprig_last_error();
}

/* free/unload/graph_free while capturing: done at capture_end; freeing a
 * buffer or module fails the capture (its launches may use it). */
static void emu_defer(emu_impl *impl, emu_deferred d, const char *what, bool fails) {
    try {
        impl->deferred.push_back(d);
    } catch (...) {
        emu_capture_failed(impl, sp_fail(SPRIG_E_NOMEM, "%s while capturing: out of memory postponing it (leaked)", what));
        return;
    }
    if (fails)
        emu_capture_failed(impl, sp_fail(SPRIG_E_INVALID,
                                         "%s while capturing a graph: postponed to capture_end, and the capture is "
                                         "discarded since its launches may use what was freed",
                                         what));
}

static void emu_module_free(sp_exec_module *m) {
    sp_emu_module_free(m->mod);
    delete m;
}

static void emu_release_deferred(emu_impl *impl) {
    for (const emu_deferred &d : impl->deferred) {
        sp_emu_free(host(d.buf));
        if (d.module) emu_module_free(d.module);
        delete d.graph;
    }
    impl->deferred.clear();
}

static sprig_status emu_alloc(sp_exec *e, sp_dptr *out, size_t n) {
    *out = 0;
    if (impl_of(e)->capturing) return emu_refuse("alloc");
    void *p = n ? sp_emu_alloc(n) : nullptr; /* between guard pages: emu_check.h */
    if (n && !p) return sp_fail(SPRIG_E_NOMEM, "emulator: out of memory (%zu bytes)", n);
    *out = (sp_dptr)(uintptr_t)p;
    return SPRIG_OK;
}
static void emu_free(sp_exec *e, sp_dptr p) {
    emu_impl *impl = impl_of(e);
    if (impl->capturing) emu_defer(impl, emu_deferred{p, nullptr, nullptr}, "free", true);
    else sp_emu_free(host(p));
}
static sprig_status emu_upload(sp_exec *e, sp_dptr d, const void *s, size_t n) {
    if (impl_of(e)->capturing) return emu_refuse("upload");
    if (n) memcpy(host(d), s, n);
    return SPRIG_OK;
}
static sprig_status emu_download(sp_exec *e, void *d, sp_dptr s, size_t n) {
    if (impl_of(e)->capturing) return emu_refuse("download");
    if (n) memcpy(d, host(s), n);
    return SPRIG_OK;
}
static sprig_status emu_fill(sp_exec *e, sp_dptr p, unsigned char b, size_t n) {
    if (impl_of(e)->capturing) return emu_refuse("fill");
    if (n) memset(host(p), b, n);
    return SPRIG_OK;
}

static sprig_status emu_load(sp_exec *e, const sprig_plan *plan, sp_exec_module **out) {
    *out = nullptr;
    if (impl_of(e)->capturing) return emu_refuse("load");
    sp_emu_module *mod = nullptr;
    sprig_status s = sp_emu_module_load(plan, &mod);
    if (s != SPRIG_OK) return s;
    *out = new sp_exec_module{mod};
    return SPRIG_OK;
}
static void emu_unload(sp_exec *e, sp_exec_module *m) {
    emu_impl *impl = impl_of(e);
    if (impl->capturing) emu_defer(impl, emu_deferred{0, m, nullptr}, "unload", true);
    else emu_module_free(m);
}

/* Appends the launch to the recording, copying each argument's bytes (the
 * sizes of the plan's widest kernel, checked at load). Slots are 16-byte
 * aligned so that replay reads every value aligned. */
static sprig_status emu_record(emu_impl *impl, sp_exec_module *m, const sprig_plan *plan, void **args) {
    size_t sizes[SP_EMU_MAX_PARAMS];
    const int n = sp_emu_plan_param_sizes(m->mod, sizes, SP_EMU_MAX_PARAMS);
    if (n < 0 || n > SP_EMU_MAX_PARAMS)
        return sp_fail(SPRIG_E_INTERNAL, "emu: recording %s: the module's parameter sizes are unknown", plan->family);
    if (n > 0 && !args) return sp_fail(SPRIG_E_INVALID, "emu: recording %s: no arguments", plan->family);
    try {
        emu_launch_rec rec;
        rec.module = m;
        rec.plan = plan;
        size_t at = 0;
        for (int i = 0; i < n; ++i) {
            rec.offsets.push_back(at);
            at += (sizes[i] + 15) / 16 * 16;
        }
        rec.bytes.assign(at ? at : 1, 0);
        for (int i = 0; i < n; ++i) memcpy(rec.bytes.data() + rec.offsets[(size_t)i], args[i], sizes[i]);
        impl->recording->launches.push_back(std::move(rec));
    } catch (...) {
        return sp_fail(SPRIG_E_NOMEM, "emu: out of memory recording a launch of %s", plan->family);
    }
    return SPRIG_OK;
}

static double emu_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static sprig_status emu_launch(sp_exec *e, sp_exec_module *m, const sprig_plan *plan, void **args) {
    emu_impl *impl = impl_of(e);
    if (!impl->capturing && impl->profiling) {
        const double t0 = emu_now_us();
        const sprig_status s = sp_emu_plan_launch(m->mod, plan, args);
        try {
            if (s == SPRIG_OK) impl->profiled.push_back(sp_launch_time{plan, emu_now_us() - t0});
        } catch (...) {
            return sp_fail(SPRIG_E_NOMEM, "emu: out of memory profiling a launch of %s", plan->family);
        }
        return s;
    }
    if (!impl->capturing) return sp_emu_plan_launch(m->mod, plan, args);
    const sprig_status s = emu_record(impl, m, plan, args);
    if (s != SPRIG_OK) emu_capture_failed(impl, s);
    return s;
}
static sprig_status emu_sync(sp_exec *e) { return impl_of(e)->capturing ? emu_refuse("sync") : SPRIG_OK; }

/* ---- graph capture ------------------------------------------------------------ */

static sprig_status emu_capture_begin(sp_exec *e) {
    emu_impl *impl = impl_of(e);
    if (impl->capturing)
        return sp_fail(SPRIG_E_INVALID, "capture_begin: this executor is already capturing (end that first with capture_end)");
    sp_exec_graph *g = new (std::nothrow) sp_exec_graph();
    if (!g) return sp_fail(SPRIG_E_NOMEM, "out of memory");
    impl->recording = g;
    impl->capturing = true;
    impl->capture_status = SPRIG_OK;
    impl->capture_error.clear();
    return SPRIG_OK;
}

static sprig_status emu_capture_end(sp_exec *e, sp_exec_graph **out) {
    emu_impl *impl = impl_of(e);
    if (out) *out = nullptr;
    if (!impl->capturing) return sp_fail(SPRIG_E_INVALID, "capture_end: this executor is not capturing");
    sp_exec_graph *g = impl->recording;
    impl->recording = nullptr;
    impl->capturing = false;
    emu_release_deferred(impl);
    sprig_status s = SPRIG_OK;
    if (impl->capture_status != SPRIG_OK)
        s = sp_fail(impl->capture_status, "the graph capture failed, no graph was made: %s", impl->capture_error.c_str());
    else if (!out)
        s = sp_fail(SPRIG_E_INVALID, "capture_end: no place for the graph (out is NULL)");
    if (s != SPRIG_OK) {
        delete g;
        return s;
    }
    *out = g;
    return SPRIG_OK;
}

/* Runs the recorded launches in order, each with pointers into its copied bytes. */
static sprig_status emu_graph_launch(sp_exec *e, sp_exec_graph *g) {
    if (!g) return sp_fail(SPRIG_E_INVALID, "graph_launch: no graph");
    if (impl_of(e)->capturing) return emu_refuse("graph_launch");
    for (emu_launch_rec &rec : g->launches) {
        void *args[SP_EMU_MAX_PARAMS];
        for (size_t i = 0; i < rec.offsets.size(); ++i) args[i] = rec.bytes.data() + rec.offsets[i];
        const sprig_status s = sp_emu_plan_launch(rec.module->mod, rec.plan, args);
        if (s != SPRIG_OK) return s;
    }
    return SPRIG_OK;
}

static void emu_graph_free(sp_exec *e, sp_exec_graph *g) {
    emu_impl *impl = impl_of(e);
    if (impl->capturing) emu_defer(impl, emu_deferred{0, nullptr, g}, "graph_free", false);
    else delete g;
}

/* Graphs and modules must be freed first; a capture still open is dropped. */
static void emu_close(sp_exec *e) {
    emu_impl *impl = impl_of(e);
    delete impl->recording;
    emu_release_deferred(impl);
    delete impl;
    free(e);
}

static sprig_status emu_run_seq(const sp_exec_step *steps, int n_steps, int set) {
    for (int i = 0; i < n_steps; ++i) {
        sprig_status s = sp_emu_plan_launch(steps[i].module->mod, steps[i].plan, steps[i].arg_sets[set]);
        if (s != SPRIG_OK) return s;
    }
    return SPRIG_OK;
}

/* Wall-clock timing of the emulated sequence: the same rotation and sample
 * bookkeeping as on a GPU, so callers are exercised; the numbers say nothing
 * about a GPU. */
static sprig_status emu_time_seq(sp_exec *e, const sp_exec_step *steps, int n_steps, int n_sets, int warmup, int reps,
                                 sp_timing *out) {
    if (impl_of(e)->capturing) return emu_refuse("time_seq");
    if (!steps || n_steps < 1 || !out || n_sets < 1 || warmup < 0 || reps < 1)
        return sp_fail(SPRIG_E_INVALID, "time_seq: bad arguments");
    memset(out, 0, sizeof *out);
    long i = 0;
    for (; i < warmup; ++i) {
        sprig_status s = emu_run_seq(steps, n_steps, (int)(i % n_sets));
        if (s != SPRIG_OK) return s;
    }
    std::vector<double> samples((size_t)reps);
    for (int r = 0; r < reps; ++r, ++i) {
        double t0 = emu_now_us();
        sprig_status s = emu_run_seq(steps, n_steps, (int)(i % n_sets));
        if (s != SPRIG_OK) return s;
        samples[(size_t)r] = emu_now_us() - t0;
    }
    std::sort(samples.begin(), samples.end());
    out->min_us = samples[0];
    out->median_us = reps % 2 ? samples[(size_t)reps / 2] : 0.5 * (samples[(size_t)reps / 2 - 1] + samples[(size_t)reps / 2]);
    out->runs = reps;
    out->per_sample = 1;
    return SPRIG_OK;
}

/* Every CUDA thread is a fiber here and the cost is per thread launched:
 * small CTAs and few splits keep the emulated tests quick. */
static const char *emu_default_params(const sp_exec *, const char *family) {
    static const struct {
        const char *family, *params;
    } cheap[] = {
        {"dense_gemv", "threads=64,rows_per_warp=4"},
        {"rmsnorm", "threads=64"},
        {"attention_decode", "threads=32,splits=2"},
        {"router", "threads=64,ksplit=2,compact_threads=256"},
        {"gather_upgate", "threads=64,rows_per_warp=4"},
        {"gather_down", "threads=64,cols_per_cta=64,splits=2"},
    };
    for (const auto &c : cheap)
        if (strcmp(c.family, family) == 0) return c.params;
    return "";
}

/* ---- profiling (the wall clock: the same plumbing as on a GPU, no meaning) ---- */

static sprig_status emu_profile_begin(sp_exec *e) {
    emu_impl *impl = impl_of(e);
    if (impl->capturing) return emu_refuse("profile_begin");
    impl->profiled.clear();
    impl->profiling = true;
    return SPRIG_OK;
}

static sprig_status emu_profile_end(sp_exec *e, sp_launch_time **out, int *n) {
    emu_impl *impl = impl_of(e);
    *out = nullptr, *n = 0;
    if (impl->capturing) return emu_refuse("profile_end");
    impl->profiling = false;
    if (!impl->profiled.empty()) {
        *out = (sp_launch_time *)malloc(sizeof **out * impl->profiled.size());
        if (!*out) return sp_fail(SPRIG_E_NOMEM, "emu: out of memory reading profiled launches");
        std::copy(impl->profiled.begin(), impl->profiled.end(), *out);
        *n = (int)impl->profiled.size();
    }
    impl->profiled.clear();
    return SPRIG_OK;
}

static const sp_exec_ops kEmuOps = {emu_alloc,  emu_free,         emu_upload,      emu_download,     emu_fill,
                                    emu_load,   emu_unload,       emu_launch,      emu_sync,         emu_close,
                                    emu_time_seq, emu_capture_begin, emu_capture_end, emu_graph_launch, emu_graph_free,
                                    emu_default_params, emu_profile_begin, emu_profile_end};

extern "C" sprig_status sp_exec_open_emu(sp_exec **out) {
    *out = nullptr;
    sp_exec *e = (sp_exec *)calloc(1, sizeof *e);
    emu_impl *impl = new (std::nothrow) emu_impl();
    if (!e || !impl) {
        free(e);
        delete impl;
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    e->ops = &kEmuOps, e->kind = "emulator", e->impl = impl;
    snprintf(e->arch, sizeof e->arch, "host");
    snprintf(e->device, sizeof e->device, "CPU emulator");
    *out = e;
    return SPRIG_OK;
}

extern "C" sp_emu_module *sp_exec_emu_module(sp_exec_module *m) { return m ? m->mod : nullptr; }
