-- Dense GEMV / skinny GEMM: y[b] = W x[b] for every token b, W row-major.
--   op=up:   W is [f][d] (gate or up projection),  y is [B][f]
--   op=down: W is [d][f] (down projection),        y is [B][d]
--   accumulate=1: y[b] = T(W x[b] + y[b]), y read before it is written (a
--                 problem parameter: SliceGPT adds the MLP shortcut x @ Q onto
--                 down_proj's output this way; written inline on existing template
--                 lines, so accumulate=0 renders byte for byte as before it existed)
--   bias=1:       y[b] = T(W x[b] + bias) with bias [N] of T (a problem parameter:
--                 Qwen2's q/k/v projections); rendered only where asked, so bias=0
--                 renders byte for byte as before it existed
--   norm=add:     then, in the CTA that finishes last, the rmsnorm family's
--                 mode=add folded in: res[b] += y[b] (fp32 residual, [B][N]),
--                 normed[b] = T(rmsnorm(res[b]) * norm_w) (a problem parameter:
--                 the runtime folds the norm after o_proj into o_proj this way)
--   norm=set:     the same with res[b] = y[b]; with norm_dim, norm_weightless and
--                 norm_raw (trailing T *raw = T(res)) as the rmsnorm family's
--                 norm_dim, weightless and raw_out: SliceGPT's norms, folded into
--                 its o_proj and MLP-shortcut GEMVs
-- Kernel (see templates/dense_gemv.cu.lua):
--   sprig_dense_gemv(const T *W, const T *x, T *y[, const T *bias])
--   sprig_dense_gemv(const T *W, const T *x, T *y, float *ws, float *res, const T *norm_w, T *normed,
--                    float eps[, T *raw])                                            (norm=add|set)
-- A warp owns rows_per_warp rows and walks K with VEC-wide loads, unrolled;
-- every K that is a multiple of 8 works (the last chunk is guarded).
local A = require("sprig.args")
local S = require("sprig.spec")

local F = {
  name = "dense_gemv",
  order = 1, -- position in the registry (sprig families, tuning keys)
  summary = "dense GEMV/skinny GEMM y = W x (baseline, attention, lm_head, sliced shapes)",
  template = "templates/dense_gemv.cu.lua",
  params = {
    { name = "op", values = { "up", "down" }, default = "up",
      doc = "up: W is [f][d]; down: W is [d][f]" },
    { name = "accumulate", values = { 0, 1 }, default = 0, doc = "1: y = W x + y (y is read first)" },
    { name = "bias", values = { 0, 1 }, default = 0, doc = "1: y = W x + bias, bias a vector of N values of T" },
    S.norm(),
    S.norm_options()[1],
    S.norm_options()[2],
    S.norm_options()[3],
    S.threads(),
    S.rows_per_warp("output rows per warp"),
    S.vec(),
    S.unroll(),
  },
  -- accumulate and norm are part of the problem, not tuning choices (op comes fixed with the request).
  -- MLP keys: the dense baseline's two GEMV shapes, at sparsity 0 only.
  tune = { skip = { "accumulate", "bias", "norm", "norm_dim", "norm_weightless", "norm_raw" },
           mlp = { fixed = function(sparsity) return sparsity == 0 and { "op=up", "op=down" } or {} end } },
}

function F.dims(req, p)
  if p.op == "up" then return req.f, req.d end -- N rows, K columns
  return req.d, req.f
end

function F.check(req, p)
  local N = F.dims(req, p)
  if p.norm_dim ~= 0 and p.norm_dim < N then
    return string.format("norm_dim=%d is smaller than the %d rows it normalises (0 means the rows)", p.norm_dim, N)
  end
  if p.norm == "none" and (p.norm_dim ~= 0 or p.norm_weightless ~= 0 or p.norm_raw ~= 0) then
    return "norm_dim, norm_weightless and norm_raw apply to norm=add or norm=set only"
  end
  if p.rows_per_warp * req.batch > 64 then
    return string.format("rows_per_warp*batch=%d exceeds 64 accumulators per lane; lower rows_per_warp",
      p.rows_per_warp * req.batch)
  end
end

function F.plan(req, p)
  local N, K = F.dims(req, p)
  local rows_per_cta = (p.threads // 32) * p.rows_per_warp
  return {
    kernels = { { name = "sprig_dense_gemv", grid = { (N + rows_per_cta - 1) // rows_per_cta, 1, 1 },
                  block = { p.threads, 1, 1 }, smem = 0 } },
    workspace = p.norm ~= "none" and 16 or 0, -- the arrival counter
    values = { N = N, K = K },
  }
end

-- W [N][K] and x [B][K] are read VEC elements at a time.
function F.args(req, p, v)
  local al = A.vec_align(p.vec)
  local list = {
    A.ptr("W", "T", { v.N, v.K }, { role = "weight", fan_in = v.K, align = al }),
    A.ptr("x", "T", { req.batch, v.K }, { align = al }),
    -- a folded norm reads y in pairs (sp_rmsnorm_row)
    A.ptr("y", "T", { req.batch, v.N }, { dir = p.accumulate == 1 and "inout" or "out",
                                          align = p.norm ~= "none" and 2 * S.norm_pair_align(v.N) or nil }),
  }
  if p.bias == 1 then list[#list + 1] = A.ptr("bias", "T", { v.N }, { role = "bias" }) end
  if p.norm ~= "none" then
    list[#list + 1] = A.ptr("ws", "f32", { 4 }, { dir = "scratch" }) -- the arrival counter
    S.norm_args(list, A, req.batch, v.N, p)
  end
  return list
end

F.verify = "gemv"

-- The traffic and parallelism the static model reads (docs/perf-model.md), per
-- kernel: bytes requested from memory, loads in flight per lane before their
-- first use, CTAs that work, dependent memory round trips. The warps of the
-- last CTA past N read a valid row again (requested, never stored). norm=add:
-- S.norm_perf. prefetch: its first weight lines are asked of L2 before it waits
-- on the kernel before it (programmatic dependent launch, docs/perf-model.md).
function F.perf(req, p, v)
  local rpc = (p.threads // 32) * p.rows_per_warp
  local ctas = (v.N + rpc - 1) // rpc
  local y = req.batch * v.N * 2
  local e = { read = ctas * rpc * v.K * 2 + req.batch * v.K * 2 + (p.accumulate == 1 and y or 0)
                + (p.bias == 1 and v.N * 2 or 0), write = y,
              inflight = p.unroll * p.rows_per_warp, load_bytes = 2 * p.vec, working = ctas, rounds = 1,
              prefetch = true }
  return { p.norm ~= "none" and S.norm_perf(e, req.batch, v.N, p.threads) or e }
end

return F
