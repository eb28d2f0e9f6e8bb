"""Interop with transformers' watermarks on the default model (issue 17's done-when checks).

1. transformers' own WatermarkLogitsProcessor (greenlist_ratio 0.25, bias 2, hashing_key
   15485863, lefthash, context width 1) on --n-done prompts x --done-tokens new tokens, tested
   with the issue's exact `wm detect --scheme hf-kgw ... --json` command; plain texts too.
2. `wm generate --scheme hf-kgw` texts, tested with transformers' own WatermarkDetector.
3. transformers' SynthIDTextWatermarkLogitsProcessor (the issue's 30 keys, ngram_len 5), tested
   with `wm detect --scheme hf-synthid --synthid-keys ... --ngram-len 5 --json`; plain texts too.
4. `wm generate --scheme synthid` + `wm detect` end to end (CLI).
5. Detection power of synthid beside kgw and gumbel at 50/100/200 tokens (--n-power prompts,
   texts cut to their first L tokens), and robustness rows from `wm eval`'s grid machinery
   (`attacks.grid.run_grid`, same settings and key as benchmarks/robustness.py, so its
   caches are shared: `python benchmarks/robustness.py --n 32 --out out/interop/grid ...`).

Everything is cached under --out; a rerun only redoes what is missing. Writes --markdown.

    OMP_NUM_THREADS=1 nice python benchmarks/interop.py --n-done 16 --n-power 32 \
        --markdown out/interop/report.md

benchmarks/results/interop.md is that report plus notes written by hand (papers.md checks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, emit, load_prompts
from robustness import markdown_table

from wm_toolkit.attacks.grid import GridSetup, run_grid
from wm_toolkit.attacks.registry import parse_attacks
from wm_toolkit.watermark.config import default_config
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.measure.evaluation import GenerationSettings, cached_generations, generation_tag
from wm_toolkit.watermark.modeling.generation import format_prompt
from wm_toolkit.watermark.modeling.models import DEFAULT_MODEL, load_model
from wm_toolkit.watermark.schemes import build_scheme

HF_KEY = 15485863
SYNTHID_KEYS = (
    "654,400,836,123,340,443,597,160,57,29,590,639,13,715,468,990,966,226,324,585,118,504,421,521,129,"
    "669,732,225,90,960"
)
ATTACKS = (
    "none,substitute:0.1,substitute:0.3,insert:0.1,delete:0.1,word-substitute:0.2,word-delete:0.2,"
    "neighbour:0.2,dilute:0.5"
)
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.0f} s] {msg}", file=sys.stderr, flush=True)


@torch.inference_mode()
def transformers_generate(model, tok, prompts, watermarking_config, max_new_tokens, batch_size, seed):
    """model.generate with transformers' own watermarking_config (chat template, left padding,
    multinomial sampling at temperature 1): exactly what a transformers user runs."""
    tok.padding_side = "left"
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        enc = tok(
            [format_prompt(tok, p) for p in batch],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        torch.manual_seed(seed + start)
        seqs = model.generate(
            **enc,
            watermarking_config=watermarking_config,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
        )
        for prompt, ids in zip(batch, seqs[:, enc["input_ids"].shape[1] :].tolist(), strict=True):
            stop = [i for i, t in enumerate(ids) if t in (tok.eos_token_id, tok.pad_token_id)]
            ids = ids[: stop[0]] if stop else ids
            out.append(
                {"prompt": prompt, "text": tok.decode(ids, skip_special_tokens=True), "token_ids": ids}
            )
        log(f"  transformers generate: {len(out)}/{len(prompts)}")
    return out


def progress(description: str, total: int):
    log(f"{description} ({total})")
    return lambda k: None


def save(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")


def cut_ids(tok, rec: dict, length: int) -> list[int]:
    """The first `length` generated tokens as text, tokenised again (what a detector sees)."""
    return tok(tok.decode(rec["token_ids"][:length], skip_special_tokens=True), add_special_tokens=False)[
        "input_ids"
    ]


def cached_jsonl(path: Path, make) -> list[dict]:
    if path.exists():
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    recs = make()
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return recs


def wm_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "wm_toolkit.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if res.returncode != 0:
        raise RuntimeError(f"wm {' '.join(args[:3])} ...: exit {res.returncode}: {res.stderr.strip()[-500:]}")
    return res


def cli_detect(path: Path, *flags: str) -> list[dict]:
    res = wm_cli("detect", str(path), *flags, "--json")
    return [json.loads(x) for x in res.stdout.splitlines() if x.strip()]


def truncated(recs: list[dict], tok, tokens: int) -> list[dict]:
    """Texts cut to their first `tokens` token ids (decoded), for the plain side and the power curve."""
    return [{"text": tok.decode(r["token_ids"][:tokens], skip_special_tokens=True)} for r in recs]


def write_texts(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"text": r["text"]}, ensure_ascii=False) + "\n" for r in recs))
    return path


def below(rows: list[dict], alpha: float = 1e-3) -> int:
    return sum(r["p_value"] < alpha for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-done", type=int, default=16)
    ap.add_argument("--done-tokens", type=int, default=150)
    ap.add_argument("--n-power", type=int, default=32)
    ap.add_argument("--power-tokens", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--attacks", default=ATTACKS)
    ap.add_argument("--perplexity-texts", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "interop")
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    model, tok = load_model(DEFAULT_MODEL, device="cpu")
    from transformers import SynthIDTextWatermarkingConfig, WatermarkDetector, WatermarkingConfig

    key = Key.from_seed("robustness")  # benchmarks/robustness.py's key and settings: shared caches
    settings = GenerationSettings(
        model=DEFAULT_MODEL, max_new_tokens=args.power_tokens, batch_size=args.batch_size, seed=0
    )
    gen_dir = args.out / "grid" / "generations"
    gen_dir.mkdir(parents=True, exist_ok=True)
    grid_prompts = load_prompts(max(args.n_power, args.n_done))
    log("plain texts (the unwatermarked side of every check)")
    plain = cached_generations(
        gen_dir / f"{generation_tag(settings, None)}.jsonl", model, tok, grid_prompts, None, settings
    )
    plain_done = write_texts(
        args.out / "plain-done.jsonl", truncated(plain[: args.n_done], tok, args.done_tokens)
    )
    prompts = grid_prompts[: args.n_done]
    results: dict = {"n_done": args.n_done, "done_tokens": args.done_tokens, "n_power": args.n_power}

    # ---- 1. transformers' KGW, detected by wm ------------------------------------------------------
    hf_cfg = WatermarkingConfig(
        greenlist_ratio=0.25, bias=2.0, hashing_key=HF_KEY, seeding_scheme="lefthash", context_width=1
    )
    log("1. transformers' WatermarkLogitsProcessor")
    tk = cached_jsonl(
        args.out / f"transformers-kgw-{args.n_done}x{args.done_tokens}.jsonl",
        lambda: transformers_generate(model, tok, prompts, hf_cfg, args.done_tokens, args.batch_size, 0),
    )
    flags = ["--scheme", "hf-kgw", "--hashing-key", str(HF_KEY), "--gamma", "0.25", "--seeding", "lefthash"]
    flags += ["--context-width", "1"]
    wm_rows = cli_detect(write_texts(args.out / "transformers-kgw-texts.jsonl", tk), *flags)
    plain_rows = cli_detect(plain_done, *flags)
    detector = WatermarkDetector(model.config, "cpu", hf_cfg)  # transformers' defaults
    dedup = WatermarkDetector(model.config, "cpu", hf_cfg, ignore_repeated_ngrams=True)
    theirs = [
        float(
            dedup(
                torch.tensor([tok(r["text"], add_special_tokens=False)["input_ids"]]), return_dict=True
            ).p_value[0]
        )
        for r in tk
    ]
    results["transformers_kgw"] = {
        "wm_p_below_1e-3": below(wm_rows),
        "plain_p_below_1e-3": below(plain_rows),
        "median_p": float(np.median([r["p_value"] for r in wm_rows])),
        "median_tokens_scored": float(np.median([r["num_tokens_scored"] for r in wm_rows])),
        "transformers_detector_median_p": float(np.median(theirs)),
    }
    log(f"   {results['transformers_kgw']}")
    save(args.out / "results.json", results)

    # ---- 2. wm generate --scheme hf-kgw, detected by transformers --------------------------------
    log("2. wm generate --scheme hf-kgw")
    wm_kgw = args.out / f"wm-hf-kgw-{args.n_done}x{args.done_tokens}.jsonl"
    if not wm_kgw.exists():
        wm_cli(
            "generate", "--prompt-file", str(ROOT / "data" / "prompts.jsonl"), "--limit", str(args.n_done),
            "--scheme", "hf-kgw", "--hashing-key", str(HF_KEY), "--max-new-tokens", str(args.done_tokens),
            "--batch-size", str(args.batch_size), "--seed", "0", "-o", str(wm_kgw),
        )  # fmt: skip
    recs = [json.loads(x) for x in wm_kgw.read_text().splitlines() if x.strip()]
    flagged_z4, flagged_default, zs = 0, 0, []
    for r in recs:
        ids = torch.tensor([tok(r["text"], add_special_tokens=False)["input_ids"]])
        out = detector(ids, z_threshold=4.0, return_dict=True)
        zs.append(float(out.z_score[0]))
        flagged_z4 += bool(out.prediction[0])
        flagged_default += bool(detector(ids))  # transformers' default threshold z > 3
    plain_flagged = sum(
        bool(detector(torch.tensor([tok(r["text"], add_special_tokens=False)["input_ids"]]), z_threshold=4.0))
        for r in truncated(plain[: args.n_done], tok, args.done_tokens)
    )
    results["wm_hf_kgw"] = {
        "transformers_flagged_z4": flagged_z4,
        "transformers_flagged_default_z3": flagged_default,
        "median_z": float(np.median(zs)),
        "plain_flagged_z4": plain_flagged,
        "wm_p_below_1e-3": below(cli_detect(wm_kgw, "--hashing-key", str(HF_KEY))),
        # same prompts, seeds and batches as step 1: a bit-identical processor gives the same texts
        "identical_to_transformers_texts": sum(a["text"] == b["text"] for a, b in zip(recs, tk, strict=True)),
    }
    log(f"   {results['wm_hf_kgw']}")

    # ---- 3. transformers' SynthID-Text, detected by wm -------------------------------------------
    log("3. transformers' SynthIDTextWatermarkLogitsProcessor")
    sid_cfg = SynthIDTextWatermarkingConfig(keys=[int(k) for k in SYNTHID_KEYS.split(",")], ngram_len=5)
    ts = cached_jsonl(
        args.out / f"transformers-synthid-{args.n_done}x{args.done_tokens}.jsonl",
        lambda: transformers_generate(model, tok, prompts, sid_cfg, args.done_tokens, args.batch_size, 0),
    )
    sflags = ["--scheme", "hf-synthid", "--synthid-keys", SYNTHID_KEYS, "--ngram-len", "5"]
    s_rows = cli_detect(write_texts(args.out / "transformers-synthid-texts.jsonl", ts), *sflags)
    s_plain = cli_detect(plain_done, *sflags)
    results["transformers_synthid"] = {
        "wm_p_below_1e-3": below(s_rows),
        "plain_p_below_1e-3": below(s_plain),
        "mean_score_p_below_1e-3": sum(r["p_value_mean"] < 1e-3 for r in s_rows),
        "median_p": float(np.median([r["p_value"] for r in s_rows])),
        "median_p_mean_score": float(np.median([r["p_value_mean"] for r in s_rows])),
        "median_positions_scored": float(np.median([r["num_tokens_scored"] for r in s_rows])),
        "median_mean_g": float(np.median([r["mean_score"] for r in s_rows])),
        "plain_median_p": float(np.median([r["p_value"] for r in s_plain])),
    }
    log(f"   {results['transformers_synthid']}")

    # ---- 4. wm generate --scheme synthid + wm detect (CLI) ---------------------------------------
    log("4. wm generate --scheme synthid")
    key_file = args.out / "synthid.key"
    if not key_file.exists():
        write_key_file(key_file, Key.from_seed("interop-synthid"))
    wm_sid = args.out / f"wm-synthid-{args.n_done}x{args.done_tokens}.jsonl"
    if not wm_sid.exists():
        wm_cli(
            "generate", "--prompt-file", str(ROOT / "data" / "prompts.jsonl"), "--limit", str(args.n_done),
            "--scheme", "synthid", "--key", str(key_file), "--max-new-tokens", str(args.done_tokens),
            "--batch-size", str(args.batch_size), "--seed", "0", "-o", str(wm_sid),
        )  # fmt: skip
    n_rows = cli_detect(wm_sid, "--key", str(key_file))
    n_plain = cli_detect(plain_done, "--scheme", "synthid", "--key", str(key_file))
    results["wm_synthid_cli"] = {
        "wm_p_below_1e-3": below(n_rows),
        "plain_p_below_1e-3": below(n_plain),
        "median_p": float(np.median([r["p_value"] for r in n_rows])),
        "median_p_mean_score": float(np.median([r["p_value_mean"] for r in n_rows])),
    }
    log(f"   {results['wm_synthid_cli']}")

    save(args.out / "results.json", results)

    # ---- 5. power at 50/100/200 tokens and robustness rows (wm eval's grid machinery) -------------
    schemes_by_name = {
        name: build_scheme(default_config(name).replace(vocab_size=len(tok), tokenizer=DEFAULT_MODEL), key)
        for name in ("synthid", "kgw", "gumbel")
    }
    setup = GridSetup(
        model=model,
        tokenizer=tok,
        settings=settings,
        prompts=grid_prompts,
        out_dir=args.out / "grid",
        perplexity_texts=args.perplexity_texts,
        attack_options={"batch_size": args.batch_size},
    )
    rows = run_grid(setup, list(schemes_by_name.values()), parse_attacks(args.attacks), progress=progress)

    def grid_texts(scheme) -> list[dict]:
        tag = generation_tag(settings, None if scheme is None else scheme.config.generation_dict())
        return [json.loads(x) for x in (gen_dir / f"{tag}.jsonl").read_text().splitlines() if x.strip()]

    power: dict[str, dict[int, dict]] = {}
    for name, s in schemes_by_name.items():
        wm_recs = grid_texts(s)[: args.n_power]
        power[name] = {}
        for length in (50, 100, 200):
            wm_dets = [s.detect(cut_ids(tok, r, length)) for r in wm_recs]
            null_p = [s.detect(cut_ids(tok, r, length)).p_value for r in plain[: args.n_power]]
            wm_p = np.array([d.p_value for d in wm_dets])
            power[name][length] = {
                "tpr": float(np.mean(wm_p < 1e-3)),
                "fpr": float(np.mean(np.array(null_p) < 1e-3)),
                "median_p": float(np.median(wm_p)),
            }
            if name == "synthid":
                power[name][length]["tpr_mean_score"] = float(
                    np.mean([d.p_value_mean < 1e-3 for d in wm_dets])
                )
        log(f"power {name}: {power[name]}")
    results["power"] = power
    results["load_average"] = [round(x, 1) for x in (*load_before, *os.getloadavg())]
    results["seconds"] = round(time.perf_counter() - T0)
    save(args.out / "results.json", results)
    if args.markdown:
        args.markdown.write_text(report(results, rows, args))
    emit(results)


def report(res: dict, rows: list[dict], args) -> str:
    n, t = res["n_done"], res["done_tokens"]
    k, s, w, c = res["transformers_kgw"], res["transformers_synthid"], res["wm_hf_kgw"], res["wm_synthid_cli"]
    lines = [
        "# Interop with transformers' watermarks (issue 17)",
        "",
        "Default model (SmolLM2-135M-Instruct, float32, CPU), chat template, multinomial sampling at",
        f"temperature 1, the first prompts of `data/prompts.jsonl`. Seeds: transformers' `generate` and "
        f"`wm generate --seed 0` both seed torch with 0 + the batch's first index (batches of {args.batch_size}); "
        "plain texts and the grid use `wm eval`'s generation seed 0 and attack seed 0, wm key "
        '`Key.from_seed("robustness")` (benchmarks/robustness.py\'s). '
        f"Plain texts for the done-when rows are the grid's unwatermarked texts cut to {t} tokens. Run: `OMP_NUM_THREADS=1 nice python benchmarks/interop.py "
        f"--n-done {n} --n-power {res['n_power']} --markdown out/interop/report.md` "
        f"({res['seconds']} s; load average before / after: {res['load_average'][:3]} / {res['load_average'][3:]}"
        " on 2 shared cores).",
        "",
        "## Done-when checks",
        "",
        "| check | result | target |",
        "|---|---|---|",
        f"| transformers' `WatermarkLogitsProcessor` (ratio 0.25, bias 2, key 15485863, lefthash, width 1), "
        f"{n} prompts x {t} tokens: `wm detect --scheme hf-kgw --hashing-key 15485863 --gamma 0.25 --seeding "
        f"lefthash --context-width 1 --json` p < 1e-3 | {k['wm_p_below_1e-3']}/{n} (median p {k['median_p']:.2g}; "
        f"transformers' own detector, repeats ignored: median p {k['transformers_detector_median_p']:.2g}) "
        f"| >= 15/{n} |",
        f"| same command on {n} plain texts (cut to {t} tokens) | {k['plain_p_below_1e-3']}/{n} | 0/{n} |",
        f"| `wm generate --scheme hf-kgw --hashing-key 15485863` ({n} x {t}), flagged by transformers' "
        f"`WatermarkDetector` | {w['transformers_flagged_z4']}/{n} at z > 4 ({w['transformers_flagged_default_z3']}/{n} "
        f"at its default z > 3; median z {w['median_z']:.1f}); plain: {w['plain_flagged_z4']}/{n} at z > 4; "
        f"{w.get('identical_to_transformers_texts', '?')}/{n} texts identical to transformers' own (same seeds) "
        f"| flagged |",
        f"| transformers' `SynthIDTextWatermarkLogitsProcessor` (the issue's 30 keys, ngram_len 5), {n} x {t}: "
        f"`wm detect --scheme hf-synthid --synthid-keys ... --ngram-len 5 --json` p < 1e-3 | "
        f"{s['wm_p_below_1e-3']}/{n} (weighted score, the default; mean score {s['mean_score_p_below_1e-3']}/{n}; "
        f"median p {s['median_p']:.2g}, median mean g {s['median_mean_g']:.3f} over "
        f"{s['median_positions_scored']:.0f} positions) | >= 12/{n} |",
        f"| same command on {n} plain texts | {s['plain_p_below_1e-3']}/{n} (median p {s['plain_median_p']:.2g}) "
        f"| 0/{n} |",
        f"| `wm generate --scheme synthid` ({n} x {t}) + `wm detect` | {c['wm_p_below_1e-3']}/{n} at p < 1e-3 "
        f"(median p {c['median_p']:.2g}; mean score {c['median_p_mean_score']:.2g}); plain "
        f"{c['plain_p_below_1e-3']}/{n} | works end to end |",
        "",
        f"## Detection power at 50 / 100 / 200 tokens ({res['n_power']} prompts per cell; say so: a modest n)",
        "",
        "Texts generated with 200 new tokens and cut to their first L tokens; TPR = share with p < 1e-3,",
        "FPR = share of plain texts (same prompts, same cut) with p < 1e-3. Default configs: synthid",
        "(ngram_len 5, 30 layers, weighted score), kgw (gamma 0.25, delta 2, h = 1), gumbel (h = 4).",
        "",
        "| scheme | TPR@50 | TPR@100 | TPR@200 | FPR@50/100/200 | median p @50/100/200 |",
        "|---|---|---|---|---|---|",
    ]
    for name, cells in res["power"].items():
        tp = [f"{cells[L]['tpr']:.2f}" for L in (50, 100, 200)]
        if name == "synthid":
            tp = [
                f"{cells[L]['tpr']:.2f} (mean score {cells[L]['tpr_mean_score']:.2f})" for L in (50, 100, 200)
            ]
        fp = "/".join(f"{cells[L]['fpr']:.2f}" for L in (50, 100, 200))
        mp = "/".join(f"{cells[L]['median_p']:.1g}" for L in (50, 100, 200))
        lines.append(f"| {name} | {' | '.join(tp)} | {fp} | {mp} |")
    lines += [
        "",
        f"## Robustness rows ({res['n_power']} prompts, 200 tokens; `wm eval`'s grid machinery)",
        "",
        "Same harness and key as benchmarks/robustness.py (whose published rows use 200 prompts).",
        f"Perplexity is the median over the first {args.perplexity_texts} texts only.",
        "",
        markdown_table(rows),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
