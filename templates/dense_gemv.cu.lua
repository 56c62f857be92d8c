{% include("templates/common.cuh.lua") %}
{% local R, V, U = p.rows_per_warp, p.vec, p.unroll %}
// y[b][n] = {% if p.accumulate == 1 then %}y[b][n] + {% end %}sum_k W[n][k] * x[b][k];  W: [{{ N }}][{{ K }}], x: [{{ B }}][{{ K }}], y: [{{ B }}][{{ N }}]
#define N_ROWS {{ N }}
#define K_COLS {{ K }}
#define BATCH {{ B }}
#define ROWS {{ R }}
#define VEC {{ V }}
#define UNROLL {{ U }}
#define THREADS {{ p.threads }}

// The weight rows of a warp's output rows row0..row0+ROWS-1.
__device__ __forceinline__ void sp_gemv_row_ptrs(const T *__restrict__ W, int row0, const T *(&w)[1][ROWS]) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
        w[0][r] = W + (size_t)min(row0 + r, N_ROWS - 1) * K_COLS;  // spare rows read a valid row, never stored
}

// The rows row0..row0+ROWS-1 of y, by one warp.
__device__ __forceinline__ void sp_gemv_rows(const T *__restrict__ W, const T *__restrict__ x, T *__restrict__ y,
                                             {% if p.bias == 1 then %}const T *__restrict__ bias, {% end %}int lane, int row0) {
    float acc[ROWS][BATCH][1];
    const T *w[1][ROWS];
    sp_gemv_row_ptrs(W, row0, w);
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) acc[r][b][0] = 0.0f;
    // The shared K-walk (templates/common.cuh.lua): UNROLL chunks of loads in flight per step.
    sp_kwalk<1, ROWS, BATCH, VEC, UNROLL, 1, K_COLS>(
        w, 0, lane, [&](int b, int k, float *xv) { sp_load_vec<VEC>(x + (size_t)b * K_COLS + k, xv); }, acc);

#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            const float s = sp_warp_sum(acc[r][b][0]);
            // Spread the stores over lanes rather than funnel them through lane 0.
            if (lane == ((r * BATCH + b) & 31) && row0 + r < N_ROWS)
                y[(size_t)b * N_ROWS + row0 + r] = SP_FROM_F(s{% if p.bias == 1 then %} + SP_TO_F(bias[row0 + r]){% end %}{% if p.accumulate == 1 then %} + SP_TO_F(y[(size_t)b * N_ROWS + row0 + r]){% end %});
        }
}

{% if p.norm ~= "none" then %}
// norm={{ p.norm }} (sp_norm_epilogue): once y is complete, the CTA that arrives last {% if p.norm == "set" then %}sets the
// fp32 residual res to it{% else %}adds it into the fp32 residual res{% end %} and writes normed = T(rmsnorm(res){% if p.norm_weightless == 0 then %} * norm_w{% end %}): the
// rmsnorm family's mode={{ p.norm }} without a launch of its own. ws[0] counts the arrivals.
{% end %}
extern "C" __global__ void __launch_bounds__(THREADS)
sprig_dense_gemv(const T *__restrict__ W, const T *__restrict__ x, T *__restrict__ y{% if p.bias == 1 then %}, const T *__restrict__ bias{% end %}{% if p.norm ~= "none" then %},
                 float *__restrict__ ws, float *__restrict__ res, const T *__restrict__ norm_w,
                 T *__restrict__ normed, float eps{% if p.norm_raw == 1 then %}, T *__restrict__ raw{% end %}{% end %}) {
    const int lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * (THREADS / 32) + (threadIdx.x >> 5)) * ROWS;
    if (row0 < N_ROWS) {  // W is no kernel's output: its first lines are asked for before the wait
        const T *w[1][ROWS];
        sp_gemv_row_ptrs(W, row0, w);
        sp_kwalk_prefetch<1, ROWS, VEC, UNROLL, 1, K_COLS>(w, 0, lane);
    }
{% if p.norm ~= "none" then %}
    sp_norm_prefetch<N_ROWS, {{ p.norm_weightless == 1 and "false" or "true" }}>(norm_w);
{% end %}
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
    if (row0 < N_ROWS) sp_gemv_rows(W, x, y, {% if p.bias == 1 then %}bias, {% end %}lane, row0);
{% if p.norm ~= "none" then %}
    sp_norm_epilogue<THREADS, N_ROWS, BATCH, {{ p.norm == "set" and "true" or "false" }}, {{ p.norm_weightless == 1 and "false" or "true" }}>(
        reinterpret_cast<unsigned *>(ws), gridDim.x, y, nullptr, res, norm_w, normed, {% if p.norm_raw == 1 then %}raw{% else %}nullptr{% end %},
        (float){{ p.norm_dim ~= 0 and p.norm_dim or N }}, eps);
{% end %}
}
