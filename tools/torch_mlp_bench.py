#!/usr/bin/env python3
"""PyTorch baselines for one LLaMA MLP at batch 1, for side-by-side comparison
with `sprig bench` on the same GPU in the same session:

  dense     F.linear(x, W_gate), F.linear(x, W_up), silu(g) * u, F.linear(h, W_down):
            the cuBLAS three-GEMV path Hugging Face runs
  gather    Deja Vu-style: the active experts' neuron ids, index_select of the
            W_gate/W_up rows and the W_down columns on every call, then the
            same three products (what a plain PyTorch LTE implementation does)
  prepacked the dense path on weights already cut down to the active neurons
            (a lower bound for any PyTorch gather: it skips the gathering)

Experts are g contiguous neurons; a random (1 - sparsity) share of them is
active, the same set for every method. Each time is the median over --reps
runs (CUDA events around each run, after --warmup runs); the weights (270 MB
at LLaMA-2-7B's shape) are far larger than the L2, so every run reads DRAM.
The gather path's output is checked against the prepacked one first. Times
are in microseconds.

    python3 tools/torch_mlp_bench.py --d 4096 --f 11008 --g 32 --sparsity 0 50 90 --json torch.json
"""
import argparse
import json
import statistics
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d", type=int, default=4096, help="hidden size (default 4096)")
    p.add_argument("--f", type=int, default=11008, help="intermediate size (default 11008)")
    p.add_argument("--g", type=int, default=32, help="neurons per expert (default 32)")
    p.add_argument("--sparsity", type=float, nargs="+", default=[0, 50, 75, 90],
                   help="percent of experts inactive (default 0 50 75 90)")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="also write the results as JSON")
    return p.parse_args()


def timer(torch, device):
    """fn -> microseconds of one run, by CUDA events (wall clock on the CPU)."""
    if device.startswith("cuda"):
        def run(fn):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) * 1e3
    else:
        import time

        def run(fn):
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e6
    return run


def main():
    a = parse_args()
    if a.f % a.g or any(not 0 <= s < 100 for s in a.sparsity):
        sys.exit("torch_mlp_bench: g must divide f and sparsity lie in [0, 100)")
    import torch
    import torch.nn.functional as F

    torch.manual_seed(a.seed)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    dev = a.device
    s_in, s_h = a.d ** -0.5, a.f ** -0.5
    wg = (torch.randn(a.f, a.d, device=dev) * s_in).to(dt)
    wu = (torch.randn(a.f, a.d, device=dev) * s_in).to(dt)
    wd = (torch.randn(a.d, a.f, device=dev) * s_h).to(dt)
    x = torch.randn(1, a.d, device=dev).to(dt)
    one_run = timer(torch, dev)

    def median_us(fn):
        with torch.inference_mode():
            for _ in range(a.warmup):
                fn()
            return statistics.median(one_run(fn) for _ in range(a.reps))

    def mlp(g_w, u_w, d_w):
        return F.linear(F.silu(F.linear(x, g_w)) * F.linear(x, u_w), d_w)

    rows = []
    n_exp = a.f // a.g
    for sp in a.sparsity:
        n_active = max(1, round(n_exp * (1 - sp / 100)))
        experts = torch.randperm(n_exp, device=dev)[:n_active].sort().values
        idx = (experts[:, None] * a.g + torch.arange(a.g, device=dev)).reshape(-1)
        pg, pu, pd = wg.index_select(0, idx), wu.index_select(0, idx), wd.index_select(1, idx).contiguous()
        def gather():  # the gathering is part of every call, as in a plain implementation
            return mlp(wg.index_select(0, idx), wu.index_select(0, idx), wd.index_select(1, idx))

        with torch.inference_mode():
            ref = mlp(pg, pu, pd).float()
            err = ((gather().float() - ref).norm() / ref.norm()).item()
        if err > 1e-2:
            sys.exit(f"torch_mlp_bench: gather at {sp}% disagrees with prepacked ({err:.3g})")
        row = {"sparsity": sp, "active_neurons": int(idx.numel()),
               "dense_us": median_us(lambda: mlp(wg, wu, wd)),
               "gather_us": median_us(gather), "prepacked_us": median_us(lambda: mlp(pg, pu, pd))}
        rows.append(row)
        print(f"sparsity {sp:5.1f}%  active {row['active_neurons']:6d}  dense {row['dense_us']:9.1f} us  "
              f"gather {row['gather_us']:9.1f} us  prepacked {row['prepacked_us']:9.1f} us", flush=True)
    device = torch.cuda.get_device_name() if dev.startswith("cuda") else "CPU"
    print(f"({device}, torch {torch.__version__}, {a.dtype}, d={a.d} f={a.f} g={a.g}; median of {a.reps})")
    if a.json:
        with open(a.json, "w") as fp:
            json.dump({"device": device, "torch": torch.__version__, "dtype": a.dtype, "d": a.d, "f": a.f,
                       "g": a.g, "reps": a.reps, "rows": rows}, fp, indent=1)


if __name__ == "__main__":
    main()
