/* Interface of gen/: what a family's spec says of its kernels' traffic and
 * parallelism (spec field perf(); docs/perf-model.md), for the static model
 * of sprig analyze. */
#ifndef SP_GEN_PERF_H
#define SP_GEN_PERF_H

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_gen_perf {
    char name[64];        /* the plan's kernel */
    double read, write;   /* bytes requested from and written to memory */
    double inflight;      /* loads a lane issues before the first is used */
    double load_bytes;    /* bytes per load */
    double working;       /* CTAs that do work (the rest return at once) */
    double rounds;        /* dependent DRAM round trips on the critical path */
    double l2_rounds;     /* dependent round trips to L2 (hot data, atomics) on the critical path */
    double tail;          /* of those, the round trips one CTA waits on after the last arrival ticket (the
                           * serial tail the SASS shows as tail_rounds); -1: the spec does not say */
    int grid_syncs;       /* grid-wide dependencies (a last CTA finishing what all wrote): each at
                           * least three L2 round trips (drain, ticket, read back) */
    int hot;              /* 1: it reads what the kernel before it wrote (in L2): L2 latency, not DRAM's */
    int prefetch;         /* 1: it asks L2 for its first weight lines before it waits on the kernel before
                           * it (programmatic dependent launch; SASS: CCTL.E.PF2 before ACQBULK) */
    double unsized;       /* bytes it must read of arguments the request cannot size (a KV cache at `context`) */
    unsigned ctas, threads; /* the plan's launch: CTAs in the grid, threads per CTA */
    int smem;             /* its dynamic shared memory */
} sp_gen_perf;

/* The perf() of req's family for req (req->params resolved as a render would),
 * one entry per kernel of the plan, in launch order; *n their count.
 * active: the share of experts a routed plan gathers (1: all); context: the
 * positions an attention step reads. SPRIG_E_INVALID for a request the family
 * refuses or a spec without perf(). */
sprig_status sp_gen_perf_of(sprig_gen *gen, const sprig_request *req, double active, int context, sp_gen_perf *out,
                            int cap, int *n);

/* A GPU the model describes without running on it (lua/sprig/gpus.lua). */
typedef struct sp_gpu_profile {
    char name[32], full[96], arch[16];
    double read_gbs;          /* streaming-read bandwidth, 1e9 B/s */
    int measured;             /* 1: read_gbs was measured; 0: the data sheet's peak x 0.9 */
    int sms;
    double l2_mb;
    int regs_per_sm, smem_per_sm_kb, max_threads_per_sm, max_ctas_per_sm;
    double latency_ns;        /* a loaded DRAM round trip */
    double l2_latency_ns;     /* a loaded L2 hit's round trip */
    double launch_us;         /* the gap between two kernels of a CUDA graph */
    double kernel_us;         /* a kernel's fixed cost: its first loads' ramp, its last wave's drain */
} sp_gpu_profile;

/* The profile called name ("h100", "h200", ...); SPRIG_E_INVALID naming the known ones. */
sprig_status sp_gen_gpu_profile(sprig_gen *gen, const char *name, sp_gpu_profile *out);

#pragma GCC visibility pop
#endif
