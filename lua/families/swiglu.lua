-- SwiGLU, elementwise: h[i] = silu(gate[i]) * up[i] over the n = batch * f
-- values of a dense MLP's gate and up projections (what the cuBLAS baseline
-- runs between its two GEMMs). T in and out, fp32 arithmetic.
-- Kernel (templates/swiglu.cu.lua):
--   sprig_swiglu(const T *gate, const T *up, T *h)
-- Each thread loads unroll vectors of vec elements from gate and up (all of
-- them before the first store, so they are in flight together), then stores
-- unroll vectors of h; the grid covers n once. f is a multiple of 8, so is n,
-- and every vector is whole.
local A = require("sprig.args")
local S = require("sprig.spec")

local F = {
  name = "swiglu",
  summary = "elementwise SwiGLU h = silu(gate) * up (the dense baseline's activation)",
  template = "templates/swiglu.cu.lua",
  params = {
    S.threads({ 64, 128, 256, 512, 1024 }),
    S.vec(),
    S.unroll("vectors of each input in flight per thread", { 1, 2, 4, 8 }, 2),
  },
  -- Tuned only when named (sprig tune --family swiglu), at sparsity 0: it has no routing.
  tune = { mlp = { fixed = function(sparsity) return sparsity == 0 and { "" } or {} end, by_default = false } },
}

function F.plan(req, p)
  local n = req.batch * req.f
  local per_cta = p.threads * p.vec * p.unroll
  return {
    kernels = { { name = "sprig_swiglu", grid = { (n + per_cta - 1) // per_cta, 1, 1 },
                  block = { p.threads, 1, 1 }, smem = 0 } },
    values = { N = n },
  }
end

function F.args(req, p)
  local al = A.vec_align(p.vec)
  return {
    A.ptr("gate", "T", { req.batch, req.f }, { align = al }),
    A.ptr("up", "T", { req.batch, req.f }, { align = al }),
    A.ptr("h", "T", { req.batch, req.f }, { dir = "out", align = al }),
  }
end

-- The tuner's reference, from the math: no C reference is needed.
function F.reference(req, p, inputs)
  local gate, up, h = inputs.gate, inputs.up, {}
  for i = 1, #gate do
    local g = gate[i]
    h[i] = g / (1 + math.exp(-g)) * up[i]
  end
  return { h = h }
end

-- Two streams in, one out; every thread keeps 2*unroll vectors in flight.
function F.perf(req, p)
  local n = req.batch * req.f
  local per_cta = p.threads * p.vec * p.unroll
  return { { read = 2 * n * 2, write = n * 2, inflight = 2 * p.unroll, load_bytes = 2 * p.vec,
             working = (n + per_cta - 1) // per_cta, rounds = 1, hot = true } }
end

return F
