{% include("templates/common.cuh.lua") %}
// RMSNorm, mode={{ p.mode }}: x fp32 [{{ B }}][{{ d }}] (updated in place), out T [{{ B }}][{{ d }}]{% if p.raw_out == 1 then %}, raw T [{{ B }}][{{ d }}] (x in T){% end %}{% if p.norm_dim ~= 0 then %}, mean over norm_dim={{ p.norm_dim }}{% end %}{% if p.weightless == 1 then %}, no weight{% end %}.
#define D_COLS {{ d }}
#define THREADS {{ p.threads }}
#define WARPS (THREADS / 32)

extern "C" __global__ void __launch_bounds__(THREADS)
sprig_rmsnorm(float *__restrict__ x, const T *__restrict__ src, const int *__restrict__ row,
              const T *__restrict__ w, T *__restrict__ out, float eps{% if p.raw_out == 1 then %}, T *__restrict__ raw{% end %}) {
    const int t = blockIdx.x;
    float *__restrict__ xt = x + (size_t)t * D_COLS;
{% if p.mode == "embed" then %}
    const T *__restrict__ st = src + (size_t)__ldg(row + t) * D_COLS;  // one row of the table
{% elseif p.mode == "add" or p.mode == "set" then %}
    const T *__restrict__ st = src + (size_t)t * D_COLS;
{% end %}
    // Pass 1: the new residual (each thread keeps the columns it owns) and its sum of squares.
    float ss = 0.0f;
    for (int i = threadIdx.x; i < D_COLS; i += THREADS) {
{% if p.mode == "embed" or p.mode == "set" then %}
        const float v = SP_TO_F(st[i]);
        xt[i] = v;
{% elseif p.mode == "add" then %}
        const float v = xt[i] + SP_TO_F(st[i]);
        xt[i] = v;
{% else %}
        const float v = xt[i];
{% end %}
        ss = fmaf(v, v, ss);{% if p.raw_out == 1 then %}  raw[(size_t)t * D_COLS + i] = SP_FROM_F(v);  // the new residual in T{% end %}
    }
    ss = sp_warp_sum(ss);
    __shared__ float warp_ss[WARPS];
    if ((threadIdx.x & 31) == 0) warp_ss[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < WARPS; ++i) total += warp_ss[i];  // same order in every thread
    const float scale = rsqrtf(total / (float){% if p.norm_dim == 0 then %}D_COLS{% else %}{{ p.norm_dim }}{% end %} + eps);
    // Pass 2: every thread reads back only the columns it wrote itself.
    for (int i = threadIdx.x; i < D_COLS; i += THREADS)
        out[(size_t)t * D_COLS + i] = SP_FROM_F((xt[i] * scale){% if p.weightless == 0 then %} * SP_TO_F(w[i]){% end %});
}
