{# Split-K partial sums in an fp32 workspace, and the finalize that turns them
   into y [B][d] of T. Included after common.cuh.lua by families whose main
   kernel leaves fp32 partials of y in ws (gather_down layout=t, fused_mlp,
   possibly gather_gemm stage=down). It defines device functions only; the
   including template writes the `extern "C"` finalize kernel itself, since every
   kernel of a plan takes its family's own argument list (docs/kernel-abi.md).

   Uses the values B and d (y is [B][d], B*d a multiple of 8 since d is), and
   optionally `spk_part_lanes` from the family's plan values (a power of two
   1..32, default 8): how many threads of a finalize CTA share one column group
   when summing many partials. Every finalize CTA has SPK_THREADS threads.

   Workspace layouts:
     atomic:        ws[t][c]            (B*d floats), zero between calls
     deterministic: ws[part][t][c]      (parts*B*d floats), parts written by plain stores #}
{% local spk_pl = rawget(_ENV, "spk_part_lanes") or 8 %}
{% assert(spk_pl >= 1 and spk_pl <= 32 and spk_pl & (spk_pl - 1) == 0, "spk_part_lanes must be a power of two in 1..32") %}
{% assert((B * d) % 8 == 0, "splitk_finalize needs B*d to be a multiple of 8") %}
#define SPK_TOTAL {{ B * d }}            // elements of y (and of one partial)
#define SPK_COLS {{ d }}                 // columns of y
#define SPK_THREADS 256
#define SPK_PART_LANES {{ spk_pl }}      // threads summing different partials of one column group
#define SPK_GROUPS (SPK_THREADS / SPK_PART_LANES)  // 4-float column groups per finalize CTA

// float2/float4 from values by member stores (the CPU emulator of tests/emu
// has the vector types but not CUDA's constructor helpers).
__device__ __forceinline__ float2 sp_spk_f2(float a, float b) {
    float2 r;
    r.x = a; r.y = b;
    return r;
}
__device__ __forceinline__ float4 sp_spk_f4(float a, float b, float c, float d) {
    float4 r;
    r.x = a; r.y = b; r.z = c; r.w = d;
    return r;
}

// Adds N (2, 4 or 8) consecutive floats to p (8-byte aligned for N=2, 16-byte
// otherwise) without reading the result: one vector reduction per 4 floats on
// sm_90+, scalar reductions before that. Under the CPU emulator (tests/emu)
// SPRIG_EMU_ARCH picks the branch, and sp_emu_red_add_f32 stands for the
// vector instruction, alignment checked.
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900) || (defined(SPRIG_EMU) && SPRIG_EMU_ARCH >= 90)
#define SP_SPK_VECTOR_RED 1
#endif
#ifdef SPRIG_EMU
#define SP_SPK_RED_V2(p, v) sp_emu_red_add_f32((p), (v), 2, __FILE__, __LINE__)
#define SP_SPK_RED_V4(p, v) sp_emu_red_add_f32((p), (v), 4, __FILE__, __LINE__)
#else
#define SP_SPK_RED_V2(p, v) \
    asm volatile("red.global.add.v2.f32 [%0], { %1, %2 };" ::"l"(p), "f"((v)[0]), "f"((v)[1]) : "memory")
#define SP_SPK_RED_V4(p, v)                                                                             \
    asm volatile("red.global.add.v4.f32 [%0], { %1, %2, %3, %4 };" ::"l"(p), "f"((v)[0]), "f"((v)[1]), \
                 "f"((v)[2]), "f"((v)[3])                                                              \
                 : "memory")
#endif
template <int N>
__device__ __forceinline__ void sp_spk_red_add(float *p, const float *v) {
#ifdef SP_SPK_VECTOR_RED
    if (N == 2) {
        SP_SPK_RED_V2(p, v);
    } else {
#pragma unroll
        for (int i = 0; i < N; i += 4) SP_SPK_RED_V4(p + i, v + i);
    }
#else
#pragma unroll
    for (int i = 0; i < N; ++i) atomicAdd(p + i, v[i]);
#endif
}

// Stores N (2, 4 or 8) consecutive floats to p with plain vector stores.
template <int N>
__device__ __forceinline__ void sp_spk_store(float *p, const float *v) {
    if (N == 2) {
        *reinterpret_cast<float2 *>(p) = sp_spk_f2(v[0], v[1]);
    } else {
#pragma unroll
        for (int i = 0; i < N; i += 4)
            *reinterpret_cast<float4 *>(p + i) = sp_spk_f4(v[i], v[i + 1], v[i + 2], v[i + 3]);
    }
}

// Converts 4 floats to T and stores them (8 bytes; p 8-byte aligned).
__device__ __forceinline__ void sp_spk_store_t4(T *p, float4 v) {
    uint2 o;
    o.x = (unsigned)SP_FROM_F(v.x) | ((unsigned)SP_FROM_F(v.y) << 16);
    o.y = (unsigned)SP_FROM_F(v.z) | ((unsigned)SP_FROM_F(v.w) << 16);
    *reinterpret_cast<uint2 *>(p) = o;
}

__device__ __forceinline__ float4 sp_spk_add4(float4 a, float4 b) {
    return sp_spk_f4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// reduce=atomic: y = T(ws), and ws = 0 again so the next call starts from
// zero (the workspace is zeroed once, at allocation). One float4 per thread;
// grid = ceil(SPK_TOTAL / 4 / SPK_THREADS).
__device__ __forceinline__ void sp_spk_finalize_atomic(float *__restrict__ ws, T *__restrict__ y) {
    const int i = (blockIdx.x * SPK_THREADS + threadIdx.x) * 4;
    if (i >= SPK_TOTAL) return;
    float4 *w = reinterpret_cast<float4 *>(ws + i);
    const float4 v = __ldcg(w);  // written by other CTAs' reductions: read from L2, not L1
    *w = sp_spk_f4(0.0f, 0.0f, 0.0f, 0.0f);
    sp_spk_store_t4(y + i, v);
}

// ---- the finalize folded into the main kernel -------------------------------------------
// Each output block (a CTA's columns x tokens) is summed by `arrivals` CTAs; the
// last of them to arrive turns the block's sums into y, so no finalize launch
// follows. One unsigned counter per block lives in the workspace after the sums
// (zero at allocation, reset by the last arrival: sp_last_arrival in common.cuh.lua).

// The last arrival, reduce=atomic: y = T(ws) over tokens [t0, t0+nt) and columns
// [c0, c0+ncols) (ncols a multiple of 4), ws re-zeroed there. Whole CTA.
__device__ __forceinline__ void sp_spk_finalize_block_atomic(float *__restrict__ ws, T *__restrict__ y, int t0, int nt,
                                                             int c0, int ncols) {
    const int q4 = ncols / 4;
    for (int i = threadIdx.x; i < nt * q4; i += blockDim.x) {
        const size_t at = (size_t)(t0 + i / q4) * SPK_COLS + c0 + (i % q4) * 4;
        float4 *w = reinterpret_cast<float4 *>(ws + at);
        const float4 v = __ldcg(w);  // reduced in L2 by other CTAs: not from L1
        *w = sp_spk_f4(0.0f, 0.0f, 0.0f, 0.0f);
        sp_spk_store_t4(y + at, v);
    }
}

// The last arrival, reduce=deterministic: y = T(partials 0..n_parts-1 summed in
// that order) over the block; the result depends only on the inputs and the
// plan. Whole CTA.
__device__ __forceinline__ void sp_spk_finalize_block_parts(const float *__restrict__ ws, T *__restrict__ y,
                                                            int n_parts, int t0, int nt, int c0, int ncols) {
    const int q4 = ncols / 4;
    for (int i = threadIdx.x; i < nt * q4; i += blockDim.x) {
        const size_t at = (size_t)(t0 + i / q4) * SPK_COLS + c0 + (i % q4) * 4;
        float4 s = sp_spk_f4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
        for (int part = 0; part < n_parts; ++part)
            s = sp_spk_add4(s, __ldcg(reinterpret_cast<const float4 *>(ws + (size_t)part * SPK_TOTAL + at)));
        sp_spk_store_t4(y + at, s);
    }
}

// reduce=deterministic: y = T(sum of partials 0..n_parts-1) with a fixed
// summation tree (part lane l sums parts l, l+L, ... in order; the lanes are
// then added in lane order), so the result depends only on the inputs and the
// plan, never on timing. n_parts == 0 writes zeros. Every thread of the CTA
// must call it (it synchronises); grid = ceil(SPK_TOTAL / 4 / SPK_GROUPS).
__device__ __forceinline__ void sp_spk_finalize_parts(const float *__restrict__ ws, T *__restrict__ y,
                                                      int n_parts) {
    const int q = threadIdx.x % SPK_GROUPS;
    const int lane = threadIdx.x / SPK_GROUPS;
    const int i = (blockIdx.x * SPK_GROUPS + q) * 4;
    const bool in = i < SPK_TOTAL;
    float4 s = sp_spk_f4(0.0f, 0.0f, 0.0f, 0.0f);
    if (in) {
        // Partials were written by the previous kernel: L2 loads (ld.cg), several in flight.
#pragma unroll 4
        for (int part = lane; part < n_parts; part += SPK_PART_LANES)
            s = sp_spk_add4(s, __ldcg(reinterpret_cast<const float4 *>(ws + (size_t)part * SPK_TOTAL + i)));
    }
#if SPK_PART_LANES > 1
    __shared__ float4 spk_lanes[SPK_PART_LANES][SPK_GROUPS];
    spk_lanes[lane][q] = s;
    __syncthreads();
    if (lane != 0) return;
#pragma unroll
    for (int l = 1; l < SPK_PART_LANES; ++l) s = sp_spk_add4(s, spk_lanes[l][q]);
#endif
    if (in) sp_spk_store_t4(y + i, s);
}
