-- Named model shapes (d = hidden size, f = MLP intermediate size) from DESIGN.md.
-- SliceGPT widths are int((1 - s) * 4096) rounded down to a multiple of 8.
local M = {}

M.list = {
  { name = "llama2-7b",         d = 4096, f = 11008, note = "LLaMA-2-7B" },
  { name = "llama2-13b",        d = 5120, f = 13824, note = "LLaMA-2-13B" },
  { name = "llama3-8b",         d = 4096, f = 14336, note = "LLaMA-3-8B (GQA attention)" },
  { name = "llama2-7b-slice20", d = 3272, f = 11008, note = "LLaMA-2-7B sliced 20% (multiple of 8 only)" },
  { name = "llama2-7b-slice25", d = 3072, f = 11008, note = "LLaMA-2-7B sliced 25%" },
  { name = "llama2-7b-slice30", d = 2864, f = 11008, note = "LLaMA-2-7B sliced 30% (multiple of 16 only)" },
}

function M.find(name)
  for _, m in ipairs(M.list) do if m.name == name then return m end end
  local names = {}
  for i, m in ipairs(M.list) do names[i] = m.name end
  error(string.format("unknown model '%s' (known: %s)", tostring(name), table.concat(names, ", ")), 0)
end

return M
