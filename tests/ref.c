/* The tests' names for the library's float64 references (tuner/reference.c)
 * and storage-type conversions (core/half.c): one implementation, which
 * the tuner verifies candidates with and the tests check kernels with. */
#include "ref.h"
#include "sp_half.h"
#include "sp_reference.h"

uint16_t ref_f32_to_f16(float f) { return sp_f32_to_f16(f); }
float ref_f16_to_f32(uint16_t h) { return sp_f16_to_f32(h); }
uint16_t ref_f32_to_bf16(float f) { return sp_f32_to_bf16(f); }
float ref_bf16_to_f32(uint16_t b) { return sp_bf16_to_f32(b); }
uint16_t ref_to_bits(int bf16, float v) { return sp_ref_to_bits(bf16, v); }
float ref_from_bits(int bf16, uint16_t bits) { return sp_ref_from_bits(bf16, bits); }

void ref_gemv(const float *W, const float *x, double *y, int N, int K, int B) { sp_ref_gemv(W, x, y, N, K, B); }

void ref_router_scores(const float *Wr, const float *x, double *scores, int E, int d, int B) {
    sp_ref_router_scores(Wr, x, scores, E, d, B);
}

static sp_ref_rule ref_lib_rule(ref_rule rule) {
    return rule == REF_RULE_SIGMOID ? SP_REF_RULE_SIGMOID : SP_REF_RULE_SILU_ABS;
}

int ref_router_active(ref_rule rule, double score, double threshold) {
    return sp_ref_router_active(ref_lib_rule(rule), score, threshold);
}

void ref_router_mask(ref_rule rule, const double *scores, double threshold, int B, int E, unsigned char *mask) {
    sp_ref_router_mask(ref_lib_rule(rule), scores, threshold, B, E, mask);
}

void ref_routing(const unsigned char *mask, int B, int E, int *ids, int *counts, int *union_ids,
                 int *union_count) {
    sp_ref_routing(mask, B, E, ids, counts, union_ids, union_count);
}

double ref_silu(double v) { return sp_ref_silu(v); }

void ref_swiglu(const float *Wg, const float *Wu, const float *x, const unsigned char *mask, int B, int d,
                int f, int g, double *h) {
    sp_ref_swiglu(Wg, Wu, x, mask, B, d, f, g, h);
}

void ref_down(const float *Wd, const double *h, const unsigned char *mask, int B, int d, int f, int g,
              double *y) {
    sp_ref_down(Wd, h, mask, B, d, f, g, y);
}

void ref_compact_h(const double *h, const int *union_ids, int union_count, int B, int f, int g, double *hc) {
    sp_ref_compact_h(h, union_ids, union_count, B, f, g, hc);
}

void ref_transpose(const void *in, void *out, int rows, int cols, size_t size) {
    sp_ref_transpose(in, out, rows, cols, size);
}

void ref_interleave_gate_up(const void *Wg, const void *Wu, void *out, int f, int d, int g, size_t size) {
    sp_ref_interleave_gate_up(Wg, Wu, out, f, d, g, size);
}
