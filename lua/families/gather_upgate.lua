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
-- route=sigmoid folds the LTE router in (one launch instead of two):
--   sprig_gather_upgate(..., T *h, const T *Wr, float *scores, float threshold,
--                       int *ids, int *counts, int *ws)
-- with union_ids, union_count and mask outputs, as the router family writes them;
-- h is then by neuron, h[t][n] for every neuron of a used expert (exactly 0 for a
-- token that does not use it), which gather_down reads with h_index=neuron.
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
    { name = "route", values = { "list", "sigmoid" }, default = "list",
      doc = "list: the union list comes from the router kernel; sigmoid: the LTE router folded in (Wr, "
        .. "threshold = logit(tau)): each CTA scores its experts, unused ones stream nothing, h is by neuron "
        .. "(gather_down h_index=neuron) and the last CTA writes the id lists" },
    { name = "union_out", values = { "lists", "bits" }, default = "lists",
      doc = "route=sigmoid's output: lists, the last CTA compacts the bitmaps into the id lists; bits, no "
        .. "arrival and no lists: the union's bitmap to union_bits (for gather_down list=bits), and CTA 0 zeroes "
        .. "bits_clear (the next call's bitmap; two trailing arguments int *union_bits, *bits_clear, bit words)" },
    { name = "gate", values = { "weights", "scores" }, default = "weights",
      doc = "weights: gate = x . Wg[n]; scores: gate = scores[t][n], the fp32 scores of a router that scored "
        .. "W_gate's rows (training-free mode, g = 1; one more trailing argument const float *gate_scores "
        .. "[B][f]): W_gate is not read again" },
  },
  -- route and gate are the backend's choice of pipeline, not tuning axes: they
  -- take the tuned parameters of the routed (all_active=0) key
  tune = { skip = { "route", "gate", "union_out" }, mlp = S.MLP_ALL_ACTIVE },
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
  if p.route ~= "list" then
    local rpc = (p.threads // 32 // p.ksplit) * p.rows_per_warp
    if p.all_active == 1 then return "route=" .. p.route .. " routes: it needs all_active=0" end
    if req.g % p.rows_per_warp ~= 0 or (rpc % req.g ~= 0 and req.g % rpc ~= 0) then
      return string.format("route=%s needs g=%d to be a multiple of rows_per_warp=%d and a multiple or divisor "
        .. "of a CTA's %d rows; change rows_per_warp, threads or ksplit", p.route, req.g, p.rows_per_warp, rpc)
    end
    if math.max(1, rpc // req.g) * req.batch > 64 then
      return string.format("route=%s keeps %d router sums per thread (experts per CTA x batch), more than 64; "
        .. "lower rows_per_warp or threads", p.route, math.max(1, rpc // req.g) * req.batch)
    end
  end
  if p.union_out == "bits" and p.route == "list" then
    return "union_out=bits is route=sigmoid's (the router folded in): it needs route=sigmoid"
  end
  if p.gate == "scores" and (req.g ~= 1 or p.all_active == 1 or p.route ~= "list" or p.interleave == 1) then
    return "gate=scores takes the gates from a router that scored W_gate's rows: it needs g=1, all_active=0, "
      .. "route=list and interleave=0"
  end
  local xbytes = p.x_smem == 1 and req.batch * req.d * 2 or 0
  local partbytes = p.ksplit > 1 and warps * acc * 4 or 0
  if xbytes + partbytes > MAX_SMEM then
    return string.format("x_smem=1 needs batch*d*2=%d bytes of shared memory%s, more than %d; use x_smem=0",
      xbytes, partbytes > 0 and string.format(" (plus %d for ksplit=%d)", partbytes, p.ksplit) or "", MAX_SMEM)
  end
end

function F.plan(req, p)
  local rows_per_cta = (p.threads // 32 // p.ksplit) * p.rows_per_warp
  local words = (req.f // req.g + 31) // 32
  return {
    kernels = { { name = "sprig_gather_upgate", grid = { (req.f + rows_per_cta - 1) // rows_per_cta, 1, 1 },
                  block = { p.threads, 1, 1 }, smem = 0 } },
    -- route=sigmoid: the arrival counter, then (batch + 1) bitmaps (the router family's layout);
    -- union_out=bits keeps none of them
    workspace = p.route ~= "list" and p.union_out ~= "bits" and (1 + (req.batch + 1) * words + 3) // 4 * 16 or nil,
  }
end

function F.args(req, p, v)
  local E, B, al = req.f // req.g, req.batch, A.vec_align(p.vec)
  local il, routed = p.interleave == 1, p.all_active == 0
  if p.route ~= "list" then
    local bits = p.union_out == "bits" -- no lists: those arguments are unused (may be NULL)
    local list = {
      il and A.ptr("Wg", "T", { 2 * req.f, req.d }, { role = "w_gate_up", fan_in = req.d, align = al })
         or A.ptr("Wg", "T", { req.f, req.d }, { role = "w_gate", fan_in = req.d, align = al }),
      A.ptr("Wu", "T", { req.f, req.d }, { role = "w_up", fan_in = req.d, align = al, optional = il }),
      A.ptr("x", "T", { B, req.d }, { role = "x", align = p.x_smem == 1 and 16 or al }),
      A.ptr("union_ids", "i32", { E }, { dir = "out", role = "union_ids", optional = bits }),
      A.ptr("union_count", "i32", { 1 }, { dir = "out", role = "union_count", optional = bits }),
      A.ptr("mask", "u8", { B, E }, { dir = "out", role = "mask" }),
      A.ptr("h", "T", { B, req.f }, { dir = "out", role = "h" }),
      A.ptr("Wr", "T", { E, req.d }, { role = "w_router", fan_in = req.d, align = al }),
      A.ptr("scores", "f32", { B, E }, { dir = "out", role = "scores" }),
      A.scalar("threshold", "f32", { role = "threshold" }),
      A.ptr("ids", "i32", { B, E }, { dir = "out", role = "ids", optional = bits }),
      A.ptr("counts", "i32", { B }, { dir = "out", role = "counts", optional = bits }),
      A.ptr("ws", "i32", { ((v and v.workspace_bytes) or 0) // 4 }, { dir = "scratch", optional = bits }),
    }
    if bits then
      local words = (E + 31) // 32
      list[#list + 1] = A.ptr("union_bits", "i32", { words }, { dir = "inout", role = "union_bits" })
      list[#list + 1] = A.ptr("bits_clear", "i32", { words }, { dir = "out", role = "bits_clear" })
    end
    return list
  end
  local list = {
    il and A.ptr("Wg", "T", { 2 * req.f, req.d }, { role = "w_gate_up", fan_in = req.d, align = al })
       or A.ptr("Wg", "T", { req.f, req.d }, { role = "w_gate", fan_in = req.d, align = al,
                                              optional = p.gate == "scores" }),
    A.ptr("Wu", "T", { req.f, req.d }, { role = "w_up", fan_in = req.d, align = al, optional = il }),
    -- staged into shared memory with 16-byte copies when x_smem=1
    A.ptr("x", "T", { B, req.d }, { role = "x", align = p.x_smem == 1 and 16 or al }),
    A.ptr("union_ids", "i32", { E }, { role = "union_ids", optional = not routed }),
    A.ptr("union_count", "i32", { 1 }, { role = "union_count", optional = not routed }),
    A.ptr("mask", "u8", { B, E }, { role = "mask", optional = not routed }),
    A.ptr("h", "T", { B, req.f }, { dir = "out", role = "h" }),
  }
  if p.gate == "scores" then list[#list + 1] = A.ptr("gate_scores", "f32", { B, E }, { role = "scores" }) end
  return list
end

F.verify = "swiglu"

-- Only the CTAs of active rows work (the rest return at once); a CTA reads
-- union_count before its weights: two dependent round trips. Only with every
-- expert on are its rows known before the router's output: then it prefetches.
function F.perf(req, p, v, active)
  local rows = p.all_active == 1 and req.f or math.ceil(req.f * active)
  local rpc = (p.threads // 32 // p.ksplit) * p.rows_per_warp
  local ctas = (rows + rpc - 1) // rpc
  if p.route ~= "list" then
    -- Every CTA reads its experts' router rows (once from memory, the other CTAs of
    -- an expert from L2) and then, for a used expert, its gate and up rows: two
    -- dependent round trips; the last CTA's arrival and compaction as the router's.
    local E, B = req.f // req.g, req.batch
    local lists, words = B + 1, (E + 31) // 32
    local e = { read = E * req.d * 2 + 2 * ctas * rpc * req.d * 2 + B * req.d * 2,
                write = B * rows * 2 + B * E * 5, -- h, scores and mask
                inflight = 2 * p.unroll * p.rows_per_warp, load_bytes = 2 * p.vec, working = ctas,
                rounds = 2, l2_rounds = 0, prefetch = true }
    if p.union_out == "bits" then
      -- no arrival: the bitmap's atomics drain with the kernel and no CTA compacts
      -- alone at the end (gather_down list=bits reads the bitmap): the union's
      -- bitmap and the one cleared
      e.write = e.write + 2 * words * 4
    else
      e.read = e.read + lists * words * 4
      e.write = e.write + B * E * 4 + E * 4 + B * 4 + 4 + lists * words * 4
      e.l2_rounds = 2 + S.compaction_rounds(lists, words, p.threads)
      e.tail, e.grid_syncs = S.compaction_rounds(lists, words, p.threads), 1
    end
    return { e }
  end
  local mats = p.gate == "scores" and 1 or 2 -- gate=scores streams the up rows alone
  return { { read = mats * ctas * rpc * req.d * 2 + req.batch * req.d * 2 + (mats == 1 and req.batch * rows * 4 or 0),
             write = req.batch * rows * 2,
             inflight = mats * p.unroll * p.rows_per_warp, load_bytes = 2 * p.vec, working = ctas,
             rounds = 1, l2_rounds = p.all_active == 1 and 0 or 1, prefetch = p.all_active == 1 } }
end

return F
