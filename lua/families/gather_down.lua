-- Gather down: y = h W_down[:, active]ᵀ over the batch's union of active experts.
--   y[t][c] = sum_{j < union_count, i < g} h[t][j*g+i] * W_down[c][union_ids[j]*g+i]
-- h is the compact activation [B][f] (exactly 0 where a token lacks the expert,
-- so summing over the union is exact). Kernels (templates/gather_down.cu.lua),
-- every one taking
--   (const T *Wd, const T *h, const int *union_ids, const int *union_count, float *ws, T *y)
--
-- layout=t: Wd = W_downᵀ [f][d], one contiguous row of d per neuron.
--   sprig_gather_down: grid (ceil(d / cols_per_cta), splits, token tiles). A CTA
--   is cols_per_cta/vec column threads × row lanes; its split owns a contiguous
--   share of the union_count*g compact rows (computed on the device, so every
--   split has work at any sparsity); row lanes stride those rows, each thread
--   keeps fp32 [batch_tile][vec] sums, and the lanes are added in shared memory.
--   reduce=atomic:        red.add into ws[t][c]; the split that arrives last at
--                         a column block (a counter per block after the sums)
--                         converts the block to y and zeroes its ws again.
--   reduce=deterministic: ws[split][t][c] plain stores; the last arrival adds
--                         the splits that had rows, in split order.
--   reduce=direct:        splits=1, the one kernel writes y.
--   One kernel in every case: no finalize launch.
-- norm=add|set (a problem parameter, any layout): then the CTA that arrives last at
--   a counter in ws adds y into the fp32 residual and writes the next norm's
--   output, the rmsnorm family's mode=add folded in; extra trailing arguments
--   (float *res, const T *norm_w, T *normed, float eps).
-- layout=n: Wd = W_down [d][f] as stored. A warp owns rows_per_warp output
--   columns; its lanes split the (union slot × g/vec) pieces of those rows,
--   dot them with h and warp-reduce; one kernel writes y (deterministic).
local A = require("sprig.args")
local S = require("sprig.spec")

local F = {
  name = "gather_down",
  order = 4, -- position in the registry (sprig families, tuning keys)
  summary = "gather down: y over the active experts only, split-K with atomic or deterministic reduction "
    .. "(decode, batch 1..64)",
  template = "templates/gather_down.cu.lua",
  params = {
    { name = "layout", values = { "t", "n" }, default = "t",
      doc = "t: Wd = W_down^T [f][d] (contiguous neuron rows); n: Wd = W_down [d][f] as stored (needs g % vec == 0)" },
    S.threads(),
    S.vec(),
    { name = "cols_per_cta", values = { 64, 128, 256, 512, 1024 }, default = 256,
      doc = "layout=t: output columns per CTA (cols_per_cta/vec threads across; the rest of the CTA walks rows)" },
    { name = "splits", values = { 0, 1, 2, 4, 8, 16, 32 }, default = 0,
      doc = "layout=t: CTAs sharing the union's rows per column block (0: auto, about 2 CTAs per SM of a 132-SM H100)" },
    { name = "reduce", values = { "atomic", "deterministic", "direct" }, default = "atomic",
      doc = "layout=t: atomic (red.add into ws[B][d], finalize re-zeroes), deterministic (ws[splits][B][d] "
        .. "summed in a fixed order) or direct (splits=1, one kernel writes y)" },
    { name = "rows_per_warp", values = { 1, 2, 4 }, default = 1, doc = "layout=n: output columns per warp" },
    { name = "batch_tile", values = { 1, 2, 4, 8 }, default = 8,
      doc = "layout=t: tokens per CTA; larger batches add CTAs (grid z) that re-read W (from L2 at best)" },
    { name = "unroll", values = { 1, 2, 4, 8 }, default = 4, doc = "weight loads in flight per thread" },
    { name = "all_active", values = { 0, 1 }, default = 0,
      doc = "1: every expert active (h dense [B][f]); routing arguments unused, may be NULL" },
    S.norm(),
    { name = "h_index", values = { "compact", "neuron" }, default = "compact",
      doc = "compact: h's row r is compact row r (as gather_upgate route=list writes it); neuron: h[t][n] by "
        .. "neuron (gather_upgate route=sigmoid)" },
    { name = "list", values = { "ids", "bits" }, default = "ids",
      doc = "routed: where the rows come from: ids, union_ids and union_count; bits, the union's "
        .. "bitmap (gather_upgate union_out=bits; trailing argument const int *union_bits, bit words), which every CTA "
        .. "scans itself (union_ids unused, union_count written)" },
  },
  -- all_active, norm, h_index and list are part of the problem, not tuning choices.
  tune = { skip = { "all_active", "norm", "h_index", "list" }, mlp = S.MLP_ALL_ACTIVE },
}

local H100_SMS = 132
local TARGET_CTAS = 2 * H100_SMS - 8 -- "about 2 per SM": 256 CTAs is close enough
local MAX_ACC = 64                   -- fp32 accumulators per thread

-- The t-only and n-only parameters must stay at their defaults under the other
-- layout, so the tuning space holds no duplicates of one kernel.
local T_ONLY = { "cols_per_cta", "splits", "reduce", "batch_tile" }
local N_ONLY = { "rows_per_warp" }

local function default_of(name)
  for _, decl in ipairs(F.params) do if decl.name == name then return decl.default end end
end

local function next_pow2(n)
  local p = 1
  while p < n do p = p * 2 end
  return p
end

-- Everything check(), plan() and the template derive from (req, p), layout t.
local function shape_t(req, p)
  local s = {}
  s.COL_THREADS = p.cols_per_cta // p.vec
  s.ROW_LANES = p.threads // s.COL_THREADS
  -- Token tiles of at most batch_tile, as even as possible (12 = 6 + 6, not 8 + 4).
  s.TILES = (req.batch + p.batch_tile - 1) // p.batch_tile
  s.BT = (req.batch + s.TILES - 1) // s.TILES
  s.GRID_X = (req.d + p.cols_per_cta - 1) // p.cols_per_cta
  if p.splits == 0 then
    local want = (TARGET_CTAS + s.GRID_X * s.TILES - 1) // (s.GRID_X * s.TILES)
    s.SPLITS = math.min(32, next_pow2(math.max(1, want)))
  else
    s.SPLITS = p.splits
  end
  -- Cap registers at 128 (two 256-thread CTAs per SM) when the live values fit:
  -- batch_tile*vec sums plus unroll*vec weights, with room for addresses.
  s.MIN_BLOCKS = (s.BT + p.unroll) * p.vec <= 96 and 512 // p.threads or 1
  -- layout t, routed: the expert list staged in shared memory where it fits in
  -- 8 KiB (every LTE shape; not threshold mode's list of every neuron)
  s.STAGE_IDS = p.all_active == 0 and req.f // req.g * 4 <= 8192
  -- whether it prefetches its first rows before the wait: not where its list is
  -- written by the kernel just before (h_index=neuron, list=bits: gather_upgate
  -- with the router folded in), whose list there then is the previous layer's
  s.PREFETCH = p.all_active == 1 or (p.h_index ~= "neuron" and p.list ~= "bits")
  -- ws: the sums (atomic: [B][d]; deterministic: [splits][B][d]), then one
  -- arrival counter per output block (GRID_X x TILES), rounded to 16 bytes.
  local sums = p.reduce == "atomic" and req.batch * req.d or p.reduce == "deterministic" and s.SPLITS * req.batch * req.d or 0
  s.WS_SUMS = sums
  s.WS_FLOATS = sums == 0 and 0 or sums + (s.GRID_X * s.TILES + 3) // 4 * 4
  -- norm=add: its arrival counter after those, in 16 more bytes
  s.WS_NORM = s.WS_FLOATS
  if p.norm ~= "none" then s.WS_FLOATS = s.WS_FLOATS + 4 end
  return s
end

local function check_t(req, p)
  for _, name in ipairs(N_ONLY) do
    if p[name] ~= default_of(name) then
      return string.format("%s applies to layout=n only (leave it at %s with layout=t)", name,
        tostring(default_of(name)))
    end
  end
  local s = shape_t(req, p)
  if s.COL_THREADS > p.threads then
    return string.format("cols_per_cta=%d with vec=%d needs %d threads across, more than threads=%d; "
      .. "lower cols_per_cta or raise vec/threads", p.cols_per_cta, p.vec, s.COL_THREADS, p.threads)
  end
  if s.BT * p.vec > MAX_ACC then
    return string.format("batch_tile*vec=%d exceeds %d fp32 accumulators per thread; lower batch_tile or vec",
      s.BT * p.vec, MAX_ACC)
  end
  if p.list == "bits" and (p.all_active == 1 or not s.STAGE_IDS) then
    return string.format("list=bits needs all_active=0 and the expert list in 8 KiB of shared memory "
      .. "(%d experts here); use list=ids", req.f // req.g)
  end
  if p.reduce == "direct" and p.splits ~= 1 then
    return string.format("reduce=direct needs splits=1 (got splits=%d): with several splits the partial sums "
      .. "must meet in ws (reduce=atomic or deterministic)", p.splits)
  end
end

local function check_n(req, p)
  if p.list == "bits" and (p.all_active == 1 or req.f // req.g * 4 > 8192) then
    return string.format("list=bits needs all_active=0 and the expert list in 8 KiB of shared memory "
      .. "(%d experts here); use list=ids", req.f // req.g)
  end
  for _, name in ipairs(T_ONLY) do
    if p[name] ~= default_of(name) then
      return string.format("%s applies to layout=t only (layout=n writes y directly from one kernel; "
        .. "leave %s at %s)", name, name, tostring(default_of(name)))
    end
  end
  if req.g % p.vec ~= 0 then
    return string.format("layout=n needs g >= vec (g=%d, vec=%d): each load reads vec neurons of one expert; "
      .. "use layout=t", req.g, p.vec)
  end
  if p.rows_per_warp * req.batch > MAX_ACC then
    return string.format("rows_per_warp*batch=%d exceeds %d fp32 accumulators per lane; lower rows_per_warp",
      p.rows_per_warp * req.batch, MAX_ACC)
  end
end

function F.check(req, p)
  if p.layout == "t" then return check_t(req, p) end
  return check_n(req, p)
end

local function plan_t(req, p)
  local s = shape_t(req, p)
  local kernels = { { name = "sprig_gather_down", grid = { s.GRID_X, s.SPLITS, s.TILES },
                      block = { p.threads, 1, 1 }, smem = 0 } }
  return { kernels = kernels, workspace = s.WS_FLOATS * 4, values = s }
end

local function plan_n(req, p)
  local cols_per_cta = (p.threads // 32) * p.rows_per_warp
  return {
    kernels = { { name = "sprig_gather_down", grid = { (req.d + cols_per_cta - 1) // cols_per_cta, 1, 1 },
                  block = { p.threads, 1, 1 }, smem = 0 } },
    workspace = p.norm ~= "none" and 16 or 0, -- the norm's arrival counter
    values = { WS_NORM = 0 },
  }
end

function F.plan(req, p)
  if p.layout == "t" then return plan_t(req, p) end
  return plan_n(req, p)
end

-- ws is read and written as float4 and y stored four values at a time by the finalize.
function F.args(req, p, v)
  local E, B, al = req.f // req.g, req.batch, A.vec_align(p.vec)
  local ws = (v.workspace_bytes or 0) // 4
  local bits = p.list == "bits"
  local wd = p.layout == "t"
    and A.ptr("Wd", "T", { req.f, req.d }, { role = "w_down_t", fan_in = req.f, align = al })
    or A.ptr("Wd", "T", { req.d, req.f }, { role = "w_down", fan_in = req.f, align = al })
  local list = {
    wd,
    A.ptr("h", "T", { B, req.f }, { role = "h", align = al }),
    A.ptr("union_ids", "i32", { E }, { role = "union_ids", optional = p.all_active == 1 or bits }),
    A.ptr("union_count", "i32", { 1 }, { dir = bits and "out" or "in", role = "union_count",
                                         optional = p.all_active == 1 }),
    A.ptr("ws", "f32", { ws }, { dir = "scratch", align = 16, optional = ws == 0 }),
    A.ptr("y", "T", { B, req.d }, { dir = "out", role = "y", align = 8 }),
  }
  if p.norm ~= "none" then S.norm_args(list, A, B, req.d) end
  if bits then list[#list + 1] = A.ptr("union_bits", "i32", { (E + 31) // 32 }, { role = "union_bits" }) end
  return list
end

F.verify = "down"

-- layout t: every split streams its share of the active rows (after reading
-- the expert list, hot in L2: its count and ids in one round trip, the ids
-- staged in shared memory where they fit, STAGE_IDS; read from L2 they were a
-- round trip before every step's weight loads), summing in ws (L2 atomics or partials); the
-- last arrival per block then reads its block's sums back (a ticket and a
-- read: two L2 round trips) and writes y. norm=add: S.norm_perf, and with
-- reduce=atomic the norm's last CTA reads the sums and writes y instead (one
-- ticket for the grid, not the blocks' and then the norm's). Its first rows
-- are prefetched before the wait (routed: from the list the router wrote two
-- kernels back; not with h_index=neuron, whose list the kernel just before
-- writes); layout n does not prefetch.
local function main_perf(req, p, v, active)
  local rows = p.all_active == 1 and req.f or math.ceil(req.f * active)
  local B = req.batch
  local main_read = rows * req.d * 2 + B * rows * 2
  if p.layout == "n" then
    local cpc = (p.threads // 32) * p.rows_per_warp
    return { read = main_read, write = B * req.d * 2, inflight = p.unroll, load_bytes = 2 * p.vec,
             working = (req.d + cpc - 1) // cpc, rounds = 2, l2_rounds = 0, grid_syncs = 0 }
  end
  local sums = v.WS_SUMS * 4
  -- the blocks' own finalize (ticket, read-back); reduce=atomic with a norm leaves
  -- it to the norm's last CTA, which reads the sums in y's place
  local folded = p.reduce ~= "direct" and not F.norm_finalizes(p)
  return { read = main_read + sums, write = B * req.d * 2 + (p.reduce == "atomic" and sums or 0),
           inflight = p.unroll, load_bytes = 2 * p.vec, working = v.GRID_X * v.SPLITS * v.TILES, rounds = 1,
           l2_rounds = (p.all_active == 1 and 0 or 1) + (folded and 2 or 0), grid_syncs = folded and 1 or 0,
           prefetch = v.PREFETCH }
end

-- Whether the folded norm finalizes the atomic sums itself (the template's test).
function F.norm_finalizes(p) return p.layout == "t" and p.reduce == "atomic" and p.norm ~= "none" end

function F.perf(req, p, v, active)
  local e = main_perf(req, p, v, active)
  return { p.norm ~= "none" and S.norm_perf(e, req.batch, req.d, p.threads, F.norm_finalizes(p)) or e }
end

return F
