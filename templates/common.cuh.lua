{# Shared prelude of every generated kernel: storage types, conversions, 16-byte
   vector loads and warp reductions. It includes no CUDA header, so NVRTC needs
   no include path and the source alone decides the bytes compiled. #}
// sprig generated kernel: family {{ family }}, d={{ d }} f={{ f }} dtype={{ dtype }} batch={{ B }} g={{ g }}
// Programmatic dependent launch (sm_90+). Launched with it (the CUDA executor's
// default there; SPRIG_PDL=0 turns it off), a kernel may be scheduled while the kernel before it on
// the stream drains. SP_GRID_DEP_WAIT() holds it until that kernel has
// completed and its writes are visible, then lets the kernel after it be
// scheduled in turn (launch_dependents: that one still waits for this one to
// complete, so releasing it early is safe; releasing it only after our own wait
// keeps a single kernel ahead). Every kernel calls it before its first access
// to memory a kernel before it may write, so it computes exactly what it would
// serialised. What PDL saves: the launch between two kernels, and, where a
// kernel first asks L2 for weights no kernel writes (SP_PREFETCH_L2 before the
// wait: an address hint, never a read of data), its first DRAM round trip,
// overlapped with the previous kernel's last wave. SP_LD_HINT loads a value
// that only steers such prefetches (an expert id), so it may be stale.
// Launched without PDL, and before sm_90, the wait and the release are nothing,
// and so is the prefetch. The CPU emulator checks them (tests/emu/emu_check.h):
// before its wait a thread may not store to global memory nor load what the
// launch before wrote, and a prefetch must name a byte of a buffer.
#if defined(SPRIG_EMU)
#define SP_PDL 1  // prefetch work that reads memory (an expert list) is compiled only where checked or useful
#define SP_GRID_DEP_WAIT() sp_emu_grid_dep_wait()
#define SP_PREFETCH_L2(ptr) sp_emu_prefetch(ptr)
#define SP_LD_HINT(ptr) sp_emu_hint_load(ptr)
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define SP_PDL 1
#define SP_GRID_DEP_WAIT() asm volatile("griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;" ::: "memory")
#define SP_PREFETCH_L2(ptr) asm volatile("prefetch.global.L2 [%0];" ::"l"(ptr))
#define SP_LD_HINT(ptr) __ldcg(ptr)
#else
#define SP_GRID_DEP_WAIT() ((void)0)
#define SP_PREFETCH_L2(ptr) ((void)(ptr))
#define SP_LD_HINT(ptr) __ldcg(ptr)
#endif
typedef unsigned short sp_half;  // IEEE binary16 bits
typedef unsigned short sp_bf16;  // bfloat16 bits
typedef unsigned short sp_u16;

#ifndef SPRIG_EMU
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
#else
// The CPU emulator (tests/emu) has no PTX: the same conversions in plain C.
__device__ __forceinline__ float sp_half_to_float(sp_u16 h) {
    const unsigned s = (h >> 15) & 1u, e = (h >> 10) & 31u, m = h & 1023u;
    float v = e == 0 ? ldexpf((float)m, -24)
            : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024u), (int)e - 25);
    return s ? -v : v;
}
__device__ __forceinline__ sp_u16 sp_float_to_half(float f) {
    const unsigned u = __float_as_uint(f), sign = (u >> 16) & 0x8000u;
    const unsigned a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (sp_u16)(sign | 0x7e00u);        // NaN
    if (a >= 0x477ff000u) return (sp_u16)(sign | 0x7c00u);       // rounds to inf
    if (a < 0x38800000u) {                                        // subnormal or zero
        const float r = rintf(__uint_as_float(a) * 16777216.0f);  // units of 2^-24, ties to even
        return (sp_u16)(sign | (unsigned)r);
    }
    unsigned m = a + 0xc8000fffu + ((a >> 13) & 1u);              // rebias exponent, round to even
    return (sp_u16)(sign | (m >> 13));
}
#endif
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

// VEC elements kept as loaded (VEC/2 words, half the registers of floats), for
// loads issued well ahead of their use; sp_unpack converts them when used.
template <int VEC>
struct sp_raw {
    unsigned w[VEC / 2];
};

template <int VEC>
__device__ __forceinline__ void sp_load_raw(const T *__restrict__ p, sp_raw<VEC> &r) {
    if (VEC == 8) {
        const uint4 v = __ldg(reinterpret_cast<const uint4 *>(p));
        r.w[0] = v.x, r.w[1] = v.y, r.w[2] = v.z, r.w[3] = v.w;
    } else if (VEC == 4) {
        const uint2 v = __ldg(reinterpret_cast<const uint2 *>(p));
        r.w[0] = v.x, r.w[1] = v.y;
    } else {
        r.w[0] = __ldg(reinterpret_cast<const unsigned *>(p));
    }
}

template <int VEC>
__device__ __forceinline__ void sp_unpack(const sp_raw<VEC> &r, float *out) {
#pragma unroll
    for (int i = 0; i < VEC / 2; ++i) out[2 * i] = sp_lo(r.w[i]), out[2 * i + 1] = sp_hi(r.w[i]);
}

template <int VEC>
__device__ __forceinline__ void sp_pack(const float *in, sp_raw<VEC> &r) {
#pragma unroll
    for (int i = 0; i < VEC / 2; ++i) r.w[i] = (unsigned)SP_FROM_F(in[2 * i]) | ((unsigned)SP_FROM_F(in[2 * i + 1]) << 16);
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

// ---- the warp-per-row K-walk ---------------------------------------------------------
// The loop every GEMV-shaped kernel here runs (dense_gemv, router, gather_upgate,
// fused_mlp): a warp's lanes stride K (KC columns, a multiple of 8) in chunks of
// 32*VEC elements and dot MATS weight rows per output row (gate and up share their x)
// with BATCH inputs: acc[r][b][m] += sum_k w[m][r][k] * x[b][k], lane-partial sums (the
// caller reduces across the warp). KSPLIT warps may share the rows, warp `slice` taking
// chunks slice, slice + KSPLIT, ...
// Full chunks go in steps of UNROLL*KSPLIT whose trip count is a compile-time constant:
// all UNROLL*ROWS*MATS weight loads of a step are issued before its first FMA, and the
// step loop is not unrolled (unroll 1), so those loads stay in flight together instead
// of each waiting on the previous chunk's FMAs in a fully unrolled walk. The chunks
// left (fewer than a step, the last possibly partial) are one more step, its
// out-of-range loads predicated off. Weights stream past L1; load_x(b, k, xv)
// reads x[b][k..k+VEC).
template <int MATS, int ROWS, int BATCH, int VEC, int UNROLL, int KSPLIT, int KC, class LoadX>
__device__ __forceinline__ void sp_kwalk(const T *const (&w)[MATS][ROWS], int slice, int lane, LoadX load_x,
                                         float (&acc)[ROWS][BATCH][MATS]) {
    constexpr int CH = 32 * VEC, FULL = KC / CH, STEP = UNROLL * KSPLIT, STEPPED_CH = FULL - FULL % STEP;
#pragma unroll 1
    for (int c0 = 0; c0 < STEPPED_CH; c0 += STEP) {
        const int c = c0 + slice;
        float wv[UNROLL][ROWS][MATS][VEC];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u)
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
#pragma unroll
                for (int m = 0; m < MATS; ++m)
                    sp_load_vec_stream<VEC>(w[m][r] + (c + u * KSPLIT) * CH + lane * VEC, wv[u][r][m]);
#pragma unroll
        for (int u = 0; u < UNROLL; ++u)
#pragma unroll
            for (int b = 0; b < BATCH; ++b) {
                float xv[VEC];
                load_x(b, (c + u * KSPLIT) * CH + lane * VEC, xv);
#pragma unroll
                for (int r = 0; r < ROWS; ++r)
#pragma unroll
                    for (int m = 0; m < MATS; ++m)
#pragma unroll
                        for (int v = 0; v < VEC; ++v) acc[r][b][m] = fmaf(wv[u][r][m][v], xv[v], acc[r][b][m]);
            }
    }
    if (STEPPED_CH * CH < KC) {
        // What is left is less than a step: per slice at most UNROLL chunks, the last
        // possibly partial (a lane's VEC columns are all in range or all out, since
        // KC and the chunk offsets are multiples of VEC). One step, loads first.
        float wv[UNROLL][ROWS][MATS][VEC];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int k = (STEPPED_CH + slice + u * KSPLIT) * CH + lane * VEC;
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
#pragma unroll
                for (int m = 0; m < MATS; ++m) {
                    if (k < KC) {
                        sp_load_vec_stream<VEC>(w[m][r] + k, wv[u][r][m]);
                    } else {
#pragma unroll
                        for (int v = 0; v < VEC; ++v) wv[u][r][m][v] = 0.0f;
                    }
                }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int k = (STEPPED_CH + slice + u * KSPLIT) * CH + lane * VEC;
            if (k >= KC) continue;
#pragma unroll
            for (int b = 0; b < BATCH; ++b) {
                float xv[VEC];
                load_x(b, k, xv);
#pragma unroll
                for (int r = 0; r < ROWS; ++r)
#pragma unroll
                    for (int m = 0; m < MATS; ++m)
#pragma unroll
                        for (int v = 0; v < VEC; ++v) acc[r][b][m] = fmaf(wv[u][r][m][v], xv[v], acc[r][b][m]);
            }
        }
    }
}

// Elements of T in a 128-byte cache line, and the lines of p[0..n) asked of L2:
// lines first, first + step, ... (a CTA's threads, or a grid's CTAs, share a span).
#define SP_LINE ((int)(128 / sizeof(T)))
__device__ __forceinline__ void sp_prefetch_span(const T *p, int n, int first, int step) {
    for (int i = first; i * SP_LINE < n; i += step) SP_PREFETCH_L2(p + (size_t)i * SP_LINE);
}

// The 128-byte lines of a warp's first K-walk step (the chunks slice + u*KSPLIT,
// u < UNROLL, of each of its MATS*ROWS rows), asked of L2 ahead of the loads:
// what the walk will request first, issued while the kernel waits for the one
// before it (SP_GRID_DEP_WAIT). Lane i takes line i % LPC of chunk i / LPC.
template <int MATS, int ROWS, int VEC, int UNROLL, int KSPLIT, int KC>
__device__ __forceinline__ void sp_kwalk_prefetch(const T *const (&w)[MATS][ROWS], int slice, int lane) {
    constexpr int CH = 32 * VEC, LPC = CH / SP_LINE > 0 ? CH / SP_LINE : 1;
#pragma unroll
    for (int i = lane; i < UNROLL * LPC; i += 32) {
        const int k = (slice + i / LPC * KSPLIT) * CH + i % LPC * SP_LINE;
        if (k < KC) {
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
#pragma unroll
                for (int m = 0; m < MATS; ++m) SP_PREFETCH_L2(w[m][r] + k);
        }
    }
}

// ---- the last CTA to arrive ------------------------------------------------------------
// A kernel whose CTAs each write a share of a result into a workspace, and
// whose last CTA then finishes it (split-K sums into y, router bitmaps into id
// lists), instead of a second launch. The counter lives in the workspace: zero
// at allocation, and reset by the last arrival, so zero between calls.
// true in the last of `arrivals` CTAs to call it for *counter, once every other
// one's workspace writes are visible to it. Every thread of the CTA must call it
// (it synchronises); the result is uniform over the CTA.
__device__ __forceinline__ bool sp_last_arrival(unsigned *counter, unsigned arrivals) {
    __shared__ unsigned sp_last_flag;
    __threadfence();  // this thread's reductions and stores reach L2 before the ticket is taken
    __syncthreads();
    if (threadIdx.x == 0) {
        sp_last_flag = atomicAdd(counter, 1u) == arrivals - 1;
        if (sp_last_flag) *counter = 0u;  // every arrival has counted: ready for the next call
    }
    __syncthreads();
    const bool last = sp_last_flag != 0u;
    if (last) __threadfence();  // the others' writes, fenced before their tickets, are read after ours
    return last;
}

__device__ __forceinline__ float sp_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// ---- RMSNorm of one row by one CTA -----------------------------------------------------
// The rmsnorm family's kernel and the norms folded into a GEMV's last CTA share it.
// It sets each residual x[i] to the row's new value (FROM: src[i], the T input;
// x[i] + src[i], the fp32 residual plus it; or x[i] as it is), sums the squares and
// writes out[i] = T(x[i] * rsqrt(sum / n + eps) [* w[i]]); raw (may be NULL) gets
// the new residual in T. Every thread of the CTA must call it (it synchronises).
// A folded norm runs on one CTA at the end of its kernel, so each load a thread
// waits for before issuing the next is a whole L2 round trip with the rest of the
// GPU idle (a loop storing each column before loading the next made d/threads of
// them, 16 at d=4096: docs/perf-model.md). So a thread asks for everything it
// needs (its columns of x, src and w) before its first store and keeps the
// values in registers for the scaling. It takes its columns in pairs: 24 loads,
// not 48, at d=4096 and 256 threads, all in one round trip, which the model
// counts (S.norm_rounds). Rows wider than SP_NORM_HELD columns a thread, or odd,
// go SP_NORM_CHUNK columns at a time over two passes.
#define SP_NORM_HELD 24
#define SP_NORM_CHUNK 8
#define SP_ROW_SET 0  // x = src
#define SP_ROW_ADD 1  // x = x + src
#define SP_ROW_X 2    // x as it is

// rsqrt(mean of the squares + eps) from each thread's share ss, the same value
// in every thread (the warps' sums are added in one order).
template <int THREADS>
__device__ __forceinline__ float sp_rms_scale(float ss, float n, float eps) {
    __shared__ float warp_ss[THREADS / 32];
    ss = sp_warp_sum(ss);
    if ((threadIdx.x & 31) == 0) warp_ss[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < THREADS / 32; ++i) total += warp_ss[i];
    __syncthreads();  // warp_ss is free for the next row
    return rsqrtf(total / n + eps);
}

// Two floats as T in one 32-bit word, lo in the low half (the order of memory).
__device__ __forceinline__ unsigned sp_pack2(float lo, float hi) {
    return (unsigned)SP_FROM_F(lo) | (unsigned)SP_FROM_F(hi) << 16;
}

// Loads that ptxas issues in program order (ld.volatile: never moved past one
// another, and read from L2, where other CTAs' writes are). Scheduled freely,
// the folded norm's loads were not all issued before the first was waited for:
// ptxas took a register of an earlier load's value for a later load's address,
// or sank loads below stores, each a further L2 round trip on the serial tail.
#ifndef SPRIG_EMU
__device__ __forceinline__ unsigned sp_ld_ordered_u32(const void *p) {
    unsigned v;
    asm volatile("ld.volatile.global.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}
__device__ __forceinline__ float2 sp_ld_ordered_f2(const void *p) {
    float2 v;
    asm volatile("ld.volatile.global.v2.f32 {" "%0, %1}, [%2];"  // split: see sp_mma_m16n8k16
                  : "=f"(v.x), "=f"(v.y) : "l"(p));
    return v;
}
#else
__device__ __forceinline__ unsigned sp_ld_ordered_u32(const void *p) { return *static_cast<const unsigned *>(p); }
__device__ __forceinline__ float2 sp_ld_ordered_f2(const void *p) { return *static_cast<const float2 *>(p); }
#endif

// The row's source: T values (a GEMV's y), or the fp32 sums a split-K kernel
// reduced in its workspace, which the norm finalizes on its way (sp_src_done: y =
// T(sums), and the sums zeroed for the next call), so no finalize of their own
// comes before it. Sums were reduced in L2 by other CTAs: read from there.
__device__ __forceinline__ float2 sp_src_pair(const T *s, int p) {
    const unsigned u = sp_ld_ordered_u32(reinterpret_cast<const unsigned *>(s) + p);
    float2 r;
    r.x = sp_lo(u), r.y = sp_hi(u);
    return r;
}
__device__ __forceinline__ float2 sp_src_pair(float *s, int p) { return sp_ld_ordered_f2(reinterpret_cast<float2 *>(s) + p); }
__device__ __forceinline__ float sp_src_one(const T *s, int i) { return SP_TO_F(s[i]); }
__device__ __forceinline__ float sp_src_one(float *s, int i) { return __ldcg(s + i); }
__device__ __forceinline__ void sp_src_done_pair(const T *, T *, int, float2) {}
__device__ __forceinline__ void sp_src_done_pair(float *s, T *y, int p, float2 v) {
    float2 zero;
    zero.x = zero.y = 0.0f;
    reinterpret_cast<float2 *>(s)[p] = zero;
    reinterpret_cast<unsigned *>(y)[p] = sp_pack2(v.x, v.y);
}
__device__ __forceinline__ void sp_src_done_one(const T *, T *, int, float) {}
__device__ __forceinline__ void sp_src_done_one(float *s, T *y, int i, float v) {
    s[i] = 0.0f;
    y[i] = SP_FROM_F(v);
}

// The held path: column pairs p = threadIdx.x + k * THREADS (columns 2p, 2p + 1).
// Every load is an ordered one, the weight's first, and a fence follows them, so
// all are asked for before any is waited on: one L2 round trip (sm_90 SASS,
// tail_rounds). Scheduled freely, ptxas issued the weight's loads only once x's
// first values were back (it took their registers for the addresses), and at
// d = 5120 sank loads below stores: two and five round trips.
template <int THREADS, int D, bool WEIGHTED, int FROM, typename S>
__device__ __forceinline__ void sp_rmsnorm_row_held(float *x, S *src, const T *__restrict__ w, T *__restrict__ out,
                                                    T *__restrict__ raw, T *__restrict__ y, float n, float eps) {
    constexpr int PAIRS = D / 2, PER = (PAIRS + THREADS - 1) / THREADS;
    constexpr bool FULL = PAIRS % THREADS == 0;  // every pair in range: no predicate splits the loads
    float2 *x2 = reinterpret_cast<float2 *>(x);
    const unsigned *w2 = reinterpret_cast<const unsigned *>(w);
    float2 v[PER], sv[PER];
    unsigned wv[PER];
#pragma unroll
    for (int k = 0; k < PER; ++k) {  // every load first, the weight's before the rest
        const int p = threadIdx.x + k * THREADS;
        if (WEIGHTED && (FULL || p < PAIRS)) wv[k] = sp_ld_ordered_u32(w2 + p);
    }
#pragma unroll
    for (int k = 0; k < PER; ++k) {
        const int p = threadIdx.x + k * THREADS;
        if (FULL || p < PAIRS) {
            if (FROM != SP_ROW_SET) v[k] = sp_ld_ordered_f2(x2 + p);
            if (FROM != SP_ROW_X) sv[k] = sp_src_pair(src, p);
        }
    }
    __threadfence_block();  // every load above issued before any store below (see above)
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < PER; ++k) {
        const int p = threadIdx.x + k * THREADS;
        if (FULL || p < PAIRS) {
            if (FROM == SP_ROW_SET) v[k] = sv[k];
            if (FROM == SP_ROW_ADD) v[k].x += sv[k].x, v[k].y += sv[k].y;
            if (FROM != SP_ROW_X) sp_src_done_pair(src, y, p, sv[k]);
            x2[p] = v[k];
            ss = fmaf(v[k].x, v[k].x, fmaf(v[k].y, v[k].y, ss));
            if (raw) reinterpret_cast<unsigned *>(raw)[p] = sp_pack2(v[k].x, v[k].y);
            if (WEIGHTED) v[k].x *= sp_lo(wv[k]), v[k].y *= sp_hi(wv[k]);
        }
    }
    const float scale = sp_rms_scale<THREADS>(ss, n, eps);
#pragma unroll
    for (int k = 0; k < PER; ++k) {
        const int p = threadIdx.x + k * THREADS;
        if (FULL || p < PAIRS) reinterpret_cast<unsigned *>(out)[p] = sp_pack2(v[k].x * scale, v[k].y * scale);
    }
}

// The general path: SP_NORM_CHUNK columns at a time, every load of a chunk issued
// before its first store; pass 1 sets x and sums the squares, pass 2 reads back
// this thread's own x and writes out.
template <int THREADS, int D, bool WEIGHTED, int FROM, typename S>
__device__ __forceinline__ void sp_rmsnorm_row_chunked(float *x, S *src, const T *__restrict__ w, T *__restrict__ out,
                                                       T *__restrict__ raw, T *__restrict__ y, float n, float eps) {
    constexpr int PER = (D + THREADS - 1) / THREADS;  // columns per thread
    float ss = 0.0f;
#pragma unroll 1
    for (int k0 = 0; k0 < PER; k0 += SP_NORM_CHUNK) {
        float v[SP_NORM_CHUNK], sv[SP_NORM_CHUNK];
#pragma unroll
        for (int k = 0; k < SP_NORM_CHUNK; ++k) {
            const int i = threadIdx.x + (k0 + k) * THREADS;
            const bool in = k0 + k < PER && i < D;
            sv[k] = in && FROM != SP_ROW_X ? sp_src_one(src, i) : 0.0f;
            v[k] = !in ? 0.0f : FROM == SP_ROW_SET ? sv[k] : FROM == SP_ROW_ADD ? x[i] + sv[k] : x[i];
        }
#pragma unroll
        for (int k = 0; k < SP_NORM_CHUNK; ++k) {
            const int i = threadIdx.x + (k0 + k) * THREADS;
            if (k0 + k < PER && i < D) {
                if (FROM != SP_ROW_X) sp_src_done_one(src, y, i, sv[k]);
                x[i] = v[k];
                ss = fmaf(v[k], v[k], ss);
                if (raw) raw[i] = SP_FROM_F(v[k]);
            }
        }
    }
    const float scale = sp_rms_scale<THREADS>(ss, n, eps);
#pragma unroll 1
    for (int k0 = 0; k0 < PER; k0 += SP_NORM_CHUNK) {
        float xv[SP_NORM_CHUNK], wv[SP_NORM_CHUNK];
#pragma unroll
        for (int k = 0; k < SP_NORM_CHUNK; ++k) {
            const int i = threadIdx.x + (k0 + k) * THREADS;
            const bool in = k0 + k < PER && i < D;
            xv[k] = in ? x[i] : 0.0f;
            wv[k] = in && WEIGHTED ? SP_TO_F(w[i]) : 1.0f;
        }
#pragma unroll
        for (int k = 0; k < SP_NORM_CHUNK; ++k) {
            const int i = threadIdx.x + (k0 + k) * THREADS;
            if (k0 + k < PER && i < D) out[i] = SP_FROM_F(WEIGHTED ? xv[k] * scale * wv[k] : xv[k] * scale);
        }
    }
}

// x is not __restrict__: it is read and written; src may be what raw overwrites
// (read first either way). The held path's pointers are aligned for pairs (x 8
// bytes, the others 4): the families declare that alignment wherever D is even
// (S.norm_args, the rmsnorm family), and sp_kargs checks it before each launch.
// y is where the row's fp32 sums go as T (src a float *), else unused.
template <int THREADS, int D, bool WEIGHTED, int FROM, typename S>
__device__ __forceinline__ void sp_rmsnorm_row(float *x, S *src, const T *__restrict__ w, T *__restrict__ out,
                                               T *__restrict__ raw, T *__restrict__ y, float n, float eps) {
    if constexpr (D % 2 == 0 && (D / 2 + THREADS - 1) / THREADS * 2 <= SP_NORM_HELD)
        sp_rmsnorm_row_held<THREADS, D, WEIGHTED, FROM>(x, src, w, out, raw, y, n, eps);
    else
        sp_rmsnorm_row_chunked<THREADS, D, WEIGHTED, FROM>(x, src, w, out, raw, y, n, eps);
}

// sp_norm_epilogue: the same, folded into a kernel whose CTAs each write a share of
// the row's source src [BATCH][D]: the CTA that arrives last at *counter (after all
// `arrivals`) adds it into the fp32 residual res (SET: replaces res by it) and writes
// normed (and raw, the new residual in T, unless NULL), token by token. src is the
// kernel's y in T, or (a float *) the fp32 sums of a split-K kernel, finalized here
// into y. Its reads of the kernel's inputs are all done by then, so raw may be one
// of them (SliceGPT's [x ; att]).
template <int THREADS, int D, int BATCH, bool SET, bool WEIGHTED, typename S>
__device__ __forceinline__ void sp_norm_epilogue(unsigned *counter, unsigned arrivals, S *src, T *__restrict__ y,
                                                 float *__restrict__ res, const T *__restrict__ norm_w,
                                                 T *__restrict__ normed, T *__restrict__ raw, float n, float eps) {
    if (!sp_last_arrival(counter, arrivals)) return;
    for (int b = 0; b < BATCH; ++b)
        sp_rmsnorm_row<THREADS, D, WEIGHTED, SET ? SP_ROW_SET : SP_ROW_ADD>(
            res + (size_t)b * D, src + (size_t)b * D, norm_w, normed + (size_t)b * D,
            raw ? raw + (size_t)b * D : nullptr, y ? y + (size_t)b * D : nullptr, n, eps);
}

// The norm weights the last CTA will read, asked of L2 when the kernel starts
// (before its wait: no kernel writes them): CTA b takes lines b, b + CTAs, ...
// By the time the last CTA needs them they are an L2 hit, not a DRAM round trip
// on the kernel's serial tail.
template <int D, bool WEIGHTED>
__device__ __forceinline__ void sp_norm_prefetch(const T *__restrict__ norm_w) {
    const int cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int ctas = gridDim.x * gridDim.y * gridDim.z;
    if (WEIGHTED && threadIdx.x == 0) sp_prefetch_span(norm_w, D, cta, ctas);
}

// D = A(16x16, row) * B(16x8, col) + C, fp32 accumulators, per the PTX ISA
// fragment layout (a[4], b[2] hold pairs of 16-bit values). sm_80 or newer.
__device__ __forceinline__ void sp_mma_m16n8k16(float d[4], const unsigned a[4], const unsigned b[2],
                                                const float c[4]) {
#ifndef SPRIG_EMU
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.{{ dtype == "bf16" and "bf16.bf16" or "f16.f16" }}.f32 "
                 // brace and percent are split: together they would open a template code tag
                 "{" "%0,%1,%2,%3}, {" "%4,%5,%6,%7}, {" "%8,%9}, {" "%10,%11,%12,%13};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
                   "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
    sp_emu_mma_m16n8k16(d, a, b, c, {{ dtype == "bf16" and 1 or 0 }});
#endif
}

__device__ __forceinline__ float sp_silu(float v) { return v / (1.0f + __expf(-v)); }
__device__ __forceinline__ float sp_sigmoid(float v) { return 1.0f / (1.0f + __expf(-v)); }
