-- The entry point the C side calls: request in, plan out.
-- `load_file(path)` (from C) returns an embedded or overridden file's text.
local families = require("sprig.families")
local template = require("sprig.template")
local models = require("sprig.models")

local M = {}

local TYPES = {
  fp16 = { T = "sp_half", name = "fp16" },
  bf16 = { T = "sp_bf16", name = "bf16" },
}

-- Validates req and resolves its parameters: fam, p, plan (errors are the user's).
local function prepare(req, require_spec)
  local fam = families.get(req.family, require_spec)
  families.check_request(req)
  local p = families.resolve(fam, families.parse_params(req.params))
  if fam.check then
    local msg = fam.check(req, p)
    if msg then error(string.format("%s: %s", fam.name, msg), 0) end
  end
  return fam, p, fam.plan(req, p)
end

-- req: {family, d, f, dtype, batch, g, params = "k=v,..."}.
-- Returns plan, or nil, kind, message where kind is "invalid" (the request)
-- or "template" (rendering failed; the message names file:line).
-- A plan is {source, key, family, params = {{name, value}...}, kernels, workspace, files}.
-- The names a template sees: the request, the params, the plan's values.
local function template_values(req, fam, p, plan)
  local values = {
    d = req.d, f = req.f, B = req.batch, g = req.g, E = req.f // req.g,
    dtype = req.dtype, T = TYPES[req.dtype].T, p = p, family = fam.name,
  }
  for k, v in pairs(plan.values or {}) do values[k] = v end
  return values
end

function M.render(req, load_file, require_spec)
  local ok, fam, p, plan = pcall(prepare, req, require_spec)
  if not ok then return nil, "invalid", tostring(fam) end
  local values = template_values(req, fam, p, plan)
  local files = {}
  local function loader(path)
    local text = load_file(path)
    if text then files[#files + 1] = path end
    return text
  end
  local rendered, source = pcall(template.render_file, fam.template, loader, values)
  if not rendered then return nil, "template", tostring(source) end
  local ordered = {}
  for i, decl in ipairs(fam.params) do ordered[i] = { decl.name, p[decl.name] } end
  files[#files + 1] = "lua/families/" .. fam.name .. ".lua"
  values.workspace_bytes = plan.workspace or 0
  local declared, verify = families.signature(fam, req, p, values)
  return {
    source = source, key = families.key(fam, req, p), family = fam.name,
    params = ordered, kernels = plan.kernels, workspace = plan.workspace or 0, files = files,
    args = declared, verify = verify,
  }
end

-- What the static model (docs/perf-model.md) needs of each kernel of the
-- plan: the spec's perf(req, p, values, active, context) -- bytes read and
-- written, loads in flight per lane, working CTAs, dependent round trips --
-- with the plan's kernel names, or nil and a message. active: share of the
-- experts a routed plan gathers; context: positions an attention step reads.
function M.perf(req, active, context, require_spec)
  local ok, fam, p, plan = pcall(prepare, req, require_spec)
  if not ok then return nil, tostring(fam) end
  if not fam.perf then return nil, string.format("%s: the spec has no perf()", fam.name) end
  local values = template_values(req, fam, p, plan)
  values.workspace_bytes = plan.workspace or 0
  local list = fam.perf(req, p, values, active, context)
  if #list ~= #plan.kernels then
    return nil, string.format("%s: perf() describes %d kernels, the plan launches %d", fam.name, #list, #plan.kernels)
  end
  for i, k in ipairs(list) do -- and the launch, so a prediction needs no render
    local l = plan.kernels[i]
    k.name = l.name
    k.ctas = l.grid[1] * (l.grid[2] or 1) * (l.grid[3] or 1)
    k.threads = l.block[1] * (l.block[2] or 1) * (l.block[3] or 1)
    k.smem = l.smem or 0
  end
  return list
end

-- A family's own reference (spec field reference(req, p, inputs)): the
-- outputs computed in Lua from the inputs ({name = {values}}), for the tuner
-- to check candidates of families that have no C reference. Returns outputs,
-- or nil and a message.
function M.reference(req, inputs, require_spec)
  local ok, fam, p = pcall(prepare, req, require_spec)
  if not ok then return nil, tostring(fam) end
  if not fam.reference then return nil, string.format("%s: the spec has no reference()", fam.name) end
  return fam.reference(req, p, inputs)
end

-- Every family's description, for `sprig families` and the tuner.
function M.describe(require_spec)
  local out = {}
  for _, name in ipairs(families.available(require_spec)) do
    local fam = families.get(name, require_spec)
    local params = {}
    for i, decl in ipairs(fam.params) do
      params[i] = { name = decl.name, values = decl.values, range = decl.range,
                    default = decl.default, doc = decl.doc }
    end
    out[#out + 1] = { name = name, summary = fam.summary, template = fam.template, params = params }
  end
  return out
end

function M.models() return models.list end

return M
