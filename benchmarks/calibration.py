"""Per-key calibration on held-out natural text: does the calibrated FPR of one key stay at alpha?

benchmarks/null_calibration.py shows that with one fixed key the analytic false-positive share
of a natural corpus strays from alpha far beyond sampling noise (unigram: about 6x the binomial
variance over 30 keys). This script detects the same unwatermarked texts under `--keys` keys (the
same key seeds as null_calibration.py), and for each key computes every text's calibrated p-value
(`watermark.calibration`) from a calibration on the OTHER folds (`--folds`-fold cross-validation,
so each text is held out from its own calibration), then compares the calibrated FPR at alpha with
the binomial range of alpha over that many texts. It reports the unluckiest key (largest analytic
share below alpha) and the spread over all keys.

    python benchmarks/calibration.py --texts plain.jsonl --keys 30 --alpha 0.05,0.01 \
        --markdown benchmarks/results/calibration.md

--texts: unwatermarked texts, JSONL with "text" (e.g. `wm generate --no-watermark` output) or one
per line. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import emit
from scipy import stats

from wm_toolkit.watermark.config import default_config
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import encode_texts
from wm_toolkit.watermark.modeling.models import DEFAULT_MODEL, load_tokenizer
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.base import Detection, TextTooShortError
from wm_toolkit.watermark.statistics.calibration import Calibration, calibrate
from wm_toolkit.watermark.statistics.pvalues import clopper_pearson
from wm_toolkit.watermark.text.textio import read_records


def binomial_band(n: int, alpha: float, level: float = 0.95) -> tuple[float, float]:
    """Central `level` range of Binomial(n, alpha) / n: where an exact-size test's FPR falls."""
    lo = stats.binom.ppf((1 - level) / 2, n, alpha) / n
    hi = stats.binom.ppf(1 - (1 - level) / 2, n, alpha) / n
    return float(lo), float(hi)


def cross_validated(log_p: np.ndarray, config: dict, folds: int, seed: int = 0) -> np.ndarray:
    """Each text's calibrated p-value from a calibration on the other folds."""
    order = np.random.default_rng(seed).permutation(len(log_p))
    out = np.empty(len(log_p))
    for f in range(folds):
        held = order[f::folds]
        rest = np.setdiff1d(order, held)
        calib = Calibration(config, np.sort(log_p[rest]))
        below = np.searchsorted(calib.null_log10_p, log_p[held], side="right")
        out[held] = (1 + below) / (calib.num_texts + 1)
    return out


def half_split(log_p: np.ndarray, config: dict, seed: int = 1) -> np.ndarray:
    """The deployment case: calibrate once on a random half; calibrated p-values of the other half."""
    order = np.random.default_rng(seed).permutation(len(log_p))
    calib_idx, test_idx = order[: len(order) // 2], order[len(order) // 2 :]
    calib = Calibration(config, np.sort(log_p[calib_idx]))
    below = np.searchsorted(calib.null_log10_p, log_p[test_idx], side="right")
    return (1 + below) / (calib.num_texts + 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", required=True)
    ap.add_argument("--scheme", default="unigram")
    ap.add_argument("--keys", type=int, default=30)
    ap.add_argument("--alpha", default="0.05,0.01")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--first-key", default="robustness", help="Seed of the first key (as null_calibration.py)."
    )
    ap.add_argument("--tokenizer", default=DEFAULT_MODEL)
    ap.add_argument("--markdown", type=Path, default=None, help="Write the tables here.")
    args = ap.parse_args()
    t0 = time.perf_counter()
    alphas = [float(a) for a in args.alpha.split(",")]
    tok = load_tokenizer(args.tokenizer)
    texts = [r.text for r in read_records(args.texts, one_per_line=True)]
    ids = encode_texts(tok, texts)  # canonical text, as wm detect and wm calibrate read it
    config = default_config(args.scheme).replace(vocab_size=len(tok), tokenizer=args.tokenizer)
    seeds = [args.first_key] + [f"null-{k}" for k in range(1, args.keys)]
    scored = _scored(ids, build_scheme(config, Key.from_seed(seeds[0])))  # too short: skipped, for every key
    per_key = []
    for seed in seeds:
        scheme = build_scheme(config, Key.from_seed(seed))
        log_p = np.array([scheme.detect(x).log10_p_value for x in scored])
        cal = cross_validated(log_p, scheme.config.to_dict(), args.folds)
        split = half_split(log_p, scheme.config.to_dict())
        per_key.append({"seed": seed, "scheme": scheme, "log_p": log_p, "cal": cal, "split": split})
    n = len(per_key[0]["log_p"])
    # the library's own calibrate() gives the same ranks as the cross-validation shortcut
    first = per_key[0]
    order = np.random.default_rng(0).permutation(n)
    held, rest = order[0 :: args.folds], np.setdiff1d(order, order[0 :: args.folds])
    lib = calibrate(first["scheme"], [scored[i] for i in rest])
    for i in held[:20]:
        d = Detection(config.scheme, 10 ** first["log_p"][i], 1, 0.0, log10_p_value=first["log_p"][i])
        assert abs(lib.calibrated_p_value(d) - first["cal"][i]) < 1e-12

    result: dict = {"texts": n, "keys": len(seeds), "folds": args.folds, "scheme": args.scheme, "alphas": {}}
    lines = [f"{n} unwatermarked texts, {len(seeds)} {args.scheme} keys, {args.folds}-fold calibration", ""]
    for alpha in alphas:
        band = binomial_band(n, alpha)
        analytic = np.array([np.mean(k["log_p"] <= np.log10(alpha)) for k in per_key])
        calibrated = np.array([np.mean(k["cal"] <= alpha) for k in per_key])
        worst = int(np.argmax(analytic))
        w_an, w_cal = analytic[worst], calibrated[worst]
        ci = clopper_pearson(int(round(w_cal * n)), n)
        m = len(per_key[worst]["split"])
        split_band = binomial_band(m, alpha)
        w_split = float(np.mean(per_key[worst]["split"] <= alpha))
        split_all = np.array([np.mean(k["split"] <= alpha) for k in per_key])

        def disp(s: np.ndarray) -> float | None:
            m = s.mean()
            return round(float(s.var(ddof=1) / (m * (1 - m) / n)), 2) if 0 < m < 1 else None

        r = {
            "binomial_band_95": [round(band[0], 4), round(band[1], 4)],
            "unluckiest_key": seeds[worst],
            "unluckiest_analytic_fpr": round(float(w_an), 4),
            "unluckiest_calibrated_fpr": round(float(w_cal), 4),
            "unluckiest_calibrated_fpr_ci95": [round(ci[0], 4), round(ci[1], 4)],
            "unluckiest_calibrated_within_band": bool(band[0] <= w_cal <= band[1]),
            "analytic_fpr_mean": round(float(analytic.mean()), 4),
            "analytic_fpr_range": [float(analytic.min()), float(analytic.max())],
            "analytic_dispersion": disp(analytic),
            "calibrated_fpr_mean": round(float(calibrated.mean()), 4),
            "calibrated_fpr_range": [float(calibrated.min()), float(calibrated.max())],
            "calibrated_dispersion": disp(calibrated),
            "calibrated_keys_within_band": int(np.sum((calibrated >= band[0]) & (calibrated <= band[1]))),
            "split_texts_held_out": m,
            "split_binomial_band_95": [round(split_band[0], 4), round(split_band[1], 4)],
            "unluckiest_split_fpr": round(w_split, 4),
            "unluckiest_split_within_band": bool(split_band[0] <= w_split <= split_band[1]),
            "split_fpr_mean": round(float(split_all.mean()), 4),
            "split_keys_within_band": int(
                np.sum((split_all >= split_band[0]) & (split_all <= split_band[1]))
            ),
        }
        result["alphas"][str(alpha)] = r
        print(
            f"alpha {alpha}: unluckiest key {seeds[worst]}: analytic FPR {w_an:.3f}, calibrated {w_cal:.3f} "
            f"(binomial band {band[0]:.3f}-{band[1]:.3f}); over keys analytic {analytic.min():.3f}-"
            f"{analytic.max():.3f} (dispersion {r['analytic_dispersion']}), calibrated {calibrated.min():.3f}-"
            f"{calibrated.max():.3f} (dispersion {r['calibrated_dispersion']})",
            flush=True,
        )
        lines += [
            f"### alpha = {alpha}",
            "",
            "| | analytic p | calibrated p |",
            "|---|---|---|",
            f"| unluckiest key ({seeds[worst]}): FPR | {w_an:.3f} | {w_cal:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}) |",
            f"| mean FPR over {len(seeds)} keys | {analytic.mean():.4f} | {calibrated.mean():.4f} |",
            f"| range over keys | {analytic.min():.3f}-{analytic.max():.3f} | "
            f"{calibrated.min():.3f}-{calibrated.max():.3f} |",
            f"| variance over keys / binomial variance | {r['analytic_dispersion']} | {r['calibrated_dispersion']} |",
            f"| keys inside the binomial 95% band of alpha ({band[0]:.3f}-{band[1]:.3f}) | "
            f"{int(np.sum((analytic >= band[0]) & (analytic <= band[1])))}/{len(seeds)} | "
            f"{r['calibrated_keys_within_band']}/{len(seeds)} |",
            "",
            f"One calibration on a random half ({n - m} texts), FPR on the other {m} (binomial 95% band "
            f"{split_band[0]:.3f}-{split_band[1]:.3f}): unluckiest key {w_split:.3f}; mean over keys "
            f"{split_all.mean():.4f}, range {split_all.min():.3f}-{split_all.max():.3f}, "
            f"{r['split_keys_within_band']}/{len(seeds)} keys inside the band.",
            "",
        ]
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")
    emit(result)


def _scored(ids, scheme):
    """The texts that are long enough to score (the same ones the per-key loop kept)."""
    out = []
    for x in ids:
        try:
            scheme.detect(x)
        except TextTooShortError:
            continue
        out.append(x)
    return out


if __name__ == "__main__":
    main()
