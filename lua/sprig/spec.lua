-- Pieces the family specs share: parameter declarations that mean the same in
-- every family that has them, the checks that follow from the hardware, and
-- the MLP key conventions (lua/sprig/mlp.lua). A spec copies what it uses:
--   local S = require("sprig.spec")
--   params = { S.threads(), S.vec(), S.unroll("K chunks in flight per warp"), ... }
local M = {}

-- Threads per CTA (the common choices; `values` overrides).
function M.threads(values, default, doc)
  return { name = "threads", values = values or { 64, 128, 256, 512 }, default = default or 256,
           doc = doc or "threads per CTA" }
end

function M.vec(doc)
  return { name = "vec", values = { 2, 4, 8 }, default = 8, doc = doc or "elements per load (8 = 16 bytes)" }
end

function M.unroll(doc, values, default)
  return { name = "unroll", values = values or { 1, 2, 4 }, default = default or 2,
           doc = doc or "K chunks in flight per warp" }
end

function M.rows_per_warp(doc)
  return { name = "rows_per_warp", values = { 1, 2, 4 }, default = 1, doc = doc }
end

function M.min_blocks(of)
  return { name = "min_blocks", values = { 0, 1, 2, 4 }, default = 1,
           doc = "__launch_bounds__ minimum CTAs per SM" .. (of or "") .. " (caps registers at "
             .. "65536/(threads*min_blocks)); 0 leaves the register target to ptxas, which can spill near its own cap" }
end

function M.all_active(what)
  return { name = "all_active", values = { 0, 1 }, default = 0,
           doc = "1: every expert active for every token (" .. what .. "); routing arguments unused, may be NULL" }
end

function M.interleave()
  return { name = "interleave", values = { 0, 1 }, default = 0,
           doc = "0: Wg, Wu are [f][d]; 1: Wg is [E][2][g][d] (each expert's g gate rows, then its g up rows), Wu unused" }
end

-- norm=add, a problem parameter of the kernels whose output feeds the residual
-- stream (dense_gemv, gather_down): the CTA that arrives last adds y into the
-- fp32 residual and writes the next RMSNorm's output (sp_norm_epilogue in
-- templates/common.cuh.lua), so that norm needs no launch of its own.
function M.norm()
  return { name = "norm", values = { "none", "add", "set" }, default = "none",
           doc = "add: the last CTA also adds y into the fp32 residual res and writes normed = rmsnorm(res) * norm_w; "
             .. "set: the same with res = y" }
end

-- SliceGPT's variants of the folded norm (dense_gemv), as the rmsnorm family's
-- norm_dim, weightless and raw_out.
function M.norm_options()
  return {
    { name = "norm_dim", range = { 0, 1048576 }, default = 0,
      doc = "norm: divisor of the sum of squares (0: y's width; else the original hidden size of a sliced model)" },
    { name = "norm_weightless", values = { 0, 1 }, default = 0, doc = "norm: 1 = no norm_w (it may be NULL)" },
    { name = "norm_raw", values = { 0, 1 }, default = 0,
      doc = "norm: 1 = one more trailing argument T *raw [B][width], written with the new residual in T" },
  }
end

-- Its trailing arguments, appended to `list` (y is [B][d]).
function M.norm_args(list, A, B, d, p)
  local pair = M.norm_pair_align(d)
  list[#list + 1] = A.ptr("res", "f32", { B, d }, { dir = "inout", role = "residual", align = 4 * pair })
  list[#list + 1] = A.ptr("norm_w", "T", { d }, { role = "norm_weight", optional = p and p.norm_weightless == 1,
                                                  align = 2 * pair })
  list[#list + 1] = A.ptr("normed", "T", { B, d }, { dir = "out", role = "normed", align = 2 * pair })
  list[#list + 1] = A.scalar("eps", "f32", { role = "eps" })
  if p and p.norm_raw == 1 then
    list[#list + 1] = A.ptr("raw", "T", { B, d }, { dir = "out", role = "raw", align = 2 * pair })
  end
  return list
end

-- A row norm over an even d takes its columns in pairs (sp_rmsnorm_row_held):
-- its pointers are aligned to two elements (2), else to one (1).
function M.norm_pair_align(d) return d % 2 == 0 and 2 or 1 end

-- The round trips one CTA's RMSNorm of a row of d takes (sp_rmsnorm_row,
-- templates/common.cuh.lua). A thread holding at most NORM_HELD columns issues
-- every load in order (the weight's first) and fences before its first store:
-- one, in the sm_90 SASS. Wider rows go NORM_CHUNK columns at a time over two
-- passes (one per chunk per pass). test_analyze (g) holds the SASS to this count.
M.NORM_HELD, M.NORM_CHUNK = 24, 8

-- Whether the row takes the held path: even, and at most NORM_HELD columns a
-- thread in pairs (the template's own test, sp_rmsnorm_row).
function M.norm_held(d, threads)
  return d % 2 == 0 and 2 * math.ceil(d / 2 / threads) <= M.NORM_HELD
end

function M.norm_rounds(d, threads)
  if M.norm_held(d, threads) then return 1 end
  return 2 * math.ceil(math.ceil(d / threads) / M.NORM_CHUNK)
end

-- The loads a thread of that norm has in flight at once.
function M.norm_inflight(d, threads)
  local per = math.ceil(d / threads)
  return M.norm_held(d, threads) and per or math.min(per, M.NORM_CHUNK)
end

-- Its cost in the static model (docs/perf-model.md), added to the kernel's
-- entry e: one more grid-wide dependency (the arrival ticket: an L2 round
-- trip), then the last CTA's B rows of d values (y and the residual hot in L2,
-- and the norm weight too: the kernel's CTAs prefetched it when they started,
-- sp_norm_prefetch), norm_rounds each. from_sums: the norm reads a split-K
-- kernel's fp32 sums in y's place and finalizes y itself (gather_down
-- reduce=atomic); e already counts those bytes, as its own finalize's.
function M.norm_perf(e, B, d, threads, from_sums)
  local n = B * d
  e.read, e.write = e.read + n * ((from_sums and 0 or 2) + 4 + 2), e.write + n * (4 + 2)
  e.l2_rounds, e.grid_syncs = (e.l2_rounds or 0) + 1 + B * M.norm_rounds(d, threads), (e.grid_syncs or 0) + 1
  e.tail = B * M.norm_rounds(d, threads) -- the kernel's last ticket is the norm's
  return e
end

-- The round trips of the last CTA's compaction of `lists` bitmaps of `words`
-- words each on `threads` threads (sp_router_compact, templates/routing.cuh.lua):
-- a thread reads its run of each list's words, those of as many lists as keep
-- it at 16 loads or fewer in one round trip.
function M.compaction_rounds(lists, words, threads)
  return math.ceil(lists / math.max(1, 16 // math.ceil(words / threads)))
end

-- Resident threads per SM that every supported architecture holds (sm_75: 1024).
M.MAX_RESIDENT_THREADS = 1024

-- The check every kernel with a min_blocks parameter needs: nil, or why not.
function M.check_min_blocks(p)
  if p.min_blocks * p.threads > M.MAX_RESIDENT_THREADS then
    return string.format("min_blocks=%d with threads=%d asks for %d resident threads per SM, more than "
      .. "every architecture holds (%d on sm_75); lower min_blocks", p.min_blocks, p.threads,
      p.min_blocks * p.threads, M.MAX_RESIDENT_THREADS)
  end
end

-- ksplit warps share one row group: a CTA needs at least that many warps.
function M.check_ksplit(p)
  if p.ksplit > p.threads // 32 then
    return string.format("ksplit=%d needs at least %d warps per CTA, threads=%d has %d; raise threads or lower ksplit",
      p.ksplit, p.ksplit, p.threads, p.threads // 32)
  end
end

-- The MLP key conventions (tune.mlp, lua/sprig/mlp.lua).
-- Families that serve both regimes: every expert on at sparsity 0, routed above.
M.MLP_ALL_ACTIVE = {
  fixed = function(sparsity) return { sparsity == 0 and "all_active=1" or "all_active=0" } end,
}

return M
