/* Float64 references and host storage-type conversions (see ref.h). */
#include <math.h>
#include <string.h>

#include "ref.h"

/* ---- storage types --------------------------------------------------------------- */

static uint32_t ref_bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float ref_float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Rounds m >> shift to nearest, ties to even (shift in 1..31). */
static uint32_t ref_shift_rne(uint32_t m, int shift) {
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return q;
}

uint16_t ref_f32_to_f16(float f) {
    uint32_t x = ref_bits_of(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN, kept quiet */
    /* 65520 = 65504 + half an ulp: the tie goes to the even neighbour, which is infinity. */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal in half: rebias the exponent, round 13 mantissa bits away */
        uint32_t h = ref_shift_rne(a - ((uint32_t)(127 - 15) << 23), 13);
        return (uint16_t)(sign | h); /* a mantissa carry correctly bumps the exponent */
    }
    /* Half subnormal: units of 2^-24. At or below 2^-25 (half a unit) it rounds to 0. */
    if (a <= 0x33000000u) return sign;
    uint32_t e = a >> 23;                     /* 102..112 here, so the value is normal in float */
    uint32_t m = (a & 0x7fffffu) | 0x800000u; /* value = m * 2^(e-150) */
    return (uint16_t)(sign | ref_shift_rne(m, (int)(126 - e)));
}

float ref_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return ref_float_of(sign | 0x7f800000u | (m << 13));
    if (e != 0) return ref_float_of(sign | ((e + 127 - 15) << 23) | (m << 13));
    float v = (float)m * 0x1p-24f; /* subnormal (or zero): exact in float */
    return sign ? -v : v;
}

uint16_t ref_f32_to_bf16(float f) {
    uint32_t u = ref_bits_of(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float ref_bf16_to_f32(uint16_t b) { return ref_float_of((uint32_t)b << 16); }

uint16_t ref_to_bits(int bf16, float v) { return bf16 ? ref_f32_to_bf16(v) : ref_f32_to_f16(v); }
float ref_from_bits(int bf16, uint16_t bits) { return bf16 ? ref_bf16_to_f32(bits) : ref_f16_to_f32(bits); }

/* ---- dense ----------------------------------------------------------------------- */

static double ref_dot(const float *a, const float *b, int n) {
    double s = 0.0;
    for (int k = 0; k < n; ++k) s += (double)a[k] * (double)b[k];
    return s;
}

void ref_gemv(const float *W, const float *x, double *y, int N, int K, int B) {
    for (int b = 0; b < B; ++b)
        for (int n = 0; n < N; ++n) y[(size_t)b * N + n] = ref_dot(W + (size_t)n * K, x + (size_t)b * K, K);
}

/* ---- router ---------------------------------------------------------------------- */

void ref_router_scores(const float *Wr, const float *x, double *scores, int E, int d, int B) {
    ref_gemv(Wr, x, scores, E, d, B);
}

double ref_silu(double v) { return v / (1.0 + exp(-v)); }

int ref_router_active(ref_rule rule, double score, double threshold) {
    if (rule == REF_RULE_SIGMOID) return score > threshold;
    return fabs(ref_silu(score)) > threshold;
}

void ref_router_mask(ref_rule rule, const double *scores, double threshold, int B, int E, unsigned char *mask) {
    for (size_t i = 0; i < (size_t)B * E; ++i) mask[i] = (unsigned char)ref_router_active(rule, scores[i], threshold);
}

void ref_routing(const unsigned char *mask, int B, int E, int *ids, int *counts, int *union_ids,
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

void ref_swiglu(const float *Wg, const float *Wu, const float *x, const unsigned char *mask, int B, int d,
                int f, int g, double *h) {
    int E = f / g;
    for (int b = 0; b < B; ++b) {
        const float *xb = x + (size_t)b * d;
        for (int n = 0; n < f; ++n) {
            double v = 0.0;
            if (ref_on(mask, b, E, n / g))
                v = ref_silu(ref_dot(Wg + (size_t)n * d, xb, d)) * ref_dot(Wu + (size_t)n * d, xb, d);
            h[(size_t)b * f + n] = v;
        }
    }
}

void ref_down(const float *Wd, const double *h, const unsigned char *mask, int B, int d, int f, int g,
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

void ref_compact_h(const double *h, const int *union_ids, int union_count, int B, int f, int g, double *hc) {
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < union_count; ++j)
            for (int i = 0; i < g; ++i)
                hc[(size_t)b * f + (size_t)j * g + i] = h[(size_t)b * f + (size_t)union_ids[j] * g + i];
}

/* ---- layouts --------------------------------------------------------------------- */

void ref_transpose(const void *in, void *out, int rows, int cols, size_t size) {
    const char *src = in;
    char *dst = out;
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c)
            memcpy(dst + ((size_t)c * rows + r) * size, src + ((size_t)r * cols + c) * size, size);
}

void ref_interleave_gate_up(const void *Wg, const void *Wu, void *out, int f, int d, int g, size_t size) {
    const size_t block = (size_t)g * d * size; /* one expert's g rows */
    char *dst = out;
    for (int e = 0; e < f / g; ++e) {
        memcpy(dst + (size_t)e * 2 * block, (const char *)Wg + (size_t)e * block, block);
        memcpy(dst + ((size_t)e * 2 + 1) * block, (const char *)Wu + (size_t)e * block, block);
    }
}
