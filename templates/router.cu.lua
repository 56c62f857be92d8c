{% include("templates/common.cuh.lua") %}
{% local R, V, U, KS = p.rows_per_warp, p.vec, p.unroll, p.ksplit %}
// Router, score={{ p.score }}: scores[t][e] = sum_k Wr[e][k] * x[t][k]; Wr: [{{ E }}][{{ d }}],
// x: [{{ B }}][{{ d }}], scores: [{{ B }}][{{ E }}] fp32; then ids/counts/mask per token and the union,
// all in one kernel: the last CTA to finish compacts the lists from bitmaps in ws.
#define N_EXPERTS {{ E }}
#define K_COLS {{ d }}
#define BATCH {{ B }}
#define ROWS {{ R }}
#define VEC {{ V }}
#define UNROLL {{ U }}
#define SCORE_THREADS {{ p.threads }}
#define KSPLIT {{ KS }}  // warps sharing one row group, each on a slice of K
#define GROUPS (SCORE_THREADS / 32 / KSPLIT)  // row groups per CTA
#define WARPS (SCORE_THREADS / 32)
#define WORDS {{ (E + 31) // 32 }}  // 32-expert words of one list's bitmap
#define ROUTE_THREADS SCORE_THREADS
#define SP_ROUTE_SIGMOID {{ p.score == "sigmoid" and 1 or 0 }}
{% include("templates/routing.cuh.lua") %}

// A group of KSPLIT warps owns ROWS experts; warp `slice` of the group walks the K
// chunks slice, slice + KSPLIT, ... with VEC-wide loads, UNROLL chunks in flight.
// Every d that is a multiple of 8 works (the last chunks are predicated). With
// KSPLIT > 1 the group's partial sums meet in shared memory and are added in slice
// order, so the result does not depend on scheduling. Then the CTA arrives; the
// last to arrive compacts.
{% if p.min_blocks == 0 then %}
extern "C" __global__ void __launch_bounds__(SCORE_THREADS)
{% else %}
// An explicit minimum of CTAs per SM: with the thread count alone, ptxas picks its own
// register target and can spill below it (seen at sm_75, d=2864, batch 8).
extern "C" __global__ void __launch_bounds__(SCORE_THREADS, {{ p.min_blocks }})
{% end %}
sprig_router(const T *__restrict__ Wr, const T *__restrict__ x, float *__restrict__ scores,
             float threshold, int *ids, int *counts, int *union_ids, int *union_count,
             unsigned char *mask, int *ws) {
    unsigned *wsu = reinterpret_cast<unsigned *>(ws);  // the counter and bitmaps are bit words
    const int lane = threadIdx.x & 31;
    const int wib = threadIdx.x >> 5;  // warp in block
    const int slice = wib % KSPLIT;
    const int row0 = (blockIdx.x * GROUPS + wib / KSPLIT) * ROWS;
    unsigned *bits = wsu + WS_BITS;

    float acc[ROWS][BATCH][1];
    const T *w[1][ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        w[0][r] = Wr + (size_t)min(row0 + r, N_EXPERTS - 1) * K_COLS;  // spare rows read a valid row, never stored
#pragma unroll
        for (int b = 0; b < BATCH; ++b) acc[r][b][0] = 0.0f;
    }
    // Wr is no kernel's output: its first lines are asked for before the wait.
    if (row0 < N_EXPERTS) sp_kwalk_prefetch<1, ROWS, VEC, UNROLL, KSPLIT, K_COLS>(w, slice, lane);
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
    // The shared K-walk (templates/common.cuh.lua); a spare group still reaches the barriers below.
    if (row0 < N_EXPERTS)
        sp_kwalk<1, ROWS, BATCH, VEC, UNROLL, KSPLIT, K_COLS>(
            w, slice, lane, [&](int b, int k, float *xv) { sp_load_vec<VEC>(x + (size_t)b * K_COLS + k, xv); }, acc);

{% if KS == 1 then %}
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            const float s = sp_warp_sum(acc[r][b][0]);
            // Spread the stores over lanes rather than funnel them through lane 0.
            if (lane == ((r * BATCH + b) & 31) && row0 + r < N_EXPERTS)
                sp_router_emit(s, row0 + r, b, threshold, scores, mask, bits, bits + (size_t)BATCH * WORDS);
        }
{% else %}
    __shared__ float part[SCORE_THREADS / 32][ROWS][BATCH];  // each warp's sums
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            const float s = sp_warp_sum(acc[r][b][0]);
            if (lane == ((r * BATCH + b) & 31)) part[wib][r][b] = s;
        }
    __syncthreads();
    if (slice == 0) {
        for (int i = lane; i < ROWS * BATCH; i += 32) {
            const int r = i / BATCH, b = i % BATCH;
            float s = part[wib][r][b];
#pragma unroll
            for (int j = 1; j < KSPLIT; ++j) s += part[wib + j][r][b];
            if (row0 + r < N_EXPERTS) sp_router_emit(s, row0 + r, b, threshold, scores, mask, bits, bits + (size_t)BATCH * WORDS);
        }
    }
{% end %}
    if (sp_last_arrival(wsu, gridDim.x)) sp_router_compact(bits, ids, counts, union_ids, union_count);
}
