{% include("templates/common.cuh.lua") %}
// Decode attention: {{ HEADS }} q heads, {{ KV_HEADS }} kv heads, head_dim {{ HD }}, batch 1; RoPE,
// the cache append and (splits > 1) the merge of the splits all in one kernel.
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
#define SPLITS {{ SPLITS }}
#define SCALE {{ SCALE }}                   // 1/sqrt(head_dim)
#define U {{ p.unroll }}                      // positions per lane group in flight at once
#define WS_PARTS {{ WS_PARTS }}             // floats of partials in ws; a counter per head follows

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

// This token's row of q or k head `row`, chunk c (elements c*VEC..c*VEC+VEC-1),
// rotated at position p (Hugging Face rotate_half: element i < HALF pairs with
// i + HALF) and rounded to T as a cache holds it.
__device__ __forceinline__ void sp_rope_chunk(const T *__restrict__ row, int c, int p,
                                              const float *__restrict__ inv_freq, float (&out)[VEC]) {
    float x[VEC], y[VEC];  // the chunk, and each element's partner
    sp_load_vec<VEC>(row + c * VEC, x);
{% if (HD // 2) % p.vec == 0 then %}
    sp_load_vec<VEC>(row + ((c + CH / 2) % CH) * VEC, y);  // HALF is a multiple of VEC: one whole chunk
{% else %}
#pragma unroll
    for (int v = 0; v < VEC; ++v) {  // the partners straddle chunks: one at a time
        const int i = c * VEC + v;
        y[v] = SP_TO_F(row[i < HALF ? i + HALF : i - HALF]);
    }
{% end %}
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
        const bool lo = c * VEC + v < HALF;
        const int j = (c * VEC + v) % HALF;
        const float angle = (float)p * __ldg(inv_freq + j);  // the angle in fp32 as the reference forms it
        float cs, sn;
        sp_rope_cos_sin(angle, &cs, &sn);
        const float r = lo ? x[v] * cs - y[v] * sn : x[v] * cs + y[v] * sn;
        out[v] = SP_TO_F(SP_FROM_F(r));
    }
}

// CTA (h, split) attends q head h over its share of positions 0..pos. Lane group
// grp of a warp (LPP lanes) owns one position at a time, U of them in flight: the
// lanes load the K and V chunks of U positions first, then dot their NC chunks of
// q and k, add them across the group with xor shuffles and keep an online softmax
// (running max m, sum l, acc = sum p * v) in fp32. The loop bound depends on the
// warp only, so every lane reaches every shuffle. The new position (pos) is read
// from qkv, rotated here; the first CTA of its kv head holding it appends it to the
// caches for the next tokens. With splits > 1 each split leaves (max, sum, acc) in
// ws and the last to arrive merges them in split order (deterministic).
extern "C" __global__ void __launch_bounds__(THREADS)
sprig_attn_decode(const T *__restrict__ qkv, const float *__restrict__ inv_freq, T *__restrict__ k_cache,
                  T *__restrict__ v_cache, const int *__restrict__ pos, float *__restrict__ ws,
                  T *__restrict__ out) {
    // Before the wait (programmatic dependent launch, common.cuh.lua): pos is the
    // host's (uploaded before the step), and the cache rows below pos were appended
    // tokens ago, so the share of positions and its first cache lines are known.
    const int h = blockIdx.x, split = blockIdx.y;
    const int kvh = h / GQA;
{% if p.window > 0 then %}
    // A sliding window of {{ p.window }}: positions first..pos, n of them, shared by the splits.
    const int p = __ldg(pos), first = max(0, p + 1 - {{ p.window }}), n = p + 1 - first;
    const int chunk = (n + SPLITS - 1) / SPLITS;
    const int t0 = first + split * chunk, t1 = min(t0 + chunk, p + 1);
{% else %}
    const int p = __ldg(pos), n = p + 1;
    const int chunk = (n + SPLITS - 1) / SPLITS;
    const int t0 = split * chunk, t1 = min(t0 + chunk, n);
{% end %}
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gl = lane % LPP, grp = lane / LPP;
    const T *knew = qkv + (size_t)(HEADS + kvh) * HD, *vnew = qkv + (size_t)(HEADS + KV_HEADS + kvh) * HD;
    const T *kb = k_cache + (size_t)kvh * HD, *vb = v_cache + (size_t)kvh * HD;
#pragma unroll
    for (int u = 0; u < U; ++u) {  // this lane's first U positions: the lines its chunks begin
        const int t = t0 + warp * PPW * U + u * PPW + grp;
#pragma unroll
        for (int j = 0; j < NC; ++j) {
            const int c = gl + j * LPP;
            if (t < t1 && t != p && c < CH && c * VEC * (int)sizeof(T) % 128 == 0) {
                SP_PREFETCH_L2(kb + (size_t)t * KVD + c * VEC);
                SP_PREFETCH_L2(vb + (size_t)t * KVD + c * VEC);
            }
        }
    }
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua

    // This lane's chunks of q, rotated, pre-scaled by 1/sqrt(head_dim): formed on
    // the loop's first trip once its K and V loads are asked for, so that q's round
    // trip to L2 overlaps theirs instead of coming first.
    float q[NC][VEC];
    bool q_formed = false;

    float m = sp_neg_inf(), l = 0.0f, acc[NC][VEC];
#pragma unroll
    for (int j = 0; j < NC; ++j)
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[j][v] = 0.0f;

    for (int tb = t0 + warp * PPW * U; tb < t1; tb += WARPS * PPW * U) {
        // Kept as loaded (T pairs) until used: U positions' K and V in half the registers.
        sp_raw<VEC> kk[U][NC], vv[U][NC];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = tb + u * PPW + grp;
#pragma unroll
            for (int j = 0; j < NC; ++j) {
                const int c = gl + j * LPP;
                if (t < t1 && c < CH && t != p) {
                    sp_load_raw<VEC>(kb + (size_t)t * KVD + c * VEC, kk[u][j]);
                    sp_load_raw<VEC>(vb + (size_t)t * KVD + c * VEC, vv[u][j]);
                } else if (t == p && c < CH) {  // this token: from qkv (k rotated here, in T as the cache holds it)
                    float kr[VEC];
                    sp_rope_chunk(knew, c, p, inv_freq, kr);
                    sp_pack<VEC>(kr, kk[u][j]);
                    sp_load_raw<VEC>(vnew + c * VEC, vv[u][j]);
                } else {
#pragma unroll
                    for (int i = 0; i < VEC / 2; ++i) kk[u][j].w[i] = vv[u][j].w[i] = 0u;
                }
            }
        }
        if (!q_formed) {
            q_formed = true;
#pragma unroll
            for (int j = 0; j < NC; ++j) {
                const int c = gl + j * LPP;
                if (c < CH) {
                    sp_rope_chunk(qkv + (size_t)h * HD, c, p, inv_freq, q[j]);
#pragma unroll
                    for (int v = 0; v < VEC; ++v) q[j][v] *= SCALE;
                } else {
#pragma unroll
                    for (int v = 0; v < VEC; ++v) q[j][v] = 0.0f;
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = tb + u * PPW + grp;
            float s = 0.0f;
#pragma unroll
            for (int j = 0; j < NC; ++j) {
                float kf[VEC];
                sp_unpack<VEC>(kk[u][j], kf);
#pragma unroll
                for (int v = 0; v < VEC; ++v) s = fmaf(q[j][v], kf[v], s);
            }
#pragma unroll
            for (int o = LPP / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (t < t1) {
                const float m_new = fmaxf(m, s);
                const float corr = expf(m - m_new);  // 0 at the group's first position (m = -inf)
                const float e = expf(s - m_new);
                l = l * corr + e;
#pragma unroll
                for (int j = 0; j < NC; ++j) {
                    float vf[VEC];
                    sp_unpack<VEC>(vv[u][j], vf);
#pragma unroll
                    for (int v = 0; v < VEC; ++v) acc[j][v] = fmaf(e, vf[v], acc[j][v] * corr);
                }
                m = m_new;
            }
        }
    }

    // The cache append: one CTA per kv head, the one whose split holds pos. After
    // the loop, which reads the cache at every position but pos (that one it takes
    // from qkv): stored before, it would keep the loop's first K and V loads from
    // issuing until q's were back (the compiler cannot tell the rows apart), two
    // round trips where one will do.
    if (h % GQA == 0 && t0 <= p && p < t1) {
        for (int c = threadIdx.x; c < CH; c += THREADS) {
            float k[VEC], v_[VEC];
            sp_rope_chunk(knew, c, p, inv_freq, k);
            sp_load_vec<VEC>(vnew + c * VEC, v_);
            T *kd = k_cache + (size_t)p * KVD + (size_t)kvh * HD + c * VEC;
            T *vd = v_cache + (size_t)p * KVD + (size_t)kvh * HD + c * VEC;
#pragma unroll
            for (int v = 0; v < VEC; ++v) kd[v] = SP_FROM_F(k[v]), vd[v] = SP_FROM_F(v_[v]);
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
{% if SPLITS == 1 then %}
    const float inv = 1.0f / L;
    for (int i = threadIdx.x; i < HD; i += THREADS) {
        float o = 0.0f;
        for (int g = 0; g < GROUPS; ++g) o = fmaf(sm_acc[g][i], sm_w[g], o);
        out[(size_t)h * HD + i] = SP_FROM_F(o * inv);
    }
{% else %}
    // Partial of this split (if it had positions): ws[h][split] = (M, L, acc[HD]) unnormalised.
    const float *base = ws + (size_t)h * SPLITS * (HD + 2);
    if (t0 < t1) {
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
    }
    // The last split of head h to arrive merges the splits that had positions, in split order.
    unsigned *counters = reinterpret_cast<unsigned *>(ws + WS_PARTS);
    // One CTA does this at the end of the kernel, so each round trip it waits on
    // is one with the GPU idle. Every thread asks for its accumulator columns of
    // every split, and thread s for split s's (max, sum), before any value is
    // used: one round trip (a single thread loading every split's pair had ptxas
    // start the max before its last loads issued: two; so did storing the pair to
    // shared memory before the columns' loads, hence the fence). They are added
    // in split order.
    if (sp_last_arrival(counters + h, SPLITS)) {
        const int parts = (n + chunk - 1) / chunk;
        constexpr int COLS = (HD + THREADS - 1) / THREADS;  // columns a thread merges
        constexpr int OWN = (SPLITS + THREADS - 1) / THREADS;  // splits' (max, sum) a thread loads
        __shared__ float merge_m[SPLITS], merge_l[SPLITS];
        float pa[COLS][SPLITS], pm[OWN], pl[OWN];
#pragma unroll
        for (int c = 0; c < COLS; ++c) {
            const int i = c * THREADS + threadIdx.x;
#pragma unroll
            for (int s = 0; s < SPLITS; ++s)
                pa[c][s] = s < parts && i < HD ? __ldcg(base + (size_t)s * (HD + 2) + 2 + i) : 0.0f;
        }
#pragma unroll
        for (int o = 0; o < OWN; ++o) {
            const int s = o * THREADS + threadIdx.x;
            pm[o] = s < parts ? __ldcg(base + (size_t)s * (HD + 2)) : sp_neg_inf();
            pl[o] = s < parts ? __ldcg(base + (size_t)s * (HD + 2) + 1) : 0.0f;
        }
        __threadfence_block();  // no store below moves above a load (ptxas had the (max, sum) stored first)
#pragma unroll
        for (int o = 0; o < OWN; ++o) {
            const int s = o * THREADS + threadIdx.x;
            if (s < SPLITS) merge_m[s] = pm[o], merge_l[s] = pl[o];
        }
        __syncthreads();
        float MM = sp_neg_inf();
#pragma unroll
        for (int s = 0; s < SPLITS; ++s) MM = fmaxf(MM, merge_m[s]);
        float w[SPLITS], LL = 0.0f;
#pragma unroll
        for (int s = 0; s < SPLITS; ++s) {
            w[s] = s < parts ? expf(merge_m[s] - MM) : 0.0f;
            LL = fmaf(merge_l[s], w[s], LL);
        }
        const float inv = 1.0f / LL;
#pragma unroll
        for (int c = 0; c < COLS; ++c) {
            const int i = c * THREADS + threadIdx.x;
            if (i >= HD) break;
            float o = 0.0f;
#pragma unroll
            for (int s = 0; s < SPLITS; ++s) o = fmaf(pa[c][s], w[s], o);
            out[(size_t)h * HD + i] = SP_FROM_F(o * inv);
        }
    }
{% end %}
}
