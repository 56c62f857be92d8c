{% include("templates/common.cuh.lua") %}
{% local R, V, U = p.rows_per_warp, p.vec, p.unroll %}
// y[b][n] = {% if p.accumulate == 1 then %}y[b][n] + {% end %}sum_k W[n][k] * x[b][k];  W: [{{ N }}][{{ K }}], x: [{{ B }}][{{ K }}], y: [{{ B }}][{{ N }}]
#define N_ROWS {{ N }}
#define K_COLS {{ K }}
#define BATCH {{ B }}
#define ROWS {{ R }}
#define VEC {{ V }}
#define UNROLL {{ U }}
#define CHUNK (32 * VEC)

extern "C" __global__ void __launch_bounds__({{ p.threads }})
sprig_dense_gemv(const T *__restrict__ W, const T *__restrict__ x, T *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int warp = blockIdx.x * ({{ p.threads }} / 32) + (threadIdx.x >> 5);
    const int row0 = warp * ROWS;
    if (row0 >= N_ROWS) return;

    float acc[ROWS][BATCH];
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) acc[r][b] = 0.0f;

    // Full chunks: every lane's VEC elements are in range.
    const int full = K_COLS / CHUNK;
    int c = 0;
    for (; c + UNROLL <= full; c += UNROLL) {
        float w[UNROLL][ROWS][VEC];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u)
#pragma unroll
            for (int r = 0; r < ROWS; ++r) {
                const int row = min(row0 + r, N_ROWS - 1);  // spare rows read a valid row, never stored
                sp_load_vec_stream<VEC>(W + (size_t)row * K_COLS + (c + u) * CHUNK + lane * VEC, w[u][r]);
            }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u)
#pragma unroll
            for (int b = 0; b < BATCH; ++b) {
                float xv[VEC];
                sp_load_vec<VEC>(x + (size_t)b * K_COLS + (c + u) * CHUNK + lane * VEC, xv);
#pragma unroll
                for (int r = 0; r < ROWS; ++r)
#pragma unroll
                    for (int v = 0; v < VEC; ++v) acc[r][b] = fmaf(w[u][r][v], xv[v], acc[r][b]);
            }
    }
    // Remaining chunks, the last possibly partial (K is a multiple of 8, so of VEC).
    for (int k = c * CHUNK + lane * VEC; k < K_COLS; k += CHUNK) {
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            const int row = min(row0 + r, N_ROWS - 1);
            float w[VEC];
            sp_load_vec_stream<VEC>(W + (size_t)row * K_COLS + k, w);
#pragma unroll
            for (int b = 0; b < BATCH; ++b) {
                float xv[VEC];
                sp_load_vec<VEC>(x + (size_t)b * K_COLS + k, xv);
#pragma unroll
                for (int v = 0; v < VEC; ++v) acc[r][b] = fmaf(w[v], xv[v], acc[r][b]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int b = 0; b < BATCH; ++b) {
            const float s = sp_warp_sum(acc[r][b]);
            // Spread the stores over lanes rather than funnel them through lane 0.
            if (lane == ((r * BATCH + b) & 31) && row0 + r < N_ROWS)
                y[(size_t)b * N_ROWS + row0 + r] = SP_FROM_F(s{% if p.accumulate == 1 then %} + SP_TO_F(y[(size_t)b * N_ROWS + row0 + r]){% end %});
        }
}
