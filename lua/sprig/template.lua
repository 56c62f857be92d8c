-- The template engine: CUDA text with embedded Lua.
--
--   {{ expr }}   the value of a Lua expression, inserted with tostring
--   {% code %}   Lua statements (loops, ifs, locals); a line holding only a
--                {% %} block emits nothing, not even its newline
--   {# note #}   a comment, dropped
--
-- A template compiles to a Lua chunk in which every statement stands on the
-- line of the template it came from, so Lua's own error messages already say
-- "templates/x.cu.lua:LINE: ...". The chunk runs in a restricted environment
-- (no io, os, load, require, debug; reading an unknown name is an error) and
-- writes output through a collector that inserts `#line` directives whenever
-- the output stops following the template line by line, so NVRTC's messages
-- point back at the template too. Same template and values, same bytes.
local M = {}

-- Splits template text into segments {kind, text, line}; kind is "text",
-- "expr" or "code". Raises "file:line: ..." for an unclosed tag.
local function tokenize(src, file)
  local segs, pos, line = {}, 1, 1
  local function count_lines(s) local _, n = s:gsub("\n", "") return n end
  while pos <= #src do
    local open_at, _, tag = src:find("{([{%%#])", pos)
    if not open_at then
      segs[#segs + 1] = { kind = "text", text = src:sub(pos), line = line }
      break
    end
    local text = src:sub(pos, open_at - 1)
    local closer = ({ ["{"] = "}}", ["%"] = "%}", ["#"] = "#}" })[tag]
    local close_at = src:find(closer, open_at + 2, true)
    local tag_line = line + count_lines(text)
    if not close_at then
      error(string.format("%s:%d: unclosed '{%s' (expected '%s')", file, tag_line, tag, closer), 0)
    end
    local body = src:sub(open_at + 2, close_at - 1)
    local after = close_at + 2
    if tag == "#" then body = string.rep("\n", count_lines(body)) end
    if tag ~= "{" then
      -- A block alone on its line swallows the line's indentation and newline.
      local lead = text:match("[ \t]*$")
      local bol = open_at - #lead == 1 or src:sub(open_at - #lead - 1, open_at - #lead - 1) == "\n"
      local trail = src:match("^[ \t]*\n", after) or (src:match("^[ \t]*$", after) and "")
      if bol and trail then
        text = text:sub(1, #text - #lead)
        after = after + #trail
        if #trail > 0 then body = body .. "\n" end
      end
    end
    if #text > 0 then segs[#segs + 1] = { kind = "text", text = text, line = line } end
    line = tag_line
    if tag == "{" then
      segs[#segs + 1] = { kind = "expr", text = body, line = line }
    else
      segs[#segs + 1] = { kind = "code", text = body, line = line }
    end
    line = line + count_lines(body)
    pos = after
  end
  return segs
end

-- A Lua string literal for s on ONE line (%q would break lines at newlines).
local function literal(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == "\n" then return "\\n" end
    if c == "\t" then return "\\t" end
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\%03d", c:byte())
  end) .. '"'
end

-- Turns segments into Lua source that keeps every statement on its template line.
local function to_lua(segs)
  local out, at = {}, 1
  local function go_to(line)
    while at < line do out[#out + 1] = "\n"; at = at + 1 end
  end
  for _, s in ipairs(segs) do
    go_to(s.line)
    if s.kind == "text" then
      out[#out + 1] = string.format(" _emit(%d,%s)", s.line, literal(s.text))
    elseif s.kind == "expr" then
      out[#out + 1] = string.format(" _emit(%d,_str(%s))", s.line, s.text)
    else
      out[#out + 1] = " " .. s.text .. " "
      local _, n = s.text:gsub("\n", "")
      at = at + n
    end
  end
  return table.concat(out)
end

-- The output collector: appends text, tracking for each output line the
-- template (file, line) it came from, and writes `#line` where the output
-- stops following one template line by line (loops, includes, skipped code).
local function collector()
  local parts, want_file, want_line, bol = {}, nil, nil, true
  local function emit(file, line, text)
    local i = 1
    while i <= #text do
      if bol then
        if file ~= want_file or line ~= want_line then
          parts[#parts + 1] = string.format('#line %d "%s"\n', line, file)
        end
        want_file, want_line, bol = file, line, false
      end
      local nl = text:find("\n", i, true)
      if not nl then
        parts[#parts + 1] = text:sub(i)
        break
      end
      parts[#parts + 1] = text:sub(i, nl)
      i, line, want_line, bol = nl + 1, line + 1, want_line + 1, true
    end
  end
  return emit, function() return table.concat(parts) end
end

local function to_text(v)
  if v == nil then error("template expression produced nil", 2) end
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2^53 then
    return string.format("%d", v) -- 32.0 prints as 32, so CUDA sees an integer
  end
  return tostring(v)
end

-- Names a template may use besides its own values.
local SAFE = {
  "assert", "error", "ipairs", "pairs", "next", "select", "tonumber", "tostring",
  "type", "pcall", "rawequal", "rawget", "rawlen",
}

-- Builds the restricted environment: safe globals, copies of string/math/table,
-- the caller's values, and an error on any unknown name.
local function sandbox(file, values)
  local env = {}
  for _, k in ipairs(SAFE) do env[k] = _G[k] end
  env.string, env.math, env.table = {}, {}, {}
  for k, v in pairs(string) do env.string[k] = v end
  for k, v in pairs(math) do if k ~= "random" and k ~= "randomseed" then env.math[k] = v end end
  for k, v in pairs(table) do env.table[k] = v end
  for k, v in pairs(values) do env[k] = v end
  return setmetatable(env, {
    __index = function(_, k) error(string.format("unknown name '%s' in template", tostring(k)), 2) end,
  })
end

-- Compiles template text into a function(values, emit) that writes through
-- emit (a collector's); file names the template in messages and #line.
function M.compile(src, file)
  local code = to_lua(tokenize(src, file))
  return function(values, emit)
    local env = sandbox(file, values)
    rawset(env, "_emit", function(line, text) emit(file, line, text) end)
    rawset(env, "_str", to_text)
    local chunk, err = load(code, "@" .. file, "t", env)
    if not chunk then error(err, 0) end
    chunk()
  end
end

-- Renders the template at path. loader(path) returns its text (or nil).
-- Templates may call include(path) to render another template in place with
-- the same values. Errors come back as "file:line: message".
function M.render_file(path, loader, values)
  local emit, result = collector()
  local depth = 0
  local function run(p)
    local src = loader(p)
    if not src then error(string.format("template not found: %s", p), 0) end
    depth = depth + 1
    if depth > 8 then error(string.format("%s: include nesting deeper than 8", p), 0) end
    local env_values = { include = run }
    for k, v in pairs(values) do env_values[k] = v end
    M.compile(src, p)(env_values, emit)
    depth = depth - 1
    return ""
  end
  local ok, err = pcall(run, path)
  if not ok then error(err, 0) end
  return result()
end

function M.render(src, file, values)
  return M.render_file(file, function(p) if p == file then return src end end, values)
end

M._tokenize, M._to_lua = tokenize, to_lua
return M
