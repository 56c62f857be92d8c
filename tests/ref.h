/* Float64 CPU references for the kernel families (docs/kernel-abi.md), written
 * from the math alone so they share no code or shortcut with the templates.
 * These are the tests' names for the library's references (tuner/sp_reference.h,
 * which the tuner verifies candidates with) and conversions (core/sp_half.h).
 *
 * Inputs are float arrays whose values are already rounded to the storage
 * type (fp16/bf16), so the reference sees exactly the operands the GPU reads;
 * sums and nonlinearities are done in double. All matrices are row-major.
 * Also: bit-exact host conversions float <-> fp16 / bf16. */
#ifndef SP_TEST_REF_H
#define SP_TEST_REF_H

#include <stddef.h>
#include <stdint.h>

/* ---- storage types --------------------------------------------------------------- */
/* IEEE binary16, round to nearest even; subnormals, infinities and NaN exact. */
uint16_t ref_f32_to_f16(float f);
float ref_f16_to_f32(uint16_t h);
/* bfloat16, round to nearest even; NaN stays a (quiet) NaN. */
uint16_t ref_f32_to_bf16(float f);
float ref_bf16_to_f32(uint16_t b);

/* The same, chosen by dtype (bf16 = 0: fp16, 1: bf16). */
uint16_t ref_to_bits(int bf16, float v);
float ref_from_bits(int bf16, uint16_t bits);
/* v rounded to the storage type and back. */
static inline float ref_round(int bf16, float v) { return ref_from_bits(bf16, ref_to_bits(bf16, v)); }

/* ---- dense ----------------------------------------------------------------------- */
/* y[b][n] = sum_k W[n][k] * x[b][k];  W [N][K], x [B][K], y [B][N]. */
void ref_gemv(const float *W, const float *x, double *y, int N, int K, int B);

/* ---- router ---------------------------------------------------------------------- */
typedef enum ref_rule {
    REF_RULE_SIGMOID,  /* LTE: active when score > threshold (threshold = logit(tau)) */
    REF_RULE_SILU_ABS  /* training-free: active when |silu(score)| > threshold */
} ref_rule;

/* scores[b][e] = sum_k Wr[e][k] * x[b][k];  Wr [E][d], x [B][d]. */
void ref_router_scores(const float *Wr, const float *x, double *scores, int E, int d, int B);
int ref_router_active(ref_rule rule, double score, double threshold);
/* mask[b][e] = ref_router_active(rule, scores[b][e], threshold). */
void ref_router_mask(ref_rule rule, const double *scores, double threshold, int B, int E, unsigned char *mask);
/* The routing arrays the ABI defines, from a mask [B][E]: ids [B][E] (per
 * token, active experts ascending; unused tail set to -1), counts [B],
 * union_ids [E] (ascending, tail -1) and *union_count. */
void ref_routing(const unsigned char *mask, int B, int E, int *ids, int *counts, int *union_ids,
                 int *union_count);

/* ---- SwiGLU MLP ------------------------------------------------------------------ */
double ref_silu(double v);

/* h[b][n] = silu(x[b]·Wg[n]) * (x[b]·Wu[n]) where expert n/g is active for
 * token b (mask [B][E], NULL = all active), else exactly 0.
 * Wg, Wu [f][d] (not interleaved), x [B][d], h [B][f] (dense neuron order). */
void ref_swiglu(const float *Wg, const float *Wu, const float *x, const unsigned char *mask, int B, int d,
                int f, int g, double *h);

/* y[b][c] = sum_n W_down[c][n] * h[b][n];  Wd = W_down [d][f], h [B][f], y [B][d].
 * mask (NULL = all) lets the sum skip inactive experts (where h is 0 anyway). */
void ref_down(const float *Wd, const double *h, const unsigned char *mask, int B, int d, int f, int g,
              double *y);

/* The ABI's compact h: hc[b][j*g+i] = h[b][union_ids[j]*g+i] for j < union_count
 * (h must already be 0 where masked). Slots j >= union_count are left alone. */
void ref_compact_h(const double *h, const int *union_ids, int union_count, int B, int f, int g, double *hc);

/* ---- layouts (host packing for the layouts the templates accept) ------------------ */
/* out [cols][rows] = in [rows][cols]ᵀ (any element type of `size` bytes). */
void ref_transpose(const void *in, void *out, int rows, int cols, size_t size);
/* Interleaved gate/up: out [E][2][g][d] = per expert its g gate rows, then its
 * g up rows. Wg, Wu [f][d]; elements of `size` bytes. */
void ref_interleave_gate_up(const void *Wg, const void *Wu, void *out, int f, int d, int g, size_t size);

#endif
