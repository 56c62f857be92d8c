"""LTE's two regularizers on the router outputs G in (0, 1) (LTE §4.3, Stage 1).

efficiency    mean of G over layers, tokens and experts: an L1 push of every
              router output towards 0 (G is positive). Its weight eta sets how
              sparse the model becomes.
separability  mean of 1 / ((G - tau)^2 + eps): large when G sits near the
              threshold, so outputs are pushed to either side of tau and the
              soft model of stage 1 becomes close to the hard 0/1 model of
              stage 2. eps bounds it where G = tau exactly (the paper's form
              has no eps; without one the loss and its gradient are unbounded).
"""
import torch


def efficiency(scores):
    return torch.stack([s.mean() for s in scores]).mean()


def separability(scores, tau, eps):
    return torch.stack([(1.0 / ((s - tau) ** 2 + eps)).mean() for s in scores]).mean()
