-- Kernel arguments, as each family declares them: the one description of a
-- kernel's signature that the C side (runtime launches, the tuner's operands
-- and checks, the bench, the tests) binds by name, so no C file keeps an
-- argument order of its own. A family's spec has
--   args(req, p, v) -> { A.ptr(...), A.scalar(...), ... }     (v: the plan's values)
-- listing the arguments in signature order; every kernel of a plan takes the
-- same list (docs/kernel-abi.md).
--
--   A.ptr(name, type, dims, opts)     a device pointer to prod(dims) elements
--   A.scalar(name, type, opts)        a value passed by value
-- type:  "T" (the request's 16-bit dtype), "f32", "i32", "u8"
-- opts:
--   dir       "in" (default), "out", "inout" (read, then written) or "scratch"
--   role      what the value is (docs/kernel-abi.md, "Roles"): names the operand
--             the tuner and the tests build for it; default "activation" for
--             inputs, "output" for outputs
--   optional  true when this plan does not use it (it may be NULL)
--   align     bytes the address must be a multiple of (default: the element
--             size; 16 where the kernel loads 16-byte vectors)
--   fan_in    weights: the length of the dot products they enter (operands
--             are drawn in +-1/sqrt(fan_in), like a trained layer's)
local M = {}

M.TYPES = { T = 2, f32 = 4, i32 = 4, u8 = 1 }
M.DIRS = { ["in"] = true, out = true, inout = true, scratch = true }

local function default_role(dir)
  if dir == "in" then return "activation" end
  if dir == "scratch" then return "workspace" end
  return "output"
end

function M.ptr(name, type, dims, opts)
  opts = opts or {}
  local dir = opts.dir or "in"
  return {
    name = name, type = type, dims = dims, dir = dir, pointer = true,
    role = opts.role or default_role(dir), optional = opts.optional or false,
    align = opts.align, fan_in = opts.fan_in or 0,
  }
end

function M.scalar(name, type, opts)
  opts = opts or {}
  return { name = name, type = type, dims = {}, dir = "in", pointer = false, role = opts.role or "scalar",
           optional = false, align = M.TYPES[type], fan_in = 0 }
end

-- The pointer loads of `vec` elements of T: 2*vec-byte aligned addresses.
function M.vec_align(vec) return 2 * vec end

-- Checks and completes a family's list (count, align); errors name the family.
function M.normalize(family, list)
  if type(list) ~= "table" or #list == 0 then
    error(string.format("%s: args() returned no arguments", family), 0)
  end
  local seen, out = {}, {}
  for i, a in ipairs(list) do
    local where = string.format("%s: argument %d ('%s')", family, i, tostring(a.name))
    if type(a.name) ~= "string" or not a.name:match("^[%a_][%w_]*$") then error(where .. ": bad name", 0) end
    if seen[a.name] then error(where .. ": declared twice", 0) end
    seen[a.name] = true
    local size = M.TYPES[a.type]
    if not size then error(string.format("%s: unknown type '%s'", where, tostring(a.type)), 0) end
    if not M.DIRS[a.dir] then error(string.format("%s: unknown dir '%s'", where, tostring(a.dir)), 0) end
    local count, rows, cols = 1, 1, 1
    for j, n in ipairs(a.dims) do
      if math.type(n) ~= "integer" or n < 0 then error(string.format("%s: dimension %d is %s", where, j, tostring(n)), 0) end
      count = count * n
    end
    if #a.dims >= 1 then cols = a.dims[#a.dims]; rows = count // math.max(cols, 1) end
    local align = a.align or size
    if align % size ~= 0 then error(string.format("%s: align %d is not a multiple of its element size", where, align), 0) end
    out[i] = {
      name = a.name, type = a.type, dir = a.dir, pointer = a.pointer, role = a.role, optional = a.optional,
      count = a.pointer and count or 0, rows = a.pointer and rows or 0, cols = a.pointer and cols or 0,
      align = align, fan_in = a.fan_in,
    }
  end
  return out
end

return M
