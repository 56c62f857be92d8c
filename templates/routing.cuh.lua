{# Routing shared by the router and gather_upgate route=sigmoid (the router folded
   into the up/gate kernel): the activation rule, each expert's outputs (score,
   mask byte, bits in the token's and the union's bitmaps), and the compaction
   of the bitmaps into ascending id lists by the CTA that arrives last.
   The including template defines N_EXPERTS, BATCH, WORDS (32-expert words of one
   list), ROUTE_THREADS (threads of the compacting CTA) and SP_ROUTE_SIGMOID
   (1: sigmoid rule, scores > threshold = logit(tau); 0: |silu(score)| > threshold). #}
#define LISTS (BATCH + 1)  // one id list per token, then the batch union
#define ROUTE_WARPS (ROUTE_THREADS / 32)
// ws (32-bit words, zero at allocation and left zero by every call): [0] the
// CTAs' arrival counter, then LISTS bitmaps of WORDS words (bit e: expert e active).
#define WS_BITS 1

// The activation rule. silu_abs uses expf, not __expf: the comparison sits right at
// the calibrated threshold, where __expf's error could flip a neuron.
__device__ __forceinline__ bool sp_router_active(float s, float threshold) {
#if SP_ROUTE_SIGMOID
    return s > threshold;  // sigmoid(s) > tau  <=>  s > logit(tau), no exp needed
#else
    return fabsf(s / (1.0f + expf(-s))) > threshold;
#endif
}

// One expert's score for one token: stored, its mask byte written, and its bit
// set in the token's bitmap (token_bits, [BATCH][WORDS]; NULL: none kept) and
// the union's (atomicOr: CTAs share words).
__device__ __forceinline__ void sp_router_emit(float s, int e, int b, float threshold, float *scores,
                                               unsigned char *mask, unsigned *token_bits, unsigned *union_bits) {
    scores[(size_t)b * N_EXPERTS + e] = s;
    const bool on = sp_router_active(s, threshold);
    mask[(size_t)b * N_EXPERTS + e] = on ? 1 : 0;
    if (on) {
        const unsigned bit = 1u << (e & 31);
        if (token_bits) atomicOr(token_bits + (size_t)b * WORDS + (e >> 5), bit);
        atomicOr(union_bits + (e >> 5), bit);
    }
}

// Exclusive prefix sum of v over the CTA's threads (in thread order); *total
// gets the sum. Every thread must call it (it synchronises twice).
__device__ __forceinline__ int sp_router_block_scan(int v, int *total) {
    __shared__ int warp_sums[ROUTE_WARPS];
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
    for (int w = 0; w < ROUTE_WARPS; ++w) {
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
#define WPT ((WORDS + ROUTE_THREADS - 1) / ROUTE_THREADS)  // words per thread
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

