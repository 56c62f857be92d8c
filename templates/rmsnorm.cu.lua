{% include("templates/common.cuh.lua") %}
// RMSNorm, mode={{ p.mode }}: x fp32 [{{ B }}][{{ d }}] (updated in place), out T [{{ B }}][{{ d }}]{% if p.raw_out == 1 then %}, raw T [{{ B }}][{{ d }}] (x in T){% end %}{% if p.norm_dim ~= 0 then %}, mean over norm_dim={{ p.norm_dim }}{% end %}{% if p.weightless == 1 then %}, no weight{% end %}.
#define D_COLS {{ d }}
#define THREADS {{ p.threads }}

extern "C" __global__ void __launch_bounds__(THREADS)
sprig_rmsnorm(float *__restrict__ x, const T *__restrict__ src, const int *__restrict__ row,
              const T *__restrict__ w, T *__restrict__ out, float eps{% if p.raw_out == 1 then %}, T *__restrict__ raw{% end %}) {
    SP_GRID_DEP_WAIT();  // programmatic dependent launch: see common.cuh.lua
    const int t = blockIdx.x;
    float *__restrict__ xt = x + (size_t)t * D_COLS;
{% if p.mode == "embed" then %}
    const T *__restrict__ st = src + (size_t)__ldg(row + t) * D_COLS;  // one row of the table
{% elseif p.mode == "add" or p.mode == "set" then %}
    const T *__restrict__ st = src + (size_t)t * D_COLS;
{% end %}
    sp_rmsnorm_row<THREADS, D_COLS, {% if p.weightless == 1 then %}false{% else %}true{% end %}, {% if p.mode == "embed" or p.mode == "set" then %}SP_ROW_SET{% elseif p.mode == "add" then %}SP_ROW_ADD{% else %}SP_ROW_X{% end %}>(
        xt, {% if p.mode == "embed" or p.mode == "set" or p.mode == "add" then %}st{% else %}static_cast<const T *>(nullptr){% end %}, w, out + (size_t)t * D_COLS, {% if p.raw_out == 1 then %}raw + (size_t)t * D_COLS{% else %}nullptr{% end %},
        nullptr, (float){% if p.norm_dim == 0 then %}D_COLS{% else %}{{ p.norm_dim }}{% end %}, eps);
}
