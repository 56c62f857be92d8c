{% include("templates/common.cuh.lua") %}
{% local R, V, U, KS = p.rows_per_warp, p.vec, p.unroll, p.ksplit %}
{% local ROWS_PER_CTA = (p.threads // 32 // KS) * R %}
// Gather up/gate (SwiGLU): h[t][r] = mask[t][e] ? silu(x[t].Wg[n]) * (x[t].Wu[n]) : 0 for compact
// rows r < union_count*g, e = union_ids[r/g], n = e*g + r%g; x: [{{ B }}][{{ d }}], h: [{{ B }}][{{ f }}].
// interleave={{ p.interleave }} all_active={{ p.all_active }} x_smem={{ p.x_smem }} ksplit={{ KS }}
#define D_COLS {{ d }}
#define F_ROWS {{ f }}
#define G {{ g }}
#define N_EXPERTS {{ E }}
#define BATCH {{ B }}
#define ROWS {{ R }}
#define VEC {{ V }}
#define UNROLL {{ U }}
#define THREADS {{ p.threads }}
#define KSPLIT {{ KS }}  // warps sharing one row group, each on a slice of K
#define GROUPS (THREADS / 32 / KSPLIT)  // row groups per CTA
#define ROWS_PER_CTA {{ ROWS_PER_CTA }}
{% local FUSED = p.route ~= "list" %}
{% local M = p.gate == "scores" and 1 or 2 %}
{% if M == 1 then %}
// gate=scores: the gate of neuron n for token t is the router's fp32 score
// scores[t][n] (training-free mode: the router scored W_gate's rows, g = 1), so
// only W_up's rows are streamed.
#define SP_GATE_SCORE(b, e) __ldg(gate_scores + (size_t)(b) * N_EXPERTS + (e))
{% end %}
{% if FUSED then %}
// route={{ p.route }}: the router folded in (LTE). The grid covers every neuron in
// order; each CTA first scores its experts (Wr rows, every token), the first CTA
// of each expert publishes score, mask and bitmap bits, warps whose expert no
// token uses stream nothing, h is written by neuron (gather_down h_index=neuron
// reads it so) and exactly 0 for a token that does not use the expert, and the
// CTA that arrives last compacts the bitmaps into the id lists{% if p.union_out == "bits" then %}.
// union_out=bits: no lists, so no arrival and no CTA left working alone at the
// end: the union's bitmap goes to union_bits, from which gather_down list=bits
// takes its rows, and CTA 0 zeroes bits_clear, the bitmap of the call after
// this one (whose gather_down has read it by now){% end %}.
#define WORDS {{ (E + 31) // 32 }}  // 32-expert words of one list's bitmap
#define ROUTE_THREADS THREADS
#define SP_ROUTE_SIGMOID 1
{% include("templates/routing.cuh.lua") %}
#define CTA_EXPERTS (ROWS_PER_CTA >= G ? ROWS_PER_CTA / G : 1)  // experts a CTA's rows belong to
{% end %}
{% if p.x_smem == 1 then %}

// x lives in shared memory: plain (LDS) loads of VEC elements.
template <int VEC_>
__device__ __forceinline__ void sp_load_x(const T *p, float *out) {
    if (VEC_ == 8) {
        const uint4 v = *reinterpret_cast<const uint4 *>(p);
        out[0] = sp_lo(v.x); out[1] = sp_hi(v.x); out[2] = sp_lo(v.y); out[3] = sp_hi(v.y);
        out[4] = sp_lo(v.z); out[5] = sp_hi(v.z); out[6] = sp_lo(v.w); out[7] = sp_hi(v.w);
    } else if (VEC_ == 4) {
        const uint2 v = *reinterpret_cast<const uint2 *>(p);
        out[0] = sp_lo(v.x); out[1] = sp_hi(v.x); out[2] = sp_lo(v.y); out[3] = sp_hi(v.y);
    } else {
        const unsigned v = *reinterpret_cast<const unsigned *>(p);
        out[0] = sp_lo(v); out[1] = sp_hi(v);
    }
}
{% else %}

// x is re-read by every warp: cached loads (it stays in L1/L2).
template <int VEC_>
__device__ __forceinline__ void sp_load_x(const T *__restrict__ p, float *out) { sp_load_vec<VEC_>(p, out); }
{% end %}

// h[b][row] for a finished row: silu(gate) * up, or exactly 0 where token b does not
// use the row's expert (on: whether it does).
__device__ __forceinline__ void sp_store_h_if(T *__restrict__ h, int row, int b, bool on, float gate, float up) {
    h[(size_t)b * F_ROWS + row] = on ? SP_FROM_F(sp_silu(gate) * up) : (T)0;
}

// The same, token b's use of the expert read from the mask (the union is shared by
// the batch, the mask is per token).
__device__ __forceinline__ void sp_store_h(T *__restrict__ h, const unsigned char *__restrict__ mask, int row, int b,
                                           int expert, float gate, float up) {
{% if p.all_active == 1 then %}
    sp_store_h_if(h, row, b, true, gate, up);
{% else %}
    sp_store_h_if(h, row, b, __ldg(mask + (size_t)b * N_EXPERTS + expert) != 0, gate, up);
{% end %}
}

// The gate and up weight rows (w[0], w[1]) and the expert of a warp's compact
// rows row0..row0+ROWS-1.
__device__ __forceinline__ void sp_upgate_row_ptrs(const T *__restrict__ Wg, const T *__restrict__ Wu,
                                                   const int *__restrict__ union_ids, int n_rows, int row0,
                                                   const T *(&w)[2][ROWS], int (&expert)[ROWS]) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        const int row = min(row0 + r, n_rows - 1);  // spare rows read a valid row, never stored
        const int i = row % G;
{% if p.all_active == 1 or FUSED then %}
        const int e = row / G;  // every neuron, in order
        (void)union_ids;
{% else %}
        const int e = __ldg(union_ids + row / G);
{% end %}
        expert[r] = e;
{% if p.interleave == 1 then %}
        w[0][r] = Wg + ((size_t)e * 2 * G + i) * D_COLS;  // [E][2][G][D]: gate rows, then up rows
        w[1][r] = w[0][r] + (size_t)G * D_COLS;
{% else %}
        w[0][r] = Wg + ((size_t)e * G + i) * D_COLS;
        w[1][r] = Wu + ((size_t)e * G + i) * D_COLS;
{% end %}
    }
}

{% if p.min_blocks == 0 then %}
extern "C" __global__ void __launch_bounds__(THREADS)
{% else %}
// An explicit minimum of CTAs per SM: with the thread count alone, ptxas picks its own
// register target and can spill below it (seen at sm_75/sm_80, d=2864, batch 8).
extern "C" __global__ void __launch_bounds__(THREADS, {{ p.min_blocks }})
{% end %}
{% if FUSED then %}
sprig_gather_upgate(const T *__restrict__ Wg, const T *__restrict__ Wu, const T *__restrict__ x,
                    int *__restrict__ union_ids, int *__restrict__ union_count, unsigned char *__restrict__ mask,
                    T *__restrict__ h, const T *__restrict__ Wr, float *__restrict__ scores, float threshold,
                    int *__restrict__ ids, int *__restrict__ counts, int *__restrict__ ws{% if p.union_out == "bits" then %},
                    int *__restrict__ union_bits, int *__restrict__ bits_clear{% end %}) {
    // Before the wait: this CTA's router rows, which no kernel writes, asked of L2.
    const int e0 = (int)blockIdx.x * ROWS_PER_CTA / G;  // the CTA's first expert
    sp_prefetch_span(Wr + (size_t)e0 * D_COLS, max(0, min(CTA_EXPERTS, N_EXPERTS - e0)) * D_COLS, threadIdx.x, THREADS);
{% else %}
sprig_gather_upgate(const T *__restrict__ Wg, const T *__restrict__ Wu, const T *__restrict__ x,
                    const int *__restrict__ union_ids, const int *__restrict__ union_count,
                    const unsigned char *__restrict__ mask, T *__restrict__ h{% if M == 1 then %},
                    const float *__restrict__ gate_scores{% end %}) {
{% end %}
{% if p.all_active == 1 then %}
    {  // Every neuron in order: the weight rows are known, and no kernel writes them, before the wait.
        const int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
        const int row0 = (blockIdx.x * GROUPS + wib / KSPLIT) * ROWS;
        if (row0 < F_ROWS) {
            const T *w[2][ROWS];
            int expert[ROWS];
            sp_upgate_row_ptrs(Wg, Wu, union_ids, F_ROWS, row0, w, expert);
            sp_kwalk_prefetch<2, ROWS, VEC, UNROLL, KSPLIT, D_COLS>(w, wib % KSPLIT, lane);
        }
    }
{% end %}
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
{% if FUSED and p.union_out == "bits" then %}
    if (blockIdx.x == 0)
        for (int i = threadIdx.x; i < WORDS; i += THREADS) bits_clear[i] = 0;
{% end %}
{% if p.all_active == 1 or FUSED then %}
    const int n_rows = F_ROWS;  // every neuron, in order
{% else %}
    // Read once per thread: one word, broadcast to the warp; the grid is sized for all f rows.
    const int n_rows = __ldg(union_count) * G;
{% end %}
{% if not FUSED then %}
    if ((int)blockIdx.x * ROWS_PER_CTA >= n_rows) return;  // uniform over the CTA
{% end %}
{% if p.x_smem == 1 then %}
    // Stage x once per CTA (16-byte copies; d is a multiple of 8 so every row is too).
    __shared__ uint4 x_shared[BATCH * D_COLS / 8];
    for (int i = threadIdx.x; i < BATCH * D_COLS / 8; i += THREADS)
        x_shared[i] = __ldg(reinterpret_cast<const uint4 *>(x) + i);
    __syncthreads();
    const T *xs = reinterpret_cast<const T *>(x_shared);
{% else %}
    const T *__restrict__ xs = x;
{% end %}

    const int lane = threadIdx.x & 31;
    const int wib = threadIdx.x >> 5;  // warp in block
    const int slice = wib % KSPLIT;
    const int row0 = (blockIdx.x * GROUPS + wib / KSPLIT) * ROWS;
{% if FUSED then %}
    // The CTA's experts' scores for every token: threads stride K, a fixed-order sum.
    __shared__ float route_part[THREADS / 32][CTA_EXPERTS][BATCH];
    __shared__ float route_score[CTA_EXPERTS][BATCH];
    {
        float racc[CTA_EXPERTS][BATCH];
#pragma unroll
        for (int j = 0; j < CTA_EXPERTS; ++j)
#pragma unroll
            for (int b = 0; b < BATCH; ++b) racc[j][b] = 0.0f;
#pragma unroll 4
        for (int k = threadIdx.x * VEC; k < D_COLS; k += THREADS * VEC) {
            float wv[CTA_EXPERTS][VEC];
#pragma unroll
            for (int j = 0; j < CTA_EXPERTS; ++j)
                sp_load_vec<VEC>(Wr + (size_t)min(e0 + j, N_EXPERTS - 1) * D_COLS + k, wv[j]);
#pragma unroll
            for (int b = 0; b < BATCH; ++b) {
                float xv[VEC];
                sp_load_vec<VEC>(x + (size_t)b * D_COLS + k, xv);
#pragma unroll
                for (int j = 0; j < CTA_EXPERTS; ++j)
#pragma unroll
                    for (int v = 0; v < VEC; ++v) racc[j][b] = fmaf(wv[j][v], xv[v], racc[j][b]);
            }
        }
#pragma unroll
        for (int j = 0; j < CTA_EXPERTS; ++j)
#pragma unroll
            for (int b = 0; b < BATCH; ++b) {
                const float s = sp_warp_sum(racc[j][b]);
                if (lane == 0) route_part[wib][j][b] = s;
            }
        __syncthreads();
        for (int i = threadIdx.x; i < CTA_EXPERTS * BATCH; i += THREADS) {
            float s = 0.0f;
            for (int w = 0; w < THREADS / 32; ++w) s += route_part[w][i / BATCH][i % BATCH];
            route_score[i / BATCH][i % BATCH] = s;
        }
        __syncthreads();
    }
{% if p.union_out == "bits" then %}
    (void)ws, (void)ids, (void)counts, (void)union_ids, (void)union_count;
    unsigned *token_bits = nullptr, *union_words = reinterpret_cast<unsigned *>(union_bits);
{% else %}
    unsigned *wsu = reinterpret_cast<unsigned *>(ws);  // the arrival counter and bitmaps are bit words
    unsigned *token_bits = wsu + WS_BITS, *union_words = token_bits + (size_t)BATCH * WORDS;
{% end %}
    // The first CTA of each expert publishes its score, mask byte and bits.
    if ((int)blockIdx.x * ROWS_PER_CTA % G == 0)
        for (int i = threadIdx.x; i < CTA_EXPERTS * BATCH; i += THREADS) {
            const int j = i / BATCH, b = i % BATCH;
            if (e0 + j < N_EXPERTS)
                sp_router_emit(route_score[j][b], e0 + j, b, threshold, scores, mask, token_bits, union_words);
        }
    // A warp's rows all belong to one expert (G is a multiple of ROWS): it works if a token uses it.
    const int my_j = min(row0 / G - e0, CTA_EXPERTS - 1);
    bool used = false;
#pragma unroll
    for (int b = 0; b < BATCH; ++b) used = used || sp_router_active(route_score[my_j][b], threshold);
    const bool live = row0 < n_rows && used;  // every thread reaches the arrival below
{% elseif KS == 1 then %}
    if (row0 >= n_rows) return;
{% else %}
    const bool live = row0 < n_rows;  // a spare group still reaches the barrier below
{% end %}

    // Each row's gate and up weights (w[0], w[1]), and its expert (for the mask).
    const T *w[2][ROWS];
    int expert[ROWS];
    sp_upgate_row_ptrs(Wg, Wu, union_ids, n_rows, row0, w, expert);
{% if M == 1 then %}
    const T *wk[1][ROWS];  // the up rows alone: the gates are the router's scores
#pragma unroll
    for (int r = 0; r < ROWS; ++r) wk[0][r] = w[1][r];
{% else %}
    const T *(&wk)[2][ROWS] = w;
{% end %}

    float acc[ROWS][BATCH][{{ M }}];  // [.][.][0] gate (M = 2), [M - 1] up
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b)
#pragma unroll
            for (int m = 0; m < {{ M }}; ++m) acc[r][b][m] = 0.0f;

    // The shared K-walk (templates/common.cuh.lua): slice s of the group takes chunks
    // s, s + KSPLIT, ...; a spare group (KSPLIT > 1 only) skips it but reaches the barrier.
{% if KS > 1 or FUSED then %}
    if (live)
{% end %}
        sp_kwalk<{{ M }}, ROWS, BATCH, VEC, UNROLL, KSPLIT, D_COLS>(
            wk, slice, lane, [&](int b, int k, float *xv) { sp_load_x<VEC>(xs + (size_t)b * D_COLS + k, xv); }, acc);

{% if KS == 1 then %}
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
{% if M == 1 then %}
            const float gate = row0 + r < n_rows ? SP_GATE_SCORE(b, expert[r]) : 0.0f;
{% else %}
            const float gate = sp_warp_sum(acc[r][b][0]);
{% end %}
            const float up = sp_warp_sum(acc[r][b][{{ M - 1 }}]);
            // Spread the stores over lanes rather than funnel them through lane 0.
{% if FUSED then %}
            if (live && lane == ((r * BATCH + b) & 31) && row0 + r < n_rows)
                sp_store_h_if(h, row0 + r, b, sp_router_active(route_score[my_j][b], threshold), gate, up);
{% else %}
            if (lane == ((r * BATCH + b) & 31) && row0 + r < n_rows) sp_store_h(h, mask, row0 + r, b, expert[r], gate, up);
{% end %}
        }
{% else %}
    __shared__ float part[THREADS / 32][ROWS][BATCH][2];  // each warp's gate and up sums
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            const float gate = {{ M == 2 and "sp_warp_sum(acc[r][b][0])" or "0.0f" }};
            const float up = sp_warp_sum(acc[r][b][{{ M - 1 }}]);
            if (lane == ((r * BATCH + b) & 31)) {
                part[wib][r][b][0] = gate;
                part[wib][r][b][1] = up;
            }
        }
    __syncthreads();
    if (slice == 0 && live) {
        // Slices added in a fixed order: the result does not depend on scheduling.
#pragma unroll
        for (int r = 0; r < ROWS; ++r)
            for (int b = lane; b < BATCH; b += 32) {
                float gate = part[wib][r][b][0], up = part[wib][r][b][1];
#pragma unroll
                for (int j = 1; j < KSPLIT; ++j) {
                    gate += part[wib + j][r][b][0];
                    up += part[wib + j][r][b][1];
                }
{% if M == 1 then %}
                if (row0 + r < n_rows) gate = SP_GATE_SCORE(b, expert[r]);
{% end %}
{% if FUSED then %}
                if (row0 + r < n_rows)
                    sp_store_h_if(h, row0 + r, b, sp_router_active(route_score[my_j][b], threshold), gate, up);
{% else %}
                if (row0 + r < n_rows) sp_store_h(h, mask, row0 + r, b, expert[r], gate, up);
{% end %}
            }
    }
{% end %}
{% if FUSED and p.union_out ~= "bits" then %}
    // Every CTA arrives; the last turns the bitmaps into the id lists (templates/routing.cuh.lua).
    if (sp_last_arrival(wsu, gridDim.x)) sp_router_compact(token_bits, ids, counts, union_ids, union_count);
{% end %}
}
