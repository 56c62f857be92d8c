/* sprig analyze: the static performance model (docs/perf-model.md). With no
 * GPU, for a named GPU profile, it predicts each kernel's time from what can
 * be known without running it: the bytes its declared arguments make it
 * read and write (the minimum), the bytes its spec says it requests, its
 * launch geometry and NVRTC's resource report (occupancy, waves), the loads
 * each lane keeps in flight and so the bytes the GPU has in flight against
 * Little's law, and its dependent memory round trips; and, where NVIDIA's
 * disassembler is installed, what the SASS really does (load widths, loads
 * issued before the first use). Its predictions are printed beside every
 * measurement (sprig bench, bench-e2e) so the model can be checked. */
#ifndef SP_ANALYZE_H
#define SP_ANALYZE_H

#include <stddef.h>
#include <stdio.h>

#include "sp_gen_perf.h"
#include "sp_model_config.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

#define SP_ANALYZE_MAX_KERNELS SPRIG_MAX_KERNELS

/* One kernel of a plan, predicted. */
typedef struct sp_analyze_kernel {
    char name[64];
    unsigned ctas, threads;   /* the launch: CTAs in the grid, threads per CTA */
    double working;           /* CTAs that do work */
    int regs, smem, spill;    /* NVRTC: registers, static shared memory, spilled bytes (-1: unknown) */
    int ctas_per_sm;          /* occupancy (registers, threads, shared memory, the CTA limit) */
    double waves;             /* working CTAs / (SMs x CTAs per SM) */
    double bytes;             /* requested: read + written (the spec's perf()) */
    double inflight_bytes;    /* across the GPU: resident working warps x 32 x loads x bytes */
    double littles;           /* the share of the bandwidth that can sustain (<= 1) */
    double rounds;            /* dependent memory round trips */
    double t_us;              /* predicted */
    /* SASS (-1 where no disassembler was found): global loads of 16, 8, 4 and
     * fewer bytes; streamed (evict-first) loads, i.e. weights, and of them the
     * 16-byte ones; the most global loads, and the most streamed loads, issued
     * in a row before a floating-point instruction */
    int ldg128, ldg64, ldg32, ldg_sub, stream, stream128, loads_before_use, stream_before_use;
    /* Programmatic dependent launch: the spec says the kernel prefetches its first
     * weight lines before it waits (perf() prefetch); from the SASS (-1 as above,
     * and 0 before sm_90): griddepcontrol.wait (ACQBULK) and .launch_dependents
     * (PREEXIT) instructions, L2 prefetches (CCTL.E.PF2) and global stores or
     * atomics issued before the first wait */
    int prefetch;
    int sass_waits, sass_releases, sass_prefetch_before_wait, sass_writes_before_wait;
    /* The serial tail, from the SASS (-1 as above): after the kernel's last arrival
     * ticket (ATOMG), where one CTA finishes what all wrote, the times a global
     * load's result is waited for with loads still to issue: dependent round
     * trips on that CTA alone (0 without a ticket). Text order: a loop's body counts
     * once; tail_loop_rounds are those of it inside a loop (a branch back to a label
     * after the ticket), which each further trip repeats. */
    int tail_rounds, tail_loop_rounds;
    double tail_model;        /* the spec's count of that tail (perf() tail; -1: not given) */
} sp_analyze_kernel;

/* One plan (a family's request), predicted. */
typedef struct sp_analyze_plan {
    char family[32], params[512];
    int n;
    sp_analyze_kernel k[SP_ANALYZE_MAX_KERNELS];
    double bytes_min;         /* what the declared arguments must move (routed weights at `active`) */
    double bytes;             /* requested, all kernels */
    double t_us;              /* predicted, all kernels, launch gaps excluded */
    double roof_us;           /* bytes_min / read bandwidth */
    double attainable_us;     /* the least any kernel doing this could take: the roof, each kernel's
                               * fixed cost, one DRAM round trip, and three L2 round trips per
                               * grid-wide dependency of the plan */
} sp_analyze_plan;

typedef struct sp_analyze_opts {
    const sp_gpu_profile *gpu;
    double active;            /* share of experts a routed plan gathers (1: dense) */
    int context;              /* positions an attention step reads (512) */
    const char *cache_dir;    /* cubin cache (NULL: the default) */
    const char *disassembler; /* nvdisasm to run on the cubin; NULL: look for one (sp_analyze_find_nvdisasm), "": none */
} sp_analyze_opts;

/* Renders, compiles (for gpu->arch) and predicts req. SPRIG_E_INVALID for a
 * request the family refuses or a family without perf(). */
sprig_status sp_analyze_request(sprig_gen *gen, const sprig_request *req, const sp_analyze_opts *o,
                                sp_analyze_plan *out);

/* A decode step (the GPU backend's launches for a model config, sp_gpu_describe),
 * predicted: every launch's plan analysed once, the step being their sum plus
 * a launch gap per kernel (a CUDA graph's). */
typedef struct sp_analyze_step_row {
    sp_analyze_plan plan;
    int count;                /* launches of it per token */
} sp_analyze_step_row;

typedef struct sp_analyze_step {
    int kernels;              /* kernel launches per token */
    int layers;
    double t_us;              /* predicted: kernels + gaps */
    double gaps_us;           /* of which launch gaps */
    /* Launched with programmatic dependent launch (sm_90+ unless SPRIG_PDL=0), an
     * uncalibrated estimate (docs/perf-model.md): every kernel but the first is
     * launched while the one before it drains, so its gap is hidden, and a
     * kernel that prefetches before its wait also hides one DRAM round trip. */
    double t_pdl_us;
    double pdl_hidden_us;     /* t_us - t_pdl_us */
    double roof_us;           /* the minimum bytes per token at the bandwidth */
    double bytes_min;
    sp_analyze_step_row *rows;/* owned, [n]: distinct plans in order of first launch */
    int n;
} sp_analyze_step;

/* mode and dtype as sp_gpu_open takes them; o->active is the share of experts
 * (or neurons) the routed MLPs gather. cfg as sp_model_keys_config reads it. */
sprig_status sp_analyze_step_of(sprig_gen *gen, const sp_model_config *cfg, int mode, const char *dtype,
                                const sp_analyze_opts *o, sp_analyze_step *out);
void sp_analyze_step_free(sp_analyze_step *s);

/* The tuner's filter over a tuning space (sp_space.h; tuner_internal.h
 * sp_analyze_rank_space, through sp_tune_key_rank). Every candidate is
 * predicted from its spec alone (perf() and the launch: no render, no compile,
 * so occupancy from threads and shared memory only, no SASS); those predicted
 * within keep_within x the best (<= 0: all) are rendered best first (equal
 * predictions in a fixed pseudo-random order), dropping any whose plan runs the
 * very kernels of one before it (same source, launches, workspace, arguments),
 * until max_keep are kept (0: all). The family's default is always kept (or
 * its twin): it is the baseline the reports compare with. */
typedef struct sp_analyze_rank {
    size_t *keep;             /* owned, [n_keep]: indices into the space, best predicted first */
    double *predicted_us;     /* owned, [n_keep] */
    size_t n_keep;
    size_t n_space;           /* candidates in the space */
    size_t n_within;          /* of them predicted within keep_within x the best */
    size_t n_rendered;        /* of those rendered to find the distinct ones */
    size_t n_distinct;        /* of the rendered, with kernels of their own */
    double best_us;           /* the best prediction */
} sp_analyze_rank;

void sp_analyze_rank_free(sp_analyze_rank *r); /* (sp_tune_key_rank, sp_tune.h, fills one) */

/* nvdisasm: $SPRIG_NVDISASM, then PATH, then /usr/local/cuda/bin, then the
 * copy scripts/install-deps.sh extracts into the data folder; into buf, 1 when found. */
int sp_analyze_find_nvdisasm(char *buf, size_t cap);

#pragma GCC visibility pop
#endif
