/* The float64 references and the host conversions, checked against values
 * worked out by hand (and, for the conversions, exhaustively), so that a GPU
 * test failing later points at the kernel and not at its yardstick. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_half.h"
#include "sp_reference.h"
#include "test_util.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * (1.0 + fabs(b)); }

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void test_fp16(void) {
    struct { float in; uint16_t out; } cases[] = {
        {1.0f, 0x3C00}, {-2.0f, 0xC000}, {0.0f, 0x0000}, {-0.0f, 0x8000},
        {65504.0f, 0x7BFF},            /* largest finite */
        {65519.0f, 0x7BFF},            /* below the halfway point: stays finite */
        {65520.0f, 0x7C00},            /* the tie goes to the even neighbour: infinity */
        {1e6f, 0x7C00}, {-INFINITY, 0xFC00},
        {0x1p-14f, 0x0400},            /* smallest normal */
        {0x1p-24f, 0x0001},            /* smallest subnormal */
        {0x1p-25f, 0x0000},            /* exactly half a unit: tie to even (0) */
        {0x1.8p-25f, 0x0001},          /* 0.75 unit: up */
        {0x1.8p-24f, 0x0002},          /* 1.5 units: tie to even (2) */
        {0x1.4p-23f, 0x0002},          /* 2.5 units: tie to even (2) */
        {1e-7f, 0x0002},               /* 1.68 units */
        {1.0f + 0x1p-11f, 0x3C00},     /* half an ulp above 1: tie to even (down) */
        {1.0f + 0x1.8p-10f, 0x3C02},   /* 1.5 ulp above 1: tie to even (up) */
        {1.0f + 0x1.2p-11f, 0x3C01},   /* just above half an ulp: up */
        {0.1f, 0x2E66}, {3.14159265f, 0x4248},
        {0x1.ffcp-15f, 0x0400},        /* largest subnormal + rounding carries into the exponent */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        uint16_t got = sp_f32_to_f16(cases[i].in);
        CHECK_MSG(got == cases[i].out, "f16(%a) = 0x%04X, want 0x%04X", (double)cases[i].in, got, cases[i].out);
    }
    CHECK(sp_f16_to_f32(0x3C00) == 1.0f);
    CHECK(sp_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(sp_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(sp_f16_to_f32(0x8001) == -0x1p-24f);
    CHECK(sp_f16_to_f32(0x03FF) == 0x3FFp-24f);
    CHECK(isinf(sp_f16_to_f32(0x7C00)) && sp_f16_to_f32(0xFC00) < 0);
    CHECK(isnan(sp_f16_to_f32(0x7E00)) && isnan(sp_f16_to_f32(0xFFFF)));
    /* The poison pattern the GPU tests use (0xFFFF) must be NaN in both types. */
    CHECK(isnan(sp_bf16_to_f32(0xFFFF)));
    /* 1e-7 round trip: lands on the nearest subnormal, 2 * 2^-24. */
    CHECK(sp_f16_to_f32(sp_f32_to_f16(1e-7f)) == 0x2p-24f);
    float nan_f = nanf("");
    uint16_t hn = sp_f32_to_f16(nan_f);
    CHECK((hn & 0x7C00) == 0x7C00 && (hn & 0x3FF) != 0);
    /* Exhaustive: every non-NaN half survives half -> float -> half unchanged. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; ++h) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue;
        if (sp_f32_to_f16(sp_f16_to_f32((uint16_t)h)) != h) ++bad;
    }
    CHECK_MSG(bad == 0, "%d half values do not round-trip", bad);
    /* Rounding of midpoints between every pair of neighbouring positive finite
     * halves: the midpoint (exact in float) goes to the even one. */
    bad = 0;
    for (uint32_t h = 0; h < 0x7BFF; ++h) {
        float lo = sp_f16_to_f32((uint16_t)h), hi = sp_f16_to_f32((uint16_t)(h + 1));
        float mid = (lo + hi) * 0.5f;
        uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (sp_f32_to_f16(mid) != want) ++bad;
        if (sp_f32_to_f16(nextafterf(mid, 0.0f)) != h) ++bad;
        if (sp_f32_to_f16(nextafterf(mid, INFINITY)) != h + 1) ++bad;
    }
    CHECK_MSG(bad == 0, "%d half midpoints round wrongly", bad);
}

static void test_bf16(void) {
    CHECK(sp_f32_to_bf16(1.0f) == 0x3F80);
    CHECK(sp_f32_to_bf16(-2.0f) == 0xC000);
    CHECK(sp_f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80);   /* tie to even: down */
    CHECK(sp_f32_to_bf16(1.0f + 0x1.8p-7f) == 0x3F82); /* tie to even: up */
    CHECK(sp_f32_to_bf16(1.0f + 0x1.2p-8f) == 0x3F81); /* above the tie: up */
    CHECK(sp_f32_to_bf16(3.0e38f) == 0x7F62);
    CHECK(sp_f32_to_bf16(0x1.fffffep127f) == 0x7F80); /* max float rounds to infinity */
    CHECK(sp_f32_to_bf16(INFINITY) == 0x7F80);
    uint16_t bn = sp_f32_to_bf16(nanf(""));
    CHECK((bn & 0x7F80) == 0x7F80 && (bn & 0x7F) != 0);
    /* A NaN whose payload sits only in the low 16 bits must not become infinity. */
    float low_nan;
    uint32_t u = 0x7F800001u;
    memcpy(&low_nan, &u, sizeof low_nan);
    CHECK(isnan(sp_bf16_to_f32(sp_f32_to_bf16(low_nan))));
    CHECK(bits(sp_bf16_to_f32(0x3F80)) == 0x3F800000u);
    int bad = 0;
    for (uint32_t b = 0; b < 0x10000; ++b) {
        if ((b & 0x7F80) == 0x7F80 && (b & 0x7F)) continue;
        if (sp_f32_to_bf16(sp_bf16_to_f32((uint16_t)b)) != b) ++bad;
    }
    CHECK_MSG(bad == 0, "%d bf16 values do not round-trip", bad);
    CHECK(sp_ref_round(1, 1.00390625f) == 1.0f); /* 1 + 2^-8 */
    CHECK(sp_ref_round(0, 1.00390625f) == 1.00390625f);
}

static void test_gemv(void) {
    const float W[] = {1, 2, 3, 4, 5, 6}; /* [3][2] */
    const float x[] = {1, -1, 0.5f, 2};   /* [2][2] */
    double y[6];
    sp_ref_gemv(W, x, y, 3, 2, 2);
    const double want[] = {-1, -1, -1, 4.5, 9.5, 14.5};
    for (int i = 0; i < 6; ++i) CHECK_MSG(near(y[i], want[i]), "y[%d] = %g, want %g", i, y[i], want[i]);
}

static void test_router(void) {
    /* E = 3 experts, d = 2, B = 2. */
    const float Wr[] = {1, 0, 0, 1, 1, 1};
    const float x[] = {0.5f, -0.5f, -1, 0};
    double s[6];
    sp_ref_router_scores(Wr, x, s, 3, 2, 2);
    const double want[] = {0.5, -0.5, 0.0, -1, 0, -1};
    for (int i = 0; i < 6; ++i) CHECK_MSG(near(s[i], want[i]), "score[%d] = %g", i, s[i]);
    unsigned char mask[6];
    sp_ref_router_mask(SP_REF_RULE_SIGMOID, s, 0.0, 2, 3, mask); /* tau = 0.5: score > 0, strictly */
    const unsigned char want_mask[] = {1, 0, 0, 0, 0, 0};
    CHECK(memcmp(mask, want_mask, 6) == 0);
    /* logit(0.25) = -log(3): sigmoid(-1) = 0.269 > 0.25, sigmoid(-0.5) = 0.378 */
    sp_ref_router_mask(SP_REF_RULE_SIGMOID, s, -log(3.0), 2, 3, mask);
    const unsigned char want_low[] = {1, 1, 1, 1, 1, 1};
    CHECK(memcmp(mask, want_low, 6) == 0);
    /* silu_abs: |silu(0.5)| = 0.3112, |silu(-0.5)| = 0.1888, |silu(-1)| = 0.2689, silu(0) = 0 */
    CHECK(near(sp_ref_silu(1.0), 0.7310585786300049));
    CHECK(near(sp_ref_silu(-1.0), -0.2689414213699951));
    sp_ref_router_mask(SP_REF_RULE_SILU_ABS, s, 0.25, 2, 3, mask);
    const unsigned char want_silu[] = {1, 0, 0, 1, 0, 1};
    CHECK(memcmp(mask, want_silu, 6) == 0);

    /* Routing arrays: B = 3, E = 4; the last token has no expert. */
    const unsigned char m[] = {0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    int ids[12], counts[3], uids[4], ucount = -5;
    sp_ref_routing(m, 3, 4, ids, counts, uids, &ucount);
    CHECK(counts[0] == 2 && counts[1] == 2 && counts[2] == 0);
    CHECK(ids[0] == 1 && ids[1] == 3 && ids[2] == -1);
    CHECK(ids[4] == 0 && ids[5] == 1 && ids[6] == -1);
    CHECK(ids[8] == -1);
    CHECK(ucount == 3 && uids[0] == 0 && uids[1] == 1 && uids[2] == 3 && uids[3] == -1);
    const unsigned char none[] = {0, 0, 0, 0};
    sp_ref_routing(none, 1, 4, ids, counts, uids, &ucount);
    CHECK(ucount == 0 && counts[0] == 0 && uids[0] == -1);
}

static void test_mlp(void) {
    /* d = 2, f = 4, g = 2 (E = 2), B = 2. */
    const float Wg[] = {1, 0, 0, 1, 1, 1, 2, 0};
    const float Wu[] = {1, 1, 2, 0, 0, 1, 1, -1};
    const float x[] = {1, -1, 2, 0};
    double h[8];
    sp_ref_swiglu(Wg, Wu, x, NULL, 2, 2, 4, 2, h);
    /* token 0: gate = (1, -1, 0, 2), up = (0, 2, -1, 2) */
    const double s1 = 0.7310585786300049, sm1 = -0.2689414213699951, s2 = 1.7615941559557649;
    const double want[8] = {s1 * 0, sm1 * 2, 0 * -1, s2 * 2,
                            /* token 1: gate = (2, 0, 2, 4), up = (2, 4, 0, 2) */
                            s2 * 2, 0, s2 * 0, 4 / (1 + exp(-4.0)) * 2};
    for (int i = 0; i < 8; ++i) CHECK_MSG(near(h[i], want[i]), "h[%d] = %.17g, want %.17g", i, h[i], want[i]);

    /* Token 0 uses expert 1 only, token 1 expert 0 only. */
    const unsigned char mask[] = {0, 1, 1, 0};
    double hm[8];
    sp_ref_swiglu(Wg, Wu, x, mask, 2, 2, 4, 2, hm);
    CHECK(hm[0] == 0 && hm[1] == 0 && near(hm[2], want[2]) && near(hm[3], want[3]));
    CHECK(near(hm[4], want[4]) && near(hm[5], want[5]) && hm[6] == 0 && hm[7] == 0);

    /* down: W_down [d=2][f=4] */
    const float Wd[] = {1, 2, 3, 4, 0, 1, 0, -1};
    double y[4];
    sp_ref_down(Wd, hm, mask, 2, 2, 4, 2, y);
    CHECK(near(y[0], 3 * hm[2] + 4 * hm[3]) && near(y[1], -hm[3]));
    CHECK(near(y[2], 1 * hm[4] + 2 * hm[5]) && near(y[3], hm[5]));
    /* The mask only skips work: with a mask-less sum over the zeros the result is equal. */
    double y2[4];
    sp_ref_down(Wd, hm, NULL, 2, 2, 4, 2, y2);
    for (int i = 0; i < 4; ++i) CHECK(near(y[i], y2[i]));

    /* Compact h: union = {0, 1} in order; then a union of {1} alone. */
    double hc[8];
    for (int i = 0; i < 8; ++i) hc[i] = -99;
    const int u01[] = {0, 1};
    sp_ref_compact_h(hm, u01, 2, 2, 4, 2, hc);
    for (int i = 0; i < 8; ++i) CHECK(hc[i] == hm[i]);
    for (int i = 0; i < 8; ++i) hc[i] = -99;
    const int u1[] = {1};
    sp_ref_compact_h(hm, u1, 1, 2, 4, 2, hc);
    CHECK(hc[0] == hm[2] && hc[1] == hm[3] && hc[2] == -99 && hc[3] == -99);
    CHECK(hc[4] == hm[6] && hc[5] == hm[7] && hc[6] == -99);
}

static void test_layouts(void) {
    const uint16_t m[] = {1, 2, 3, 4, 5, 6}; /* [2][3] */
    uint16_t t[6];
    sp_ref_transpose(m, t, 2, 3, sizeof m[0]);
    const uint16_t want_t[] = {1, 4, 2, 5, 3, 6};
    CHECK(memcmp(t, want_t, sizeof t) == 0);
    /* f = 4, d = 1, g = 2: gate rows g0..g3, up rows u0..u3 -> [g0 g1 u0 u1 g2 g3 u2 u3] */
    const uint16_t Wg[] = {10, 11, 12, 13}, Wu[] = {20, 21, 22, 23};
    uint16_t il[8];
    sp_ref_interleave_gate_up(Wg, Wu, il, 4, 1, 2, sizeof il[0]);
    const uint16_t want_il[] = {10, 11, 20, 21, 12, 13, 22, 23};
    CHECK(memcmp(il, want_il, sizeof il) == 0);
}

int main(void) {
    test_fp16();
    test_bf16();
    test_gemv();
    test_router();
    test_mlp();
    test_layouts();
    return sp_test_finish("test_reference", 0);
}
