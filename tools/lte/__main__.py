"""python3 -m tools.lte {train,reference} ... (see README.md)."""
import argparse
import copy
import json
import os
import sys
import time

import torch

from . import grouping, llama, search, text
from .export import write_folder
from .lte_mlp import install
from .train import evaluate, stage1, stage2


def parse(argv):
    ap = argparse.ArgumentParser(prog="python3 -m tools.lte", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="HF LLaMA folder -> sprig LTE folder (grouping, stage 1, stage 2)")
    t.add_argument("model", help="Hugging Face LLaMA-family folder (config.json, safetensors, tokenizer.json)")
    t.add_argument("out", help="the sprig LTE folder to write")
    t.add_argument("--target-sparsity", type=float, default=0.5,
                   help="fraction of MLP neurons to skip; picks eta by search (default 0.5)")
    t.add_argument("--eta", type=float, help="efficiency-loss weight; given: no search")
    t.add_argument("--expert-size", type=int, default=32, help="g, neurons per expert (default 32)")
    t.add_argument("--tau", type=float, default=0.5, help="router threshold (default 0.5)")
    t.add_argument("--lam", type=float, default=0.01, help="separability-loss weight (default 0.01)")
    t.add_argument("--sep-eps", type=float, default=0.01, help="eps in 1/((G-tau)^2+eps) (default 0.01)")
    t.add_argument("--stage1-steps", type=int, default=300)
    t.add_argument("--stage2-steps", type=int, default=200)
    t.add_argument("--search-runs", type=int, default=6, help="at most this many stage-1 runs in the search")
    t.add_argument("--search-steps", type=int, help="steps of each search run (default: --stage1-steps, "
                   "and the closest run is kept as stage 1)")
    t.add_argument("--search-tol", type=float, default=0.02, help="stop searching within this of the target")
    t.add_argument("--seq-len", type=int, default=128)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=5e-5, help="model learning rate (AdamW)")
    t.add_argument("--router-lr", type=float, default=1e-2, help="router learning rate (AdamW)")
    t.add_argument("--text", help="a UTF-8 text file instead of the King James Bible (bible-kjv-text)")
    t.add_argument("--train-tokens", type=int, default=2_000_000, help="cap on training tokens")
    t.add_argument("--eval-tokens", type=int, default=32768, help="held-out tokens measured")
    t.add_argument("--kmeans-iters", type=int, default=20)
    t.add_argument("--dtype", choices=["f32", "f16"], default="f32", help="weights written (routers F32)")
    t.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--quiet", action="store_true")
    r = sub.add_parser("reference", help="PyTorch LTE forward of a written folder -> expected.safetensors")
    r.add_argument("folder")
    r.add_argument("--tokens", required=True, help="comma-separated token ids")
    r.add_argument("--out", required=True)
    return ap.parse_args(argv)


def load_data(args, model_dir):
    lines = text.file_lines(args.text) if args.text else text.kjv_lines()
    train_lines, held_lines = text.split_lines(lines)
    tok = text.load_tokenizer(model_dir)
    train_ids = text.tokenize(tok, train_lines, args.train_tokens)
    held_ids = text.tokenize(tok, held_lines, args.eval_tokens)
    source = args.text or "King James Bible (Debian bible-kjv-text)"
    return text.blocks(train_ids, args.seq_len), text.blocks(held_ids, args.seq_len), source


def group(model, args):
    """Balanced K-means per layer: {layer: permutation}, and each layer's expert sizes."""
    perms, sizes = {}, {}
    for n, layer in enumerate(model.model.layers):
        p, s = grouping.group_layer(layer.mlp.gate_proj.weight.detach().cpu(), layer.mlp.up_proj.weight.detach().cpu(),
                                    args.expert_size, args.kmeans_iters, args.seed + n)
        perms[n], sizes[n] = p, s
    return perms, sizes


def cmd_train(args):
    torch.manual_seed(args.seed)
    torch.set_flush_denormal(True)  # saturated sigmoids make denormal gradients: 10x slower on CPU
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    t0 = time.time()
    try:
        model = llama.load(args.model, torch.float32)
    except (OSError, ValueError) as e:
        sys.exit(f"lte: {e}")
    f = model.config.intermediate_size
    if f % args.expert_size:
        sys.exit(f"lte: intermediate_size {f} is not a multiple of --expert-size {args.expert_size}")
    train_blocks, held, source = load_data(args, args.model)
    say(f"text: {source}: {train_blocks.numel()} training tokens, {held.numel()} held out")
    model.to(args.device)
    ppl_dense, _ = evaluate(model, {}, held, args, mode="dense")
    say(f"dense held-out perplexity {ppl_dense:.3f}")
    perms, sizes = group(model, args)
    balanced = all(grouping.is_balanced_permutation(perms[n], sizes[n], f, args.expert_size) for n in perms)
    say(f"grouping: {len(perms)} layers x {f // args.expert_size} experts of {args.expert_size}, balanced: {balanced}")
    mlps = install(model, {n: p.to(args.device) for n, p in perms.items()}, args.expert_size, args.tau, args.seed)
    model.to(args.device)

    def batches():  # every run sees the same batches in the same order
        return text.Batches(train_blocks, args.batch_size, args.seed)

    tried = []
    if args.eta is not None:
        eta = args.eta
        stage1(model, mlps, batches(), args, eta, args.stage1_steps, args.quiet)
    else:
        steps = args.search_steps or args.stage1_steps
        start = copy.deepcopy(model.state_dict())  # the grouped model: stage 1 starts here
        eta, state, sp, tried = search.search_eta(model, mlps, batches, held, args, args.target_sparsity,
                                                  args.search_runs, steps, quiet=args.quiet)
        say(f"eta {eta:.4g}: held-out sparsity {sp:.3f} after the search")
        if args.search_steps and args.search_steps != args.stage1_steps:
            model.load_state_dict(start)  # the search runs were shorter: stage 1 in full
            stage1(model, mlps, batches(), args, eta, args.stage1_steps, args.quiet)
        else:
            model.load_state_dict(state)
    ppl1, sp1 = evaluate(model, mlps, held, args)
    say(f"after stage 1: held-out perplexity {ppl1:.3f} (hard rule), sparsity {sp1:.3f}")
    stage2(model, mlps, batches(), args, args.stage2_steps, args.quiet)
    ppl2, sp2 = evaluate(model, mlps, held, args)
    say(f"after stage 2: held-out perplexity {ppl2:.3f}, sparsity {sp2:.3f} (target {args.target_sparsity})")
    report = {"source_model": os.path.abspath(args.model), "text": source,
              "train_tokens": train_blocks.numel(), "heldout_tokens": held.numel(),
              "expert_size": args.expert_size, "tau": args.tau, "eta": eta, "lam": args.lam,
              "sep_eps": args.sep_eps, "search": [{"eta": e, "sparsity": s} for e, s in tried],
              "target_sparsity": None if args.eta is not None else args.target_sparsity,
              "stage1_steps": args.stage1_steps, "stage2_steps": args.stage2_steps,
              "seq_len": args.seq_len, "batch_size": args.batch_size, "lr": args.lr, "router_lr": args.router_lr,
              "expert_sizes": {str(n): s.tolist() for n, s in sizes.items()}, "balanced": balanced,
              "heldout": {"dense_ppl": ppl_dense, "stage1_ppl": ppl1, "stage1_sparsity": sp1,
                          "lte_ppl": ppl2, "lte_sparsity": sp2},
              "seconds": round(time.time() - t0, 1)}
    write_folder(args.model, args.out, model.cpu(), mlps, args.expert_size, args.tau, args.dtype, report)
    say(f"wrote {args.out} ({report['seconds']} s)")


def main(argv=None):
    args = parse(argv if argv is not None else sys.argv[1:])
    if args.cmd == "train":
        cmd_train(args)
    else:
        from .reference import write_expected
        write_expected(args.folder, [int(t) for t in args.tokens.split(",")], args.out)


if __name__ == "__main__":
    main()
