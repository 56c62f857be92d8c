-- The MLP's tuning keys and the pipelines that compute it, as the family
-- specs declare them. A family takes part when its spec has
--   tune.mlp = { fixed = function(sparsity) -> { "k=v,...", ... },   -- its keys' variants
--                from_batch = n,                                     -- tuned by default from batch n (1)
--                by_default = false }                                -- only when named (--family)
-- (sprig tune --model tunes, per batch and sparsity, every variant `fixed`
-- returns; sprig bench and the runtime look the same keys up). Nothing on the
-- C side lists the families.
local families = require("sprig.families")

local M = {}

local function spec(name, require_spec)
  local fam = families.get(name, require_spec)
  return fam.tune and fam.tune.mlp and fam or nil
end

-- The families with MLP keys, in registry order.
function M.families(require_spec)
  local out = {}
  for _, name in ipairs(families.available(require_spec)) do
    if spec(name, require_spec) then out[#out + 1] = name end
  end
  return out
end

-- The fixed params of each variant of family at sparsity (percent): a list,
-- empty where the family has no key there.
function M.fixed(name, sparsity, require_spec)
  local fam = spec(name, require_spec)
  if not fam then return {} end
  return fam.tune.mlp.fixed(sparsity)
end

-- Whether family is tuned by default at this batch.
function M.default(name, batch, require_spec)
  local fam = spec(name, require_spec)
  return fam ~= nil and fam.tune.mlp.by_default ~= false and batch >= (fam.tune.mlp.from_batch or 1)
end

-- The ways sprig bench computes the MLP, the router in front when sparse:
-- stages {family, variant (1-based, of M.fixed at the case's sparsity)[, params
-- set over the looked-up ones]}. routes = true: the pipeline routes itself (no
-- router in front; sparse cases only): the GPU backend's LTE MLP.
M.PIPELINES = {
  { name = "gather_upgate+gather_down", stages = { { "gather_upgate", 1 }, { "gather_down", 1 } } },
  { name = "gather_upgate[router]+gather_down", routes = true,
    stages = { { "gather_upgate", 1, "route=sigmoid" }, { "gather_down", 1, "h_index=neuron" } } },
  { name = "fused_mlp", stages = { { "fused_mlp", 1 } } },
  { name = "gather_gemm", stages = { { "gather_gemm", 1 }, { "gather_gemm", 2 } } },
}
M.ROUTER = { "router", 1 }

function M.pipelines() return M.PIPELINES, M.ROUTER end

return M
