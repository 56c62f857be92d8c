/* The CPU reference backend: fp32 activations, double accumulation, plain C.
 * Clear over fast: it is the yardstick the GPU backend is checked against. */
#ifndef SP_CPU_H
#define SP_CPU_H

#include "sp_mlp_mode.h"
#include "sp_model.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_cpu {
    const sp_model *model;   /* borrowed */
    int max_seq;             /* KV cache capacity in positions */
    sp_mlp_mode mode;
    float *thresholds;       /* [n_layers], SP_MLP_THRESHOLD only */
    /* KV cache: [n_layers][max_seq][kv_heads*head_dim] each */
    float *k_cache, *v_cache;
    /* scratch, sized from the config */
    float *x, *xb, *q, *k, *v, *att, *att_out, *gate, *up, *h, *scores, *row, *logits;
    double *inv_freq;        /* [head_dim/2], llama3 scaling applied */
    /* measured MLP sparsity: neurons computed / neurons present, summed */
    double mlp_active, mlp_total;
    unsigned char *last_active; /* the last token's decisions, per layer (sp_cpu_decisions) */
    int decisions_stride;    /* entries per layer in last_active: max(E, f) + 1 */
    float *record;           /* calibration only: |silu(gate)| [n_layers][record_n][f] */
    int record_t, record_n;
    /* SliceGPT models: the shortcut product x @ Q [d] and its double accumulators [d] */
    float *shortcut_out;
    double *shortcut_acc;
} sp_cpu;

/* The caller owns *out (sp_cpu_close); model must outlive it. */
sprig_status sp_cpu_open(const sp_model *model, int max_seq, sp_mlp_mode mode, sp_cpu **out);
void sp_cpu_close(sp_cpu *c);

/* Runs token at position pos (0-based; positions must come in order) and
 * returns the logits [vocab] (owned by c, valid until the next call). */
sprig_status sp_cpu_forward(sp_cpu *c, int token, int pos, const float **logits);

/* Training-free sparsity: runs tokens densely, then sets each layer's
 * threshold to the `sparsity` quantile of |silu(gate)| it saw, and switches
 * the MLP to SP_MLP_THRESHOLD. Resets the KV cache use (start again at pos 0). */
sprig_status sp_cpu_calibrate(sp_cpu *c, const int *tokens, int n, double sparsity);

/* Layer l's decisions for the last token, 1 = active: per expert e (LTE
 * layers, [E]) or per stored neuron i (threshold mode, [f]); NULL for l out
 * of range. Dense layers leave theirs untouched. */
const unsigned char *sp_cpu_decisions(const sp_cpu *c, int l);

/* Fraction of MLP neurons skipped so far (0 when dense). */
double sp_cpu_mlp_sparsity(const sp_cpu *c);
#pragma GCC visibility pop
#endif
