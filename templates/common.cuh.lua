{# Shared prelude of every generated kernel: storage types, conversions, 16-byte
   vector loads and warp reductions. It includes no CUDA header, so NVRTC needs
   no include path and the source alone decides the bytes compiled. #}
// sprig generated kernel: family {{ family }}, d={{ d }} f={{ f }} dtype={{ dtype }} batch={{ B }} g={{ g }}
typedef unsigned short sp_half;  // IEEE binary16 bits
typedef unsigned short sp_bf16;  // bfloat16 bits
typedef unsigned short sp_u16;

__device__ __forceinline__ float sp_half_to_float(sp_u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ sp_u16 sp_float_to_half(float f) {
    sp_u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float sp_bf16_to_float(sp_u16 b) {
    return __uint_as_float(((unsigned)b) << 16);
}
// Round to nearest even; NaN stays NaN (works on every architecture).
__device__ __forceinline__ sp_u16 sp_float_to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (sp_u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (sp_u16)(u >> 16);
}
{% if dtype == "fp16" then %}
#define SP_TO_F(x) sp_half_to_float(x)
#define SP_FROM_F(x) sp_float_to_half(x)
{% else %}
#define SP_TO_F(x) sp_bf16_to_float(x)
#define SP_FROM_F(x) sp_float_to_bf16(x)
{% end %}
typedef {{ T }} T;

// The two 16-bit values packed in a 32-bit word, as floats (low half first).
__device__ __forceinline__ float sp_lo(unsigned w) { return SP_TO_F((sp_u16)(w & 0xffffu)); }
__device__ __forceinline__ float sp_hi(unsigned w) { return SP_TO_F((sp_u16)(w >> 16)); }

// Loads VEC consecutive elements (VEC in {2,4,8}: 4, 8 or 16 bytes) as floats.
template <int VEC>
__device__ __forceinline__ void sp_load_vec(const T *__restrict__ p, float *out) {
    if (VEC == 8) {
        uint4 v = __ldg(reinterpret_cast<const uint4 *>(p));
        out[0] = sp_lo(v.x); out[1] = sp_hi(v.x); out[2] = sp_lo(v.y); out[3] = sp_hi(v.y);
        out[4] = sp_lo(v.z); out[5] = sp_hi(v.z); out[6] = sp_lo(v.w); out[7] = sp_hi(v.w);
    } else if (VEC == 4) {
        uint2 v = __ldg(reinterpret_cast<const uint2 *>(p));
        out[0] = sp_lo(v.x); out[1] = sp_hi(v.x); out[2] = sp_lo(v.y); out[3] = sp_hi(v.y);
    } else {
        unsigned v = __ldg(reinterpret_cast<const unsigned *>(p));
        out[0] = sp_lo(v); out[1] = sp_hi(v);
    }
}

// Weights are read once per call: stream them past L1 (evict-first).
template <int VEC>
__device__ __forceinline__ void sp_load_vec_stream(const T *__restrict__ p, float *out) {
    if (VEC == 8) {
        uint4 v = __ldcs(reinterpret_cast<const uint4 *>(p));
        out[0] = sp_lo(v.x); out[1] = sp_hi(v.x); out[2] = sp_lo(v.y); out[3] = sp_hi(v.y);
        out[4] = sp_lo(v.z); out[5] = sp_hi(v.z); out[6] = sp_lo(v.w); out[7] = sp_hi(v.w);
    } else if (VEC == 4) {
        uint2 v = __ldcs(reinterpret_cast<const uint2 *>(p));
        out[0] = sp_lo(v.x); out[1] = sp_hi(v.x); out[2] = sp_lo(v.y); out[3] = sp_hi(v.y);
    } else {
        unsigned v = __ldcs(reinterpret_cast<const unsigned *>(p));
        out[0] = sp_lo(v); out[1] = sp_hi(v);
    }
}

__device__ __forceinline__ float sp_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float sp_silu(float v) { return v / (1.0f + __expf(-v)); }
__device__ __forceinline__ float sp_sigmoid(float v) { return 1.0f / (1.0f + __expf(-v)); }
