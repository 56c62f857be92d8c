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
#define LISTS (BATCH + 1)  // one id list per token, then the batch union
#define WORDS {{ (E + 31) // 32 }}  // 32-expert words of one list's bitmap
// ws (32-bit words, zero at allocation and left zero by every call): [0] the
// CTAs' arrival counter, then LISTS bitmaps of WORDS words (bit e: expert e active).
#define WS_BITS 1

// The activation rule. silu_abs uses expf, not __expf: the comparison sits right at
// the calibrated threshold, where __expf's error could flip a neuron.
__device__ __forceinline__ bool sp_router_active(float s, float threshold) {
{% if p.score == "sigmoid" then %}
    return s > threshold;  // sigmoid(s) > tau  <=>  s > logit(tau), no exp needed
{% else %}
    return fabsf(s / (1.0f + expf(-s))) > threshold;
{% end %}
}

// One expert's score for one token: stored, its mask byte written, and its bit
// set in the token's and the union's bitmaps (atomicOr: CTAs share words).
__device__ __forceinline__ void sp_router_emit(float s, int e, int b, float threshold, float *scores,
                                               unsigned char *mask, unsigned *bits) {
    scores[(size_t)b * N_EXPERTS + e] = s;
    const bool on = sp_router_active(s, threshold);
    mask[(size_t)b * N_EXPERTS + e] = on ? 1 : 0;
    if (on) {
        const unsigned bit = 1u << (e & 31);
        atomicOr(bits + (size_t)b * WORDS + (e >> 5), bit);
        atomicOr(bits + (size_t)BATCH * WORDS + (e >> 5), bit);
    }
}

// Exclusive prefix sum of v over the CTA's threads (in thread order); *total
// gets the sum. Every thread must call it (it synchronises twice).
__device__ __forceinline__ int sp_router_block_scan(int v, int *total) {
    __shared__ int warp_sums[WARPS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int incl = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int u = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += u;
    }
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    int before = 0, all = 0;
    for (int w = 0; w < WARPS; ++w) {
        const int n = warp_sums[w];
        if (w < warp) before += n;
        all += n;
    }
    __syncthreads();  // warp_sums is reused by the next call
    *total = all;
    return before + incl - v;
}

// The last CTA: every list's ids in ascending order from its bitmap (each
// thread owns a run of consecutive words: their popcounts are scanned, then
// it writes its words' experts at its offset), its count, and the bitmaps
// zeroed again for the next call. Deterministic: no order of arrival shows.
// The words of up to LIST_STEP lists are read together (one L2 round trip).
#define WPT ((WORDS + SCORE_THREADS - 1) / SCORE_THREADS)  // words per thread
#define LIST_STEP (16 / WPT > 0 ? (16 / WPT < LISTS ? 16 / WPT : LISTS) : 1)
__device__ __forceinline__ void sp_router_compact(unsigned *bits, int *ids, int *counts, int *union_ids,
                                                  int *union_count) {
    for (int l0 = 0; l0 < LISTS; l0 += LIST_STEP) {
        unsigned w[LIST_STEP][WPT];
#pragma unroll
        for (int j = 0; j < LIST_STEP; ++j)
#pragma unroll
            for (int i = 0; i < WPT; ++i) {
                const int at = threadIdx.x * WPT + i;
                w[j][i] = l0 + j < LISTS && at < WORDS ? __ldcg(bits + (size_t)(l0 + j) * WORDS + at) : 0u;
            }
#pragma unroll
        for (int j = 0; j < LIST_STEP; ++j) {
            const int l = l0 + j;
            if (l >= LISTS) break;  // uniform
            int n = 0;
#pragma unroll
            for (int i = 0; i < WPT; ++i) {
                const int at = threadIdx.x * WPT + i;
                if (at < WORDS) bits[(size_t)l * WORDS + at] = 0u;
                n += __popc(w[j][i]);
            }
            int total = 0;
            int pos = sp_router_block_scan(n, &total);
            int *list = l < BATCH ? ids + (size_t)l * N_EXPERTS : union_ids;
#pragma unroll
            for (int i = 0; i < WPT; ++i)
                for (unsigned m = w[j][i]; m; m &= m - 1u) list[pos++] = (threadIdx.x * WPT + i) * 32 + __ffs(m) - 1;
            if (threadIdx.x == 0) {
                if (l < BATCH) counts[l] = total;
                else *union_count = total;
            }
        }
    }
}

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
                sp_router_emit(s, row0 + r, b, threshold, scores, mask, bits);
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
            if (row0 + r < N_EXPERTS) sp_router_emit(s, row0 + r, b, threshold, scores, mask, bits);
        }
    }
{% end %}
    if (sp_last_arrival(wsu, gridDim.x)) sp_router_compact(bits, ids, counts, union_ids, union_count);
}
