"""Sample K answers and the most likely answer per question, with per-token NLLs from the ids.

NLLs come from one teacher-forced forward pass over prompt + generated ids under the raw model
distribution (temperature 1, as the paper's `get_likelihoods.py`), so nothing is ever
re-tokenised. Answers stop at the first token containing a newline (or EOS); such stop tokens
act as EOS during generation and are not part of the answer, and the first generated token may
not be one, so no answer is empty.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..modeling.models import cache_keyword, returned_cache

DEFAULT_INSTRUCTION = "Reply with only the answer, at most three words. Never write a sentence."
# Few-shot turns that show the answer format (Rouge-L against short references needs short
# answers); none of these questions is in data/qa.jsonl.
DEFAULT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of Uruguay?", "Montevideo"),
    ('Who wrote the novel "The Old Man and the Sea"?', "Ernest Hemingway"),
    ("How many days are in a fortnight?", "14"),
)


@dataclass(frozen=True)
class Answer:
    text: str
    token_ids: tuple[int, ...]
    token_nlls: tuple[float, ...]  # -log p(z_i | prompt, z_<i), one per token id

    @property
    def nll(self) -> float:
        """-log p(answer | prompt)."""
        return float(sum(self.token_nlls))

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "token_ids": list(self.token_ids), "token_nlls": list(self.token_nlls)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Answer:
        return cls(d["text"], tuple(int(t) for t in d["token_ids"]), tuple(float(x) for x in d["token_nlls"]))


@dataclass(frozen=True)
class QuestionSamples:
    question: str
    most_likely: Answer  # greedy or beam: the answer whose correctness is judged
    samples: tuple[Answer, ...]  # the K sampled answers that the uncertainty scores use

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "most_likely": self.most_likely.to_dict(),
            "samples": [a.to_dict() for a in self.samples],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuestionSamples:
        return cls(
            d["question"],
            Answer.from_dict(d["most_likely"]),
            tuple(Answer.from_dict(a) for a in d["samples"]),
        )


@dataclass(frozen=True)
class SamplingConfig:
    k: int = 5
    temperature: float = 0.5
    max_new_tokens: int = 32
    num_beams: int = 1  # 1 = greedy most-likely answer; the paper used 5 beams
    instruction: str = DEFAULT_INSTRUCTION
    examples: tuple[tuple[str, str], ...] = DEFAULT_EXAMPLES
    chat: bool = True
    seed: int | None = 0
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in caches, e.g. the model name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_prompt(
    tokenizer: Any,
    question: str,
    instruction: str = DEFAULT_INSTRUCTION,
    examples: Sequence[tuple[str, str]] = DEFAULT_EXAMPLES,
    chat: bool = True,
) -> str:
    """Instruction (system turn), few-shot question/answer turns, then the question.

    Models without a chat template (or `chat=False`) get the same as plain
    "Question: ... / Answer: ..." text.
    """
    if chat and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": instruction}] if instruction else []
        for q, a in examples:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in examples)
    head = f"{instruction}\n\n" if instruction else ""
    return f"{head}{shots}Question: {question}\nAnswer:"


@functools.lru_cache(maxsize=4)
def _newline_ids(tokenizer: Any) -> tuple[int, ...]:
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return tuple(i for i, p in enumerate(pieces) if "\n" in p)


def stop_token_ids(tokenizer: Any, model: Any | None = None) -> list[int]:
    """EOS / pad ids and every token whose text contains a newline."""
    ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    if model is not None:
        gen_eos = model.generation_config.eos_token_id
        ids.update(gen_eos if isinstance(gen_eos, list) else ([gen_eos] if gen_eos is not None else []))
    ids.update(_newline_ids(tokenizer))
    return sorted(ids)


def truncate_at_stop(ids: Sequence[int], stop: set[int]) -> tuple[int, ...]:
    for i, t in enumerate(ids):
        if t in stop:
            return tuple(ids[:i])
    return tuple(ids)


@torch.inference_mode()
def token_nlls(model: Any, prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> list[list[float]]:
    """-log p(z_i | prompt, z_<i) for each answer, in one right-padded forward pass."""
    device = next(model.parameters()).device
    p = len(prompt_ids)
    longest = max((len(a) for a in answers), default=0)
    if longest == 0:
        return [[] for _ in answers]
    rows = [list(prompt_ids) + list(a) + [0] * (longest - len(a)) for a in answers]
    mask = [[1] * (p + len(a)) + [0] * (longest - len(a)) for a in answers]
    ids = torch.tensor(rows, device=device)
    logits = model(input_ids=ids, attention_mask=torch.tensor(mask, device=device)).logits
    logp = torch.log_softmax(logits[:, p - 1 : p - 1 + longest].float(), dim=-1)
    picked = logp.gather(-1, ids[:, p : p + longest, None])[..., 0]
    return [(-picked[j, : len(a)]).tolist() for j, a in enumerate(answers)]


def _decode(
    model: Any,
    enc: dict[str, torch.Tensor],
    rows_per_prompt: int,
    temperature: float,
    max_new_tokens: int,
    stop: list[int],
    pad_id: int,
    generator: torch.Generator,
) -> tuple[list[list[int]], list[list[float]]]:
    """Greedy row + sampled rows per prompt in one loop over a shared prompt cache.

    The prompt is run once and its KV cache repeated (`generate(num_return_sequences=K)` would
    run it K times); finished rows leave the batch, so one long sample does not keep every
    row decoding; NLLs are read off the raw logits at each step. Row 0 of every prompt is
    greedy, the others sample at `temperature` (no top-k/top-p).
    """
    cache_kw = cache_keyword(model)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    r = rows_per_prompt
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = returned_cache(out, cache_kw)
    cache.batch_repeat_interleave(r)
    logits = out.logits[:, -1].float().repeat_interleave(r, 0)
    mask = mask.repeat_interleave(r, 0)
    last = positions[:, -1].repeat_interleave(r)
    n = logits.shape[0]
    device = logits.device
    active = torch.arange(n, device=device)
    greedy_rows = active % r == 0
    stop_t = torch.tensor(stop, device=device)
    tokens = torch.full((n, max_new_tokens), pad_id, dtype=torch.long)
    nlls = torch.zeros((n, max_new_tokens))
    length = 0
    for step in range(max_new_tokens):
        logp = torch.log_softmax(logits, dim=-1)
        allowed = logits.clone()
        if step == 0:  # at least one real token: no empty answers
            allowed[:, stop_t] = float("-inf")
        pick_greedy = allowed.argmax(-1)
        probs = torch.softmax(allowed / temperature, dim=-1)
        pick_sample = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(device)
        nxt = torch.where(greedy_rows[active], pick_greedy, pick_sample)
        tokens[active.cpu(), step] = nxt.cpu()
        nlls[active.cpu(), step] = -logp.gather(-1, nxt[:, None])[:, 0].cpu()
        length = step + 1
        keep = ~torch.isin(nxt, stop_t)
        if step == max_new_tokens - 1 or not bool(keep.any()):
            break
        if not bool(keep.all()):
            idx = keep.nonzero()[:, 0]
            cache.batch_select_indices(idx)
            active, nxt, mask, last = active[idx], nxt[idx], mask[idx], last[idx]
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=1)
        last = last + 1
        out = model(
            input_ids=nxt[:, None],
            attention_mask=mask,
            position_ids=last[:, None],
            use_cache=True,
            **{cache_kw: cache},
        )
        cache = returned_cache(out, cache_kw)
        logits = out.logits[:, -1].float()
    return tokens[:, :length].tolist(), nlls[:, :length].tolist()


@torch.inference_mode()
def sample_answers(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    config: SamplingConfig = SamplingConfig(),
    batch_size: int = 8,
    on_question: Callable[[int], None] | None = None,
) -> list[QuestionSamples]:
    """The most likely answer and K samples at `config.temperature` for each question.

    Greedy decoding shares the sampling loop; beam search (`num_beams > 1`) goes through
    `model.generate` and gets its NLLs from a separate forward pass.
    """
    if config.temperature <= 0:
        raise ValueError("sampling temperature must be positive")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = next(model.parameters()).device
    stop = stop_token_ids(tokenizer, model)
    stop_set = set(stop)
    out: list[QuestionSamples] = []
    for start in range(0, len(questions), batch_size):
        batch = list(questions[start : start + batch_size])
        prompts = [
            build_prompt(tokenizer, q, config.instruction, config.examples, config.chat) for q in batch
        ]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not config.chat).to(
            device
        )
        generator = torch.Generator().manual_seed((config.seed or 0) + start)
        if config.seed is None:
            generator.seed()
        r = config.k + 1
        toks, nlls = _decode(
            model, enc, r, config.temperature, config.max_new_tokens, stop, tokenizer.pad_token_id, generator
        )
        beams = None
        if config.num_beams > 1:
            width = enc["input_ids"].shape[1]
            beams = model.generate(
                **enc,
                do_sample=False,
                num_beams=config.num_beams,
                temperature=None,
                top_p=None,
                top_k=None,
                max_new_tokens=config.max_new_tokens,
                min_new_tokens=1,
                eos_token_id=stop,
                pad_token_id=tokenizer.pad_token_id,
            )[:, width:].tolist()
        for i, question in enumerate(batch):
            made = []
            for row in range(i * r, (i + 1) * r):
                ids = truncate_at_stop(toks[row], stop_set)
                made.append((ids, tuple(nlls[row][: len(ids)])))
            if beams is not None:
                prompt_ids = enc["input_ids"][i][enc["attention_mask"][i].bool()].tolist()
                ids = truncate_at_stop(beams[i], stop_set)
                made[0] = (ids, tuple(token_nlls(model, prompt_ids, [ids])[0]))
            answers = [Answer(tokenizer.decode(list(a), skip_special_tokens=True), a, n) for a, n in made]
            out.append(QuestionSamples(question, answers[0], tuple(answers[1:])))
            if on_question:
                on_question(1)
    return out
