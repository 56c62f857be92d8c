{% include("templates/common.cuh.lua") %}
{% local R, V, U, KS = p.rows_per_warp, p.vec, p.unroll, p.ksplit %}
// Router, score={{ p.score }}: scores[t][e] = sum_k Wr[e][k] * x[t][k]; Wr: [{{ E }}][{{ d }}],
// x: [{{ B }}][{{ d }}], scores: [{{ B }}][{{ E }}] fp32; then ids/counts/mask per token and the union.
#define N_EXPERTS {{ E }}
#define K_COLS {{ d }}
#define BATCH {{ B }}
#define ROWS {{ R }}
#define VEC {{ V }}
#define UNROLL {{ U }}
#define SCORE_THREADS {{ p.threads }}
#define KSPLIT {{ KS }}  // warps sharing one row group, each on a slice of K
#define GROUPS (SCORE_THREADS / 32 / KSPLIT)  // row groups per CTA
#define COMPACT_THREADS {{ p.compact_threads }}
#define COMPACT_WARPS (COMPACT_THREADS / 32)
#define LISTS (BATCH + 1)  // one id list per token, then the batch union

// Kernel 1: a group of KSPLIT warps owns ROWS experts; warp `slice` of the group walks
// the K chunks slice, slice + KSPLIT, ... with VEC-wide loads, UNROLL chunks in flight.
// Every d that is a multiple of 8 works (the last chunk is guarded). With KSPLIT > 1
// the group's partial sums meet in shared memory and are added in slice order, so the
// result does not depend on scheduling.
{% if p.min_blocks == 0 then %}
extern "C" __global__ void __launch_bounds__(SCORE_THREADS)
{% else %}
// An explicit minimum of CTAs per SM: with the thread count alone, ptxas picks its own
// register target and can spill below it (seen at sm_75, d=2864, batch 8).
extern "C" __global__ void __launch_bounds__(SCORE_THREADS, {{ p.min_blocks }})
{% end %}
sprig_router_scores(const T *__restrict__ Wr, const T *__restrict__ x, float *__restrict__ scores,
                    float threshold, int *ids, int *counts, int *union_ids, int *union_count,
                    unsigned char *mask) {
    const int lane = threadIdx.x & 31;
    const int wib = threadIdx.x >> 5;  // warp in block
    const int slice = wib % KSPLIT;
    const int row0 = (blockIdx.x * GROUPS + wib / KSPLIT) * ROWS;
{% if KS == 1 then %}
    if (row0 >= N_EXPERTS) return;
{% end %}

    float acc[ROWS][BATCH][1];
    const T *w[1][ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        w[0][r] = Wr + (size_t)min(row0 + r, N_EXPERTS - 1) * K_COLS;  // spare rows read a valid row, never stored
#pragma unroll
        for (int b = 0; b < BATCH; ++b) acc[r][b][0] = 0.0f;
    }
    // The shared K-walk (templates/common.cuh.lua); a spare group still reaches the barrier below.
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
                scores[(size_t)b * N_EXPERTS + row0 + r] = s;
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
            if (row0 + r < N_EXPERTS) scores[(size_t)b * N_EXPERTS + row0 + r] = s;
        }
    }
{% end %}
}

// The activation rule. silu_abs uses expf, not __expf: the comparison sits right at
// the calibrated threshold, where __expf's error could flip a neuron.
__device__ __forceinline__ bool sp_router_active(float s, float threshold) {
{% if p.score == "sigmoid" then %}
    return s > threshold;  // sigmoid(s) > tau  <=>  s > logit(tau), no exp needed
{% else %}
    return fabsf(s / (1.0f + expf(-s))) > threshold;
{% end %}
}

// Kernel 2: one CTA compacts every list. Experts are taken COMPACT_THREADS at a
// time (thread i owns expert base + i). Per chunk:
//   1. each warp ballots its 32 experts for every token; the union is their OR;
//   2. warp w scans lists w, w + COMPACT_WARPS, ...: an exclusive scan (shfl_up)
//      of the per-warp popcounts, offset by the list's running count;
//   3. every active expert writes itself at pre + popc(lower lanes' bits).
// Ids come out ascending and the result does not depend on scheduling.
extern "C" __global__ void __launch_bounds__(COMPACT_THREADS)
sprig_router_compact(const T *__restrict__ Wr, const T *__restrict__ x, float *__restrict__ scores,
                     float threshold, int *ids, int *counts, int *union_ids, int *union_count,
                     unsigned char *mask) {
    __shared__ unsigned bits[LISTS][COMPACT_WARPS];  // active experts of each warp's 32, per list
    __shared__ int start[LISTS][COMPACT_WARPS];      // where each warp's first active one goes
    __shared__ int count[LISTS];                     // running length of each list
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const unsigned below = (1u << lane) - 1u;

    for (int l = tid; l < LISTS; l += COMPACT_THREADS) count[l] = 0;
    __syncthreads();

    for (int base = 0; base < N_EXPERTS; base += COMPACT_THREADS) {
        const int e = base + tid;
        unsigned any = 0u;
#pragma unroll 16  // independent score loads in flight
        for (int t = 0; t < BATCH; ++t) {
            const bool on = e < N_EXPERTS && sp_router_active(scores[(size_t)t * N_EXPERTS + e], threshold);
            const unsigned b = __ballot_sync(0xffffffffu, on);
            if (lane == 0) bits[t][warp] = b;
            any |= b;
        }
        if (lane == 0) bits[BATCH][warp] = any;
        __syncthreads();

        for (int l = warp; l < LISTS; l += COMPACT_WARPS) {
            const int n = lane < COMPACT_WARPS ? __popc(bits[l][lane]) : 0;
            int incl = n;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const int v = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl += v;
            }
            const int before = count[l];
            if (lane < COMPACT_WARPS) start[l][lane] = before + incl - n;
            const int total = __shfl_sync(0xffffffffu, incl, 31);
            __syncwarp();  // every lane has read count[l] before lane 0 moves it
            if (lane == 0) count[l] = before + total;
        }
        __syncthreads();

        if (e < N_EXPERTS) {
            for (int l = 0; l < LISTS; ++l) {
                const unsigned b = bits[l][warp];
                const bool on = (b >> lane) & 1u;
                if (l < BATCH) mask[(size_t)l * N_EXPERTS + e] = on ? 1 : 0;
                if (on) {
                    int *list = l < BATCH ? ids + (size_t)l * N_EXPERTS : union_ids;
                    list[start[l][warp] + __popc(b & below)] = e;
                }
            }
        }
        __syncthreads();  // the next chunk rewrites bits and start
    }

    for (int t = tid; t < BATCH; t += COMPACT_THREADS) counts[t] = count[t];
    if (tid == 0) *union_count = count[BATCH];
}
