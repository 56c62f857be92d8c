/* The two implementations of sp_backend (sp_backend.h): thin adapters over
 * the CPU reference (sp_cpu.h) and the GPU decode step (sp_gpu.h), and the
 * threshold calibration both share. */
#include <stdlib.h>
#include <string.h>

#include "backend_internal.h"
#include "sp_backend.h"
#include "sp_error.h"

/* ---- CPU ---------------------------------------------------------------------------- */

static sprig_status cpu_forward(sp_backend *b, int token, int pos, const float **logits) {
    return sp_cpu_forward(b->impl, token, pos, logits);
}
static sprig_status cpu_set_thresholds(sp_backend *b, const float *t) { return sp_cpu_set_thresholds(b->impl, t); }
static double cpu_sparsity(const sp_backend *b) { return sp_cpu_mlp_sparsity(b->impl); }
static void cpu_weight_bytes(const sp_backend *b, size_t *all, size_t *mlp) { *all = *mlp = 0; }
static void cpu_close(sp_backend *b) {
    sp_cpu_close(b->impl);
    free(b);
}

static const sp_backend_ops kCpuOps = {
    .forward = cpu_forward,
    .set_thresholds = cpu_set_thresholds,
    .mlp_sparsity = cpu_sparsity,
    .weight_bytes = cpu_weight_bytes,
    .close = cpu_close,
};

sprig_status sp_backend_open_cpu(const sp_model *model, int max_seq, sp_mlp_mode mode, sp_backend **out) {
    *out = NULL;
    sp_backend *b = calloc(1, sizeof *b);
    SP_CHECK_ALLOC(b);
    sp_cpu *c = NULL;
    sprig_status s = sp_cpu_open(model, max_seq, mode, &c);
    if (s != SPRIG_OK) {
        free(b);
        return s;
    }
    *b = (sp_backend){&kCpuOps, "cpu", "fp32", c};
    *out = b;
    return SPRIG_OK;
}

/* ---- GPU ---------------------------------------------------------------------------- */

static sprig_status gpu_forward(sp_backend *b, int token, int pos, const float **logits) {
    return sp_gpu_forward(b->impl, token, pos, logits);
}
static sprig_status gpu_set_thresholds(sp_backend *b, const float *t) { return sp_gpu_set_thresholds(b->impl, t); }
static double gpu_sparsity(const sp_backend *b) { return sp_gpu_mlp_sparsity(b->impl); }
static void gpu_weight_bytes(const sp_backend *b, size_t *all, size_t *mlp) {
    *all = sp_gpu_weight_bytes(b->impl);
    *mlp = sp_gpu_mlp_weight_bytes(b->impl);
}
static void gpu_set_graph(sp_backend *b, int on) { sp_gpu_set_graph(b->impl, on); }
static const char *gpu_note(const sp_backend *b) { return sp_gpu_graph_note(b->impl); }
static void gpu_close(sp_backend *b) {
    sp_gpu_close(b->impl);
    free(b);
}

static const sp_backend_ops kGpuOps = {
    .forward = gpu_forward,
    .set_thresholds = gpu_set_thresholds,
    .mlp_sparsity = gpu_sparsity,
    .weight_bytes = gpu_weight_bytes,
    .set_graph = gpu_set_graph,
    .note = gpu_note,
    .close = gpu_close,
};

sprig_status sp_backend_open_gpu(sp_gpu_kernels *kernels, const sp_model *model, int max_seq, sp_mlp_mode mode,
                                 const char *dtype, sp_backend **out) {
    *out = NULL;
    sp_backend *b = calloc(1, sizeof *b);
    SP_CHECK_ALLOC(b);
    sp_gpu *g = NULL;
    sprig_status s = sp_gpu_open(kernels, model, max_seq, mode, dtype, &g);
    if (s != SPRIG_OK) {
        free(b);
        return s;
    }
    /* sp_gpu_open accepted dtype: it is one of these two */
    *b = (sp_backend){&kGpuOps, "cuda", strcmp(dtype, "bf16") == 0 ? "bf16" : "fp16", g};
    *out = b;
    return SPRIG_OK;
}

/* ---- calibration -------------------------------------------------------------------- */

sprig_status sp_calibrate_thresholds(const sp_model *model, const int *tokens, int n, double sparsity,
                                     float *thresholds) {
    sp_cpu *c = NULL;
    SP_TRY(sp_cpu_open(model, n > 0 ? n : 1, SP_MLP_DENSE, &c));
    sprig_status s = sp_cpu_calibrate(c, tokens, n, sparsity);
    if (s == SPRIG_OK) memcpy(thresholds, c->thresholds, sizeof(float) * (size_t)model->cfg->num_hidden_layers);
    sp_cpu_close(c);
    return s;
}
