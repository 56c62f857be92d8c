/* Timing GPU work with CUDA events: the engine behind the CUDA executor's
 * time_seq (exec/exec_cuda.c) and the cuBLAS baseline of `sprig bench`.
 *
 * The work is a callback that enqueues one launch sequence on a stream using
 * rotation set `set`. After warm-up, a probe estimates one sequence's time;
 * sequences shorter than target_us are captured k at a time into a CUDA graph
 * (k = ceil(target_us / probe), at most max_graph_sequences) so that launch
 * overhead and the ~0.5 us event resolution do not dominate, and each sample
 * is one replay divided by k. Samples are recorded back to back (one event
 * between consecutive samples, no host synchronisation in between).
 *
 * The current context must be set on the calling thread. */
#ifndef SP_CUDA_TIMING_H
#define SP_CUDA_TIMING_H

#include "sp_cuda.h"
#include "sp_exec.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* Enqueues one launch sequence on stream using argument/weight set `set`. A
 * non-OK return (a refused launch) aborts the timing and is returned. */
typedef sprig_status (*sp_cuda_enqueue_fn)(void *ctx, int set, CUstream stream);

typedef struct sp_cuda_time_opts {
    int n_sets;               /* rotation sets (>= 1) */
    int warmup;               /* untimed sequences first (>= 0) */
    int reps;                 /* timed samples (1..SP_CUDA_TIME_MAX_REPS) */
    double target_us;         /* graph-capture sequences shorter than this (<= 0: never) */
    int max_graph_sequences;  /* cap on k (>= 1) */
} sp_cuda_time_opts;

#define SP_CUDA_TIME_MAX_REPS 4096

/* Defaults: 1 set, 3 warm-up, 30 samples, 50 us target, at most 1000 per graph. */
void sp_cuda_time_opts_init(sp_cuda_time_opts *o);

/* Times fn on stream (a stream of the current context that may be captured:
 * not the legacy default stream). Fills median_us, min_us, runs, per_sample
 * and graph of *out; the clocks are left 0 for the caller. Work queued on the
 * default stream before the call is waited for first. */
sprig_status sp_cuda_time(CUstream stream, sp_cuda_enqueue_fn fn, void *ctx, const sp_cuda_time_opts *o,
                          sp_timing *out);

#pragma GCC visibility pop
#endif
