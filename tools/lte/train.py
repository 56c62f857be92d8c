"""The two training stages and the held-out measurement (LTE §4.3).

Stage 1, model-router training: routers and model trained together with the
MLP soft-gated by the router outputs; loss = LM cross-entropy
+ eta * efficiency + lam * separability.
Stage 2, model adaptation: routers frozen, hard 0/1 selection at tau, the
model fine-tuned on the LM loss alone so it adapts to the experts it loses.
"""
import math
import time

import torch

from . import losses
from .lte_mlp import routers, set_mode


def lm_loss(model, batch):
    logits = model(batch)[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def model_params(model, lte_mlps):
    ids = {id(p) for p in routers(lte_mlps)}
    return [p for p in model.parameters() if id(p) not in ids]


def log(msg, quiet):
    if not quiet:
        print(msg, flush=True)


def stage1(model, lte_mlps, batches, hp, eta, steps, quiet=False):
    """Soft gating with the efficiency and separability losses; trains all."""
    set_mode(lte_mlps, "soft")
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": model_params(model, lte_mlps), "lr": hp.lr},
                             {"params": routers(lte_mlps), "lr": hp.router_lr}], weight_decay=0.0)
    t0 = time.time()
    for step in range(steps):
        batch = batches.next().to(hp.device)
        ce = lm_loss(model, batch)
        scores = [m.scores for m in lte_mlps.values()]
        eff = losses.efficiency(scores)
        sep = losses.separability(scores, hp.tau, hp.sep_eps)
        # separability ramps in over stage 1: at full weight from the start, its
        # steep gradient near tau would freeze each router on the side of tau
        # its random init put it, and eta could no longer move the sparsity
        loss = ce + eta * eff + hp.lam * (step + 1) / steps * sep
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % hp.log_every == 0 or step == steps - 1:
            log(f"  stage1 {step:5d}/{steps} ce {ce.item():.3f} eff {eff.item():.3f} "
                f"sep {sep.item():.2f} ({time.time() - t0:.0f} s)", quiet)


def stage2(model, lte_mlps, batches, hp, steps, quiet=False):
    """Routers frozen, hard selection at tau, the model adapts on the LM loss."""
    set_mode(lte_mlps, "hard")
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    for w in routers(lte_mlps):
        w.requires_grad_(False)
    opt = torch.optim.AdamW(model_params(model, lte_mlps), lr=hp.lr, weight_decay=0.0)
    t0 = time.time()
    for step in range(steps):
        ce = lm_loss(model, batches.next().to(hp.device))
        opt.zero_grad(set_to_none=True)
        ce.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % hp.log_every == 0 or step == steps - 1:
            log(f"  stage2 {step:5d}/{steps} ce {ce.item():.3f} ({time.time() - t0:.0f} s)", quiet)


@torch.no_grad()
def evaluate(model, lte_mlps, held, hp, mode="hard"):
    """(perplexity, sparsity) on held-out blocks: sparsity = the fraction of
    (token, layer, expert) decisions that are inactive under the hard rule,
    i.e. the fraction of MLP neurons skipped (every layer has a router)."""
    set_mode(lte_mlps, mode)
    model.eval()
    nll, n, off, total = 0.0, 0, 0, 0
    for i in range(0, len(held), hp.batch_size):
        batch = held[i:i + hp.batch_size].to(hp.device)
        logits = model(batch)[:, :-1].float()
        nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                 reduction="sum").item()
        n += batch[:, 1:].numel()
        if mode == "hard":
            for m in lte_mlps.values():
                off += int((~m.active).sum())
                total += m.active.numel()
    return math.exp(nll / n), (off / total if total else 0.0)
