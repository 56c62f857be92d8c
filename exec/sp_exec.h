/* An executor: where generated kernels run. Two implementations share this
 * interface: the CUDA driver (exec/exec_cuda.c) and, in the tests, the CPU
 * emulator (tests/emu/exec_emu.cpp), so code written against it (the GPU
 * backend of the runtime, the tuner's verification) is exercised on machines
 * without a GPU too. Addresses are 64-bit device addresses (host pointers
 * under the emulator). Launches may be asynchronous: sync reports errors. */
#ifndef SP_EXEC_H
#define SP_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef uint64_t sp_dptr;
typedef struct sp_exec sp_exec;
typedef struct sp_exec_module sp_exec_module; /* one plan, compiled and loaded */
typedef struct sp_exec_graph sp_exec_graph;   /* a captured launch sequence, ready to replay */

/* What timing a launch sequence found (sp_exec_time). Times are per launch
 * sequence (all steps once), in microseconds. */
typedef struct sp_timing {
    double median_us, min_us;
    int runs;              /* timed samples the median is over */
    int per_sample;        /* launch sequences per sample: k of a CUDA graph, else 1 */
    int graph;             /* 1: each sample replayed a CUDA graph of per_sample sequences */
    double sm_clock_mhz;   /* as the driver reports them; 0 when unknown (and under the emulator) */
    double mem_clock_mhz;
} sp_timing;

/* One launch timed by profiling (profile_end): the plan launched (borrowed)
 * and the time its kernels took, in microseconds. */
typedef struct sp_launch_time {
    const sprig_plan *plan;
    double us;
} sp_launch_time;

/* One plan of a timed launch sequence: its module, and one argument list per
 * rotation set (arg_sets[s] is what sp_exec_launch would take). */
typedef struct sp_exec_step {
    sp_exec_module *module;
    const sprig_plan *plan;
    void **const *arg_sets; /* [n_sets] */
} sp_exec_step;

typedef struct sp_exec_ops {
    sprig_status (*alloc)(sp_exec *e, sp_dptr *out, size_t bytes);
    void (*free)(sp_exec *e, sp_dptr p);
    sprig_status (*upload)(sp_exec *e, sp_dptr dst, const void *src, size_t bytes);
    sprig_status (*download)(sp_exec *e, void *dst, sp_dptr src, size_t bytes);
    sprig_status (*fill)(sp_exec *e, sp_dptr p, unsigned char byte, size_t bytes);
    /* Compiles the plan for this executor (through the cubin cache on CUDA) and loads it. */
    sprig_status (*load)(sp_exec *e, const sprig_plan *plan, sp_exec_module **out);
    void (*unload)(sp_exec *e, sp_exec_module *m);
    /* Launches plan->kernels[0..n) in order with one argument list (docs/kernel-abi.md).
     * CUDA: on the executor's own stream, which is ordered with upload,
     * download and fill (they use the legacy stream; the executor's is blocking). */
    sprig_status (*launch)(sp_exec *e, sp_exec_module *m, const sprig_plan *plan, void **args);
    sprig_status (*sync)(sp_exec *e);
    void (*close)(sp_exec *e);
    /* Times the launch sequence steps[0..n_steps) (each step's plan, all of
     * its kernels, in order): `warmup` untimed sequences, then `reps` timed
     * samples, sequence i using argument set i % n_sets, so that sets whose
     * weights together exceed the L2 cache make every run read DRAM. CUDA:
     * events on a stream of its own; sequences shorter than ~50 us are
     * captured k at a time in a CUDA graph and each sample is one replay / k.
     * Emulator: wall clock (plumbing only, meaningless as performance).
     * A launch the driver refuses is returned as is (the context survives);
     * a fault inside a kernel is SPRIG_E_CUDA from the synchronisation. */
    sprig_status (*time_seq)(sp_exec *e, const sp_exec_step *steps, int n_steps, int n_sets, int warmup, int reps,
                             sp_timing *out);
    /* Graph capture: between capture_begin and capture_end, launches are
     * recorded, not run, each with a copy of its argument VALUES as they were
     * at the launch (as cuLaunchKernel copies them into a graph node): what a
     * replay sees changing is device memory only. Only launches may come in
     * between; alloc, free, upload, download, fill, load, sync and time_seq
     * are refused with SPRIG_E_INVALID while capturing (on CUDA they would
     * break the capture or run outside it). capture_end always ends the
     * capture; on failure *out is NULL and nothing was run. A graph replays
     * its launches in order on the executor's stream, after everything
     * enqueued before it; errors inside it surface at sync. CUDA: stream
     * capture on the executor's own stream, then cuGraphInstantiate.
     * Emulator: the recorded launches are run in order at graph_launch.
     * Also: a graph borrows the modules and plans it launches (they must
     * outlive it) and must be freed before the executor is closed. free and
     * unload, which cannot report, are postponed to capture_end while
     * capturing, and that capture_end then fails (its launches may use what
     * was freed); graph_free is postponed too, without failing it. Refused
     * operations do nothing and leave the capture intact. graph_launch is
     * refused while capturing. capture_begin and capture_end on one thread. */
    sprig_status (*capture_begin)(sp_exec *e);
    sprig_status (*capture_end)(sp_exec *e, sp_exec_graph **out);
    sprig_status (*graph_launch)(sp_exec *e, sp_exec_graph *g);
    void (*graph_free)(sp_exec *e, sp_exec_graph *g);
    /* The parameters ("k=v,...") this executor runs family's kernels with when
     * nothing is tuned, or "" for the family's own defaults. NULL: always "".
     * A GPU takes the defaults; the CPU emulator, whose cost is per thread
     * launched, asks for small CTAs and few splits (the same templates with
     * other parameters, so the emulated tests still run the generated code). */
    const char *(*default_params)(const sp_exec *e, const char *family);
    /* Per-launch profiling, to find where a launch sequence's time goes:
     * between profile_begin and profile_end every launch is timed on its own
     * (CUDA: an event before and after it on the executor's stream, so the
     * gaps between launches are not counted; emulator: the wall clock,
     * meaningless as performance). profile_end synchronises and hands over
     * the launches in order with their times (*out: caller frees; plans
     * borrowed). Graph replays are not profiled: launch directly. Both are
     * refused while capturing. NULL: this executor cannot profile. */
    sprig_status (*profile_begin)(sp_exec *e);
    sprig_status (*profile_end)(sp_exec *e, sp_launch_time **out, int *n);
} sp_exec_ops;

struct sp_exec {
    const sp_exec_ops *ops;
    const char *kind;     /* "cuda" or "emulator" */
    char arch[24];        /* what plans are compiled for: "sm_90", "compute_89", "host" */
    char device[256];     /* the GPU's name, or "CPU emulator" */
    int sm_count;         /* 0 under the emulator */
    int cc_major, cc_minor; /* compute capability; 0.0 under the emulator */
    size_t l2_bytes;      /* L2 cache size (0: unknown, and under the emulator) */
    int driver_version;   /* cuDriverGetVersion (12040 = 12.4); 0 under the emulator */
    int pdl;              /* 1: launch and graph capture with programmatic dependent launch (CUDA,
                           * sm_90+, unless SPRIG_PDL=0; time_seq never); 0 otherwise */
    void *impl;
};

/* Opens GPU `ordinal` through the driver API. SPRIG_E_NO_DRIVER / SPRIG_E_NO_DEVICE
 * when there is none. The caller owns *out (sp_exec_close). */
sprig_status sp_exec_open_cuda(sp_exec **out, int ordinal);

/* Programmatic dependent launch off for the rest of e's life, said once on stderr
 * with `why` (a launch or a capture with it was refused). Nothing if it was off. */
void sp_exec_pdl_off(sp_exec *e, const char *why);
/* The device under a CUDA executor (borrowed), for code that must use the
 * driver directly (cuBLAS baselines); NULL for any other executor. */
struct sp_device *sp_exec_cuda_device(sp_exec *e);

static inline void sp_exec_close(sp_exec *e) { if (e) e->ops->close(e); }
static inline sprig_status sp_exec_alloc(sp_exec *e, sp_dptr *out, size_t n) { return e->ops->alloc(e, out, n); }
static inline void sp_exec_free(sp_exec *e, sp_dptr p) { if (p) e->ops->free(e, p); }
static inline sprig_status sp_exec_upload(sp_exec *e, sp_dptr d, const void *s, size_t n) { return e->ops->upload(e, d, s, n); }
static inline sprig_status sp_exec_download(sp_exec *e, void *d, sp_dptr s, size_t n) { return e->ops->download(e, d, s, n); }
static inline sprig_status sp_exec_fill(sp_exec *e, sp_dptr p, unsigned char b, size_t n) { return e->ops->fill(e, p, b, n); }
static inline sprig_status sp_exec_load(sp_exec *e, const sprig_plan *p, sp_exec_module **m) { return e->ops->load(e, p, m); }
static inline void sp_exec_unload(sp_exec *e, sp_exec_module *m) { if (m) e->ops->unload(e, m); }
static inline sprig_status sp_exec_launch(sp_exec *e, sp_exec_module *m, const sprig_plan *p, void **a) { return e->ops->launch(e, m, p, a); }
static inline sprig_status sp_exec_sync(sp_exec *e) { return e->ops->sync(e); }
static inline sprig_status sp_exec_time_seq(sp_exec *e, const sp_exec_step *steps, int n_steps, int n_sets, int warmup,
                                            int reps, sp_timing *out) {
    return e->ops->time_seq(e, steps, n_steps, n_sets, warmup, reps, out);
}
static inline sprig_status sp_exec_capture_begin(sp_exec *e) { return e->ops->capture_begin(e); }
static inline sprig_status sp_exec_capture_end(sp_exec *e, sp_exec_graph **g) { return e->ops->capture_end(e, g); }
static inline sprig_status sp_exec_graph_launch(sp_exec *e, sp_exec_graph *g) { return e->ops->graph_launch(e, g); }
static inline void sp_exec_graph_free(sp_exec *e, sp_exec_graph *g) { if (g) e->ops->graph_free(e, g); }
/* (Both executors implement profiling; SPRIG_E_INVALID for one that does not.) */
static inline sprig_status sp_exec_profile_begin(sp_exec *e) {
    return e->ops->profile_begin ? e->ops->profile_begin(e) : SPRIG_E_INVALID;
}
static inline sprig_status sp_exec_profile_end(sp_exec *e, sp_launch_time **out, int *n) {
    *out = NULL, *n = 0;
    return e->ops->profile_end ? e->ops->profile_end(e, out, n) : SPRIG_E_INVALID;
}
static inline const char *sp_exec_default_params(const sp_exec *e, const char *family) {
    const char *p = e && e->ops->default_params ? e->ops->default_params(e, family) : NULL;
    return p ? p : "";
}
/* One plan: arg_sets[n_sets] argument lists (see time_seq). */
static inline sprig_status sp_exec_time(sp_exec *e, sp_exec_module *m, const sprig_plan *plan, void **const *arg_sets,
                                        int n_sets, int warmup, int reps, sp_timing *out) {
    sp_exec_step step = {m, plan, arg_sets};
    return e->ops->time_seq(e, &step, 1, n_sets, warmup, reps, out);
}
#pragma GCC visibility pop
#endif
