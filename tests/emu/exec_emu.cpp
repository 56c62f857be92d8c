#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

#include "emu_runtime.h"
#include "exec_emu.h"

extern "C" sprig_status sp_fail(sprig_status status, const char *fmt, ...);

struct sp_exec_module {
    sp_emu_module *mod;
};

static void *host(sp_dptr p) { return (void *)(uintptr_t)p; }

static sprig_status emu_alloc(sp_exec *, sp_dptr *out, size_t n) {
    void *p = n ? malloc(n) : nullptr;
    if (n && !p) return sp_fail(SPRIG_E_NOMEM, "emulator: out of memory (%zu bytes)", n);
    *out = (sp_dptr)(uintptr_t)p;
    return SPRIG_OK;
}
static void emu_free(sp_exec *, sp_dptr p) { free(host(p)); }
static sprig_status emu_upload(sp_exec *, sp_dptr d, const void *s, size_t n) { if (n) memcpy(host(d), s, n); return SPRIG_OK; }
static sprig_status emu_download(sp_exec *, void *d, sp_dptr s, size_t n) { if (n) memcpy(d, host(s), n); return SPRIG_OK; }
static sprig_status emu_fill(sp_exec *, sp_dptr p, unsigned char b, size_t n) { if (n) memset(host(p), b, n); return SPRIG_OK; }

static sprig_status emu_load(sp_exec *, const sprig_plan *plan, sp_exec_module **out) {
    *out = nullptr;
    sp_emu_module *mod = nullptr;
    sprig_status s = sp_emu_module_load(plan, &mod);
    if (s != SPRIG_OK) return s;
    *out = new sp_exec_module{mod};
    return SPRIG_OK;
}
static void emu_unload(sp_exec *, sp_exec_module *m) {
    sp_emu_module_free(m->mod);
    delete m;
}
static sprig_status emu_launch(sp_exec *, sp_exec_module *m, const sprig_plan *plan, void **args) {
    return sp_emu_plan_launch(m->mod, plan, args);
}
static sprig_status emu_sync(sp_exec *) { return SPRIG_OK; }
static void emu_close(sp_exec *e) { free(e); }

static double emu_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
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
static sprig_status emu_time_seq(sp_exec *, const sp_exec_step *steps, int n_steps, int n_sets, int warmup, int reps,
                                 sp_timing *out) {
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

static const sp_exec_ops kEmuOps = {emu_alloc, emu_free, emu_upload, emu_download, emu_fill, emu_load,
                                    emu_unload, emu_launch, emu_sync, emu_close, emu_time_seq};

extern "C" sprig_status sp_exec_open_emu(sp_exec **out) {
    sp_exec *e = (sp_exec *)calloc(1, sizeof *e);
    if (!e) return sp_fail(SPRIG_E_NOMEM, "out of memory");
    e->ops = &kEmuOps, e->kind = "emulator";
    snprintf(e->arch, sizeof e->arch, "host");
    snprintf(e->device, sizeof e->device, "CPU emulator");
    *out = e;
    return SPRIG_OK;
}
