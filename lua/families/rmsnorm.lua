-- RMSNorm on the fp32 residual stream, with the step that feeds it fused in.
--   mode=add:   x[t] += src[t]          (src T [B][d]: a projection's or the MLP's output)
--   mode=set:   x[t]  = src[t]          (src T [B][d]: a projection's output replaces x)
--   mode=embed: x[t]  = src[row[t]]     (src T [rows][d]: the embedding table; row int [B])
--   mode=none:  x as it is
-- then out[t][i] = T(x[t][i] * rsqrt(sum_i x[t][i]^2 / n + eps) * w[i]),
-- n = norm_dim (0: d). x is fp32 [B][d] (the residual stream stays fp32 between
-- layers); w, out are T. The request's f is not used (pass f = d, g = 1).
-- SliceGPT (runtime/sp_slicegpt.h) needs the problem parameters norm_dim,
-- weightless and raw_out: its norms are weightless and divide by the ORIGINAL
-- hidden size D over a sliced width d <= D, and its shortcut GEMV reads the
-- new residual in T:
--   norm_dim=n   divisor of the sum of squares (0 means d; otherwise n >= d)
--   weightless=1 no multiplication by w (w is not read and may be NULL)
--   raw_out=1    one extra trailing argument T *raw [B][d]: raw[t][i] = T(x[t][i]),
--                the new residual before the norm
-- The row itself is sp_rmsnorm_row (templates/common.cuh.lua), which
-- dense_gemv's norm=add epilogue shares.
-- Kernel (see templates/rmsnorm.cu.lua):
--   sprig_rmsnorm(float *x, const T *src, const int *row, const T *w, T *out, float eps)
--   sprig_rmsnorm(float *x, const T *src, const int *row, const T *w, T *out, float eps, T *raw)  (raw_out=1)
-- One CTA per token: the threads stride the row, a warp + shared-memory reduction
-- gives the sum of squares, a second pass writes out.
local A = require("sprig.args")
local S = require("sprig.spec")

local F = {
  name = "rmsnorm",
  order = 7, -- position in the registry (sprig families, tuning keys)
  summary = "RMSNorm of the fp32 residual stream, fused with the residual add, set or the embedding lookup",
  template = "templates/rmsnorm.cu.lua",
  params = {
    { name = "mode", values = { "add", "embed", "none", "set" }, default = "add",
      doc = "add: x += src first; set: x = src; embed: x = src[row[t]] (embedding table); none: x as is" },
    { name = "norm_dim", range = { 0, 1048576 }, default = 0,
      doc = "divisor of the sum of squares: 0 = d, else the original hidden size (>= d) of a sliced model" },
    { name = "weightless", values = { 0, 1 }, default = 0, doc = "1: no multiplication by w (w may be NULL)" },
    { name = "raw_out", values = { 0, 1 }, default = 0,
      doc = "1: extra trailing argument T *raw, written with the new residual x in T" },
    { name = "threads", values = { 32, 64, 128, 256, 512, 1024 }, default = 256, doc = "threads per CTA" },
  },
  -- The mode and the SliceGPT options are part of the problem, not tuning choices.
  tune = { skip = { "mode", "norm_dim", "weightless", "raw_out" } },
}

function F.check(req, p)
  if p.norm_dim ~= 0 and p.norm_dim < req.d then
    return string.format("norm_dim=%d is smaller than d=%d: it is the original hidden size of a sliced model, "
      .. "never below the sliced width (0 means d)", p.norm_dim, req.d)
  end
end

function F.plan(req, p)
  return {
    kernels = { { name = "sprig_rmsnorm", grid = { req.batch, 1, 1 }, block = { p.threads, 1, 1 }, smem = 0 } },
  }
end

-- src is the embedding table with mode=embed, whose row count the request does
-- not carry (0: not known here); raw exists only with raw_out=1.
function F.args(req, p)
  local B, pair = req.batch, S.norm_pair_align(req.d)  -- columns in pairs (sp_rmsnorm_row)
  local list = {
    A.ptr("x", "f32", { B, req.d }, { dir = "inout", role = "residual", align = 4 * pair }),
    A.ptr("src", "T", p.mode == "embed" and { 0, req.d } or { B, req.d },
          { role = "src", optional = p.mode == "none", align = 2 * pair }),
    A.ptr("row", "i32", { B }, { role = "row", optional = p.mode ~= "embed" }),
    A.ptr("w", "T", { req.d }, { role = "norm_weight", optional = p.weightless == 1, align = 2 * pair }),
    A.ptr("out", "T", { B, req.d }, { dir = "out", role = "normed", align = 2 * pair }),
    A.scalar("eps", "f32", { role = "eps" }),
  }
  if p.raw_out == 1 then
    list[#list + 1] = A.ptr("raw", "T", { B, req.d }, { dir = "out", role = "raw", align = 2 * pair })
  end
  return list
end

-- One CTA per token, its row's loads (the fp32 residual, the T input, the
-- weight) issued before the first use (S.norm_rounds); the row was written by
-- the kernel before (hot).
function F.perf(req, p)
  local n = req.batch * req.d
  return { { read = n * (4 + 2 + (p.weightless == 1 and 0 or 2)), write = n * (4 + 2 + (p.raw_out == 1 and 2 or 0)),
             inflight = S.norm_inflight(req.d, p.threads), load_bytes = 6,
             working = req.batch,
             -- the row (embed: after its index), then the norm's own
             rounds = 1 + S.norm_rounds(req.d, p.threads), hot = true } }
end

return F
