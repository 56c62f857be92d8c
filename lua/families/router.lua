-- Router: expert scores, the activation rule, and compaction into id lists.
--   LTE (score=sigmoid):       Wr is the router [E][d]; expert e active for token t
--                              when scores[t][e] > threshold (host passes logit(tau)).
--   training-free (silu_abs):  Wr = W_gate (g = 1); neuron active when
--                              |silu(scores[t][e])| > threshold.
-- One kernel (templates/router.cu.lua):
--   sprig_router(const T *Wr, const T *x, float *scores, float threshold, int *ids, int *counts,
--                int *union_ids, int *union_count, unsigned char *mask, int *ws)
--   scores[t][e] = sum_k Wr[e][k] x[t][k] (fp32), a GEMV in which ksplit warps share
--   rows_per_warp rows, each on a slice of K (E is small for LTE: 344 rows at g=32; at
--   the default ksplit=8 one 256-thread CTA per expert puts 344 CTAs, 2.6 per SM of an
--   H100, on the GPU), summed in a fixed order. Each score's lane writes its mask byte
--   and sets the expert's bit in the token's and the union's bitmap in ws; the last CTA
--   to finish (an arrival counter in ws) turns the bitmaps into ascending id lists with
--   one scan per list and zeroes them again. Bit order, not arrival order, decides the
--   lists: the output is deterministic.
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
    { name = "ksplit", values = { 1, 2, 4, 8 }, default = 8,
      doc = "warps sharing a row group, each on a slice of K (more CTAs and loads in flight when E is small)" },
    S.min_blocks(),
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
  local words = (E + 31) // 32
  return {
    kernels = {
      { name = "sprig_router", grid = { (E + rows_per_cta - 1) // rows_per_cta, 1, 1 },
        block = { p.threads, 1, 1 }, smem = 0 },
    },
    -- the arrival counter, then (batch + 1) bitmaps of `words` words, in 16 bytes
    workspace = (1 + (req.batch + 1) * words + 3) // 4 * 16,
    values = { WORDS = words },
  }
end

-- LTE reads its router [E][d]; training-free mode W_gate itself (g = 1, E = f).
function F.args(req, p, v)
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
    A.ptr("ws", "i32", { (v.workspace_bytes or 0) // 4 }, { dir = "scratch" }),
  }
end

-- the rule the outputs are checked against
function F.verify(req, p) return "router " .. p.score end

-- The kernel streams the router (each lane's loads of a step in flight
-- together); then the grid-wide dependency: each CTA's bitmap atomics drain
-- (the fence) before its arrival ticket, and the last CTA reads the bitmaps
-- (hot in L2), up to 16 words a thread at once, and writes the lists: three L2
-- round trips at batch 1 (docs/perf-model.md).
function F.perf(req, p, v)
  local E, B = req.f // req.g, req.batch
  local rpc = (p.threads // 32 // p.ksplit) * p.rows_per_warp
  local ctas = (E + rpc - 1) // rpc
  local lists = B + 1
  local chunks_per_warp = math.ceil(req.d / (32 * p.vec) / p.ksplit)
  return {
    { read = ctas * rpc * req.d * 2 + B * req.d * 2 + lists * v.WORDS * 4,
      write = B * E * 9 + E * 4 + B * 4 + 4 + lists * v.WORDS * 4,
      inflight = math.min(p.unroll, chunks_per_warp) * p.rows_per_warp, load_bytes = 2 * p.vec, working = ctas,
      grid_syncs = 1, rounds = 1, prefetch = true, l2_rounds = 2 + S.compaction_rounds(lists, v.WORDS, p.threads),
      tail = S.compaction_rounds(lists, v.WORDS, p.threads) },
  }
end

return F
