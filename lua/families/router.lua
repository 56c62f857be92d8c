-- Router: expert scores, the activation rule, and compaction into id lists.
--   LTE (score=sigmoid):       Wr is the router [E][d]; expert e active for token t
--                              when scores[t][e] > threshold (host passes logit(tau)).
--   training-free (silu_abs):  Wr = W_gate (g = 1); neuron active when
--                              |silu(scores[t][e])| > threshold.
-- Kernels (see templates/router.cu.lua), both with the signature
--   (const T *Wr, const T *x, float *scores, float threshold, int *ids, int *counts,
--    int *union_ids, int *union_count, unsigned char *mask)
--   sprig_router_scores   scores[t][e] = sum_k Wr[e][k] x[t][k] (fp32), a GEMV in which
--                         ksplit warps share rows_per_warp rows, each on a slice of K
--                         (E is small for LTE: 344 rows at g=32, so one warp per row
--                         would leave most of the GPU idle), summed in a fixed order
--   sprig_router_compact  one CTA: per E-chunk, a ballot per (token, warp), a scan of the
--                         per-warp counts, then a scatter; writes ids/counts/mask and the
--                         batch union. No atomics, so the output is deterministic.
local A = require("sprig.args")
local S = require("sprig.spec")

local F = {
  name = "router",
  order = 2, -- position in the registry (sprig families, tuning keys)
  summary = "router scores + threshold + compaction into per-token and union expert ids (LTE, training-free)",
  template = "templates/router.cu.lua",
  params = {
    { name = "score", values = { "sigmoid", "silu_abs" }, default = "sigmoid",
      doc = "activation rule: sigmoid (scores > threshold, threshold = logit(tau)) or silu_abs (|silu(scores)| > threshold)" },
    S.threads(nil, nil, "threads per CTA of the scores kernel"),
    S.rows_per_warp("router rows (experts) per warp"),
    S.vec(),
    S.unroll(),
    { name = "ksplit", values = { 1, 2, 4, 8 }, default = 1,
      doc = "warps sharing a row group, each on a slice of K (more loads in flight when E is small)" },
    S.min_blocks(" of the scores kernel"),
    { name = "compact_threads", values = { 256, 512, 1024 }, default = 1024,
      doc = "threads of the single compaction CTA (experts scanned per step)" },
  },
  -- MLP keys: LTE routers, at sparsity > 0 only.
  tune = { mlp = { fixed = function(sparsity) return sparsity > 0 and { "score=sigmoid" } or {} end } },
}

-- Each lane of the scores kernel keeps rows_per_warp * batch fp32 accumulators.
local MAX_ACC = 64

function F.check(req, p)
  local acc = p.rows_per_warp * req.batch
  if acc > MAX_ACC then
    return string.format("rows_per_warp*batch=%d exceeds %d accumulators per lane; lower rows_per_warp",
      acc, MAX_ACC)
  end
  return S.check_min_blocks(p) or S.check_ksplit(p)
end

function F.plan(req, p)
  local E = req.f // req.g
  local rows_per_cta = (p.threads // 32 // p.ksplit) * p.rows_per_warp
  return {
    kernels = {
      { name = "sprig_router_scores", grid = { (E + rows_per_cta - 1) // rows_per_cta, 1, 1 },
        block = { p.threads, 1, 1 }, smem = 0 },
      { name = "sprig_router_compact", grid = { 1, 1, 1 }, block = { p.compact_threads, 1, 1 }, smem = 0 },
    },
  }
end

-- LTE reads its router [E][d]; training-free mode W_gate itself (g = 1, E = f).
function F.args(req, p)
  local E, B, al = req.f // req.g, req.batch, A.vec_align(p.vec)
  return {
    A.ptr("Wr", "T", { E, req.d }, { role = p.score == "sigmoid" and "w_router" or "w_gate", fan_in = req.d,
                                       align = al }),
    A.ptr("x", "T", { B, req.d }, { role = "x", align = al }),
    A.ptr("scores", "f32", { B, E }, { dir = "out", role = "scores" }),
    A.scalar("threshold", "f32", { role = "threshold" }),
    A.ptr("ids", "i32", { B, E }, { dir = "out", role = "ids" }),
    A.ptr("counts", "i32", { B }, { dir = "out", role = "counts" }),
    A.ptr("union_ids", "i32", { E }, { dir = "out", role = "union_ids" }),
    A.ptr("union_count", "i32", { 1 }, { dir = "out", role = "union_count" }),
    A.ptr("mask", "u8", { B, E }, { dir = "out", role = "mask" }),
  }
end

-- the rule the outputs are checked against
function F.verify(req, p) return "router " .. p.score end

-- The scores kernel streams the router; the compaction is one CTA scanning
-- the scores in steps of compact_threads experts, each step a few dependent
-- shared-memory and global round trips (docs/perf-model.md).
function F.perf(req, p)
  local E, B = req.f // req.g, req.batch
  local rpc = (p.threads // 32 // p.ksplit) * p.rows_per_warp
  local ctas = (E + rpc - 1) // rpc
  local steps = (E + p.compact_threads - 1) // p.compact_threads
  return {
    { read = ctas * rpc * req.d * 2 + B * req.d * 2, write = B * E * 4,
      inflight = p.unroll * p.rows_per_warp, load_bytes = 2 * p.vec, working = ctas, rounds = 1 },
    { read = B * E * 4, write = B * E * 9 + E * 4 + 4 + B * 4, inflight = 1, load_bytes = 4, working = 1,
      rounds = 2 * steps * (B + 1), hot = true },
  }
end

return F
