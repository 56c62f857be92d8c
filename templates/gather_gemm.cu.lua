{% include("templates/common.cuh.lua") %}
{#
  gather_gemm: mma.sync.m16n8k16 (row.col, fp32 accumulate) over the union of
  active expert blocks. The weights are the A operand (M = rows, K contiguous
  = row-major A); the activations are B (N = tokens, each token's row
  contiguous in K = the "col" layout B wants).

  Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
  point type"), with grp = lane >> 2 and tig = lane & 3:
    A: a0..a7 in 4 .b32 regs; reg r = {a2r, a2r+1}, low half first.
       row = grp for regs 0, 2; grp + 8 for regs 1, 3.
       k   = 2*tig + {0,1} for regs 0, 1; 2*tig + 8 + {0,1} for regs 2, 3.
    B: b0..b3 in 2 regs: k = 2*tig + {0,1} (reg 0), 2*tig + 8 + {0,1} (reg 1); col = grp.
    C: c0..c3: row = grp (c0, c1), grp + 8 (c2, c3); col = 2*tig + {0,1}.

  The K permutation. The sum over k does not depend on its order, so any
  bijection pi of the 16 k of one MMA may be applied, provided A and B use the
  same one. A lane always holds the logical k {2tig, 2tig+1, 2tig+8, 2tig+9};
  we let them be the physical k 4tig..4tig+3, so one lane's A row (and B
  column) is 4 contiguous elements = 8 bytes. Two MMAs (s = 0, 1) over a
  32-wide chunk then take physical k = 8tig + 4s + {0..3}, i.e. every lane
  loads 8 contiguous elements (16 bytes) per row and per token with one
  vector load, words w0..w3:
      step s: A reg0 = row grp    word 2s,   A reg2 = row grp    word 2s+1,
              A reg1 = row grp+8  word 2s,   A reg3 = row grp+8  word 2s+1,
              B reg0 = token grp  word 2s,   B reg1 = token grp  word 2s+1.
  As a formula, MMA step s maps logical k (0..15) to physical k
      pi_s(k) = 8 * ((k mod 8) / 2) + 4s + 2 * (k / 8) + (k mod 2),
  a function of k alone, so every lane (and A and B) agrees on it; and
  pi_0, pi_1 together cover 0..31 once. tests/test_families_c.c emulates this
  mapping lane by lane against the PTX layouts, and runs the kernels on the
  CPU emulator (tests/emu).

  K tails: the 8 elements of one lane start at a multiple of 8 and K is a
  multiple of 8, so a lane's load is wholly inside K or wholly outside; outside
  loads are replaced by zeros (predicated off), for A and B alike.
  Padding tokens (batch not a multiple of 8) read the last real token and are
  never stored: every output column depends only on its own token.
#}
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "gather_gemm needs sm_80 or newer (mma.sync m16n8k16 with bf16)"
#endif
{% local MT, KU, KW = p.m_tiles, p.k_unroll, p.kwarps %}
#define BATCH {{ B }}
#define G {{ g }}
#define N_EXPERTS {{ E }}
#define D_MODEL {{ d }}
#define F_MLP {{ f }}
#define WARPS {{ p.warps }}
#define KW {{ KW }}          // warps splitting K for the same rows
#define WM {{ WM }}          // row groups per CTA
#define MT {{ MT }}          // 16-row tiles per warp
#define NT {{ NT }}          // 8-token tiles per warp
#define KU {{ KU }}          // 32-wide K chunks per load group
#define MATS {{ MATS }}      // accumulator sets (gate, up) or (down)
#define ROWS_CTA {{ ROWS_CTA }}
#define SPLITS {{ SPLITS }}
#define MIN_CTAS {{ MIN_CTAS }}  // CTAs per SM the registers must allow

// Weights are read once per call: stream them (evict-first), 16 bytes a lane.
__device__ __forceinline__ uint4 gg_ld_weight(const T *p, bool ok) {
    uint4 v;
    v.x = v.y = v.z = v.w = 0u;
    if (ok) v = __ldcs(reinterpret_cast<const uint4 *>(p));
    return v;
}
// Activations are small and read by every warp: keep them in L1/L2.
__device__ __forceinline__ uint4 gg_ld_act(const T *p, bool ok) {
    uint4 v;
    v.x = v.y = v.z = v.w = 0u;
    if (ok) v = __ldg(reinterpret_cast<const uint4 *>(p));
    return v;
}

// The two MMAs of one 32-wide K chunk for every (set, m tile, token tile):
// a[set][mt][0 | 1] = rows grp | grp+8, b[nt] = token grp of tile nt.
__device__ __forceinline__ void gg_chunk(float (*acc)[MT][NT][4], uint4 (*a)[MT][2], const uint4 *b) {
#pragma unroll
    for (int m = 0; m < MATS; ++m)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                // s = 0: words 0 (A reg0 / reg1, B reg0) and 1 (A reg2 / reg3, B reg1)
                const unsigned a0[4] = {a[m][mt][0].x, a[m][mt][1].x, a[m][mt][0].y, a[m][mt][1].y};
                const unsigned b0[2] = {b[nt].x, b[nt].y};
                sp_mma_m16n8k16(acc[m][mt][nt], a0, b0, acc[m][mt][nt]);
                // s = 1: words 2 and 3
                const unsigned a1[4] = {a[m][mt][0].z, a[m][mt][1].z, a[m][mt][0].w, a[m][mt][1].w};
                const unsigned b1[2] = {b[nt].z, b[nt].w};
                sp_mma_m16n8k16(acc[m][mt][nt], a1, b1, acc[m][mt][nt]);
            }
}

// Sums the K slices of the KW warps of a row group in a fixed order (warp
// kw = 0 ends with the total); returns false for the other warps, which are
// then done. Every warp of the CTA must call it (it synchronises the CTA).
// red: the kernel's shared scratch, [KW-1][WM][MATS*MT*NT*4][32] floats. (It
// is declared in the kernel, not here: a static local of an inline function
// would be one symbol shared by every module the CPU emulator loads.)
#define GG_NACC (MATS * MT * NT * 4)
#define GG_RED_FLOATS ((KW - 1) * WM * GG_NACC * 32)
__device__ __forceinline__ bool gg_reduce_kslices(float (*acc)[MT][NT][4], float *red, int wm, int kw, int lane) {
#if KW > 1
    float *flat = &acc[0][0][0][0];
    if (kw > 0) {
        float *mine = red + ((kw - 1) * WM + wm) * GG_NACC * 32 + lane;
#pragma unroll
        for (int i = 0; i < GG_NACC; ++i) mine[i * 32] = flat[i];
    }
    __syncthreads();
    if (kw > 0) return false;
#pragma unroll
    for (int q = 0; q < KW - 1; ++q) {
        const float *theirs = red + (q * WM + wm) * GG_NACC * 32 + lane;
#pragma unroll
        for (int i = 0; i < GG_NACC; ++i) flat[i] += theirs[i * 32];
    }
#endif
    return true;
}

#if KW > 1
#define GG_DECLARE_RED __shared__ float red[GG_RED_FLOATS]
#else
#define GG_DECLARE_RED float *red = 0
#endif

{% if upgate then %}
// ---- stage=upgate: h[t][m] = mask ? silu(x_t . Wg[n]) * (x_t . Wu[n]) : 0 ----
// Rows m index the compact union space (m = j*g + i, neuron n = union_ids[j]*g + i);
// a 16-row tile never crosses an expert block because g % 16 == 0.
#define K_DIM D_MODEL
#define NCHUNK ((K_DIM + 31) / 32)

extern "C" __global__ void __launch_bounds__(WARPS * 32, MIN_CTAS)
sprig_gather_gemm(const T *__restrict__ Wg, const T *__restrict__ Wu, const T *__restrict__ x,
                  const int *__restrict__ union_ids, const int *__restrict__ union_count,
                  const unsigned char *__restrict__ mask, T *__restrict__ h) {
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = lane >> 2, tig = lane & 3;
    const int wm = warp / KW, kw = warp % KW;
    const int rows_used = *union_count * G;
    const int cta_row0 = blockIdx.x * ROWS_CTA;
    if (cta_row0 >= rows_used) return;  // the whole CTA, before any barrier
    const int tile0 = blockIdx.z * NT;

    // A: per (set, m tile, row half) the start of this lane's 8 elements at k = 0.
    const T *pa[MATS][MT][2];
    bool mt_ok[MT];
    int mrow0[MT], mexp[MT];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        const int m0 = cta_row0 + (wm * MT + mt) * 16;
        mt_ok[mt] = m0 < rows_used;  // warp-uniform
        mrow0[mt] = m0;
        mexp[mt] = mt_ok[mt] ? union_ids[m0 / G] : 0;
        const size_t n0 = (size_t)mexp[mt] * G + (m0 % G) + grp;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            pa[0][mt][r] = Wg + (n0 + 8 * r) * K_DIM + 8 * tig;
            pa[1][mt][r] = Wu + (n0 + 8 * r) * K_DIM + 8 * tig;
        }
    }
    // B: token grp of each token tile (padding tokens read the last real one).
    const T *pb[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        const int tok = min((tile0 + nt) * 8 + grp, BATCH - 1);
        pb[nt] = x + (size_t)tok * K_DIM + 8 * tig;
    }

    float acc[MATS][MT][NT][4];
#pragma unroll
    for (int m = 0; m < MATS; ++m)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) acc[m][mt][nt][i] = 0.0f;

    // This warp's K slice, in 32-wide chunks.
    const int c_begin = (kw * NCHUNK) / KW, c_end = ((kw + 1) * NCHUNK) / KW;
    int c = c_begin;
// KU is the unrolling: more would only hoist loads into spills. (Written as
// c < c_end - (KU - 1): NVRTC fully unrolled the `c + KU <= c_end` form of a
// constant-trip loop despite the pragma, to 255 registers.)
#pragma unroll 1
    for (; c < c_end - (KU - 1); c += KU) {
        uint4 a[KU][MATS][MT][2], b[KU][NT];
#pragma unroll
        for (int u = 0; u < KU; ++u) {
            const int k = (c + u) * 32;
            const bool ok = k + 8 * tig < K_DIM;
#pragma unroll
            for (int m = 0; m < MATS; ++m)
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int r = 0; r < 2; ++r) a[u][m][mt][r] = gg_ld_weight(pa[m][mt][r] + k, ok && mt_ok[mt]);
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) b[u][nt] = gg_ld_act(pb[nt] + k, ok);
        }
#pragma unroll
        for (int u = 0; u < KU; ++u) gg_chunk(acc, a[u], b[u]);
    }
#pragma unroll 1
    for (; c < c_end; ++c) {  // the slice's last chunks, fewer than KU
        uint4 a[MATS][MT][2], b[NT];
        const int k = c * 32;
        const bool ok = k + 8 * tig < K_DIM;
#pragma unroll
        for (int m = 0; m < MATS; ++m)
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) a[m][mt][r] = gg_ld_weight(pa[m][mt][r] + k, ok && mt_ok[mt]);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) b[nt] = gg_ld_act(pb[nt] + k, ok);
        gg_chunk(acc, a, b);
    }

    GG_DECLARE_RED;
    if (!gg_reduce_kslices(acc, red, wm, kw, lane)) return;

    // C: acc[.][mt][nt][i] is row grp + 8*(i >> 1), token 2*tig + (i & 1) of the tile.
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        if (!mt_ok[mt]) continue;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int tok = (tile0 + nt) * 8 + 2 * tig + (i & 1);
                const int row = mrow0[mt] + grp + 8 * (i >> 1);
                if (tok < BATCH) {
                    const bool on = mask[(size_t)tok * N_EXPERTS + mexp[mt]] != 0;
                    const float v = on ? sp_silu(acc[0][mt][nt][i]) * acc[1][mt][nt][i] : 0.0f;
                    h[(size_t)tok * F_MLP + row] = SP_FROM_F(v);
                }
            }
    }
}
{% else %}
// ---- stage=down: y[t][c] = sum_{j < U, i < g} h[t][j*g+i] * W_down[c][union_ids[j]*g+i] ----
// Rows are output channels c (< d, never stored beyond); K is the compact
// union index k = j*g + i, K = U*g. A 32-chunk's lane reads 8 neurons that lie
// in one expert block (8 | g), so it looks up its own union_ids entry.
#define K_ROW F_MLP  // row stride of W_down and of h

// The W_down column (neuron) of compact index k: union slot k / g, offset k % g.
// The slot is clamped into union_ids[E], so the lookup may run past the union
// (its value is then never used) without a branch around the load.
__device__ __forceinline__ int gg_neuron(const int *__restrict__ union_ids, int k) {
    const unsigned j = min((unsigned)k / G, (unsigned)(N_EXPERTS - 1));
    return (int)((unsigned)union_ids[j] * G + (unsigned)k % G);  // unsigned: no overflow UB on junk slots
}

extern "C" __global__ void __launch_bounds__(WARPS * 32, MIN_CTAS)
sprig_gather_gemm(const T *__restrict__ Wd, const T *__restrict__ h, const int *__restrict__ union_ids,
                  const int *__restrict__ union_count, float *__restrict__ ws, T *__restrict__ y) {
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = lane >> 2, tig = lane & 3;
    const int wm = warp / KW, kw = warp % KW;
    const int k_used = *union_count * G;
    const int n_chunks = (k_used + 31) / 32;
    // This CTA's split of the chunks, then this warp's slice of it.
    const int s_begin = (int)(((long long)blockIdx.y * n_chunks) / SPLITS);
    const int s_end = (int)(((long long)(blockIdx.y + 1) * n_chunks) / SPLITS);
{% if not DIRECT and p.reduce == "atomic" then %}
    if (s_begin == s_end) return;  // nothing to add (uniform over the CTA)
{% end %}
    const int c_begin = s_begin + (kw * (s_end - s_begin)) / KW;
    const int c_end = s_begin + ((kw + 1) * (s_end - s_begin)) / KW;
    const int cta_row0 = blockIdx.x * ROWS_CTA;
    const int tile0 = blockIdx.z * NT;

    // A: per (m tile, row half) this lane's row of W_down (rows >= d load zeros).
    const T *pa[MT][2];
    bool row_ok[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = cta_row0 + (wm * MT + mt) * 16 + grp + 8 * r;
            row_ok[mt][r] = row < D_MODEL;
            pa[mt][r] = Wd + (size_t)min(row, D_MODEL - 1) * K_ROW;
        }
    const T *pb[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        const int tok = min((tile0 + nt) * 8 + grp, BATCH - 1);
        pb[nt] = h + (size_t)tok * K_ROW;
    }

    float acc[MATS][MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[0][mt][nt][i] = 0.0f;

    // Per chunk, a lane's compact index is k = 32 c + 8 tig (8 | k) and its
    // W_down column gg_neuron(k); the index is looked up one load group ahead
    // so the union_ids load is off the weight load's critical path.
    int nxt[KU];
#pragma unroll
    for (int u = 0; u < KU; ++u) nxt[u] = gg_neuron(union_ids, (c_begin + u) * 32 + 8 * tig);
    int c = c_begin;
#pragma unroll 1
    for (; c < c_end - (KU - 1); c += KU) {
        uint4 a[KU][MATS][MT][2], b[KU][NT];
#pragma unroll
        for (int u = 0; u < KU; ++u) {
            const int k = (c + u) * 32 + 8 * tig;
            const bool ok = k < k_used;  // 8 | k_used: all 8 elements in, or none
            const int n = ok ? nxt[u] : 0;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) a[u][0][mt][r] = gg_ld_weight(pa[mt][r] + n, ok && row_ok[mt][r]);
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) b[u][nt] = gg_ld_act(pb[nt] + k, ok);
        }
#pragma unroll
        for (int u = 0; u < KU; ++u) nxt[u] = gg_neuron(union_ids, (c + KU + u) * 32 + 8 * tig);
#pragma unroll
        for (int u = 0; u < KU; ++u) gg_chunk(acc, a[u], b[u]);
    }
#pragma unroll 1
    for (; c < c_end; ++c) {  // the slice's last chunks, fewer than KU
        uint4 a[MATS][MT][2], b[NT];
        const int k = c * 32 + 8 * tig;
        const bool ok = k < k_used;
        const int n = ok ? gg_neuron(union_ids, k) : 0;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int r = 0; r < 2; ++r) a[0][mt][r] = gg_ld_weight(pa[mt][r] + n, ok && row_ok[mt][r]);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) b[nt] = gg_ld_act(pb[nt] + k, ok);
        gg_chunk(acc, a, b);
    }

    GG_DECLARE_RED;
    if (!gg_reduce_kslices(acc, red, wm, kw, lane)) return;

#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int tok = (tile0 + nt) * 8 + 2 * tig + (i & 1);
                const int row = cta_row0 + (wm * MT + mt) * 16 + grp + 8 * (i >> 1);
                if (tok < BATCH && row < D_MODEL) {
{% if DIRECT then %}
                    y[(size_t)tok * D_MODEL + row] = SP_FROM_F(acc[0][mt][nt][i]);
{% elseif p.reduce == "atomic" then %}
                    atomicAdd(&ws[(size_t)tok * D_MODEL + row], acc[0][mt][nt][i]);
{% else %}
                    ws[((size_t)blockIdx.y * BATCH + tok) * D_MODEL + row] = acc[0][mt][nt][i];
{% end %}
                }
            }
}
{% if not DIRECT then %}

// y = the fp32 partials in ws, 4 values per thread.
{% if p.reduce == "atomic" then %}
// ws[B][d] holds the sum; it is set back to zero for the next call.
{% else %}
// ws[SPLITS][B][d] holds one partial per split, summed in split order.
{% end %}
extern "C" __global__ void __launch_bounds__(256)
sprig_gather_gemm_finalize(const T *__restrict__ Wd, const T *__restrict__ h,
                           const int *__restrict__ union_ids, const int *__restrict__ union_count,
                           float *__restrict__ ws, T *__restrict__ y) {
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
    const int i = (blockIdx.x * 256 + threadIdx.x) * 4;
    if (i >= BATCH * D_MODEL) return;
    float4 *p = reinterpret_cast<float4 *>(ws + i);
    float4 v = *p;
{% if p.reduce == "atomic" then %}
    float4 zero;
    zero.x = zero.y = zero.z = zero.w = 0.0f;
    *p = zero;
{% else %}
#pragma unroll
    for (int s = 1; s < SPLITS; ++s) {
        const float4 w = *reinterpret_cast<const float4 *>(ws + (size_t)s * BATCH * D_MODEL + i);
        v.x += w.x; v.y += w.y; v.z += w.z; v.w += w.w;
    }
{% end %}
    uint2 out;
    out.x = (unsigned)SP_FROM_F(v.x) | ((unsigned)SP_FROM_F(v.y) << 16);
    out.y = (unsigned)SP_FROM_F(v.z) | ((unsigned)SP_FROM_F(v.w) << 16);
    *reinterpret_cast<uint2 *>(y + i) = out;
}
{% end %}
{% end %}
