/* CUDA-event timing of launch sequences, with CUDA graphs for short ones
 * (see sp_cuda_timing.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cuda_timing.h"
#include "sp_error.h"

#define CT_PROBE_SEQUENCES 3

void sp_cuda_time_opts_init(sp_cuda_time_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_sets = 1;
    o->warmup = 3;
    o->reps = 30;
    o->target_us = 50.0;
    o->max_graph_sequences = 1000;
}

static int ct_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n samples (sorts them in place); 0 when n == 0. */
static double sp_timing_median(double *samples, int n) {
    if (n <= 0) return 0.0;
    qsort(samples, (size_t)n, sizeof *samples, ct_cmp_double);
    return n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

/* Everything one timing owns, released in one place. */
typedef struct ct_state {
    CUstream stream;
    sp_cuda_enqueue_fn fn;
    void *ctx;
    const sp_cuda_time_opts *o;
    CUevent *events;      /* [reps + 1] */
    int n_events;
    CUgraph graph;
    CUgraphExec graph_exec;
    double *samples;      /* [reps] */
} ct_state;

static void ct_release(ct_state *s) {
    for (int i = 0; i < s->n_events; ++i) sp_cu.cuEventDestroy(s->events[i]);
    free(s->events);
    if (s->graph_exec) sp_cu.cuGraphExecDestroy(s->graph_exec);
    if (s->graph) sp_cu.cuGraphDestroy(s->graph);
    free(s->samples);
}

static sprig_status ct_sync(ct_state *s, const char *when) {
    CUresult r = sp_cu.cuStreamSynchronize(s->stream);
    if (r != CUDA_SUCCESS)
        return sp_fail(SPRIG_E_CUDA, "a kernel failed while %s (asynchronous error %s; the GPU context is lost)",
                       when, sp_cu_error_name(r));
    return SPRIG_OK;
}

/* Enqueues sequences first .. first+n-1 (set = index % n_sets). */
static sprig_status ct_enqueue(ct_state *s, long first, long n) {
    for (long i = first; i < first + n; ++i) SP_TRY(s->fn(s->ctx, (int)(i % s->o->n_sets), s->stream));
    return SPRIG_OK;
}

static sprig_status ct_elapsed_us(CUevent a, CUevent b, double *us) {
    float ms = 0;
    SP_CHECK_CU(sp_cu.cuEventElapsedTime(&ms, a, b));
    *us = 1e3 * (double)ms;
    return SPRIG_OK;
}

/* One sequence's time, roughly: a few back to back between two events. */
static sprig_status ct_probe(ct_state *s, double *us) {
    SP_CHECK_CU(sp_cu.cuEventRecord(s->events[0], s->stream));
    SP_TRY(ct_enqueue(s, s->o->warmup, CT_PROBE_SEQUENCES));
    SP_CHECK_CU(sp_cu.cuEventRecord(s->events[1], s->stream));
    SP_TRY(ct_sync(s, "probing the launch sequence's time"));
    SP_TRY(ct_elapsed_us(s->events[0], s->events[1], us));
    *us /= CT_PROBE_SEQUENCES;
    return SPRIG_OK;
}

/* Captures k sequences (sets rotating) into an instantiated graph. On any
 * capture failure the graph is dropped and direct launches are used instead
 * (returns SPRIG_OK with no graph), unless the enqueue itself failed. */
static sprig_status ct_capture(ct_state *s, long k) {
    if (sp_cu.cuStreamBeginCapture(s->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) != CUDA_SUCCESS) return SPRIG_OK;
    sprig_status st = ct_enqueue(s, 0, k);
    CUgraph graph = NULL;
    CUresult r = sp_cu.cuStreamEndCapture(s->stream, &graph); /* always ends the capture */
    if (st != SPRIG_OK) {
        if (graph) sp_cu.cuGraphDestroy(graph);
        return st;
    }
    if (r != CUDA_SUCCESS || !graph) return SPRIG_OK;
    s->graph = graph;
    if (sp_cu.cuGraphInstantiate(&s->graph_exec, graph, 0) != CUDA_SUCCESS) {
        s->graph_exec = NULL;
        return SPRIG_OK;
    }
    /* One untimed replay: the first launch of a graph uploads it. */
    SP_CHECK_CU(sp_cu.cuGraphLaunch(s->graph_exec, s->stream));
    return ct_sync(s, "replaying the captured graph");
}

static sprig_status ct_samples(ct_state *s, long k) {
    const int reps = s->o->reps;
    SP_CHECK_CU(sp_cu.cuEventRecord(s->events[0], s->stream));
    for (int r = 0; r < reps; ++r) {
        if (s->graph_exec) SP_CHECK_CU(sp_cu.cuGraphLaunch(s->graph_exec, s->stream));
        else SP_TRY(ct_enqueue(s, (long)r * k, k));
        SP_CHECK_CU(sp_cu.cuEventRecord(s->events[r + 1], s->stream));
    }
    SP_TRY(ct_sync(s, "timing"));
    for (int r = 0; r < reps; ++r) {
        SP_TRY(ct_elapsed_us(s->events[r], s->events[r + 1], &s->samples[r]));
        s->samples[r] /= (double)k;
    }
    return SPRIG_OK;
}

static sprig_status ct_run(ct_state *s, sp_timing *out) {
    const sp_cuda_time_opts *o = s->o;
    SP_CHECK_CU(sp_cu.cuCtxSynchronize()); /* uploads and fills on the default stream are done */
    s->events = calloc((size_t)o->reps + 1, sizeof *s->events);
    s->samples = calloc((size_t)o->reps, sizeof *s->samples);
    SP_CHECK_ALLOC(s->events);
    SP_CHECK_ALLOC(s->samples);
    for (; s->n_events < o->reps + 1; ++s->n_events)
        SP_CHECK_CU(sp_cu.cuEventCreate(&s->events[s->n_events], CU_EVENT_DEFAULT));
    SP_TRY(ct_enqueue(s, 0, o->warmup));
    SP_TRY(ct_sync(s, "warming up"));
    double probe_us = 0;
    SP_TRY(ct_probe(s, &probe_us));
    long k = 1;
    if (o->target_us > 0 && probe_us < o->target_us) {
        k = (long)ceil(o->target_us / (probe_us > 0.5 ? probe_us : 0.5));
        if (k > o->max_graph_sequences) k = o->max_graph_sequences;
        if (k < 1) k = 1;
        SP_TRY(ct_capture(s, k));
        /* Without a graph, k direct launches per sample still amortise the
         * event resolution, though not the launch overhead. */
    }
    SP_TRY(ct_samples(s, k));
    out->runs = o->reps;
    out->per_sample = (int)k;
    out->graph = s->graph_exec != NULL;
    double lo = s->samples[0];
    for (int r = 1; r < o->reps; ++r) lo = s->samples[r] < lo ? s->samples[r] : lo;
    out->min_us = lo;
    out->median_us = sp_timing_median(s->samples, o->reps);
    return SPRIG_OK;
}

sprig_status sp_cuda_time(CUstream stream, sp_cuda_enqueue_fn fn, void *ctx, const sp_cuda_time_opts *o,
                          sp_timing *out) {
    if (!fn || !o || !out || o->n_sets < 1 || o->warmup < 0 || o->reps < 1 || o->reps > SP_CUDA_TIME_MAX_REPS ||
        o->max_graph_sequences < 1)
        return sp_fail(SPRIG_E_INVALID, "sp_cuda_time: bad arguments (n_sets >= 1, reps 1..%d)", SP_CUDA_TIME_MAX_REPS);
    memset(out, 0, sizeof *out);
    ct_state s = {.stream = stream, .fn = fn, .ctx = ctx, .o = o};
    sprig_status st = ct_run(&s, out);
    ct_release(&s);
    return st;
}
