{% include("templates/common.cuh.lua") %}
{% include("templates/splitk_finalize.cuh.lua") %}
// Fused MLP: y[t][c] = sum_n h[t][n] * W_down[c][n], h[t][n] = mask ? silu(x[t].Wg[n]) * (x[t].Wu[n]) : 0,
// over the compact rows r < union_count*g (n = union_ids[r/g]*g + r%g).
// x: [{{ B }}][{{ d }}], WdT = W_down^T: [{{ f }}][{{ d }}], y: [{{ B }}][{{ d }}].
// interleave={{ p.interleave }} reduce={{ p.reduce }} all_active={{ p.all_active }}
#define D_COLS {{ d }}
#define F_ROWS {{ f }}
#define G {{ g }}
#define N_EXPERTS {{ E }}
#define BATCH {{ B }}
#define VEC {{ p.vec }}
#define UNROLL {{ p.unroll }}              // gate/up: K chunks in flight per warp
#define DOWN_UNROLL {{ DOWN_UNROLL }}      // down: WdT rows in flight per thread
#define THREADS {{ p.threads }}
#define WARPS {{ WARPS }}
#define RPC {{ RPC }}                      // compact rows per CTA

// Compact rows of the union in this call (the grid is sized for all f).
__device__ __forceinline__ int sp_union_rows(const int *__restrict__ union_count) {
{% if p.all_active == 1 then %}
    return F_ROWS;  // every neuron, in order
{% else %}
    return __ldg(union_count) * G;
{% end %}
}

// gate and up of one row for every token: the shared K-walk (templates/common.cuh.lua)
// with the two weight rows, then warp sums (the results end up in every lane).
__device__ __forceinline__ void sp_gate_up(const T *__restrict__ wg, const T *__restrict__ wu,
                                           const T *__restrict__ x, int lane, float (&acc)[BATCH][2]) {
    const T *w[2][1];
    w[0][0] = wg, w[1][0] = wu;
    float a[1][BATCH][2];
#pragma unroll
    for (int b = 0; b < BATCH; ++b) a[0][b][0] = a[0][b][1] = 0.0f;
    sp_kwalk<2, 1, BATCH, VEC, UNROLL, 1, D_COLS>(
        w, 0, lane, [&](int b, int k, float *xv) { sp_load_vec<VEC>(x + (size_t)b * D_COLS + k, xv); }, a);
#pragma unroll
    for (int b = 0; b < BATCH; ++b) {
        acc[b][0] = sp_warp_sum(a[0][b][0]);
        acc[b][1] = sp_warp_sum(a[0][b][1]);
    }
}

// acc[b][v] += hs[b] * w[v]
__device__ __forceinline__ void sp_down_fma(float (&acc)[BATCH][VEC], const float *w, const float *hs) {
#pragma unroll
    for (int b = 0; b < BATCH; ++b) {
        const float hv = hs[b];  // the same word for the whole CTA: a broadcast
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[b][v] = fmaf(hv, w[v], acc[b][v]);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
sprig_fused_mlp(const T *__restrict__ Wg, const T *__restrict__ Wu, const T *__restrict__ WdT,
                const T *__restrict__ x, const int *__restrict__ union_ids, const int *__restrict__ union_count,
                const unsigned char *__restrict__ mask, float *__restrict__ ws, T *__restrict__ y) {
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
    const int n_rows = sp_union_rows(union_count);
    const int row0 = blockIdx.x * RPC;
    // Uniform over the CTA. For reduce=deterministic the finalize reads only
    // the partials of CTAs below ceil(n_rows / RPC), exactly those that ran.
    if (row0 >= n_rows) return;
    const int nr = min(RPC, n_rows - row0);

    __shared__ float hs[RPC][BATCH];  // h of this CTA's rows, fp32 (never rounded to T)
    __shared__ int nid[RPC];          // their neurons: rows of WdT

    // Phase 1: a warp per row (warp, warp + WARPS, ...): gate and up for every token.
    const int lane = threadIdx.x & 31;
    for (int rr = threadIdx.x >> 5; rr < nr; rr += WARPS) {
        const int r = row0 + rr;
        const int i = r % G;
{% if p.all_active == 1 then %}
        const int e = r / G;
{% else %}
        const int e = __ldg(union_ids + r / G);
{% end %}
{% if p.interleave == 1 then %}
        const T *wg = Wg + ((size_t)e * 2 * G + i) * D_COLS;  // [E][2][G][D]: gate rows, then up rows
        const T *wu = wg + (size_t)G * D_COLS;
{% else %}
        const T *wg = Wg + ((size_t)e * G + i) * D_COLS;
        const T *wu = Wu + ((size_t)e * G + i) * D_COLS;
{% end %}
        float acc[BATCH][2];
        sp_gate_up(wg, wu, x, lane, acc);
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            // Spread the shared stores over lanes (a constant index per lane, no local memory).
            if (lane == (b & 31)) {
{% if p.all_active == 1 then %}
                hs[rr][b] = sp_silu(acc[b][0]) * acc[b][1];
{% else %}
                // The union is shared by the batch: a token without this expert adds exactly 0.
                const bool on = __ldg(mask + (size_t)b * N_EXPERTS + e) != 0;
                hs[rr][b] = on ? sp_silu(acc[b][0]) * acc[b][1] : 0.0f;
{% end %}
            }
        }
        if (lane == 31) nid[rr] = e * G + i;
    }
    __syncthreads();

    // Phase 2: sum over the CTA's rows of h[r][t] * WdT[n][c], VEC columns per thread.
    for (int c = threadIdx.x * VEC; c < D_COLS; c += THREADS * VEC) {
        float acc[BATCH][VEC];
#pragma unroll
        for (int b = 0; b < BATCH; ++b)
#pragma unroll
            for (int v = 0; v < VEC; ++v) acc[b][v] = 0.0f;
        const T *__restrict__ wcol = WdT + c;
        int rr = 0;
        for (; rr + DOWN_UNROLL <= nr; rr += DOWN_UNROLL) {
            float w[DOWN_UNROLL][VEC];
#pragma unroll
            for (int u = 0; u < DOWN_UNROLL; ++u)
                sp_load_vec_stream<VEC>(wcol + (size_t)nid[rr + u] * D_COLS, w[u]);
#pragma unroll
            for (int u = 0; u < DOWN_UNROLL; ++u) sp_down_fma(acc, w[u], hs[rr + u]);
        }
        for (; rr < nr; ++rr) {
            float w[VEC];
            sp_load_vec_stream<VEC>(wcol + (size_t)nid[rr] * D_COLS, w);
            sp_down_fma(acc, w, hs[rr]);
        }
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
{% if p.reduce == "atomic" then %}
            sp_spk_red_add<VEC>(ws + (size_t)b * D_COLS + c, acc[b]);
{% else %}
            sp_spk_store<VEC>(ws + ((size_t)blockIdx.x * BATCH + b) * D_COLS + c, acc[b]);
{% end %}
        }
    }
}

// Turns the fp32 partials in ws into y (see templates/splitk_finalize.cuh.lua).
extern "C" __global__ void __launch_bounds__(SPK_THREADS)
sprig_fused_mlp_finalize(const T *__restrict__ Wg, const T *__restrict__ Wu, const T *__restrict__ WdT,
                         const T *__restrict__ x, const int *__restrict__ union_ids,
                         const int *__restrict__ union_count, const unsigned char *__restrict__ mask,
                         float *__restrict__ ws, T *__restrict__ y) {
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
{% if p.reduce == "atomic" then %}
    sp_spk_finalize_atomic(ws, y);
{% else %}
    // CTAs that had rows: the first ceil(n_rows / RPC).
    const int n_parts = (sp_union_rows(union_count) + RPC - 1) / RPC;
    sp_spk_finalize_parts(ws, y, n_parts);
{% end %}
}
