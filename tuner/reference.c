/* Float64 references (see sp_reference.h). */
#include <math.h>
#include <string.h>

#include "sp_half.h"
#include "sp_reference.h"

uint16_t sp_ref_to_bits(int bf16, float v) { return bf16 ? sp_f32_to_bf16(v) : sp_f32_to_f16(v); }
float sp_ref_from_bits(int bf16, uint16_t bits) { return bf16 ? sp_bf16_to_f32(bits) : sp_f16_to_f32(bits); }

/* ---- dense ----------------------------------------------------------------------- */

static double ref_dot(const float *a, const float *b, int n) {
    double s = 0.0;
    for (int k = 0; k < n; ++k) s += (double)a[k] * (double)b[k];
    return s;
}

void sp_ref_gemv(const float *W, const float *x, double *y, int N, int K, int B) {
    for (int b = 0; b < B; ++b)
        for (int n = 0; n < N; ++n) y[(size_t)b * N + n] = ref_dot(W + (size_t)n * K, x + (size_t)b * K, K);
}

/* ---- router ---------------------------------------------------------------------- */

void sp_ref_router_scores(const float *Wr, const float *x, double *scores, int E, int d, int B) {
    sp_ref_gemv(Wr, x, scores, E, d, B);
}

double sp_ref_silu(double v) { return v / (1.0 + exp(-v)); }

int sp_ref_router_active(sp_ref_rule rule, double score, double threshold) {
    if (rule == SP_REF_RULE_SIGMOID) return score > threshold;
    return fabs(sp_ref_silu(score)) > threshold;
}

void sp_ref_router_mask(sp_ref_rule rule, const double *scores, double threshold, int B, int E,
                        unsigned char *mask) {
    for (size_t i = 0; i < (size_t)B * E; ++i)
        mask[i] = (unsigned char)sp_ref_router_active(rule, scores[i], threshold);
}

void sp_ref_routing(const unsigned char *mask, int B, int E, int *ids, int *counts, int *union_ids,
                 int *union_count) {
    for (int b = 0; b < B; ++b) {
        int c = 0;
        for (int e = 0; e < E; ++e)
            if (mask[(size_t)b * E + e]) ids[(size_t)b * E + c++] = e;
        for (int k = c; k < E; ++k) ids[(size_t)b * E + k] = -1;
        counts[b] = c;
    }
    int u = 0;
    for (int e = 0; e < E; ++e) {
        int any = 0;
        for (int b = 0; b < B && !any; ++b) any = mask[(size_t)b * E + e];
        if (any) union_ids[u++] = e;
    }
    for (int k = u; k < E; ++k) union_ids[k] = -1;
    *union_count = u;
}

/* ---- SwiGLU MLP ------------------------------------------------------------------ */

static int ref_on(const unsigned char *mask, int b, int E, int expert) {
    return !mask || mask[(size_t)b * E + expert];
}

void sp_ref_swiglu(const float *Wg, const float *Wu, const float *x, const unsigned char *mask, int B, int d,
                int f, int g, double *h) {
    int E = f / g;
    for (int b = 0; b < B; ++b) {
        const float *xb = x + (size_t)b * d;
        for (int n = 0; n < f; ++n) {
            double v = 0.0;
            if (ref_on(mask, b, E, n / g))
                v = sp_ref_silu(ref_dot(Wg + (size_t)n * d, xb, d)) * ref_dot(Wu + (size_t)n * d, xb, d);
            h[(size_t)b * f + n] = v;
        }
    }
}

void sp_ref_down(const float *Wd, const double *h, const unsigned char *mask, int B, int d, int f, int g,
              double *y) {
    int E = f / g;
    for (int b = 0; b < B; ++b) {
        const double *hb = h + (size_t)b * f;
        for (int c = 0; c < d; ++c) {
            const float *row = Wd + (size_t)c * f;
            double s = 0.0;
            for (int e = 0; e < E; ++e) {
                if (!ref_on(mask, b, E, e)) continue;
                for (int i = e * g; i < (e + 1) * g; ++i) s += (double)row[i] * hb[i];
            }
            y[(size_t)b * d + c] = s;
        }
    }
}

void sp_ref_compact_h(const double *h, const int *union_ids, int union_count, int B, int f, int g, double *hc) {
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < union_count; ++j)
            for (int i = 0; i < g; ++i)
                hc[(size_t)b * f + (size_t)j * g + i] = h[(size_t)b * f + (size_t)union_ids[j] * g + i];
}

/* ---- layouts --------------------------------------------------------------------- */

void sp_ref_transpose(const void *in, void *out, int rows, int cols, size_t size) {
    const char *src = in;
    char *dst = out;
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c)
            memcpy(dst + ((size_t)c * rows + r) * size, src + ((size_t)r * cols + c) * size, size);
}

void sp_ref_interleave_gate_up(const void *Wg, const void *Wu, void *out, int f, int d, int g, size_t size) {
    const size_t block = (size_t)g * d * size; /* one expert's g rows */
    char *dst = out;
    for (int e = 0; e < f / g; ++e) {
        memcpy(dst + (size_t)e * 2 * block, (const char *)Wg + (size_t)e * block, block);
        memcpy(dst + ((size_t)e * 2 + 1) * block, (const char *)Wu + (size_t)e * block, block);
    }
}
