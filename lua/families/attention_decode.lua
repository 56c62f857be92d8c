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
--   ws       fp32 workspace: [heads][splits][head_dim + 2] partials (splits > 1)
--   out      T [heads*head_dim]: softmax(q k^T / sqrt(head_dim)) v over positions 0..pos
-- Kernels (templates/attention_decode.cu.lua), all with the signature
--   (T *qkv, const float *inv_freq, T *k_cache, T *v_cache, const int *pos, float *ws, T *out)
--   sprig_attn_rope     RoPE (Hugging Face rotate_half: dimension i pairs with i + head_dim/2)
--                       on q in place and on k into k_cache[pos]; v copied to v_cache[pos]
--   sprig_attn_decode   grid (heads, splits): split s takes a contiguous share of the
--                       pos+1 positions (sized on the device); lane groups of
--                       head_dim/vec lanes own one position each, online softmax in fp32
--                       per group, groups merged in shared memory
--   sprig_attn_combine  (splits > 1) merges the splits' (max, sum, acc) partials
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
    { name = "splits", values = { 1, 2, 4, 8, 16, 32 }, default = 4,
      doc = "CTAs per head sharing the positions (flash-decoding); > 1 adds the combine kernel" },
  },
  tune = { skip = { "heads", "kv_heads", "head_dim" } },
}

local ROPE_THREADS = 128

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
  s.ROPE_ITEMS = (s.HEADS + s.KV_HEADS) * (s.HD // 2) + s.KV_HEADS * s.HD // 2
  s.ROPE_THREADS = ROPE_THREADS
  s.SCALE = string.format("%.9ef", 1.0 / math.sqrt(s.HD))
  return s
end

function F.plan(req, p)
  local s = shape(req, p)
  local kernels = {
    { name = "sprig_attn_rope", grid = { (s.ROPE_ITEMS + ROPE_THREADS - 1) // ROPE_THREADS, 1, 1 },
      block = { ROPE_THREADS, 1, 1 }, smem = 0 },
    { name = "sprig_attn_decode", grid = { s.HEADS, p.splits, 1 }, block = { p.threads, 1, 1 }, smem = 0 },
  }
  local workspace = 0
  if p.splits > 1 then
    kernels[3] = { name = "sprig_attn_combine", grid = { s.HEADS, 1, 1 },
                   block = { math.min(256, 32 * ((s.HD + 31) // 32)), 1, 1 }, smem = 0 }
    workspace = s.HEADS * p.splits * (s.HD + 2) * 4
  end
  return { kernels = kernels, workspace = workspace, values = s }
end

-- The caches hold max_seq positions, which the request does not carry (0: not known here).
function F.args(req, p, v)
  local hd, kvd = p.head_dim, p.kv_heads * p.head_dim
  return {
    A.ptr("qkv", "T", { (p.heads + 2 * p.kv_heads) * hd }, { dir = "inout", role = "qkv" }),
    A.ptr("inv_freq", "f32", { hd // 2 }, { role = "inv_freq" }),
    A.ptr("k_cache", "T", { 0, kvd }, { dir = "inout", role = "k_cache", align = A.vec_align(p.vec) }),
    A.ptr("v_cache", "T", { 0, kvd }, { dir = "inout", role = "v_cache", align = A.vec_align(p.vec) }),
    A.ptr("pos", "i32", { 1 }, { role = "pos" }),
    A.ptr("ws", "f32", { (v.workspace_bytes or 0) // 4 }, { dir = "scratch", optional = p.splits == 1 }),
    A.ptr("out", "T", { p.heads * hd }, { dir = "out", role = "attn_out" }),
  }
end

-- At a context of `context` positions (the model's step reads the whole cache).
function F.perf(req, p, v, active, context)
  context = context or 512
  local hd, kvd = p.head_dim, p.kv_heads * p.head_dim
  local cache = 2 * context * kvd * 2
  local list = {
    { read = (p.heads + 2 * p.kv_heads) * hd * 2, write = (p.heads + 2 * p.kv_heads) * hd * 2, inflight = 1,
      load_bytes = 2, working = v.ROPE_ITEMS // v.ROPE_THREADS + 1, rounds = 1, hot = true },
    { read = cache + p.heads * hd * 2, unsized = cache, write = p.splits > 1 and p.heads * p.splits * (hd + 2) * 4 or p.heads * hd * 2,
      inflight = 2 * v.NC, load_bytes = 2 * p.vec, working = p.heads * p.splits, rounds = 3 },
  }
  if p.splits > 1 then
    list[3] = { read = p.heads * p.splits * (hd + 2) * 4, write = p.heads * hd * 2, inflight = 1, load_bytes = 4,
                working = p.heads, rounds = 2, hot = true }
  end
  return list
end

return F
