-- Tuning spaces: which parameter combinations of a family the tuner may try
-- for one request.
--
-- A family's `params` declarations with a `values` list span the space, in
-- declaration order. Some parameters are not for tuning: the caller fixes
-- them (the request's `params`, e.g. "op=down" for dense_gemv: up and down are
-- different problems), or the family pins or skips them in its spec:
--   tune = { fixed = { name = value, ... },  -- pinned while tuning
--            skip  = { "name", ... } }       -- not varied: the default is used
-- The request's fixed params win over tune.fixed, which wins over the default.
-- Params declared with a `range` instead of `values` are never varied.
-- Combinations the family's check() rejects are not candidates.
--
-- Sampling and neighbours are plain arithmetic on the candidates' coordinates
-- (index of each varied parameter's value), done in C by tuner/space.c, so the
-- search runs without a Lua state.
local families = require("sprig.families")

local M = {}

-- Beyond this many raw combinations the caller must pin parameters.
M.MAX_RAW = 1 << 20

-- The canonical parameter string: every parameter, declaration order.
local function params_string(fam, p)
  local parts = {}
  for i, decl in ipairs(fam.params) do parts[i] = decl.name .. "=" .. tostring(p[decl.name]) end
  return table.concat(parts, ",")
end

-- Resolves the pinned values (request's fixed params over the family's
-- tune.fixed over defaults) and the varied dimensions.
local function split(fam, req)
  local given = families.parse_params(req.params)
  local tune = fam.tune or {}
  local pinned = {}
  for k, v in pairs(tune.fixed or {}) do pinned[k] = v end
  for k, v in pairs(given) do pinned[k] = v end
  -- resolve() rejects unknown names and out-of-range values in either source.
  local base = families.resolve(fam, pinned)
  local skip = {}
  for _, name in ipairs(tune.skip or {}) do skip[name] = true end
  local dims = {}
  for _, decl in ipairs(fam.params) do
    if decl.values and pinned[decl.name] == nil and not skip[decl.name] then
      dims[#dims + 1] = { name = decl.name, values = decl.values, default = decl.default }
    end
  end
  return base, dims
end

local function raw_count(dims)
  local n = 1
  for _, dim in ipairs(dims) do
    n = n * #dim.values
    if n > M.MAX_RAW then return n end
  end
  return n
end

-- req: {family, d, f, dtype, batch, g, params = fixed "k=v,..."}.
-- Returns {family, dims = {{name, values = {strings}}...}, raw = count,
--          candidates = {{params = "k=v,...", coords = {0-based}}...},
--          default = 0-based index of the defaults or -1}.
-- Errors (bad request, bad fixed params, too large a space) are raised.
function M.build(req, require_spec)
  local fam = families.get(req.family, require_spec)
  families.check_request(req)
  local base, dims = split(fam, req)
  local raw = raw_count(dims)
  if raw > M.MAX_RAW then
    error(string.format("%s: tuning space has more than %d combinations; fix some parameters",
      fam.name, M.MAX_RAW), 0)
  end
  local out = { family = fam.name, dims = {}, raw = raw, candidates = {}, default = -1 }
  local default_coords = {}
  for i, dim in ipairs(dims) do
    local vals = {}
    for j, v in ipairs(dim.values) do
      vals[j] = tostring(v)
      if v == dim.default then default_coords[i] = j - 1 end
    end
    out.dims[i] = { name = dim.name, values = vals }
  end
  -- Odometer over the dimensions, last dimension fastest (deterministic order).
  local idx = {}
  for i = 1, #dims do idx[i] = 1 end
  local p = {}
  for k, v in pairs(base) do p[k] = v end
  for _ = 1, raw do
    for i, dim in ipairs(dims) do p[dim.name] = dim.values[idx[i]] end
    local msg = fam.check and fam.check(req, p)
    if not msg then
      local coords, is_default = {}, true
      for i = 1, #dims do
        coords[i] = idx[i] - 1
        is_default = is_default and coords[i] == default_coords[i]
      end
      out.candidates[#out.candidates + 1] = { params = params_string(fam, p), coords = coords }
      if is_default then out.default = #out.candidates - 1 end
    end
    for i = #dims, 1, -1 do
      idx[i] = idx[i] + 1
      if idx[i] <= #dims[i].values then break end
      idx[i] = 1
    end
  end
  return out
end

-- The family's defaults for req with its fixed params applied, as the
-- canonical string, and the check() message if that combination is invalid.
function M.defaults(req, require_spec)
  local fam = families.get(req.family, require_spec)
  families.check_request(req)
  local base = split(fam, req)
  local msg = fam.check and fam.check(req, base)
  return params_string(fam, base), msg
end

-- Whether params (a full or partial "k=v,..." string) is a valid
-- combination for req: true, or false and the reason.
function M.valid(req, params, require_spec)
  local ok, err = pcall(function()
    local fam = families.get(req.family, require_spec)
    families.check_request(req)
    local p = families.resolve(fam, families.parse_params(params))
    local msg = fam.check and fam.check(req, p)
    if msg then error(msg, 0) end
  end)
  if ok then return true end
  return false, tostring(err)
end

return M
