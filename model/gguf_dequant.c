/* GGUF block formats -> fp32 (see sp_gguf.h). Block layouts from ggml's
 * ggml-common.h; the arithmetic is ggml-quants.c's dequantize_row_* and
 * gguf-py's quants.py, operand for operand, so each value is the same fp32
 * product/sum they compute (tests/test_gguf.c checks bit equality against
 * gguf-py). That needs every product rounded before the following add: no
 * fused multiply-add, hence FP_CONTRACT off (clang honours the pragma; GCC
 * ignores it but only contracts with -ffp-contract=fast on an FMA target,
 * which the x86-64 baseline is not). */
#include <stdint.h>
#include <string.h>

#include "sp_error.h"
#include "sp_gguf.h"
#include "sp_half.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define QK 32
#define QK_K 256

static float gd_f16(const unsigned char *p) { return sp_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Q8_0: fp16 d, int8 q[32]; x = q * d. */
static void gd_q8_0(const unsigned char *b, float *y) {
    const float d = gd_f16(b);
    for (int j = 0; j < QK; ++j) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q4_0: fp16 d, 16 bytes; low nibbles are elements 0..15, high nibbles 16..31; x = (q - 8) * d. */
static void gd_q4_0(const unsigned char *b, float *y) {
    const float d = gd_f16(b);
    const unsigned char *qs = b + 2;
    for (int j = 0; j < QK / 2; ++j) {
        y[j] = (float)((qs[j] & 0x0F) - 8) * d;
        y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1: fp16 d, fp16 m, 16 bytes as Q4_0; x = q * d + m. */
static void gd_q4_1(const unsigned char *b, float *y) {
    const float d = gd_f16(b), m = gd_f16(b + 2);
    const unsigned char *qs = b + 4;
    for (int j = 0; j < QK / 2; ++j) {
        y[j] = d * (float)(qs[j] & 0x0F) + m;
        y[j + QK / 2] = d * (float)(qs[j] >> 4) + m;
    }
}

/* Q4_K's 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes. */
static void gd_scale_min_k4(int j, const unsigned char *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K: fp16 d, fp16 dmin, scales[12], qs[128]; 8 sub-blocks of 32:
 * x = (d * sc) * q - (dmin * m). Each 32 bytes of qs hold two sub-blocks
 * (low nibbles, then high nibbles). */
static void gd_q4_k(const unsigned char *b, float *y) {
    const float d = gd_f16(b), dmin = gd_f16(b + 2);
    const unsigned char *scales = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
        int sc, m;
        gd_scale_min_k4(is, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        gd_scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (float)(q[l] & 0x0F) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
}

/* Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], fp16 d;
 * 16 sub-blocks of 16: x = (d * scale) * (q - 32). */
static void gd_q6_k(const unsigned char *b, float *y) {
    const unsigned char *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = gd_f16(b + 208);
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0F) | ((qh[l] >> 0 & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0F) | ((qh[l] >> 2 & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
            y[l] = (d * (float)sc[is]) * (float)q1;
            y[l + 32] = (d * (float)sc[is + 2]) * (float)q2;
            y[l + 64] = (d * (float)sc[is + 4]) * (float)q3;
            y[l + 96] = (d * (float)sc[is + 6]) * (float)q4;
        }
    }
}

int sp_gguf_can_dequantize(uint32_t type) {
    switch (type) {
    case SP_GGML_F32: case SP_GGML_F16: case SP_GGML_BF16: case SP_GGML_Q8_0: case SP_GGML_Q4_0:
    case SP_GGML_Q4_1: case SP_GGML_Q4_K: case SP_GGML_Q6_K: return 1;
    default: return 0;
    }
}

sprig_status sp_gguf_dequantize(uint32_t type, const void *src, size_t n, float *dst) {
    const unsigned char *p = src;
    void (*block)(const unsigned char *, float *) = NULL;
    switch (type) {
    case SP_GGML_F32:
        memcpy(dst, src, n * 4);  /* little-endian hosts only, as the rest of sprig */
        return SPRIG_OK;
    case SP_GGML_F16:
        for (size_t i = 0; i < n; ++i) dst[i] = gd_f16(p + 2 * i);
        return SPRIG_OK;
    case SP_GGML_BF16:
        for (size_t i = 0; i < n; ++i) dst[i] = sp_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return SPRIG_OK;
    case SP_GGML_Q8_0: block = gd_q8_0; break;
    case SP_GGML_Q4_0: block = gd_q4_0; break;
    case SP_GGML_Q4_1: block = gd_q4_1; break;
    case SP_GGML_Q4_K: block = gd_q4_k; break;
    case SP_GGML_Q6_K: block = gd_q6_k; break;
    default:
        return sp_fail(SPRIG_E_FORMAT, "GGUF tensor type %s (%u) cannot be dequantized by sprig (supported: F32, "
                       "F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)", sp_ggml_type_name(type), type);
    }
    const size_t be = sp_ggml_block_elems(type), bb = sp_ggml_block_bytes(type);
    if (n % be)
        return sp_fail(SPRIG_E_INVALID, "dequantizing %zu %s elements: not a whole number of %zu-element blocks", n,
                       sp_ggml_type_name(type), be);
    for (size_t k = 0; k < n / be; ++k) block(p + k * bb, dst + k * be);
    return SPRIG_OK;
}
