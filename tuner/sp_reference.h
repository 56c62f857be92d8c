/* Float64 references for the kernel families (docs/kernel-abi.md), written
 * from the math alone so they share no code or shortcut with the templates.
 * The tuner verifies every candidate against them; the tests use them too.
 *
 * Inputs are float arrays whose values are already rounded to the storage
 * type (fp16/bf16), so the reference sees exactly the operands the GPU reads;
 * sums and nonlinearities are done in double. All matrices are row-major. */
#ifndef SP_REFERENCE_H
#define SP_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* ---- storage types (bit-exact, core/sp_half.h) ------------------------------------- */
/* bf16 = 0: IEEE fp16, 1: bfloat16; round to nearest even. */
uint16_t sp_ref_to_bits(int bf16, float v);
float sp_ref_from_bits(int bf16, uint16_t bits);
/* v rounded to the storage type and back. */
static inline float sp_ref_round(int bf16, float v) { return sp_ref_from_bits(bf16, sp_ref_to_bits(bf16, v)); }

/* ---- dense ------------------------------------------------------------------------------ */
/* y[b][n] = sum_k W[n][k] * x[b][k];  W [N][K], x [B][K], y [B][N]. */
void sp_ref_gemv(const float *W, const float *x, double *y, int N, int K, int B);

/* ---- router ------------------------------------------------------------------------------ */
typedef enum sp_ref_rule {
    SP_REF_RULE_SIGMOID,  /* LTE: active when score > threshold (threshold = logit(tau)) */
    SP_REF_RULE_SILU_ABS  /* training-free: active when |silu(score)| > threshold */
} sp_ref_rule;

/* scores[b][e] = sum_k Wr[e][k] * x[b][k];  Wr [E][d], x [B][d]. */
void sp_ref_router_scores(const float *Wr, const float *x, double *scores, int E, int d, int B);
int sp_ref_router_active(sp_ref_rule rule, double score, double threshold);
/* mask[b][e] = sp_ref_router_active(rule, scores[b][e], threshold). */
void sp_ref_router_mask(sp_ref_rule rule, const double *scores, double threshold, int B, int E, unsigned char *mask);
/* The ABI's routing arrays from a mask [B][E]: ids [B][E] (per token, active
 * experts ascending; unused tail -1), counts [B], union_ids [E] (ascending,
 * tail -1) and *union_count. */
void sp_ref_routing(const unsigned char *mask, int B, int E, int *ids, int *counts, int *union_ids,
                    int *union_count);

/* ---- SwiGLU MLP ------------------------------------------------------------------------- */
double sp_ref_silu(double v);

/* h[b][n] = silu(x[b]·Wg[n]) * (x[b]·Wu[n]) where expert n/g is active for
 * token b (mask [B][E], NULL = all active), else exactly 0.
 * Wg, Wu [f][d] (not interleaved), x [B][d], h [B][f] (dense neuron order). */
void sp_ref_swiglu(const float *Wg, const float *Wu, const float *x, const unsigned char *mask, int B, int d, int f,
                   int g, double *h);

/* y[b][c] = sum_n W_down[c][n] * h[b][n];  Wd = W_down [d][f], h [B][f], y [B][d].
 * mask (NULL = all) lets the sum skip inactive experts (where h is 0 anyway). */
void sp_ref_down(const float *Wd, const double *h, const unsigned char *mask, int B, int d, int f, int g, double *y);

/* The ABI's compact h: hc[b][j*g+i] = h[b][union_ids[j]*g+i] for j < union_count
 * (h must already be 0 where masked). Slots j >= union_count are left alone. */
void sp_ref_compact_h(const double *h, const int *union_ids, int union_count, int B, int f, int g, double *hc);

/* ---- layouts (host packing for the layouts the templates accept) -------------------------- */
/* out [cols][rows] = in [rows][cols]ᵀ (elements of `size` bytes). */
void sp_ref_transpose(const void *in, void *out, int rows, int cols, size_t size);
/* Interleaved gate/up: out [E][2][g][d] = per expert its g gate rows, then its
 * g up rows. Wg, Wu [f][d]; elements of `size` bytes. */
void sp_ref_interleave_gate_up(const void *Wg, const void *Wu, void *out, int f, int d, int g, size_t size);

#pragma GCC visibility pop
#endif
