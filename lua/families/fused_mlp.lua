-- Fused MLP: router output -> SwiGLU -> down in one pass plus a finalize.
--   y[t][c] = sum_{active n} h[t][n] * W_down[c][n],
--   h[t][n] = mask[t][e] ? silu(x[t].Wg[n]) * (x[t].Wu[n]) : 0
-- Kernels (templates/fused_mlp.cu.lua), each taking
--   (const T *Wg, const T *Wu, const T *WdT, const T *x, const int *union_ids,
--    const int *union_count, const unsigned char *mask, float *ws, T *y)
-- sprig_fused_mlp: a CTA takes rows_per_cta consecutive compact rows r (slot
--   j = r / g, neuron n = union_ids[j]*g + r % g). Phase 1: a warp per row
--   computes gate and up for every token (16-byte streaming loads, fp32, warp
--   reduce) and leaves h in shared memory [rows][B]. Phase 2: the CTA's threads
--   stride the d columns of WdT (= W_down^T [f][d]) with vec loads, sum
--   h[r][t] * WdT[n][c] over its rows and add the partial to ws:
--   reduce=atomic (red.add into ws[t][c]) or deterministic (ws[cta][t][c]).
-- sprig_fused_mlp_finalize: y = T(ws) (re-zeroing ws for atomic), or the
--   fixed-order sum of the partials of the CTAs that had rows.
-- The grid is sized for every expert active; CTAs past union_count*g return.
local A = require("sprig.args")
local S = require("sprig.spec")

local F = {
  name = "fused_mlp",
  order = 5, -- position in the registry (sprig families, tuning keys)
  summary = "fused MLP: gate/up -> SwiGLU -> down in one kernel plus a split-K finalize (decode, batch 1..8)",
  template = "templates/fused_mlp.cu.lua",
  params = {
    S.threads(),
    { name = "rows_per_cta", values = { 8, 16, 32, 64, 128 }, default = 16,
      doc = "compact rows (neurons) per CTA: fewer rows, more CTAs and more partials to add" },
    S.vec(),
    { name = "unroll", values = { 1, 2, 4 }, default = 2,
      doc = "gate/up: K chunks in flight per warp (the down phase keeps its own, from the batch)" },
    S.interleave(),
    { name = "reduce", values = { "atomic", "deterministic" }, default = "atomic",
      doc = "atomic: red.add into ws[B][d], the finalize re-zeroes it; deterministic: ws[ctas][B][d], "
        .. "summed in a fixed order (f/rows_per_cta*B*d*4 bytes of workspace)" },
    S.all_active("dense MLP"),
  },
  -- all_active is part of the problem, not a tuning choice.
  tune = { skip = { "all_active" }, mlp = S.MLP_ALL_ACTIVE },
}

local MAX_BATCH = 8
local FIN_THREADS = 256 -- matches SPK_THREADS in templates/splitk_finalize.cuh.lua
-- Registers the down phase may spend on accumulators (B*vec) plus rows in
-- flight (vec per row, converted as used): what keeps it spill-free at batch 8.
local DOWN_REG_BUDGET = 96

local function next_pow2(n)
  local p = 1
  while p < n do p = p * 2 end
  return p
end

local function prev_pow2(n)
  local p = 1
  while p * 2 <= n do p = p * 2 end
  return p
end

local function shape(req, p)
  local s = {}
  s.RPC = p.rows_per_cta
  s.WARPS = p.threads // 32
  s.MAX_CTAS = (req.f + s.RPC - 1) // s.RPC
  -- Rows of WdT whose loads the down phase issues before using them.
  local fit = (DOWN_REG_BUDGET - req.batch * p.vec) // p.vec
  s.DOWN_UNROLL = prev_pow2(math.max(1, math.min(8, s.RPC, fit)))
  s.PART_LANES = math.min(32, next_pow2((s.MAX_CTAS + 1) // 2))
  return s
end

function F.check(req, p)
  if req.batch > MAX_BATCH then
    return string.format("batch=%d is more than %d: fused_mlp keeps batch*vec fp32 sums per thread; "
      .. "use gather_upgate + gather_down (or gather_gemm) for larger batches", req.batch, MAX_BATCH)
  end
end

function F.plan(req, p)
  local s = shape(req, p)
  local total4 = req.batch * req.d // 4 -- float4 groups of y
  local fin
  local workspace
  if p.reduce == "atomic" then
    workspace = req.batch * req.d * 4
    fin = (total4 + FIN_THREADS - 1) // FIN_THREADS
  else
    workspace = s.MAX_CTAS * req.batch * req.d * 4
    local groups = FIN_THREADS // s.PART_LANES
    fin = (total4 + groups - 1) // groups
  end
  s.spk_part_lanes = s.PART_LANES
  return {
    kernels = {
      { name = "sprig_fused_mlp", grid = { s.MAX_CTAS, 1, 1 }, block = { p.threads, 1, 1 }, smem = 0 },
      { name = "sprig_fused_mlp_finalize", grid = { fin, 1, 1 }, block = { FIN_THREADS, 1, 1 }, smem = 0 },
    },
    workspace = workspace,
    values = s,
  }
end

function F.args(req, p, v)
  local E, B, al = req.f // req.g, req.batch, A.vec_align(p.vec)
  local il, routed = p.interleave == 1, p.all_active == 0
  return {
    il and A.ptr("Wg", "T", { 2 * req.f, req.d }, { role = "w_gate_up", fan_in = req.d, align = al })
       or A.ptr("Wg", "T", { req.f, req.d }, { role = "w_gate", fan_in = req.d, align = al }),
    A.ptr("Wu", "T", { req.f, req.d }, { role = "w_up", fan_in = req.d, align = al, optional = il }),
    A.ptr("WdT", "T", { req.f, req.d }, { role = "w_down_t", fan_in = req.f, align = al }),
    A.ptr("x", "T", { B, req.d }, { role = "x", align = al }),
    A.ptr("union_ids", "i32", { E }, { role = "union_ids", optional = not routed }),
    A.ptr("union_count", "i32", { 1 }, { role = "union_count", optional = not routed }),
    A.ptr("mask", "u8", { B, E }, { role = "mask", optional = not routed }),
    A.ptr("ws", "f32", { v.workspace_bytes // 4 }, { dir = "scratch", align = 16 }),
    A.ptr("y", "T", { B, req.d }, { dir = "out", role = "y", align = 8 }),
  }
end

F.verify = "mlp"

-- Phase 1 (gate, up) then phase 2 (down) in the same CTA, then the finalize.
function F.perf(req, p, v, active)
  local rows = p.all_active == 1 and req.f or math.ceil(req.f * active)
  local B, ws = req.batch, v.workspace_bytes or 0
  return {
    { read = 3 * rows * req.d * 2 + B * req.d * 2, write = 0, inflight = 2 * p.unroll, load_bytes = 2 * p.vec,
      working = (rows + p.rows_per_cta - 1) // p.rows_per_cta, rounds = 3 },
    { read = ws, write = B * req.d * 2, inflight = 1, load_bytes = 16, working = (B * req.d // 4 + 255) // 256,
      rounds = 1, hot = true },
  }
end

return F
