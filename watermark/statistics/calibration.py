"""Per-key calibration: this key's null distribution, measured on the user's own natural text.

Every detector's p-value is valid over random keys for a fixed text. A deployment has ONE key and
texts from one source, and with one key the share of natural texts below alpha can stray from
alpha by far more than sampling noise (unigram and ITS: 6x and 10x the binomial variance over 30
keys, benchmarks/results/robustness.md). A calibration detects N unwatermarked texts under this
key and config and keeps their p-values. A new text's calibrated p-value is its rank among them,

    calibrated_p = (1 + #{natural p <= observed p}) / (N + 1),

valid at every level by exchangeability whenever the text is exchangeable with the natural ones
(same source, similar length), whatever the key. Its floor is 1/(N + 1): with fewer than
1/alpha - 1 natural texts no text can be called watermarked at alpha, and the verdict says so.

The file holds the sorted log10 null p-values (ranks are taken in log space, so p-values below the
float range still order correctly), the config with its key fingerprint and a config fingerprint,
never the key. Using it with another key, config or normalisation setting is an error. Since
version 2 it also holds the texts' lengths and repetition rates (`calibration_match.TextStats`), so
a detection can say when the tested text does not look like them, and a summary of the null
p-values; version-1 files still load (without that check).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import ConfigError, InputError
from ..runtime.atomic import write_json
from ..schemes.base import Detection, TextTooShortError, WatermarkScheme
from .calibration_match import TextStats, context_width, size_warning

FORMAT = "wm-calibration"
VERSION = 2
READS = (1, 2)  # version 1: no text statistics


def config_fingerprint(config: dict[str, Any]) -> str:
    """A short hash of a config's fields (key fingerprint included): equal configs, equal hash."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Calibration:
    config: dict[str, Any]  # the scheme config as detected, with key_fingerprint
    null_log10_p: np.ndarray  # sorted ascending, one per natural text scored
    normalize: bool = True
    skipped: int = 0  # natural texts too short to score
    text_stats: TextStats | None = None  # None: a version-1 file (no mismatch check)

    @property
    def key_fingerprint(self) -> str | None:
        return self.config.get("key_fingerprint")

    @property
    def num_texts(self) -> int:
        return int(len(self.null_log10_p))

    @property
    def floor(self) -> float:
        """The smallest calibrated p-value any text can get."""
        return 1.0 / (self.num_texts + 1)

    def calibrated_p_value(self, det: Detection) -> float:
        """(1 + #{natural p <= observed p}) / (N + 1), counted in log10 space."""
        obs = cast(float, det.log10_p_value)  # set by Detection.__post_init__
        below = int(np.searchsorted(self.null_log10_p, obs, side="right"))
        return (1 + below) / (self.num_texts + 1)

    def share_below(self, alpha: float) -> float:
        """Share of the natural texts whose analytic p-value is <= alpha (the key's own FPR there)."""
        return float(np.mean(self.null_log10_p <= math.log10(alpha))) if self.num_texts else float("nan")

    def check(self, scheme: WatermarkScheme, normalize: bool) -> None:
        """Refuse to calibrate a detection made with another key, config or normalisation."""
        config = scheme.config.to_dict()
        if config.get("key_fingerprint") != self.key_fingerprint:
            raise ConfigError(
                f"the calibration was made with key {self.key_fingerprint}, this key is "
                f"{config.get('key_fingerprint')}: calibrate again with this key"
            )
        if config != self.config:
            diff = sorted(k for k in set(config) | set(self.config) if config.get(k) != self.config.get(k))
            shown = ", ".join(f"{k}: {self.config.get(k)!r} vs {config.get(k)!r}" for k in diff)
            raise ConfigError(
                f"the calibration was made for another config ({shown}): calibrate with this config"
            )
        if normalize != self.normalize:
            on = "with" if self.normalize else "without"
            raise ConfigError(
                f"the calibration was made {on} text normalisation: use the same setting to detect"
            )

    def mismatch(self, ids: np.ndarray) -> str | None:
        """Why this text does not look like the calibration texts (length, repetition), or None
        (also None for a version-1 file, which has no text statistics)."""
        return self.text_stats.text_mismatch(ids) if self.text_stats is not None else None

    def batch_mismatch(self, token_ids: Sequence[np.ndarray]) -> str | None:
        """Why a batch of texts does not look like the calibration texts (KS), or None."""
        return self.text_stats.batch_mismatch(list(token_ids)) if self.text_stats is not None else None

    def size_warning(self, alpha: float) -> str | None:
        """A warning when the calibration has fewer than 10 / alpha texts, else None."""
        return size_warning(self.num_texts, alpha)

    def fields(self, det: Detection, alpha: float, mismatch: str | None = None) -> dict[str, Any]:
        """The JSON fields a calibrated detection adds or overrides (verdict from the calibrated p);
        `mismatch` is why the text does not look like the calibration texts (None: it does)."""
        p = self.calibrated_p_value(det)
        watermarked = p <= alpha
        out: dict[str, Any] = {
            "calibrated_p_value": p,
            "calibration_texts": self.num_texts,
            "calibration_floor": self.floor,
            "calibration_mismatch": mismatch,
            "calibration_size_warning": self.size_warning(alpha),
            "watermarked": watermarked,
        }
        if watermarked:
            out["verdict"] = "watermarked"
        elif self.floor > alpha:
            out["verdict"] = "inconclusive"
            out["inconclusive_reason"] = (
                f"the calibration has {self.num_texts} natural texts, so the smallest calibrated p-value is "
                f"1/{self.num_texts + 1} = {self.floor:.3g}, above alpha = {alpha:g}: calibrate on at least "
                f"{math.ceil(1 / alpha) - 1} texts"
            )
        else:
            out["verdict"] = "not watermarked"
        return out

    def null_summary(self) -> dict[str, Any]:
        """The null p-values in brief (for a reader of the file; detection uses the full list)."""
        q = np.quantile(self.null_log10_p, [0.01, 0.05, 0.5]) if self.num_texts else [math.nan] * 3
        return {
            "log10_p_quantiles": {"0.01": float(q[0]), "0.05": float(q[1]), "0.5": float(q[2])},
            "share_p_below": {str(a): self.share_below(a) for a in (0.05, 0.01, 0.001)},
        }

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "version": VERSION if self.text_stats is not None else 1,
            "key_fingerprint": self.key_fingerprint,
            "config_fingerprint": config_fingerprint(self.config),
            "config": self.config,
            "normalize": self.normalize,
            "num_texts": self.num_texts,
            "skipped_too_short": self.skipped,
            "null_log10_p_values": [float(x) for x in self.null_log10_p],
        }
        if self.text_stats is not None:
            out["null_summary"] = self.null_summary()
            out["text_stats"] = self.text_stats.to_dict()
        return out

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())  # atomic: a reader never sees half a file

    @classmethod
    def from_dict(cls, data: Any, source: str = "calibration") -> Calibration:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"{source}: not a calibration file (made by `wm calibrate`)")
        if data.get("version") not in READS:
            raise InputError(
                f"{source}: calibration format version {data.get('version')!r}, expected one of {READS}"
            )
        try:
            config = dict(data["config"])
            null = np.sort(np.asarray(data["null_log10_p_values"], dtype=np.float64))
            normalize = bool(data["normalize"])
            stats = TextStats.from_dict(data["text_stats"]) if data["version"] >= 2 else None
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: malformed calibration file ({exc})") from None
        if null.ndim != 1 or np.isnan(null).any() or (null > 0).any():
            raise InputError(f"{source}: null_log10_p_values must be log10 p-values (<= 0)")
        if config_fingerprint(config) != data.get("config_fingerprint"):
            raise InputError(f"{source}: the config does not match its config_fingerprint (edited by hand?)")
        if config.get("key_fingerprint") != data.get("key_fingerprint"):
            raise InputError(f"{source}: key_fingerprint differs from the config's")
        if stats is not None and stats.lengths.size != null.size:
            raise InputError(f"{source}: text_stats and null_log10_p_values count different texts")
        return cls(config, null, normalize, int(data.get("skipped_too_short", 0)), stats)

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        from ..text.textio import decode_text, read_bytes

        text = decode_text(str(path), read_bytes(str(path)))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
        return cls.from_dict(data, str(path))


def calibrate(
    scheme: WatermarkScheme,
    token_ids: Sequence[Sequence[int]],
    normalize: bool = True,
    on_item: Callable[[int], None] | None = None,
) -> Calibration:
    """Detect every natural text (already tokenised the way detection will tokenise) under this
    scheme and key; texts too short to score are skipped and counted."""
    logs, scored, skipped = [], [], 0
    for ids in token_ids:
        try:
            logs.append(scheme.detect(ids).log10_p_value)
            scored.append(np.asarray(ids, dtype=np.int64))
        except TextTooShortError:
            skipped += 1
        if on_item:
            on_item(1)
    if not logs:
        raise InputError("no natural text long enough to score: calibration needs unwatermarked texts")
    stats = TextStats.measure(scored, context_width(scheme.config))
    return Calibration(
        scheme.config.to_dict(), np.sort(np.asarray(logs, dtype=np.float64)), normalize, skipped, stats
    )
