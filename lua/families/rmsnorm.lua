-- RMSNorm on the fp32 residual stream, with the step that feeds it fused in.
--   mode=add:   x[t] += src[t]          (src T [B][d]: a projection's or the MLP's output)
--   mode=embed: x[t]  = src[row[t]]     (src T [rows][d]: the embedding table; row int [B])
--   mode=none:  x as it is
-- then out[t][i] = T(x[t][i] * rsqrt(mean_i x[t][i]^2 + eps) * w[i]).
-- x is fp32 [B][d] (the residual stream stays fp32 between layers); w, out are T.
-- The request's f is not used (pass f = d, g = 1).
-- Kernel (see templates/rmsnorm.cu.lua):
--   sprig_rmsnorm(float *x, const T *src, const int *row, const T *w, T *out, float eps)
-- One CTA per token: the threads stride the row, a warp + shared-memory reduction
-- gives the sum of squares, a second pass writes out.
local F = {
  name = "rmsnorm",
  summary = "RMSNorm of the fp32 residual stream, fused with the residual add or the embedding lookup",
  template = "templates/rmsnorm.cu.lua",
  params = {
    { name = "mode", values = { "add", "embed", "none" }, default = "add",
      doc = "add: x += src first; embed: x = src[row[t]] (embedding table); none: x as is" },
    { name = "threads", values = { 32, 64, 128, 256, 512, 1024 }, default = 256, doc = "threads per CTA" },
  },
  -- mode is part of the problem, not a tuning choice.
  tune = { skip = { "mode" } },
}

function F.plan(req, p)
  return {
    kernels = { { name = "sprig_rmsnorm", grid = { req.batch, 1, 1 }, block = { p.threads, 1, 1 }, smem = 0 } },
  }
end

return F
