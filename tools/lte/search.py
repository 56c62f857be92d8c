"""--target-sparsity: the efficiency weight eta found by bisection.

Sparsity grows with eta (a stronger push of every router output towards 0),
so a few short stage-1 runs from the same starting weights, each measured by
the hard rule on held-out tokens, bisect log10(eta) until the measured
sparsity is near the target. The run closest to the target is kept, so when
the search runs are as long as stage 1 no further stage-1 run is needed.
"""
import copy
import math

from .train import evaluate, stage1


def search_eta(model, lte_mlps, make_batches, held, hp, target, runs, steps, lo=1e-3, hi=30.0, quiet=False):
    """(eta, state_dict of the closest run, its sparsity, all (eta, sparsity) tried)."""
    start = copy.deepcopy(model.state_dict())
    tried, best = [], None
    a, b = math.log10(lo), math.log10(hi)
    for r in range(runs):
        eta = 10 ** ((a + b) / 2)
        model.load_state_dict(start)
        stage1(model, lte_mlps, make_batches(), hp, eta, steps, quiet=True)
        _, sp = evaluate(model, lte_mlps, held, hp)
        tried.append((eta, sp))
        if not quiet:
            print(f"  search {r + 1}/{runs}: eta {eta:.4g} -> held-out sparsity {sp:.3f} (target {target:.3f})",
                  flush=True)
        if best is None or abs(sp - target) < abs(best[1] - target):
            best = (eta, sp, copy.deepcopy(model.state_dict()))
        if abs(sp - target) < hp.search_tol:
            break
        if sp < target:
            a = math.log10(eta)
        else:
            b = math.log10(eta)
    return best[0], best[2], best[1], tried
