/* Interface of backend/: the one seam between a model's decode step and the
 * commands that drive it (sprig run, bench-e2e, perplexity). Two
 * implementations: the CPU reference (sp_cpu.h) and the generated kernels on
 * an executor (sp_gpu.h); a command opens one and then only talks to this. */
#ifndef SP_BACKEND_H
#define SP_BACKEND_H

#include <stddef.h>

#include "sp_gpu_kernels.h"
#include "sp_mlp_mode.h"
#include "sp_model.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_backend sp_backend;

typedef struct sp_backend_ops {
    /* Runs token at position pos (0-based, in order); *logits [vocab] stays
     * valid until the next call. */
    sprig_status (*forward)(sp_backend *b, int token, int pos, const float **logits);
    /* Switches the MLP to training-free thresholds, one per layer ([n_layers]). */
    sprig_status (*set_thresholds)(sp_backend *b, const float *thresholds);
    /* Fraction of MLP neurons skipped so far (0 when dense). */
    double (*mlp_sparsity)(const sp_backend *b);
    /* Weight bytes a dense decode step reads on the device (*all) and the
     * share of W_gate, W_up, W_down in them (*mlp); both 0 when the backend
     * does not keep device weights (the CPU). */
    void (*weight_bytes)(const sp_backend *b, size_t *all, size_t *mlp);
    /* Replaying the step as a captured graph (1, the GPU's default) or
     * launching kernel by kernel (0); NULL where there are no graphs. */
    void (*set_graph)(sp_backend *b, int on);
    /* "" while the backend runs as asked; else one line saying what it does
     * instead (a failed graph capture) (borrowed). */
    const char *(*note)(const sp_backend *b);
    void (*close)(sp_backend *b);
} sp_backend_ops;

struct sp_backend {
    const sp_backend_ops *ops;
    const char *name;     /* "cpu" or "cuda" (the emulator's executor is "cuda"-shaped too) */
    const char *dtype;    /* what it computes in: "fp32", "fp16", "bf16" */
    void *impl;           /* the sp_cpu or sp_gpu */
};

/* The CPU reference backend (fp32). model is borrowed and must outlive it.
 * The caller owns *out (sp_backend_close). */
sprig_status sp_backend_open_cpu(const sp_model *model, int max_seq, sp_mlp_mode mode, sp_backend **out);
/* The generated kernels of the set (borrowed; its executor decides where they
 * run), in dtype "fp16" or "bf16". model and kernels must outlive it. */
sprig_status sp_backend_open_gpu(sp_gpu_kernels *kernels, const sp_model *model, int max_seq, sp_mlp_mode mode,
                                 const char *dtype, sp_backend **out);

static inline sprig_status sp_backend_forward(sp_backend *b, int token, int pos, const float **logits) {
    return b->ops->forward(b, token, pos, logits);
}
static inline sprig_status sp_backend_set_thresholds(sp_backend *b, const float *thresholds) {
    return b->ops->set_thresholds(b, thresholds);
}
static inline double sp_backend_mlp_sparsity(const sp_backend *b) { return b->ops->mlp_sparsity(b); }
static inline void sp_backend_weight_bytes(const sp_backend *b, size_t *all, size_t *mlp) {
    b->ops->weight_bytes(b, all, mlp);
}
static inline void sp_backend_set_graph(sp_backend *b, int on) {
    if (b->ops->set_graph) b->ops->set_graph(b, on);
}
static inline const char *sp_backend_note(const sp_backend *b) { return b->ops->note ? b->ops->note(b) : ""; }
static inline void sp_backend_close(sp_backend *b) {
    if (b) b->ops->close(b);
}

/* Training-free thresholds: runs tokens[0..n) densely on the CPU reference
 * and writes, per layer, the `sparsity` quantile of the |silu(gate)| values
 * it saw to thresholds [n_layers] (for sp_backend_set_thresholds on either
 * backend: both then skip the same neurons). */
sprig_status sp_calibrate_thresholds(const sp_model *model, const int *tokens, int n, double sparsity,
                                     float *thresholds);

#pragma GCC visibility pop
#endif
