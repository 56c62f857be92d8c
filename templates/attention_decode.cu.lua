{% include("templates/common.cuh.lua") %}
// Decode attention: {{ HEADS }} q heads, {{ KV_HEADS }} kv heads, head_dim {{ HD }}, batch 1.
// qkv: T [q {{ HEADS }}*{{ HD }}][k {{ KV_HEADS }}*{{ HD }}][v {{ KV_HEADS }}*{{ HD }}]; caches: T [max_seq][{{ KV_HEADS * HD }}].
#define HD {{ HD }}
#define HALF ({{ HD }} / 2)
#define HEADS {{ HEADS }}
#define KV_HEADS {{ KV_HEADS }}
#define KVD (KV_HEADS * HD)                 // one cache row
#define GQA (HEADS / KV_HEADS)              // q heads per kv head
#define VEC {{ p.vec }}
#define CH {{ CH }}                         // VEC-wide chunks per head row
#define LPP {{ LPP }}                       // lanes per position
#define NC {{ NC }}                         // chunks per lane
#define PPW {{ PPW }}                       // positions per warp per step
#define THREADS {{ p.threads }}
#define WARPS (THREADS / 32)
#define GROUPS (WARPS * PPW)                // lane groups per CTA, one position each at a time
#define SPLITS {{ p.splits }}
#define SCALE {{ SCALE }}                   // 1/sqrt(head_dim)
#define ROPE_ITEMS {{ ROPE_ITEMS }}
#define ROPE_THREADS {{ ROPE_THREADS }}

__device__ __forceinline__ float sp_neg_inf(void) { return __int_as_float(0xff800000); }

// cos and sin of an fp32 angle up to about 1e6 rad: reduced to [-pi, pi] in double
// (the angle is exact in double; the error of the reduction is ~|angle| * 2^-52),
// then the hardware approximations (absolute error ~1e-6 on [-pi, pi]). cosf/sinf
// would be as accurate but keep a local-memory array for their slow path.
#ifdef SPRIG_EMU
#define SP_COS(x) cosf(x)
#define SP_SIN(x) sinf(x)
#else
#define SP_COS(x) __cosf(x)
#define SP_SIN(x) __sinf(x)
#endif
__device__ __forceinline__ void sp_rope_cos_sin(float angle, float *c, float *s) {
    const double two_pi = 6.283185307179586476925;
    const double a = (double)angle;
    const float r = (float)(a - rint(a * (1.0 / two_pi)) * two_pi);
    *c = SP_COS(r);
    *s = SP_SIN(r);
}

// Kernel 1: item i < (HEADS + KV_HEADS) * HALF rotates the pair (j, j + HALF) of
// q or k head i / HALF (q heads first, then k heads, as in qkv); the rest copy two
// v elements each. Rotated q goes back into qkv, rotated k and v into the caches.
extern "C" __global__ void __launch_bounds__(ROPE_THREADS)
sprig_attn_rope(T *__restrict__ qkv, const float *__restrict__ inv_freq, T *__restrict__ k_cache,
                T *__restrict__ v_cache, const int *__restrict__ pos, float *__restrict__ ws,
                T *__restrict__ out) {
    const int i = blockIdx.x * ROPE_THREADS + threadIdx.x;
    if (i >= ROPE_ITEMS) return;
    const int p = __ldg(pos);
    if (i < (HEADS + KV_HEADS) * HALF) {
        const int hh = i / HALF, j = i % HALF;
        T *row = qkv + (size_t)hh * HD;
        // The angle in fp32 as the reference forms it.
        const float angle = (float)p * __ldg(inv_freq + j);
        float c, s;
        sp_rope_cos_sin(angle, &c, &s);
        const float a = SP_TO_F(row[j]), b = SP_TO_F(row[j + HALF]);
        const T ra = SP_FROM_F(a * c - b * s), rb = SP_FROM_F(b * c + a * s);
        if (hh < HEADS) {
            row[j] = ra;
            row[j + HALF] = rb;
        } else {
            T *k = k_cache + (size_t)p * KVD + (size_t)(hh - HEADS) * HD;
            k[j] = ra;
            k[j + HALF] = rb;
        }
    } else {
        const int v = (i - (HEADS + KV_HEADS) * HALF) * 2;
        const T *src = qkv + (size_t)(HEADS + KV_HEADS) * HD + v;
        T *dst = v_cache + (size_t)p * KVD + v;
        dst[0] = src[0];
        dst[1] = src[1];
    }
}

// Kernel 2: CTA (h, split) attends q head h over its share of positions 0..pos.
// Lane group grp of a warp (LPP lanes) owns one position per step: each lane dots
// its NC chunks of q and k, the group adds them with xor shuffles, and keeps an
// online softmax (running max m, sum l, acc = sum p * v) in fp32. The loop bound
// depends on the warp only, so every lane reaches every shuffle.
extern "C" __global__ void __launch_bounds__(THREADS)
sprig_attn_decode(T *__restrict__ qkv, const float *__restrict__ inv_freq, T *__restrict__ k_cache,
                  T *__restrict__ v_cache, const int *__restrict__ pos, float *__restrict__ ws,
                  T *__restrict__ out) {
    const int h = blockIdx.x, split = blockIdx.y;
    const int kvh = h / GQA;
    const int n = __ldg(pos) + 1;
    const int chunk = (n + SPLITS - 1) / SPLITS;
    const int t0 = split * chunk, t1 = min(t0 + chunk, n);
{% if p.splits > 1 then %}
    if (t0 >= t1) return;  // uniform over the CTA; the combine skips empty splits
{% end %}
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gl = lane % LPP, grp = lane / LPP;

    float q[NC][VEC];  // this lane's chunks of q, pre-scaled by 1/sqrt(head_dim)
#pragma unroll
    for (int j = 0; j < NC; ++j) {
        const int c = gl + j * LPP;
        if (c < CH) {
            sp_load_vec<VEC>(qkv + (size_t)h * HD + c * VEC, q[j]);
#pragma unroll
            for (int v = 0; v < VEC; ++v) q[j][v] *= SCALE;
        } else {
#pragma unroll
            for (int v = 0; v < VEC; ++v) q[j][v] = 0.0f;
        }
    }
    const T *kb = k_cache + (size_t)kvh * HD, *vb = v_cache + (size_t)kvh * HD;

    float m = sp_neg_inf(), l = 0.0f, acc[NC][VEC];
#pragma unroll
    for (int j = 0; j < NC; ++j)
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[j][v] = 0.0f;

    for (int tb = t0 + warp * PPW; tb < t1; tb += WARPS * PPW) {
        const int t = tb + grp;
        const bool valid = t < t1;
        float s = 0.0f;
        if (valid) {
#pragma unroll
            for (int j = 0; j < NC; ++j) {
                const int c = gl + j * LPP;
                if (c < CH) {
                    float k[VEC];
                    sp_load_vec<VEC>(kb + (size_t)t * KVD + c * VEC, k);
#pragma unroll
                    for (int v = 0; v < VEC; ++v) s = fmaf(q[j][v], k[v], s);
                }
            }
        }
#pragma unroll
        for (int o = LPP / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (valid) {
            const float m_new = fmaxf(m, s);
            const float corr = expf(m - m_new);  // 0 at the group's first position (m = -inf)
            const float e = expf(s - m_new);
            l = l * corr + e;
#pragma unroll
            for (int j = 0; j < NC; ++j) {
                const int c = gl + j * LPP;
                if (c < CH) {
                    float v_[VEC];
                    sp_load_vec<VEC>(vb + (size_t)t * KVD + c * VEC, v_);
#pragma unroll
                    for (int v = 0; v < VEC; ++v) acc[j][v] = fmaf(e, v_[v], acc[j][v] * corr);
                }
            }
            m = m_new;
        }
    }

    // Merge the groups: weight w_g = exp(m_g - M) for groups that saw a position.
    __shared__ float sm_m[GROUPS], sm_l[GROUPS], sm_w[GROUPS];
    __shared__ float sm_acc[GROUPS][HD];
    const int gid = warp * PPW + grp;
    if (gl == 0) {
        sm_m[gid] = m;
        sm_l[gid] = l;
    }
#pragma unroll
    for (int j = 0; j < NC; ++j) {
        const int c = gl + j * LPP;
        if (c < CH)
#pragma unroll
            for (int v = 0; v < VEC; ++v) sm_acc[gid][c * VEC + v] = acc[j][v];
    }
    __syncthreads();
    float M = sp_neg_inf();
    for (int g = 0; g < GROUPS; ++g) M = fmaxf(M, sm_m[g]);
    for (int g = threadIdx.x; g < GROUPS; g += THREADS) sm_w[g] = sm_l[g] > 0.0f ? expf(sm_m[g] - M) : 0.0f;
    __syncthreads();
    float L = 0.0f;
    for (int g = 0; g < GROUPS; ++g) L = fmaf(sm_l[g], sm_w[g], L);
{% if p.splits == 1 then %}
    const float inv = 1.0f / L;
    for (int i = threadIdx.x; i < HD; i += THREADS) {
        float o = 0.0f;
        for (int g = 0; g < GROUPS; ++g) o = fmaf(sm_acc[g][i], sm_w[g], o);
        out[(size_t)h * HD + i] = SP_FROM_F(o * inv);
    }
{% else %}
    // Partial of this split: ws[h][split] = (M, L, acc[HD]) unnormalised.
    float *part = ws + ((size_t)h * SPLITS + split) * (HD + 2);
    if (threadIdx.x == 0) {
        part[0] = M;
        part[1] = L;
    }
    for (int i = threadIdx.x; i < HD; i += THREADS) {
        float o = 0.0f;
        for (int g = 0; g < GROUPS; ++g) o = fmaf(sm_acc[g][i], sm_w[g], o);
        part[2 + i] = o;
    }
{% end %}
}
{% if p.splits > 1 then %}

// Kernel 3: CTA h merges the partials of the splits that had positions (counted
// the way kernel 2 split them), in split order, so the result is deterministic.
extern "C" __global__ void __launch_bounds__(256)
sprig_attn_combine(T *__restrict__ qkv, const float *__restrict__ inv_freq, T *__restrict__ k_cache,
                   T *__restrict__ v_cache, const int *__restrict__ pos, float *__restrict__ ws,
                   T *__restrict__ out) {
    const int h = blockIdx.x;
    const int n = __ldg(pos) + 1;
    const int chunk = (n + SPLITS - 1) / SPLITS;
    const int parts = (n + chunk - 1) / chunk;
    const float *base = ws + (size_t)h * SPLITS * (HD + 2);
    float M = sp_neg_inf();
    for (int s = 0; s < parts; ++s) M = fmaxf(M, base[(size_t)s * (HD + 2)]);
    float L = 0.0f;
    for (int s = 0; s < parts; ++s) L = fmaf(base[(size_t)s * (HD + 2) + 1], expf(base[(size_t)s * (HD + 2)] - M), L);
    const float inv = 1.0f / L;
    for (int i = threadIdx.x; i < HD; i += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < parts; ++s)
            o = fmaf(base[(size_t)s * (HD + 2) + 2 + i], expf(base[(size_t)s * (HD + 2)] - M), o);
        out[(size_t)h * HD + i] = SP_FROM_F(o * inv);
    }
}
{% end %}
