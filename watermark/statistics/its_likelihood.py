"""How much one ITS key row says about one token: the likelihood ratio the forward statistic sums.

ITS decoding (`schemes.distortion_free`) picks from mu the token y whose interval of the permuted
CDF holds the row's uniform u. Given y, the keyed uniform eta = w_y of y is uniform, every other
token comes before y in the permutation with probability eta, and u is uniform on y's interval:

    u = F + mu(y) V,   F = sum_{v != y} mu(v) Bernoulli(eta),   V ~ U(0, 1).

So u sits near eta (1 - mu(y)): above eta when eta is small, below it when eta is large, the closer
the flatter mu is. Under a key unrelated to the text (eta, u) is uniform on the unit square. The
ratio of the two densities over a grid of (eta, u - eta) cells is what a token matched with a key
row is worth; `watermark.alignment.its_forward` sums it over alignments and key shifts.

The ratio depends on the model's distributions, which detection does not have. `DEFAULT_LOG_LR`
was estimated once (`benchmarks/its_lr_table.py`) by drawing (eta, u) exactly as above from the
default model's next-token distributions at temperature 1 along its own plain generations. Any table
gives valid p-values (the permutation test compares the text with null keys under the same table);
a table far from the model's only costs power.
"""

from __future__ import annotations

import numpy as np
import torch

from .its_lr_table import DEFAULT_LOG_LR, DIFF_BINS, ETA_BINS, SOURCE

__all__ = [
    "DEFAULT_LOG_LR", "DEFAULT_RATIOS", "DIFF_BINS", "ETA_BINS", "SOURCE",
    "cell_of", "cell_ratios", "fit_log_lr", "null_cell_mass", "simulate",
]  # fmt: skip
DEFAULT_RATIOS = np.exp(np.asarray(DEFAULT_LOG_LR, dtype=np.float64))  # (ETA_BINS, DIFF_BINS)

TOP = 512  # tokens whose Bernoulli draws are exact; the rest of the mass enters by its mean and variance


def cell_of(eta: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell (eta bin, u - eta bin) of each pair; u - eta in [-1, 1] is cut into DIFF_BINS."""
    i = np.minimum((np.asarray(eta) * ETA_BINS).astype(np.int64), ETA_BINS - 1)
    j = np.minimum(
        ((np.asarray(u) - np.asarray(eta) + 1.0) * (DIFF_BINS / 2)).astype(np.int64), DIFF_BINS - 1
    )
    return i, np.maximum(j, 0)


def cell_ratios(eta: np.ndarray, u: np.ndarray, ratios: np.ndarray = DEFAULT_RATIOS) -> np.ndarray:
    """(B, n, m) likelihood ratio of token t (eta[b, t]) matched with key row r (u[b, r])."""
    eta, u = np.atleast_2d(eta), np.atleast_2d(u)
    i, j = cell_of(eta[:, None, :], u[:, :, None])
    return ratios[np.broadcast_to(i, j.shape), j]


def null_cell_mass(steps: int = 256) -> np.ndarray:
    """(ETA_BINS, DIFF_BINS) probability of each cell when eta and u are independent uniforms:
    the length of [d0, d1] within [-eta, 1 - eta], integrated over each eta bin (midpoint rule,
    exact to ~1e-6 of a cell)."""
    mass = np.zeros((ETA_BINS, DIFF_BINS))
    edges = np.linspace(-1.0, 1.0, DIFF_BINS + 1)
    for i in range(ETA_BINS):
        eta = (i + (np.arange(steps) + 0.5) / steps) / ETA_BINS
        lo = np.maximum(edges[None, :-1], -eta[:, None])
        hi = np.minimum(edges[None, 1:], 1.0 - eta[:, None])
        mass[i] = np.clip(hi - lo, 0.0, None).mean(axis=0) / ETA_BINS
    return mass


def simulate(probs: torch.Tensor, draws: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`draws` pairs (eta, u) per distribution (rows of `probs`, summing to 1) under ITS decoding
    with a fresh key, by the law in the module docstring: y ~ mu, eta ~ U, F from exact Bernoulli
    draws over the TOP most likely tokens and a normal with the tail's mean and variance."""
    p = probs.double()
    p = p / p.sum(dim=-1, keepdim=True)
    top, idx = p.topk(min(TOP, p.shape[-1]), dim=-1)  # (B, K)
    tail = (1.0 - top.sum(-1)).clamp_min(0.0)  # (B,)
    tail_sq = (p.square().sum(-1) - top.square().sum(-1)).clamp_min(0.0)
    b = p.shape[0]
    y = torch.multinomial(p, draws, replacement=True, generator=generator)  # (B, D)
    py = p.gather(1, y)
    eta = torch.rand(b, draws, generator=generator, dtype=torch.float64)
    before = torch.rand(b, draws, top.shape[1], generator=generator, dtype=torch.float64) < eta[..., None]
    before &= idx[:, None, :] != y[..., None]  # y itself is not before y
    f = (before * top[:, None, :]).sum(-1)
    in_tail = ~(idx[:, None, :] == y[..., None]).any(-1)  # y from the tail: take its mass out
    t_mean = (tail[:, None] - torch.where(in_tail, py, 0.0)).clamp_min(0.0)
    noise = torch.randn(b, draws, generator=generator, dtype=torch.float64)
    f = f + eta * t_mean + noise * (eta * (1.0 - eta) * tail_sq[:, None]).sqrt()
    f = torch.minimum(f.clamp_min(0.0), 1.0 - py)
    u = (f + py * torch.rand(b, draws, generator=generator, dtype=torch.float64)).clamp(0.0, 1.0)
    return eta.reshape(-1).numpy(), u.reshape(-1).numpy()


def fit_log_lr(eta: np.ndarray, u: np.ndarray, pseudo: float = 1.0) -> np.ndarray:
    """log(watermarked cell share / null cell mass). `pseudo` counts per cell on average are added
    in proportion to each cell's null mass, so that no cell the sample missed gets -inf; cells
    outside the square (null mass 0, never read) get the table's minimum."""
    i, j = cell_of(eta, u)
    counts = np.zeros((ETA_BINS, DIFF_BINS))
    np.add.at(counts, (i, j), 1.0)
    null = null_cell_mass()
    share = (counts + pseudo * null * ETA_BINS * DIFF_BINS) / (counts.sum() + pseudo * ETA_BINS * DIFF_BINS)
    out = np.full((ETA_BINS, DIFF_BINS), 0.0)
    live = null > 0
    out[live] = np.log(share[live] / null[live])
    out[~live] = out[live].min()
    return out
