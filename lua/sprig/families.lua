-- Kernel families: the registry, request validation and parameter resolution.
--
-- Each family lives in lua/families/<name>.lua and returns a table:
--   name, summary, template   -- template path under templates/
--   order                     -- optional: its place in the registry (listings,
--                             -- tuning keys); unordered families come last, by name
--   params = { {name=, values={...} | range={lo,hi}, default=, doc=}, ... }
--                             -- declaration order is the canonical order;
--                             -- `values` doubles as the tuning space
--   check(req, p)             -- optional: an error message for combinations
--                             -- the kernel cannot do, or nil
--   plan(req, p)              -- { kernels = {{name=, grid={x,y,z}, block={x,y,z},
--                             --   smem=}}, workspace = bytes, values = {...} }
--                             -- values are extra names the template sees
--   args(req, p, v)           -- the kernels' argument list (lua/sprig/args.lua),
--                             -- v: the values the template saw
--   verify                    -- how the tuner checks the outputs: a reference
--                             -- kind the C side implements ("gemv", "router",
--                             -- "swiglu", "down", "mlp"), or a function
--                             -- (req, p) returning one; absent with reference
--   reference(req, p, inputs) -- instead of verify: the outputs in Lua, from
--                             -- the inputs ({name = {values}}), as
--                             -- {name = {values}} (small elementwise families)
local args = require("sprig.args")

local M = {}

-- The registry: every lua/families/<name>.lua embedded at build time (adding a
-- family is adding its spec; nothing lists it), in the order of the specs'
-- `order` field, then by name. Found once per generator.
local names

local function registry(require_spec)
  if names then return names end
  local found, order = {}, {}
  for _, path in ipairs(sp_embedded_list("lua/families/")) do
    local name = path:match("^lua/families/([%w_]+)%.lua$")
    if name then
      found[#found + 1] = name
      order[name] = require_spec("families." .. name).order or math.huge
    end
  end
  table.sort(found, function(a, b)
    if order[a] ~= order[b] then return order[a] < order[b] end
    return a < b
  end)
  names = found
  return found
end

M.DTYPES = { fp16 = true, bf16 = true }
M.EXPERT_SIZES = { 1, 16, 32, 64, 128 }
M.MAX_BATCH = 64

local cache = {}

function M.get(name, require_spec)
  if type(name) ~= "string" then error("family must be a string", 0) end
  local known = false
  for _, n in ipairs(registry(require_spec)) do known = known or n == name end
  if not known then
    error(string.format("unknown kernel family '%s' (known: %s)", name, table.concat(registry(require_spec), ", ")), 0)
  end
  if not cache[name] then cache[name] = require_spec("families." .. name) end
  return cache[name]
end

-- The families whose spec is present (a family is one file in lua/families/).
function M.available(require_spec)
  local out = {}
  for _, n in ipairs(registry(require_spec)) do
    if pcall(M.get, n, require_spec) then out[#out + 1] = n end
  end
  return out
end

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function fmt_list(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = tostring(v) end
  return table.concat(out, ", ")
end

-- Checks the problem description shared by every family.
function M.check_request(req)
  local function int(name, v)
    if math.type(v) ~= "integer" then error(string.format("%s must be an integer", name), 0) end
  end
  int("d", req.d); int("f", req.f); int("batch", req.batch); int("g", req.g)
  for _, k in ipairs({ "d", "f" }) do
    local v = req[k]
    if v <= 0 or v % 8 ~= 0 then
      -- A SliceGPT width sliced with --round-interval 1 (3276 for LLaMA-2-7B at 20%) lands here:
      -- name the width its default round-interval 8 would have given.
      local hint = v > 8 and string.format("; for a SliceGPT-sliced model, slice with round_interval 8 (width %d)",
        v - v % 8) or ""
      error(string.format("%s=%d is not a positive multiple of 8 (sprig needs 16-byte rows%s)", k, v, hint), 0)
    end
    if v > 1048576 then error(string.format("%s=%d is larger than 1048576", k, v), 0) end
  end
  if not M.DTYPES[req.dtype] then
    error(string.format("unknown dtype '%s' (known: fp16, bf16)", tostring(req.dtype)), 0)
  end
  if req.batch < 1 or req.batch > M.MAX_BATCH then
    error(string.format("batch=%d is outside 1..%d", req.batch, M.MAX_BATCH), 0)
  end
  if not contains(M.EXPERT_SIZES, req.g) then
    error(string.format("g=%d is not a supported expert size (%s)", req.g, fmt_list(M.EXPERT_SIZES)), 0)
  end
  if req.f % req.g ~= 0 then
    error(string.format("g=%d does not divide f=%d", req.g, req.f), 0)
  end
end

-- "a=1,b=x" -> { a = 1, b = "x" }, numbers converted.
function M.parse_params(text)
  local out = {}
  if text == nil or text == "" then return out end
  for item in (text .. ","):gmatch("([^,]*),") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then
      local k, v = item:match("^([%w_]+)%s*=%s*(.-)$")
      if not k or v == "" then
        error(string.format("malformed parameter '%s' (expected key=value)", item), 0)
      end
      if out[k] ~= nil then error(string.format("parameter '%s' given twice", k), 0) end
      out[k] = math.tointeger(tonumber(v)) or tonumber(v) or v
    end
  end
  return out
end

-- Fills defaults and validates every given value against the declaration.
function M.resolve(fam, given)
  local p, declared = {}, {}
  for _, decl in ipairs(fam.params) do
    declared[decl.name] = true
    local v = given[decl.name]
    if v == nil then v = decl.default end
    if decl.values then
      if not contains(decl.values, v) then
        error(string.format("%s: %s=%s is out of range (allowed: %s)", fam.name, decl.name,
          tostring(v), fmt_list(decl.values)), 0)
      end
    elseif decl.range then
      if math.type(v) ~= "integer" or v < decl.range[1] or v > decl.range[2] then
        error(string.format("%s: %s=%s is out of range (allowed: %d..%d)", fam.name, decl.name,
          tostring(v), decl.range[1], decl.range[2]), 0)
      end
    end
    p[decl.name] = v
  end
  local unknown = {}
  for k in pairs(given) do if not declared[k] then unknown[#unknown + 1] = k end end
  table.sort(unknown)
  if #unknown > 0 then
    local names = {}
    for i, decl in ipairs(fam.params) do names[i] = decl.name end
    error(string.format("%s: unknown parameter '%s' (known: %s)", fam.name, unknown[1],
      table.concat(names, ", ")), 0)
  end
  return p
end

-- The declared argument list (normalized) and the verify kind of a plan.
function M.signature(fam, req, p, values)
  if not fam.args then error(string.format("%s: the spec declares no args()", fam.name), 0) end
  local list = args.normalize(fam.name, fam.args(req, p, values))
  if #list > 16 then error(string.format("%s: %d arguments, more than 16", fam.name, #list), 0) end
  local verify = fam.verify
  if type(verify) == "function" then verify = verify(req, p) end
  if fam.reference then verify = "lua" end
  return list, verify or ""
end

-- The canonical name of one exact kernel: same request, same key.
function M.key(fam, req, p)
  local parts = {}
  for _, decl in ipairs(fam.params) do
    parts[#parts + 1] = decl.name .. "=" .. tostring(p[decl.name])
  end
  return string.format("%s:d=%d,f=%d,dtype=%s,batch=%d,g=%d|%s", fam.name, req.d, req.f,
    req.dtype, req.batch, req.g, table.concat(parts, ","))
end

return M
