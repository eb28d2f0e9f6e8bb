"""Generate text in batches with or without a watermark processor (left padding, any decoding)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from transformers import LogitsProcessorList

from ..errors import ConfigError
from ..schemes.base import WatermarkScheme, sampling_warpers
from ..text.encoding import encode_for_detection, encode_texts

__all__ = [
    "Generation",
    "encode_for_detection",
    "encode_texts",
    "format_prompt",
    "generate",
    "sampling_warpers",
    "scheme_processor",
]


ENGINES = ("hf", "vllm")  # hf: transformers' generate(); vllm: the plugin (`make vllm`)


class _FinalDistributionScheme(Protocol):
    """A scheme with `acts_on_final_distribution`: its processor takes the sampling settings."""

    def processor(self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> Any: ...


@dataclass(frozen=True)
class Generation:
    prompt: str
    text: str
    token_ids: tuple[int, ...]  # the new tokens only, special tokens and padding removed

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def format_prompt(tokenizer: Any, prompt: str, chat: bool = True) -> str:
    """Wrap a prompt in the model's chat template (instruct models) unless `chat` is off."""
    if chat and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    return prompt


def _strip(ids: list[int], stop_ids: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in stop_ids:
            return ids[:i]
    return ids


def scheme_processor(scheme: WatermarkScheme, temperature: float, top_p: float, top_k: int) -> Any:
    """The scheme's processor for these sampling settings: the one rule both engines (HF here,
    vLLM in `runtime.engines.vllm_plugin`) follow, so they emit the same text.

    Engines apply user processors BEFORE their own warpers: a decoder that must see the final
    distribution gets the sampling settings and applies them itself; greedy decoding (temperature
    0) and every other scheme get the plain processor."""
    if temperature > 0 and getattr(scheme, "acts_on_final_distribution", False):
        final = cast(_FinalDistributionScheme, scheme)
        return final.processor(temperature=temperature, top_p=top_p, top_k=top_k)
    return scheme.processor()


def _engine_runner(model: Any, engine: str, extra_processors: Sequence[Any]) -> bool:
    """True where another engine generates: a vLLM engine from `vllm_plugin.open_llm` carries its
    own `wm_generate` (so wm imports no vLLM code here)."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine == "hf":
        return False
    if getattr(model, "wm_generate", None) is None or extra_processors:
        raise ConfigError("engine='vllm' needs an engine from vllm_plugin.open_llm, and no extra_processors")
    return True


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    scheme: WatermarkScheme | None = None,
    max_new_tokens: int = 200,
    batch_size: int = 8,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    num_beams: int = 1,
    seed: int | None = None,
    chat: bool = True,
    min_new_tokens: int | None = None,
    extra_processors: Sequence[Any] = (),
    on_batch: Callable[[int], None] | None = None,
    engine: str = "hf",
) -> list[Generation]:
    """Generate one continuation per prompt. `scheme=None` gives plain (unwatermarked) text.

    A fresh processor is built per batch, so per-sequence state (e.g. EXP key shifts) never
    leaks between batches. `seed` makes sampling reproducible batch by batch. `engine="vllm"`:
    `model` is a `vllm.LLM` from `runtime.engines.vllm_plugin.open_llm(name, scheme)`, which runs
    the same processors inside vLLM (same prompts, stripping and decoding).
    """
    if _engine_runner(model, engine, extra_processors):
        settings = dict(temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
        return model.wm_generate(
            tokenizer, prompts, scheme, batch_size=batch_size, chat=chat, num_beams=num_beams,
            on_batch=on_batch, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, **settings,
        )  # fmt: skip
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    gen_eos = model.generation_config.eos_token_id
    stop_ids.update(gen_eos if isinstance(gen_eos, list) else ([gen_eos] if gen_eos is not None else []))
    device = next(model.parameters()).device
    final = scheme is not None and getattr(scheme, "acts_on_final_distribution", False)
    if scheme is not None and final and num_beams > 1:
        raise ConfigError(f"the {scheme.name} watermark does not support beam search (num_beams > 1)")
    out: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        batch = list(prompts[start : start + batch_size])
        texts = [format_prompt(tokenizer, p, chat) for p in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat).to(device)
        processors = LogitsProcessorList(list(extra_processors))
        do_sample = temperature > 0
        if scheme is not None:
            processors.append(scheme_processor(scheme, temperature, top_p, top_k))
        if seed is not None:
            torch.manual_seed(seed + start)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens,
            logits_processor=processors,
            do_sample=do_sample,
            num_beams=num_beams,
            pad_token_id=tokenizer.pad_token_id,
        )
        if min_new_tokens:
            kwargs["min_new_tokens"] = min_new_tokens
        if do_sample and final:
            kwargs.update(temperature=1.0, top_p=1.0, top_k=0)
        elif do_sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        seqs = model.generate(**enc, **kwargs)
        new = seqs[:, enc["input_ids"].shape[1] :].tolist()
        for prompt, ids in zip(batch, new, strict=True):
            ids = _strip(ids, stop_ids)
            out.append(Generation(prompt, tokenizer.decode(ids, skip_special_tokens=True), tuple(ids)))
        if on_batch:
            on_batch(len(batch))
    return out
