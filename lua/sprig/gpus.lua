-- GPU profiles for `sprig analyze` (docs/perf-model.md): what the static
-- performance model needs of a GPU it is not running on.
--   read_gbs     streaming-read bandwidth, 1e9 bytes/s: measured where a
--                measurement exists (`measured`; the H200's by sprig bench's
--                streaming read over 1 GiB, 2026-12-04), else the data sheet's
--                peak times 0.9 (what a streaming read reaches on such parts)
--   sms, l2_mb   SM count, L2 size
--   regs_per_sm, smem_per_sm_kb, max_threads_per_sm, max_ctas_per_sm
--   latency_ns   a DRAM load's round trip under load (Little's law: the bytes
--                a GPU must have in flight to stream at read_gbs)
--   l2_latency_ns  an L2 hit's round trip: what a kernel pays that reads only
--                what the kernel before it wrote (perf() entries marked hot)
--   launch_us    the gap between two kernels of a CUDA graph
--   kernel_us    a kernel's fixed cost beyond its bytes and round trips: the
--                ramp of its first loads and the drain of its last wave, paid
--                once per kernel as a graph runs them back to back. Fit on the
--                H200 (2.3: nine tuned kernels, 5 to 73 us, then within -7%..+4%
--                of the measurement; bench/results/2026-12-04_h200, docs/perf-model.md);
--                the other profiles assume the same until a GPU of theirs is measured
--   arch         what NVRTC compiles for
local M = {}

M.list = {
  { name = "h100", full = "H100 SXM 80GB (HBM3)", arch = "sm_90", read_gbs = 2930, measured = true,
    sms = 132, l2_mb = 50, regs_per_sm = 65536, smem_per_sm_kb = 228, max_threads_per_sm = 2048,
    max_ctas_per_sm = 32, latency_ns = 650, l2_latency_ns = 300, launch_us = 1.0, kernel_us = 2.3 },
  { name = "h200", full = "H200 141GB (HBM3e)", arch = "sm_90", read_gbs = 4505, measured = true,
    sms = 132, l2_mb = 60, regs_per_sm = 65536, smem_per_sm_kb = 228, max_threads_per_sm = 2048,
    max_ctas_per_sm = 32, latency_ns = 700, l2_latency_ns = 300, launch_us = 1.0, kernel_us = 2.3 },
  { name = "a100", full = "A100 SXM 80GB (HBM2e)", arch = "sm_80", read_gbs = 1840, measured = false,
    sms = 108, l2_mb = 40, regs_per_sm = 65536, smem_per_sm_kb = 164, max_threads_per_sm = 2048,
    max_ctas_per_sm = 32, latency_ns = 600, l2_latency_ns = 300, launch_us = 1.2, kernel_us = 2.3 },
  { name = "l40s", full = "L40S 48GB (GDDR6)", arch = "sm_89", read_gbs = 778, measured = false,
    sms = 142, l2_mb = 96, regs_per_sm = 65536, smem_per_sm_kb = 100, max_threads_per_sm = 1536,
    max_ctas_per_sm = 24, latency_ns = 550, l2_latency_ns = 280, launch_us = 1.2, kernel_us = 2.3 },
  { name = "rtx4090", full = "GeForce RTX 4090 24GB (GDDR6X)", arch = "sm_89", read_gbs = 907, measured = false,
    sms = 128, l2_mb = 72, regs_per_sm = 65536, smem_per_sm_kb = 100, max_threads_per_sm = 1536,
    max_ctas_per_sm = 24, latency_ns = 550, l2_latency_ns = 280, launch_us = 1.2, kernel_us = 2.3 },
  { name = "b200", full = "B200 180GB (HBM3e)", arch = "sm_100", read_gbs = 7200, measured = false,
    sms = 148, l2_mb = 126, regs_per_sm = 65536, smem_per_sm_kb = 228, max_threads_per_sm = 2048,
    max_ctas_per_sm = 32, latency_ns = 750, l2_latency_ns = 320, launch_us = 1.0, kernel_us = 2.3 },
}

function M.find(name)
  for _, g in ipairs(M.list) do if g.name == name then return g end end
  local names = {}
  for i, g in ipairs(M.list) do names[i] = g.name end
  error(string.format("unknown GPU profile '%s' (known: %s)", tostring(name), table.concat(names, ", ")), 0)
end

return M
