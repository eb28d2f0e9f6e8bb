"""Sentence similarity g(a, b) in [0, 1] and NLI verdicts, every call batched.

SAR needs one similarity per answer token, so all texts of a question go through the model in
a few batches, and each distinct text is embedded once. The default is the embedded
all-MiniLM-L6-v2 *bi-encoder* (cosine of mean-pooled, normalised embeddings, clipped to
[0, 1]); the paper used the cross-encoder `cross-encoder/stsb-roberta-large`, which any
sentence-transformers cross-encoder folder or id can stand in for. Models load through plain
transformers: sentence-transformers is not needed and gives the same embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import ConfigError, ModelNotFoundError
from ..modeling.models import (
    DEFAULT_SIMILARITY_MODEL,
    canonical_name,
    check_device,
    hub_access,
    quiet_transformers,
    similarity_model_path,
)


class Similarity(Protocol):
    name: str

    def pairs(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        """g(left[i], right[i]) for each i, in [0, 1]."""

    def matrix(self, texts: Sequence[str]) -> np.ndarray:
        """g(texts[j], texts[k]) for all ordered pairs; the diagonal is 1."""


def _device(device: str | None) -> str:
    return check_device(device)


def _st_file(path: str, name: str) -> Any:
    """A sentence-transformers side file (modules.json, pooling config) from a folder or the HF cache:
    its JSON (an object for the configs, an array for modules.json), None where absent or unreadable."""
    p = Path(path) / name
    if not p.exists():
        try:
            from transformers.utils import cached_file

            found = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        except Exception:
            found = None
        if not found:
            return None
        p = Path(found)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


class BiEncoder:
    """Cosine similarity of sentence embeddings (sentence-transformers pooling), clipped to [0, 1]."""

    def __init__(self, path: str, name: str | None = None, device: str | None = None, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        self.name = name or path
        self.device = _device(device)
        self.batch_size = batch_size
        with hub_access():
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        pooling = _st_file(path, "1_Pooling/config.json") or {}
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        st_cfg = _st_file(path, "sentence_bert_config.json") or {}
        self.max_length = int(st_cfg.get("max_seq_length") or min(self.tokenizer.model_max_length, 512))

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths, less padding
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = [texts[i] for i in order[start : start + self.batch_size]]
            enc = self.tokenizer(
                batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**enc).last_hidden_state
            if self.pooling == "cls":
                emb = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        result = np.empty((len(texts), out[0].shape[1]), dtype=np.float32)
        result[order] = np.concatenate(out)
        return result

    def _embed_unique(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
        unique = list(dict.fromkeys(texts))
        return self.embed(unique), {t: i for i, t in enumerate(unique)}

    def pairs(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        if len(left) != len(right):
            raise ValueError("left and right differ in length")
        emb, index = self._embed_unique(list(left) + list(right))
        a = emb[[index[t] for t in left]]
        b = emb[[index[t] for t in right]]
        return np.clip((a * b).sum(-1), 0.0, 1.0).astype(float)

    def matrix(self, texts: Sequence[str]) -> np.ndarray:
        emb, index = self._embed_unique(texts)
        e = emb[[index[t] for t in texts]]
        m = np.clip(e @ e.T, 0.0, 1.0).astype(float)
        np.fill_diagonal(m, 1.0)
        return m


class _PairClassifier:
    def __init__(self, path: str, name: str | None, device: str | None, batch_size: int):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = name or path
        self.device = _device(device)
        self.batch_size = batch_size
        with hub_access():
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path).to(self.device).eval()

    @torch.inference_mode()
    def logits(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(left), self.batch_size):
            enc = self.tokenizer(
                list(left[start : start + self.batch_size]),
                list(right[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                return_tensors="pt",
            ).to(self.device)
            out.append(self.model(**enc).logits.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.num_labels))

    def _ordered_pairs(self, texts: Sequence[str]) -> tuple[list[str], list[str], list[tuple[int, int]]]:
        idx = [(a, b) for a in range(len(texts)) for b in range(len(texts)) if a != b]
        return [texts[a] for a, _ in idx], [texts[b] for _, b in idx], idx


class CrossEncoder(_PairClassifier):
    """An STS cross-encoder with one output; sigmoid(logit) is g, as sentence-transformers does."""

    def __init__(self, path: str, name: str | None = None, device: str | None = None, batch_size: int = 32):
        super().__init__(path, name, device, batch_size)
        if self.model.config.num_labels != 1:
            raise ConfigError(
                f"{self.name!r} is a classifier with {self.model.config.num_labels} labels, not a similarity "
                "cross-encoder (pass an NLI model as --nli-model instead)"
            )

    def pairs(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        if len(left) != len(right):
            raise ValueError("left and right differ in length")
        return 1.0 / (1.0 + np.exp(-self.logits(left, right)[:, 0].astype(float)))

    def matrix(self, texts: Sequence[str]) -> np.ndarray:
        m = np.ones((len(texts), len(texts)))
        left, right, idx = self._ordered_pairs(texts)
        for (a, b), g in zip(idx, self.pairs(left, right), strict=True):
            m[a, b] = g
        return m


class NLIModel(_PairClassifier):
    """An MNLI-style classifier giving contradiction / entailment verdicts on ordered pairs."""

    def __init__(self, path: str, name: str | None = None, device: str | None = None, batch_size: int = 32):
        super().__init__(path, name, device, batch_size)
        labels = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        try:
            self.contradiction, self.entailment = labels["contradiction"], labels["entailment"]
        except KeyError:
            raise ConfigError(
                f"{self.name!r} is not an NLI model: its labels are {sorted(labels)} "
                "(need 'contradiction' and 'entailment')"
            ) from None

    def verdicts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(contradiction, entailment) boolean matrices from the argmax label of each ordered pair."""
        n = len(texts)
        contra, entail = np.zeros((n, n), dtype=bool), np.eye(n, dtype=bool)
        left, right, idx = self._ordered_pairs(texts)
        if idx:
            pred = self.logits(left, right).argmax(-1)
            for (a, b), p in zip(idx, pred, strict=True):
                contra[a, b] = p == self.contradiction
                entail[a, b] = p == self.entailment
        return contra, entail


def _config(path: str, name: str) -> Any:
    quiet_transformers()
    from transformers import AutoConfig

    try:
        with hub_access():
            return AutoConfig.from_pretrained(path)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelNotFoundError(
            f"cannot load similarity model {name!r}: not a local model folder, and not downloadable here "
            f"({first[:200]})"
        ) from None


def load_similarity(name: str | None = None, device: str | None = None) -> Similarity:
    """The default MiniLM bi-encoder, or a bi-/cross-encoder folder or id (kind from its files)."""
    name = canonical_name(name or DEFAULT_SIMILARITY_MODEL)
    path = similarity_model_path(name)
    cfg = _config(path, name)
    is_sentence_transformer = _st_file(path, "modules.json") is not None
    archs = getattr(cfg, "architectures", None) or []
    if not is_sentence_transformer and any(a.endswith("ForSequenceClassification") for a in archs):
        return CrossEncoder(path, name=name, device=device)
    return BiEncoder(path, name=name, device=device)


def load_nli(name: str, device: str | None = None) -> NLIModel:
    """An NLI model by folder or id, e.g. microsoft/deberta-large-mnli as in the paper."""
    path = similarity_model_path(name)
    _config(path, name)
    return NLIModel(path, name=name, device=device)
