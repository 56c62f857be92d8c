-- Decode attention for one sequence (batch 1) with a KV cache, RoPE and the
-- cache append fused in front. Grouped-query attention: q head h reads kv head
-- h / (heads / kv_heads).
-- Request: the model's shape (d = hidden size, f = intermediate size; neither is
-- used by the kernels), batch = 1; the attention shape is in the params heads,
-- kv_heads, head_dim (problem parameters, never tuned), so every request of the
-- MLP families' shape renders too (defaults: LLaMA-3-8B's 32, 8, 128).
--   qkv      T [(heads + 2*kv_heads) * head_dim]: q, then k, then v of this token
--            (one dense_gemv over the concatenated projections writes it)
--   inv_freq fp32 [head_dim/2]: RoPE frequencies, any scaling already applied
--   k_cache, v_cache  T [max_seq][kv_heads*head_dim]: this layer's cache
--   pos      int [1]: this token's position (device-side, so the launch
--            sequence does not change from token to token)
--   ws       fp32 workspace (splits > 1): [heads][splits][head_dim + 2] partials, then
--            one arrival counter per head (zero at allocation, left zero)
--   out      T [heads*head_dim]: softmax(q k^T / sqrt(head_dim)) v over positions 0..pos
-- One kernel (templates/attention_decode.cu.lua):
--   sprig_attn_decode(const T *qkv, const float *inv_freq, T *k_cache, T *v_cache, const int *pos,
--                     float *ws, T *out)
--   grid (heads, splits): split s takes a contiguous share of the pos+1 positions (sized
--   on the device); lane groups of head_dim/vec lanes own one position each, `unroll` of
--   them in flight, online softmax in fp32 per group, groups merged in shared memory.
--   RoPE (Hugging Face rotate_half: dimension i pairs with i + head_dim/2) is applied to
--   q and to this token's k as they are read from qkv (qkv is left as it was); the
--   first CTA of each kv head holding pos appends k (rotated) and v to the caches. With
--   splits > 1 the last split of a head to arrive merges the splits' (max, sum, acc).
local A = require("sprig.args")

local F = {
  name = "attention_decode",
  order = 8, -- position in the registry (sprig families, tuning keys)
  summary = "decode attention (batch 1, GQA) over a KV cache, with RoPE and the cache append fused in",
  template = "templates/attention_decode.cu.lua",
  params = {
    { name = "heads", range = { 1, 1024 }, default = 32, doc = "query heads" },
    { name = "kv_heads", range = { 1, 1024 }, default = 8, doc = "key/value heads (divides heads; = heads without GQA)" },
    { name = "head_dim", range = { 2, 256 }, default = 128, doc = "dimensions per head (even)" },
    { name = "threads", values = { 32, 64, 128, 256 }, default = 128, doc = "threads per CTA of the decode kernel" },
    { name = "vec", values = { 2, 4, 8 }, default = 8, doc = "elements per K/V load (8 = 16 bytes); divides head_dim" },
    { name = "splits", values = { 0, 1, 2, 4, 8, 16, 32 }, default = 0,
      doc = "CTAs per head sharing the positions (flash-decoding); 0: enough for two CTAs per SM of a "
        .. "132-SM GPU (a power of two, at most 32)" },
    { name = "unroll", values = { 1, 2, 4, 8 }, default = 4,
      doc = "positions each lane group has in flight (their K and V loads issued together)" },
    { name = "window", range = { 0, 1 << 24 }, default = 0,
      doc = "sliding-window attention (Mistral): only the last `window` positions, as transformers' mask "
        .. "kv > q - window; 0: all" },
  },
  -- the shape and the window are the model's, not tuning choices
  tune = { skip = { "heads", "kv_heads", "head_dim", "window" } },
}

local TARGET_CTAS = 2 * 132

local function next_pow2(n)
  local p = 1
  while p < n do p = p * 2 end
  return p
end

function F.check(req, p)
  local hd = p.head_dim
  if hd % 2 ~= 0 then return string.format("head_dim=%d must be even (RoPE pairs i with i + head_dim/2)", hd) end
  local heads, kv = p.heads, p.kv_heads
  if heads % kv ~= 0 then
    return string.format("heads=%d is not a multiple of kv_heads=%d", heads, kv)
  end
  if req.batch ~= 1 then
    return string.format("batch=%d: decode attention serves one sequence (batch 1)", req.batch)
  end
  if hd % p.vec ~= 0 then
    return string.format("vec=%d does not divide head_dim=%d; lower vec", p.vec, hd)
  end
end

-- Shapes derived from (req, p), seen by the template.
local function shape(req, p)
  local s = {}
  s.HD = p.head_dim
  s.HEADS = p.heads
  s.KV_HEADS = p.kv_heads
  s.CH = s.HD // p.vec                      -- vec-wide chunks per head row
  s.LPP = math.min(32, next_pow2(s.CH))     -- lanes per position (a power of two)
  s.NC = (s.CH + s.LPP - 1) // s.LPP        -- chunks per lane
  s.PPW = 32 // s.LPP                       -- positions per warp per step
  s.SPLITS = p.splits ~= 0 and p.splits or math.min(32, next_pow2((TARGET_CTAS + s.HEADS - 1) // s.HEADS))
  s.WS_PARTS = s.SPLITS > 1 and s.HEADS * s.SPLITS * (s.HD + 2) or 0
  s.SCALE = string.format("%.9ef", 1.0 / math.sqrt(s.HD))
  return s
end

function F.plan(req, p)
  local s = shape(req, p)
  local kernels = {
    { name = "sprig_attn_decode", grid = { s.HEADS, s.SPLITS, 1 }, block = { p.threads, 1, 1 }, smem = 0 },
  }
  local workspace = s.SPLITS > 1 and (s.WS_PARTS + (s.HEADS + 3) // 4 * 4) * 4 or 0
  return { kernels = kernels, workspace = workspace, values = s }
end

-- The caches hold max_seq positions, which the request does not carry (0: not known here).
function F.args(req, p, v)
  local hd, kvd = p.head_dim, p.kv_heads * p.head_dim
  return {
    A.ptr("qkv", "T", { (p.heads + 2 * p.kv_heads) * hd }, { role = "qkv" }),
    A.ptr("inv_freq", "f32", { hd // 2 }, { role = "inv_freq" }),
    A.ptr("k_cache", "T", { 0, kvd }, { dir = "inout", role = "k_cache", align = A.vec_align(p.vec) }),
    A.ptr("v_cache", "T", { 0, kvd }, { dir = "inout", role = "v_cache", align = A.vec_align(p.vec) }),
    A.ptr("pos", "i32", { 1 }, { role = "pos" }),
    A.ptr("ws", "f32", { (v.workspace_bytes or 0) // 4 }, { dir = "scratch", optional = v.SPLITS == 1 }),
    A.ptr("out", "T", { p.heads * hd }, { dir = "out", role = "attn_out" }),
  }
end

-- At a context of `context` positions (the model's step reads the whole cache):
-- the position (hot) and then the caches, `unroll` positions' K and V per lane
-- group in flight; with splits > 1 the last split of each head merges (a
-- grid-wide dependency per head). The first positions' cache lines are
-- prefetched before the wait.
function F.perf(req, p, v, active, context)
  context = context or 512
  if p.window > 0 then context = math.min(context, p.window) end
  local hd, kvd = p.head_dim, p.kv_heads * p.head_dim
  local cache = 2 * context * kvd * 2
  local merged = v.SPLITS > 1
  local parts = merged and p.heads * v.SPLITS * (hd + 2) * 4 or 0
  return {
    { read = cache + (p.heads + 2 * p.kv_heads) * hd * 2 + parts, unsized = cache,
      write = p.heads * hd * 2 + 2 * kvd * 2 + parts, inflight = 2 * v.NC * p.unroll, load_bytes = 2 * p.vec,
      -- merged: the last split's ticket, then every split's max and sum and each
      -- thread's columns of every split, read at once (one round trip: tail)
      working = p.heads * v.SPLITS, rounds = 1, l2_rounds = 1 + (merged and 2 or 0), grid_syncs = merged and 1 or 0,
      tail = merged and 1 or nil, prefetch = true },
  }
end

return F
