-- Tensor-core gather GEMM over the batch's union of active expert blocks
-- (mma.sync.m16n8k16, fp16/bf16 operands, fp32 accumulation; sm_80 or newer),
-- for batches of 8..64 tokens (smaller batches work, padded with zero columns).
--
--   stage=upgate: sprig_gather_gemm(Wg, Wu, x, union_ids, union_count, mask, h)
--     Hᵀ = W_gathered · Xᵀ with two accumulator sets (gate, up); the epilogue
--     applies SwiGLU and the per-token mask and writes the compact h.
--   stage=down:   sprig_gather_gemm(Wd, h, union_ids, union_count, ws, y)
--     Yᵀ = W_down[:, gathered] · Hᵀ, split-K over the union (`splits` CTAs per
--     row block) with fp32 partials in ws; then sprig_gather_gemm_finalize
--     converts to y (and re-zeroes ws for reduce=atomic). splits=1 stores y
--     directly from the one kernel.
--
-- Work layout (templates/gather_gemm.cu.lua): a CTA holds `warps` warps,
-- arranged as warps/kwarps row groups × kwarps K-slices. A row group owns
-- m_tiles tiles of 16 rows (neurons for upgate, output channels for down);
-- each of its kwarps warps walks its own slice of K, and the slices are summed
-- through shared memory in a fixed order. Every warp covers n_tiles tiles of 8
-- tokens; blockIdx.z picks the group of token tiles.
--
-- Defaults (for b = 16 on a 132-SM H100, reasoned, not yet timed on one):
-- 16 rows per CTA of 4 warps each walking a quarter of K, so that even a
-- sparse union gives many CTAs and every SM many 16-byte weight loads in
-- flight; all token tiles in one warp, so each weight byte is read once;
-- down splits K over about 4 CTAs per SM and reduces with atomics.
local A = require("sprig.args")

local F = {
  name = "gather_gemm",
  order = 6, -- position in the registry (sprig families, tuning keys)
  summary = "tensor-core gather GEMM (mma.sync m16n8k16) over active expert blocks, batch 8-64, g % 16 == 0",
  template = "templates/gather_gemm.cu.lua",
  params = {
    { name = "stage", values = { "upgate", "down" }, default = "upgate",
      doc = "upgate: h = mask * silu(x Wg^T) * (x Wu^T); down: y = h W_down[:, gathered]^T (Wd = W_down [d][f])" },
    { name = "warps", values = { 2, 4, 8 }, default = 4, doc = "warps per CTA" },
    { name = "m_tiles", values = { 1, 2 }, default = 1, doc = "16-row tiles per warp" },
    { name = "n_tiles", values = { 0, 1, 2, 4, 8 }, default = 0,
      doc = "8-token tiles per warp (0: all of the batch, weights read once)" },
    { name = "k_unroll", values = { 1, 2, 4 }, default = 2, doc = "32-wide K chunks loaded before the MMAs" },
    { name = "kwarps", values = { 1, 2, 4, 8 }, default = 4,
      doc = "warps of a CTA splitting K for the same rows (summed in shared memory)" },
    { name = "splits", values = { 0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32 }, default = 0,
      doc = "down: CTAs splitting K over the union (0: auto, about 4 CTAs per SM of a 132-SM H100); upgate: 0 or 1" },
    { name = "reduce", values = { "atomic", "deterministic" }, default = "atomic",
      doc = "down with splits>1: atomicAdd into ws[B][d], or per-split ws[splits][B][d] summed in order" },
    { name = "min_ctas", values = { 0, 1, 2, 3, 4, 6, 8 }, default = 0,
      doc = "CTAs per SM the register allocation leaves room for (__launch_bounds__); 0: derived from the tiles" },
  },
  -- MLP keys: both stages, at every sparsity (with every expert routed at 0); tuned by default from batch 8.
  tune = { mlp = { fixed = function() return { "stage=upgate", "stage=down" } end, from_batch = 8 } },
}

local H100_SMS = 132
local SMEM_LIMIT = 48 * 1024 -- static shared memory per CTA

-- Everything the check, the plan and the template derive from (req, p).
local function shape(req, p)
  local s = {}
  s.upgate = p.stage == "upgate"
  s.WM = p.warps // p.kwarps                -- row groups per CTA
  s.ROWS_CTA = s.WM * p.m_tiles * 16
  s.NTT = (req.batch + 7) // 8              -- token tiles of the batch
  s.NT = p.n_tiles == 0 and s.NTT or p.n_tiles
  s.TG = (s.NTT + s.NT - 1) // s.NT         -- token groups (grid z)
  s.M = s.upgate and req.f or req.d         -- rows in the worst case (all experts active)
  s.K = s.upgate and req.d or req.f         -- K in the worst case
  s.GRID_X = (s.M + s.ROWS_CTA - 1) // s.ROWS_CTA
  s.MATS = s.upgate and 2 or 1              -- accumulator sets per tile (gate, up)
  s.NACC = s.MATS * p.m_tiles * s.NT * 4    -- fp32 accumulators per lane
  s.RED_BYTES = (p.kwarps - 1) * s.WM * s.NACC * 32 * 4
  if s.upgate then
    s.SPLITS = 1
  elseif p.splits == 0 then
    -- Enough CTAs for about four per SM, but keep at least 8 chunks of 32 per
    -- warp when every expert is active.
    local want = (4 * H100_SMS + s.GRID_X * s.TG - 1) // (s.GRID_X * s.TG)
    local most = math.max(1, (req.f // 32) // (p.kwarps * 8))
    s.SPLITS = math.max(1, math.min(want, most, 32))
  else
    s.SPLITS = p.splits
  end
  s.DIRECT = (not s.upgate) and s.SPLITS == 1
  -- Registers of data live at once: the accumulators and a whole load group
  -- (k_unroll chunks) of A fragments (16 bytes per row half, set and m tile)
  -- and B fragments (16 bytes per token tile), all loaded before the MMAs.
  s.REG_EST = s.NACC + p.k_unroll * (s.MATS * p.m_tiles * 2 * 4 + s.NT * 4)
  -- Without a minimum CTA count ptxas picks the register budget itself, and
  -- for some architectures (sm_120; 8-warp CTAs on sm_90) it chose 64 and
  -- spilled. Ask instead for as many CTAs as leave each thread the live data
  -- plus its row and token pointers (2 registers each) and about 40 more for
  -- indices and predicates (at least 64 in all), at most 8 CTAs.
  local need = math.max(64, s.REG_EST + 40 + 2 * s.NT + 4 * s.MATS * p.m_tiles)
  s.MIN_CTAS = p.min_ctas > 0 and p.min_ctas
    or math.max(1, math.min(8, 65536 // (p.warps * 32 * need)))
  return s
end

function F.check(req, p)
  if req.g % 16 ~= 0 then
    return "gather_gemm needs g to be a multiple of 16; use gather_upgate/gather_down for g=1"
  end
  if p.kwarps > p.warps then
    return string.format("kwarps=%d exceeds warps=%d (kwarps warps share one row tile)", p.kwarps, p.warps)
  end
  local s = shape(req, p)
  if s.NT > s.NTT then
    return string.format("n_tiles=%d exceeds the %d token tile(s) of 8 in batch %d", s.NT, s.NTT, req.batch)
  end
  if s.upgate and p.splits > 1 then
    return "splits applies to stage=down only (use splits=0 or 1 with stage=upgate)"
  end
  if s.upgate and p.reduce ~= "atomic" then
    return "reduce applies to stage=down only (leave reduce=atomic with stage=upgate)"
  end
  if s.RED_BYTES > SMEM_LIMIT then
    return string.format("the K-slice reduction needs %d bytes of shared memory (limit %d); lower kwarps, m_tiles or n_tiles",
      s.RED_BYTES, SMEM_LIMIT)
  end
  if s.REG_EST > 224 then
    return string.format("about %d live registers of accumulators and fragments per lane would spill; lower m_tiles, n_tiles or k_unroll",
      s.REG_EST)
  end
end

function F.plan(req, p)
  local s = shape(req, p)
  local block = { p.warps * 32, 1, 1 }
  local kernels = { { name = "sprig_gather_gemm", grid = { s.GRID_X, s.SPLITS, s.TG }, block = block, smem = 0 } }
  local workspace = 0
  if not s.upgate and not s.DIRECT then
    local per = req.batch * req.d * 4
    workspace = p.reduce == "atomic" and per or s.SPLITS * per
    local quads = req.batch * req.d // 4
    kernels[2] = { name = "sprig_gather_gemm_finalize", grid = { (quads + 255) // 256, 1, 1 },
                   block = { 256, 1, 1 }, smem = 0 }
  end
  return { kernels = kernels, workspace = workspace, values = s }
end

-- Weights, x and h are read as 16-byte vectors; stage=down takes gather_down's
-- arguments (layout n), stage=upgate gather_upgate's (not interleaved).
function F.args(req, p, v)
  local E, B = req.f // req.g, req.batch
  if p.stage == "upgate" then
    return {
      A.ptr("Wg", "T", { req.f, req.d }, { role = "w_gate", fan_in = req.d, align = 16 }),
      A.ptr("Wu", "T", { req.f, req.d }, { role = "w_up", fan_in = req.d, align = 16 }),
      A.ptr("x", "T", { B, req.d }, { role = "x", align = 16 }),
      A.ptr("union_ids", "i32", { E }, { role = "union_ids" }),
      A.ptr("union_count", "i32", { 1 }, { role = "union_count" }),
      A.ptr("mask", "u8", { B, E }, { role = "mask" }),
      A.ptr("h", "T", { B, req.f }, { dir = "out", role = "h" }),
    }
  end
  local ws = (v.workspace_bytes or 0) // 4
  return {
    A.ptr("Wd", "T", { req.d, req.f }, { role = "w_down", fan_in = req.f, align = 16 }),
    A.ptr("h", "T", { B, req.f }, { role = "h", align = 16 }),
    A.ptr("union_ids", "i32", { E }, { role = "union_ids" }),
    A.ptr("union_count", "i32", { 1 }, { role = "union_count" }),
    A.ptr("ws", "f32", { ws }, { dir = "scratch", align = 16, optional = ws == 0 }),
    A.ptr("y", "T", { B, req.d }, { dir = "out", role = "y", align = 8 }),
  }
end

function F.verify(req, p) return p.stage == "upgate" and "swiglu" or "down" end

-- Tensor-core tiles: each warp keeps k_unroll 16-byte loads per matrix and tile in flight.
function F.perf(req, p, v, active)
  local B = req.batch
  local rows = math.ceil((v.upgate and req.f or req.f) * active)
  local mats = v.upgate and 2 or 1
  local list = { { read = mats * rows * req.d * 2 + B * (v.upgate and req.d or req.f) * 2,
                   write = v.upgate and B * rows * 2 or (v.DIRECT and B * req.d * 2 or 0),
                   inflight = p.k_unroll * mats * p.m_tiles, load_bytes = 16,
                   working = math.max(1, math.ceil(v.GRID_X * v.SPLITS * v.TG * (v.upgate and active or 1))),
                   rounds = 2 } }
  if not v.upgate and not v.DIRECT then
    list[2] = { read = v.workspace_bytes or 0, write = B * req.d * 2, inflight = 1, load_bytes = 16,
                working = (B * req.d // 4 + 255) // 256, rounds = 1, hot = true }
  end
  return list
end

return F
