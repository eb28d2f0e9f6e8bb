"""Two-key power at equal FPR on synthetic scores drawn from the watermarked law (issue 27).

    nice .venv/bin/python benchmarks/vllm_dual_power.py [--nulls 200000] [--watermarked 20000]

vLLM's dual_key_gumbel samples each token by Gumbel-max under key B with probability alpha = 0.1,
else under key A. For a chosen token of probability q the key's uniform is u = W^q, W ~ U(0, 1)
(Gumbel-max), so its score E = -log(1 - u) has density ratio g_q(E) = u^(1/q - 1) / q against
Exp(1); the other key's score is Exp(1). Texts: T tokens, q drawn per token from three regimes
(uniform; low entropy Beta(2, 0.5); high entropy Beta(0.5, 2)). Statistics, summed over tokens:
- fusion: (1 - alpha) E_A + alpha E_B (vLLM's; wm's exact law ranks texts the same way);
- max: max(E_A, E_B); bonferroni: the larger of the two keys' sums (min p at equal T);
- LR: log((1 - alpha) g(E_A) + alpha g(E_B)), g = g_q averaged over q ~ U(0, 1), in closed form
  g(E) = e^L E1(L), L = -log(1 - e^-E): a fixed function, no model of the text needed.
Each detector's threshold is its own empirical (1 - FPR) quantile over the null texts (both keys'
scores Exp(1)), so every statistic runs at the same FPR; TPR over the watermarked texts, with its
binomial standard error. No de-duplication (i.i.d. tokens). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit  # noqa: E402

ALPHA = 0.1
REGIMES = {"uniform": (1.0, 1.0), "low_entropy": (2.0, 0.5), "high_entropy": (0.5, 2.0)}


def scores(rng: np.random.Generator, n: int, t: int, regime: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(E_A, E_B), each (n, t); regime None: the null (both Exp(1))."""
    ua, ub = rng.uniform(size=(n, t)), rng.uniform(size=(n, t))
    if regime is not None:
        q = rng.beta(*REGIMES[regime], size=(n, t))
        uw = rng.uniform(size=(n, t)) ** q
        on_b = rng.uniform(size=(n, t)) < ALPHA
        ua, ub = np.where(on_b, ua, uw), np.where(on_b, uw, ub)
    return -np.log1p(-ua), -np.log1p(-ub)


def log_g(e: np.ndarray) -> np.ndarray:
    """log of e^L E1(L), L = -log(1 - e^-E): the score's density ratio averaged over q ~ U(0, 1)."""
    big_l = -np.log(-np.expm1(-e))
    return big_l + np.log(special.exp1(big_l))


def statistics(ea: np.ndarray, eb: np.ndarray) -> dict[str, np.ndarray]:
    la, lb = log_g(ea), log_g(eb)
    top = np.maximum(la, lb)
    lr = top + np.log((1 - ALPHA) * np.exp(la - top) + ALPHA * np.exp(lb - top))
    return {
        "fusion": ((1 - ALPHA) * ea + ALPHA * eb).sum(1),
        "max": np.maximum(ea, eb).sum(1),
        "bonferroni": np.maximum(ea.sum(1), eb.sum(1)),
        "lr": lr.sum(1),
    }


def in_chunks(rng: np.random.Generator, n: int, t: int, regime: str | None) -> dict[str, np.ndarray]:
    parts = [statistics(*scores(rng, min(20000, n - i), t, regime)) for i in range(0, n, 20000)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nulls", type=int, default=200_000)
    ap.add_argument("--watermarked", type=int, default=20_000)
    ap.add_argument("--tokens", type=int, nargs="+", default=[25, 50, 100])
    args = ap.parse_args()
    rng = np.random.default_rng(27)
    check = np.exp(log_g(-np.log1p(-rng.uniform(size=1_000_000)))).mean()
    result: dict[str, object] = {"null_mean_of_g": float(check)}  # a density ratio: 1 under H0
    for regime in REGIMES:
        for t in args.tokens:
            null, marked = in_chunks(rng, args.nulls, t, None), in_chunks(rng, args.watermarked, t, regime)
            row: dict[str, dict[str, float]] = {}
            for fpr in (1e-2, 1e-3):
                for name in null:
                    thr = np.quantile(null[name], 1 - fpr, method="higher")
                    tpr = float((marked[name] > thr).mean())
                    row.setdefault(name, {})[f"tpr@{fpr:g}"] = round(tpr, 4)
                    row[name][f"se@{fpr:g}"] = round(float(np.sqrt(tpr * (1 - tpr) / args.watermarked)), 4)
            result[f"{regime}/T={t}"] = row
            print(regime, t, {k: (v["tpr@0.01"], v["tpr@0.001"]) for k, v in row.items()}, flush=True)
    emit(result)


if __name__ == "__main__":
    main()
