/* The GPU backend of the runtime: the decode step of a LLaMA-family model as a
 * fixed sequence of generated kernels, written against sp_exec so the same
 * code runs on a GPU (exec/exec_cuda.c) and, in the tests, on the CPU
 * emulator (tests/emu).
 *
 * Per token (one launch sequence, identical from token to token: the token id
 * and position live in a small device buffer, so it is captured once as a
 * CUDA graph and replayed):
 *   rmsnorm(embed)  x = embed[token] (fp32 residual), xb = norm(x) * attn_norm
 *   per layer:
 *     dense_gemv        qkv = [Wq; Wk; Wv] xb            (one GEMV, rows concatenated)
 *     attention_decode  RoPE on q, k; k, v appended to the layer's cache at pos;
 *                       softmax(q kᵀ/√hd) v over 0..pos (GQA)
 *     dense_gemv        o = Wo att
 *     rmsnorm(add)      x += o, xb = norm(x) * mlp_norm
 *     MLP               dense:     gather_upgate, gather_down (all_active=1)
 *                       LTE:       router (sigmoid, threshold logit(tau)), gather_upgate, gather_down
 *                       threshold: router (silu_abs over W_gate, g = 1), gather_upgate, gather_down
 *     rmsnorm(add)      x += mlp, xb = norm(x) * (next layer's attn_norm | final norm)
 *   dense_gemv          logits = lm_head xb, downloaded and widened to fp32
 *
 * A SliceGPT-sliced model (sp_slicegpt.h) runs the same step over per-layer
 * widths, with weightless norms over the original hidden size that also copy
 * x (as T) in front of the attention output, so that
 *     dense_gemv        x_mid = [attn_shortcut_Qᵀ | W_o] [x ; att]
 * applies the attention shortcut inside o_proj's GEMV, and
 *     dense_gemv        mlp += mlp_shortcut_Qᵀ x_mid   (accumulate=1)
 * adds the MLP shortcut onto the MLP output (LTE routers and thresholds work
 * on the sliced MLP as on a full one). The residual is then the T-rounded sum
 * each layer, as in a Hugging Face fp16 run.
 *
 * Weights are converted once to the compute dtype (fp16 or bf16); the LTE
 * expert permutation is applied while packing (rows of gate/up, columns of
 * down), and W_down is stored as the chosen gather_down kernel wants it
 * (layout t: W_downᵀ [f][d]). The residual stream is fp32; the KV cache is in
 * the compute dtype (as Hugging Face keeps it: half the memory and bandwidth of
 * fp32, and k, v are already rounded to it by the projection's output). */
#ifndef SP_GPU_H
#define SP_GPU_H

#include "sp_exec.h"
#include "sp_gpu_kernels.h"
#include "sp_mlp_mode.h"
#include "sp_model.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_gpu sp_gpu;

/* Packs and uploads the model's weights, allocates the KV cache for max_seq
 * positions and loads every kernel the mode needs from the kernel set
 * (borrowed; it must outlive the backend). dtype: "fp16" or "bf16".
 * mode: SP_MLP_AUTO (LTE routers where present, else dense), SP_MLP_DENSE, or
 * SP_MLP_THRESHOLD (then sp_gpu_set_thresholds must come before the first
 * forward). model is borrowed and must outlive the backend.
 * The caller owns *out (sp_gpu_close). */
sprig_status sp_gpu_open(sp_gpu_kernels *kernels, const sp_model *model, int max_seq, sp_mlp_mode mode,
                         const char *dtype, sp_gpu **out);
void sp_gpu_close(sp_gpu *g);

/* Runs token at position pos (0-based, in order) and returns the logits
 * [vocab] as fp32 (owned by g, valid until the next call). The first call
 * captures the step's launches as a graph (sp_exec capture); every later call
 * writes (token, pos) to the device and replays it: one launch instead of a
 * few hundred. */
sprig_status sp_gpu_forward(sp_gpu *g, int token, int pos, const float **logits);

/* Whether sp_gpu_forward captures and replays a graph (on, the default) or
 * launches each kernel every token (off: to compare, or to debug a kernel). */
void sp_gpu_set_graph(sp_gpu *g, int on);
/* "" while graphs work; after a capture failed (the backend then launches
 * kernel by kernel), why. */
const char *sp_gpu_graph_note(const sp_gpu *g);

/* The decode step without a GPU or weights: the launches a model of this
 * config makes per token, in order, recorded from the code sp_gpu_forward runs
 * (kernels rendered, not loaded). kernels must be a set opened without an
 * executor (sp_gpu_kernels_open(NULL, ...)); it owns the plans. */
typedef struct sp_gpu_launch {
    const sprig_plan *plan;  /* borrowed from the kernel set */
    int d, f, g;             /* its request (batch 1, the step's dtype) */
    char params[1024];
} sp_gpu_launch;
typedef struct sp_gpu_step {
    sp_gpu_launch *launches; /* owned, [n]: one per plan launched */
    int n;
    int kernels;             /* kernel launches: sum of the plans' kernels */
} sp_gpu_step;
sprig_status sp_gpu_describe(sp_gpu_kernels *kernels, const sp_model_config *cfg, sp_mlp_mode mode,
                             const char *dtype, sp_gpu_step *out);
void sp_gpu_step_free(sp_gpu_step *s);

/* Training-free sparsity: per-layer thresholds on |silu(x·W_gate)| (e.g. from
 * sp_calibrate_thresholds), [n_layers]. Switches every layer's MLP
 * to the threshold rule and resets the sparsity counters. */
sprig_status sp_gpu_set_thresholds(sp_gpu *g, const float *thresholds);

/* Fraction of MLP neurons skipped so far (0 when dense), counted exactly as
 * the CPU backend counts: active experts * g per routed layer, f per dense one. */
double sp_gpu_mlp_sparsity(const sp_gpu *g);
/* Per layer, the number of neurons the last token's MLP used ([n_layers]). */
const int *sp_gpu_last_active(const sp_gpu *g);
/* Layer l's router scores for the last token, as the router kernel computed
 * them (fp32 dot products: LTE, x·W_r[e] per expert; threshold mode, x·W_gate[i]
 * per neuron), and the threshold the rule compared them with (LTE: logit(tau),
 * active when score > it; threshold mode: |silu(score)| > it). scores must hold
 * intermediate_size floats; *n = 0 for a dense layer. For diagnostics and tests. */
sprig_status sp_gpu_router_scores(sp_gpu *g, int l, float *scores, int *n, float *threshold);
#pragma GCC visibility pop
#endif
