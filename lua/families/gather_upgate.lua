-- Gather up/gate: the SwiGLU activation for the batch's active experts only.
--   h[t][r] = mask[t][e] ? silu(x[t] . Wg[n]) * (x[t] . Wu[n]) : 0
-- for compact rows r < union_count*g: slot j = r / g, e = union_ids[j], n = e*g + r % g.
-- Kernel (see templates/gather_upgate.cu.lua):
--   sprig_gather_upgate(const T *Wg, const T *Wu, const T *x, const int *union_ids,
--                       const int *union_count, const unsigned char *mask, T *h)
-- A group of ksplit warps owns rows_per_warp compact rows and computes gate and up
-- for every token in one pass over K (each warp a slice of K; slices are added in
-- a fixed order through shared memory); the grid covers all f rows (worst case)
-- and CTAs past union_count*g return at once.
local A = require("sprig.args")
local S = require("sprig.spec")

local F = {
  name = "gather_upgate",
  order = 3, -- position in the registry (sprig families, tuning keys)
  summary = "gather up/gate: SwiGLU h over the active experts only (decode, batch 1..64)",
  template = "templates/gather_upgate.cu.lua",
  params = {
    S.threads(),
    S.rows_per_warp("compact rows (neurons) per warp"),
    S.vec(),
    S.unroll(),
    { name = "ksplit", values = { 1, 2, 4, 8 }, default = 1,
      doc = "warps sharing a row group, each on a slice of K (more loads in flight when few rows are active)" },
    S.min_blocks(),
    S.interleave(),
    S.all_active("dense SwiGLU"),
    { name = "x_smem", values = { 0, 1 }, default = 0,
      doc = "1: stage x in shared memory once per CTA (needs batch*d*2 <= 48 KiB)" },
  },
  tune = { mlp = S.MLP_ALL_ACTIVE },
}

-- Each lane keeps rows_per_warp * batch * 2 (gate, up) fp32 accumulators.
local MAX_ACC = 128
-- Static shared memory without an opt-in attribute.
local MAX_SMEM = 48 * 1024

function F.check(req, p)
  local acc = p.rows_per_warp * req.batch * 2
  if acc > MAX_ACC then
    return string.format("rows_per_warp*batch*2=%d exceeds %d fp32 accumulators per lane; "
      .. "lower rows_per_warp, or use gather_gemm (tensor cores) for large batches", acc, MAX_ACC)
  end
  local warps = p.threads // 32
  local shared = S.check_ksplit(p) or S.check_min_blocks(p)
  if shared then return shared end
  local xbytes = p.x_smem == 1 and req.batch * req.d * 2 or 0
  local partbytes = p.ksplit > 1 and warps * acc * 4 or 0
  if xbytes + partbytes > MAX_SMEM then
    return string.format("x_smem=1 needs batch*d*2=%d bytes of shared memory%s, more than %d; use x_smem=0",
      xbytes, partbytes > 0 and string.format(" (plus %d for ksplit=%d)", partbytes, p.ksplit) or "", MAX_SMEM)
  end
end

function F.plan(req, p)
  local rows_per_cta = (p.threads // 32 // p.ksplit) * p.rows_per_warp
  return {
    kernels = { { name = "sprig_gather_upgate", grid = { (req.f + rows_per_cta - 1) // rows_per_cta, 1, 1 },
                  block = { p.threads, 1, 1 }, smem = 0 } },
  }
end

function F.args(req, p)
  local E, B, al = req.f // req.g, req.batch, A.vec_align(p.vec)
  local il, routed = p.interleave == 1, p.all_active == 0
  return {
    il and A.ptr("Wg", "T", { 2 * req.f, req.d }, { role = "w_gate_up", fan_in = req.d, align = al })
       or A.ptr("Wg", "T", { req.f, req.d }, { role = "w_gate", fan_in = req.d, align = al }),
    A.ptr("Wu", "T", { req.f, req.d }, { role = "w_up", fan_in = req.d, align = al, optional = il }),
    -- staged into shared memory with 16-byte copies when x_smem=1
    A.ptr("x", "T", { B, req.d }, { role = "x", align = p.x_smem == 1 and 16 or al }),
    A.ptr("union_ids", "i32", { E }, { role = "union_ids", optional = not routed }),
    A.ptr("union_count", "i32", { 1 }, { role = "union_count", optional = not routed }),
    A.ptr("mask", "u8", { B, E }, { role = "mask", optional = not routed }),
    A.ptr("h", "T", { B, req.f }, { dir = "out", role = "h" }),
  }
end

F.verify = "swiglu"

-- Only the CTAs of active rows work (the rest return at once); a CTA reads
-- union_count before its weights: two dependent round trips. Only with every
-- expert on are its rows known before the router's output: then it prefetches.
function F.perf(req, p, v, active)
  local rows = p.all_active == 1 and req.f or math.ceil(req.f * active)
  local rpc = (p.threads // 32 // p.ksplit) * p.rows_per_warp
  local ctas = (rows + rpc - 1) // rpc
  return { { read = 2 * ctas * rpc * req.d * 2 + req.batch * req.d * 2, write = req.batch * rows * 2,
             inflight = 2 * p.unroll * p.rows_per_warp, load_bytes = 2 * p.vec, working = ctas,
             rounds = 1, l2_rounds = p.all_active == 1 and 0 or 1, prefetch = p.all_active == 1 } }
end

return F
