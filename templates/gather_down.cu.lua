{% include("templates/common.cuh.lua") %}
// Gather down: y[t][c] = sum_{j < union_count, i < g} h[t][j*g+i] * W_down[c][union_ids[j]*g+i]
// h: [{{ B }}][{{ f }}] compact (exact zeros for masked tokens), y: [{{ B }}][{{ d }}].
// layout={{ p.layout }} all_active={{ p.all_active }} h_index={{ p.h_index }}
{% if p.h_index == "neuron" then %}
// h is by neuron, h[t][n] (gather_upgate route=sigmoid writes it so): a compact
// row's h is at its neuron, as its weights are.
#define SP_H_AT(compact, neuron) (neuron)
{% else %}
#define SP_H_AT(compact, neuron) (compact)
{% end %}
#define D_COLS {{ d }}
#define F_ROWS {{ f }}
#define G {{ g }}
#define N_EXPERTS {{ E }}
#define BATCH {{ B }}
#define VEC {{ p.vec }}
#define UNROLL {{ p.unroll }}
#define THREADS {{ p.threads }}
{% if p.norm ~= "none" then %}
// norm={{ p.norm }} (add, or set: res = y): the CTA that arrives last (after every block's y is written) adds y
// into the fp32 residual res and writes normed = T(rmsnorm(res) * norm_w): the
// rmsnorm family's mode=add without a launch of its own. Its counter: ws[WS_NORM].
#define WS_NORM {{ WS_NORM }}
{% end %}
{% if p.list == "bits" then %}
// list=bits: the rows come from the union's bitmap; the router's block scan
// (templates/routing.cuh.lua) orders them.
#define WORDS {{ (E + 31) // 32 }}
#define ROUTE_THREADS THREADS
#define SP_ROUTE_SIGMOID 1
{% include("templates/routing.cuh.lua") %}

// The union's bitmap, which the kernel before wrote, compacted by this CTA into
// ids (shared memory, N_EXPERTS): each thread a run of WPT words, their popcounts
// scanned across the CTA, then its words' experts in ascending order, as the
// router's compaction orders them. One L2 round trip, where the kernel before
// would have left one CTA doing it alone at its end. CTA 0 publishes the count;
// returns it. Every thread of the CTA must call it (it synchronises).
__device__ __forceinline__ int sp_union_from_bits(const int *__restrict__ union_bits, int *ids,
                                                  int *__restrict__ union_count) {
    unsigned bw[WPT];
    int mine = 0;
#pragma unroll
    for (int i = 0; i < WPT; ++i) {
        const int at = (int)threadIdx.x * WPT + i;
        bw[i] = at < WORDS ? (unsigned)__ldcg(union_bits + at) : 0u;
        mine += __popc(bw[i]);
    }
    int total = 0;
    int pos = sp_router_block_scan(mine, &total);
#pragma unroll
    for (int i = 0; i < WPT; ++i)
        for (unsigned m = bw[i]; m; m &= m - 1u) ids[pos++] = ((int)threadIdx.x * WPT + i) * 32 + __ffs(m) - 1;
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0) *union_count = total;
    __syncthreads();
    return total;
}
{% end %}
{% if p.layout == "t" then %}
{% include("templates/splitk_finalize.cuh.lua") %}
// layout=t: Wd = W_down^T [F_ROWS][D_COLS]. reduce={{ p.reduce }}
#define COLS_PER_CTA {{ p.cols_per_cta }}
#define COL_THREADS {{ COL_THREADS }}      // threads across the CTA's columns, VEC each
#define ROW_LANES {{ ROW_LANES }}          // threads down the rows, summed in shared memory
#define SPLITS {{ SPLITS }}                // CTAs sharing the rows of one column block (grid y)
#define BT {{ BT }}                        // tokens per CTA (grid z: {{ TILES }} tile(s))
#define WS_SUMS {{ WS_SUMS }}              // floats of sums in ws; the blocks' arrival counters follow
{% if TILES == 1 then %}
#define SP_LOAD_W sp_load_vec_stream<VEC>  // W is read once per call: evict-first
{% else %}
#define SP_LOAD_W sp_load_vec<VEC>         // each token tile re-reads W: let it stay in L2
{% end %}

// The compact rows [begin, end) of split `split`: a contiguous share of
// n_rows, sized from the device-side count so every split has work at any
// sparsity. Splits past the last non-empty one get begin >= end.
__device__ __forceinline__ void sp_split_rows(int n_rows, int split, int *begin, int *end) {
    const int per = (n_rows + SPLITS - 1) / SPLITS;
    *begin = split * per;
    *end = min(*begin + per, n_rows);
}

// Compact rows of the union in this call (the grid is sized for all f).
__device__ __forceinline__ int sp_union_rows(const int *__restrict__ union_count) {
{% if p.all_active == 1 then %}
    return F_ROWS;  // every neuron, in order
{% else %}
    return __ldg(union_count) * G;
{% end %}
}

// Neuron (row of W_down^T) of compact row r; ids: the expert list (staged in
// shared memory where it fits, STAGE_IDS).
__device__ __forceinline__ int sp_neuron(const int *ids, int r) {
{% if p.all_active == 1 then %}
    return r;
{% elseif STAGE_IDS then %}
    return ids[r / G] * G + r % G;
{% else %}
    return __ldg(ids + r / G) * G + r % G;
{% end %}
}

// Before the wait (programmatic dependent launch, common.cuh.lua): the lines of
// the first UNROLL rows each thread will load, asked of L2, one thread per
// 128-byte line. Routed, the rows come from the expert list, which the router
// wrote two kernels back: complete by now, since the kernel before this one
// released it only after its own wait (and read from L2, where that write is).
// Either way these are hints: ids are clamped into the weights, never trusted.
// h_index=neuron or list=bits (the router folded into gather_upgate, the kernel
// just before) has no such list yet: it would be the previous layer's, so no prefetch.
__device__ __forceinline__ void sp_down_prefetch(const T *__restrict__ Wd, const int *__restrict__ union_ids,
                                                 const int *__restrict__ union_count) {
#if defined(SP_PDL) && {{ PREFETCH and 1 or 0 }}
{% if p.all_active == 1 then %}
    const int n_rows = F_ROWS;
    (void)union_ids, (void)union_count;
{% else %}
    const int n_rows = min(max(SP_LD_HINT(union_count), 0), N_EXPERTS) * G;
{% end %}
    int r_begin, r_end;
    sp_split_rows(n_rows, blockIdx.y, &r_begin, &r_end);
    const int ct = threadIdx.x % COL_THREADS, lr = threadIdx.x / COL_THREADS;
    const int c0 = blockIdx.x * COLS_PER_CTA + ct * VEC;
    if (c0 >= D_COLS) return;
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
        const int r = r_begin + lr + u * ROW_LANES;
        if (r >= r_end) break;
{% if p.all_active == 1 then %}
        const int n = r;
{% else %}
        const int n = min(max(SP_LD_HINT(union_ids + r / G), 0), N_EXPERTS - 1) * G + r % G;
{% end %}
        const T *p = Wd + (size_t)n * D_COLS + c0;
        if (ct == 0 || ((size_t)p & 127) < VEC * sizeof(T)) SP_PREFETCH_L2(p);  // a line starts in p's VEC
    }
#else
    (void)Wd, (void)union_ids, (void)union_count;
#endif
}

// acc[b][v] += ht[b][r] * w[v] for one compact row r; ht is h from the tile's
// first token on, nt the tile's tokens in the batch (the rest add nothing).
__device__ __forceinline__ void sp_row_fma(float (&acc)[BT][VEC], const float *w, const sp_u16 *__restrict__ ht, int nt,
                                           int r) {
#pragma unroll
    for (int b = 0; b < BT; ++b) {
        float hv = 0.0f;
        if (BATCH % BT == 0 || b < nt) hv = SP_TO_F(__ldg(ht + (size_t)b * F_ROWS + r));
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[b][v] = fmaf(hv, w[v], acc[b][v]);
    }
}

{% if MIN_BLOCKS > 1 then %}
// At most 128 registers per thread (512 threads' worth per SM): at batch 8
// that keeps two 256-thread CTAs per SM instead of one.
{% else %}
// No register cap: batch_tile*vec sums plus unroll*vec weights would not fit in 128.
{% end %}
extern "C" __global__ void __launch_bounds__(THREADS, {{ MIN_BLOCKS }})
sprig_gather_down(const T *__restrict__ Wd, const T *__restrict__ h, const int *__restrict__ union_ids,
                  {% if p.list == "bits" then %}int{% else %}const int{% end %} *__restrict__ union_count, float *__restrict__ ws, T *__restrict__ y{% if p.norm ~= "none" then %},
                  float *__restrict__ res, const T *__restrict__ norm_w, T *__restrict__ normed, float eps{% end %}{% if p.list == "bits" then %},
                  const int *__restrict__ union_bits{% end %}) {
    sp_down_prefetch(Wd, union_ids, union_count);
{% if p.norm ~= "none" then %}
    sp_norm_prefetch<D_COLS, true>(norm_w);
{% end %}
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
{% if p.list == "bits" then %}
    __shared__ int ids_s[N_EXPERTS];
    const int n_rows = sp_union_from_bits(union_bits, ids_s, union_count) * G;
    const int *ids = ids_s;
    (void)union_ids;
{% elseif STAGE_IDS then %}
    // The whole expert list staged in shared memory, its loads issued with the
    // count's: one L2 round trip before the weights, and none in the loop (read
    // from global memory, each step's ids were an L2 round trip its weight loads
    // waited on). Entries past the count are read, never used.
    __shared__ int ids_s[N_EXPERTS];
#pragma unroll
    for (int i0 = 0; i0 < N_EXPERTS; i0 += THREADS)
        if (i0 + (int)threadIdx.x < N_EXPERTS) ids_s[i0 + threadIdx.x] = __ldg(union_ids + i0 + threadIdx.x);
    const int n_rows = sp_union_rows(union_count);
    __syncthreads();
    const int *ids = ids_s;
{% else %}
    const int n_rows = sp_union_rows(union_count);
    const int *ids = union_ids;
{% end %}
    int r_begin, r_end;
    sp_split_rows(n_rows, blockIdx.y, &r_begin, &r_end);
    // Splits with no rows (past the last non-empty one) write nothing{% if p.reduce ~= "direct" then %} but still
    // arrive, so the block's last arrival is known{% else %}; reduce=direct's only
    // split writes y even when the union is empty (zeros){% end %}.
    const bool has_rows = r_begin < r_end;
    (void)has_rows;
    const int ct = threadIdx.x % COL_THREADS;
    const int lr = threadIdx.x / COL_THREADS;
    const int c0 = blockIdx.x * COLS_PER_CTA + ct * VEC;
    const int t0 = blockIdx.z * BT;
    const sp_u16 *__restrict__ ht = reinterpret_cast<const sp_u16 *>(h) + (size_t)t0 * F_ROWS;
    const int nt = BATCH - t0;

    float acc[BT][VEC];
#pragma unroll
    for (int b = 0; b < BT; ++b)
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[b][v] = 0.0f;

    // d is a multiple of 8, so of VEC: a column group is all in range or all out.
    if (c0 < D_COLS) {
        const T *__restrict__ wcol = Wd + c0;
        int r = r_begin + lr;
        // UNROLL rows per lane in flight: issue every load, then the FMAs.
        for (; r + (UNROLL - 1) * ROW_LANES < r_end; r += UNROLL * ROW_LANES) {
            float w[UNROLL][VEC];
            int n[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                n[u] = sp_neuron(ids, r + u * ROW_LANES);
                SP_LOAD_W(wcol + (size_t)n[u] * D_COLS, w[u]);
            }
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) sp_row_fma(acc, w[u], ht, nt, SP_H_AT(r + u * ROW_LANES, n[u]));
        }
        // Fewer than UNROLL rows per lane are left: load them together too.
        if (r < r_end) {
            float w[UNROLL][VEC];
            int n[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                n[u] = 0;
                if (r + u * ROW_LANES < r_end) {
                    n[u] = sp_neuron(ids, r + u * ROW_LANES);
                    SP_LOAD_W(wcol + (size_t)n[u] * D_COLS, w[u]);
                } else {
#pragma unroll
                    for (int v = 0; v < VEC; ++v) w[u][v] = 0.0f;
                }
            }
#pragma unroll
            for (int u = 0; u < UNROLL; ++u)
                if (r + u * ROW_LANES < r_end) sp_row_fma(acc, w[u], ht, nt, SP_H_AT(r + u * ROW_LANES, n[u]));
        }
    }

    // Sum the ROW_LANES partials of each column in shared memory, one token at
    // a time, then write groups of 4 consecutive columns.
    __shared__ float4 red4[ROW_LANES][COLS_PER_CTA / 4];  // float4: 16-byte aligned rows
    float(*red)[COLS_PER_CTA] = reinterpret_cast<float(*)[COLS_PER_CTA]>(&red4[0][0]);
#pragma unroll
    for (int b = 0; b < BT; ++b) {
        if (b > 0) __syncthreads();  // the previous token's sums have been read
#pragma unroll
        for (int v = 0; v < VEC; v += 2)
            *reinterpret_cast<float2 *>(&red[lr][ct * VEC + v]) = sp_spk_f2(acc[b][v], acc[b][v + 1]);
        __syncthreads();
        const int t = t0 + b;
        if ((BATCH % BT != 0 && t >= BATCH){% if p.reduce ~= "direct" then %} || !has_rows{% end %}) continue;  // uniform: the barrier count stays equal
        for (int q = threadIdx.x; q < COLS_PER_CTA / 4; q += THREADS) {
            const int c = blockIdx.x * COLS_PER_CTA + q * 4;
            if (c >= D_COLS) break;
            float4 s = *reinterpret_cast<const float4 *>(&red[0][q * 4]);
#pragma unroll
            for (int l = 1; l < ROW_LANES; ++l) {
                const float4 o = *reinterpret_cast<const float4 *>(&red[l][q * 4]);
                s.x += o.x; s.y += o.y; s.z += o.z; s.w += o.w;
            }
            const float sv[4] = {s.x, s.y, s.z, s.w};
{% if p.reduce == "atomic" then %}
            sp_spk_red_add<4>(ws + (size_t)t * D_COLS + c, sv);
{% elseif p.reduce == "deterministic" then %}
            sp_spk_store<4>(ws + ((size_t)blockIdx.y * BATCH + t) * D_COLS + c, sv);
{% else %}
            (void)sv;
            sp_spk_store_t4(y + (size_t)t * D_COLS + c, s);
{% end %}
        }
    }
{% if p.reduce == "atomic" and p.norm ~= "none" then %}
    // The norm's last CTA reads the sums themselves, finalizing y on its way: one
    // arrival ticket for the whole grid, not a block's ticket and read-back of its
    // sums and then the norm's ticket and read of y.
    sp_norm_epilogue<THREADS, D_COLS, BATCH, {{ p.norm == "set" and "true" or "false" }}, true>(
        reinterpret_cast<unsigned *>(ws + WS_NORM), gridDim.x * gridDim.y * gridDim.z, ws, y, res, norm_w, normed,
        nullptr, (float)D_COLS, eps);
{% else %}
{% if p.reduce ~= "direct" then %}
    // The split to arrive last at this column block turns its sums into y.
    unsigned *counters = reinterpret_cast<unsigned *>(ws + WS_SUMS);
    if (sp_last_arrival(counters + blockIdx.x + gridDim.x * blockIdx.z, SPLITS)) {
        const int cb = blockIdx.x * COLS_PER_CTA;
        const int ncols = min(COLS_PER_CTA, D_COLS - cb), ntok = min(BT, BATCH - t0);
{% if p.reduce == "atomic" then %}
        sp_spk_finalize_block_atomic(ws, y, t0, ntok, cb, ncols);
{% else %}
        // the splits that had rows wrote parts 0..n_parts-1
        const int per = (n_rows + SPLITS - 1) / SPLITS;
        const int n_parts = n_rows == 0 ? 0 : (n_rows + per - 1) / per;
        sp_spk_finalize_block_parts(ws, y, n_parts, t0, ntok, cb, ncols);
{% end %}
    }
{% end %}
{% if p.norm ~= "none" then %}
    sp_norm_epilogue<THREADS, D_COLS, BATCH, {{ p.norm == "set" and "true" or "false" }}, true>(
        reinterpret_cast<unsigned *>(ws + WS_NORM), gridDim.x * gridDim.y * gridDim.z, y, nullptr, res, norm_w, normed,
        nullptr, (float)D_COLS, eps);
{% end %}
{% end %}
}
{% else %}
// layout=n: Wd = W_down [D_COLS][F_ROWS] as stored; one kernel, deterministic.
#define ROWS {{ p.rows_per_warp }}         // output columns (rows of W_down) per warp
#define SUBS (G / VEC)                     // VEC-wide pieces per expert slot
#define WARPS (THREADS / 32)

{% if p.list == "bits" then %}
#define SP_UNION_ID(j) (ids[j])  // in shared memory
{% else %}
#define SP_UNION_ID(j) __ldg(ids + (j))
{% end %}

// The ROWS output columns c0.. of y, by one warp; n_active experts of the list ids.
__device__ __forceinline__ void sp_down_cols(const T *__restrict__ Wd, const T *__restrict__ h, const int *ids,
                                             int n_active, T *__restrict__ y, int lane, int c0) {
    const int n_items = n_active * SUBS;

    // d is a multiple of 8, so of ROWS: a warp's rows are all in range.
    const T *__restrict__ w0 = Wd + (size_t)c0 * F_ROWS;

    float acc[ROWS][BATCH];
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) acc[r][b] = 0.0f;

    // Item i is piece i % SUBS of union slot i / SUBS: neurons
    // union_ids[j]*G + s*VEC .. +VEC, which are compact columns i*VEC .. +VEC of h.
    int it = lane;
    for (; it + (UNROLL - 1) * 32 < n_items; it += UNROLL * 32) {
        float w[UNROLL][ROWS][VEC];
        int ku[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int i = it + u * 32;
{% if p.all_active == 1 then %}
            const int k = i * VEC;
{% else %}
            const int k = SP_UNION_ID(i / SUBS) * G + (i % SUBS) * VEC;
{% end %}
            ku[u] = k;
#pragma unroll
            for (int r = 0; r < ROWS; ++r) sp_load_vec_stream<VEC>(w0 + r * F_ROWS + k, w[u][r]);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u)
#pragma unroll
            for (int b = 0; b < BATCH; ++b) {
                float hv[VEC];
                sp_load_vec<VEC>(h + (size_t)b * F_ROWS + SP_H_AT((it + u * 32) * VEC, ku[u]), hv);
#pragma unroll
                for (int r = 0; r < ROWS; ++r)
#pragma unroll
                    for (int v = 0; v < VEC; ++v) acc[r][b] = fmaf(w[u][r][v], hv[v], acc[r][b]);
            }
    }
    for (; it < n_items; it += 32) {
{% if p.all_active == 1 then %}
        const int k = it * VEC;
{% else %}
        const int k = SP_UNION_ID(it / SUBS) * G + (it % SUBS) * VEC;
{% end %}
        float w[ROWS][VEC];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) sp_load_vec_stream<VEC>(w0 + r * F_ROWS + k, w[r]);
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            float hv[VEC];
            sp_load_vec<VEC>(h + (size_t)b * F_ROWS + SP_H_AT(it * VEC, k), hv);
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
#pragma unroll
                for (int v = 0; v < VEC; ++v) acc[r][b] = fmaf(w[r][v], hv[v], acc[r][b]);
        }
    }

#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            const float s = sp_warp_sum(acc[r][b]);
            // Spread the stores over lanes rather than funnel them through lane 0.
            if (lane == ((r * BATCH + b) & 31)) y[(size_t)b * D_COLS + c0 + r] = SP_FROM_F(s);
        }
}

extern "C" __global__ void __launch_bounds__(THREADS)
sprig_gather_down(const T *__restrict__ Wd, const T *__restrict__ h, const int *__restrict__ union_ids,
                  {% if p.list == "bits" then %}int{% else %}const int{% end %} *__restrict__ union_count, float *__restrict__ ws, T *__restrict__ y{% if p.norm ~= "none" then %},
                  float *__restrict__ res, const T *__restrict__ norm_w, T *__restrict__ normed, float eps{% end %}{% if p.list == "bits" then %},
                  const int *__restrict__ union_bits{% end %}) {
{% if p.norm ~= "none" then %}
    sp_norm_prefetch<D_COLS, true>(norm_w);
{% end %}
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
{% if p.all_active == 1 then %}
    const int *ids = union_ids;
    const int n_active = N_EXPERTS;
{% elseif p.list == "bits" then %}
    __shared__ int ids_s[N_EXPERTS];
    const int n_active = sp_union_from_bits(union_bits, ids_s, union_count);
    const int *ids = ids_s;
    (void)union_ids;
{% else %}
    const int *ids = union_ids;
    const int n_active = __ldg(union_count);
{% end %}
    const int lane = threadIdx.x & 31;
    const int c0 = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * ROWS;
    if (c0 < D_COLS) sp_down_cols(Wd, h, ids, n_active, y, lane, c0);
{% if p.norm ~= "none" then %}
    sp_norm_epilogue<THREADS, D_COLS, BATCH, {{ p.norm == "set" and "true" or "false" }}, true>(
        reinterpret_cast<unsigned *>(ws + WS_NORM), gridDim.x, y, nullptr, res, norm_w, normed, nullptr, (float)D_COLS,
        eps);
{% end %}
}
{% end %}
