"""`wm serve --keyring` and POST /v1/detect/stream: entry names only, anytime-valid stream verdicts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from wm_toolkit.watermark.keying.keys import Key  # noqa: E402
from wm_toolkit.watermark.runtime.keyring import Entry, Keyring  # noqa: E402
from wm_toolkit.watermark.runtime.keyring_detect import RingDetector  # noqa: E402
from wm_toolkit.watermark.runtime.service import ServiceSettings, create_app  # noqa: E402
from wm_toolkit.watermark.runtime.service.keyring_detector import KeyringServiceDetector  # noqa: E402
from wm_toolkit.watermark.schemes import build_scheme  # noqa: E402

LOOPBACK = ("127.0.0.1", 40000)
KEYS = [Key.from_seed(f"serve ring {i}") for i in range(3)]


def _green_text(scheme, tokenizer, n=90, seed=0) -> str:
    """Words each green for its predecessor (kgw, h = 1): a strongly watermarked text, no model."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    cands = np.array(
        [
            i
            for i, t in enumerate(vocab)
            if t.startswith("Ġ") and t[1:].isascii() and t[1:].isalpha() and t[1:].islower()
        ]
    )
    rng = np.random.default_rng(seed)
    ids = [tokenizer.convert_tokens_to_ids("The")]
    while len(ids) < n:
        seed_t = torch.from_numpy(scheme.seeds_for(np.array([[ids[-1]]])))
        green = scheme.is_green(seed_t.expand(len(cands)), torch.from_numpy(cands)).numpy()
        ids.append(int(rng.choice(cands[green])))
    return tokenizer.decode(ids)


@pytest.fixture(scope="module")
def ring_detector(tokenizer):
    entries = [
        Entry(f"tenant-{i}", {"inline": k.secret.hex()}, {"scheme": "kgw"}, "smollm2-135m")
        for i, k in enumerate(KEYS)
    ]
    return RingDetector(Keyring(entries), alpha=1e-3, tokenizers={"smollm2-135m": tokenizer})


@pytest.fixture(scope="module")
def text(ring_detector, tokenizer):
    return _green_text(ring_detector.members[1].scheme, tokenizer)


def _client(ring_detector, log=None):
    app = create_app(None, None, ServiceSettings(), None, log if log is not None else [].append,
                     detector=KeyringServiceDetector(ring_detector))  # fmt: skip
    return TestClient(app, client=LOOPBACK, raise_server_exceptions=False)


def test_the_keyring_service_names_the_entry_and_nothing_else(ring_detector, text):
    log: list = []
    c = _client(ring_detector, log.append)
    res = c.post("/v1/detect", json={"text": text})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["keyring_match"] == "tenant-1" and body["family_p_value"] < 1e-3
    assert [e["name"] for e in body["entries"]] == ["tenant-0", "tenant-1", "tenant-2"]
    shown = res.text + json.dumps(log) + c.get("/v1/info").text
    for k in KEYS:
        assert k.secret.hex() not in shown and k.fingerprint not in shown
    assert '"config"' not in res.text
    assert c.get("/v1/info").json()["config"] == {"keyring": ["tenant-0", "tenant-1", "tenant-2"]}


def test_the_stream_endpoint_updates_the_verdict_as_chunks_arrive(ring_detector, text):
    c = _client(ring_detector)
    words = text.split(" ")
    first = c.post("/v1/detect/stream", json={"text": " ".join(words[:5])}).json()
    assert first["verdict"] == "undecided" and first["session"]
    states = [first]
    for i in range(5, len(words), 10):
        chunk = " " + " ".join(words[i : i + 10])
        states.append(c.post("/v1/detect/stream", json={"session": first["session"], "text": chunk}).json())
    last = c.post("/v1/detect/stream", json={"session": first["session"], "text": "", "final": True}).json()
    assert last["verdict"] == "watermarked" and last["keyring_match"] == "tenant-1"
    assert [s["tokens"] for s in states] == sorted(s["tokens"] for s in states)
    # a closed session is gone
    again = c.post("/v1/detect/stream", json={"session": first["session"], "text": "x"})
    assert again.status_code == 400


def test_a_stream_of_plain_text_ends_not_watermarked(ring_detector):
    c = _client(ring_detector)
    s = c.post(
        "/v1/detect/stream", json={"text": "The weather was mild and the market was busy. " * 8}
    ).json()
    end = c.post("/v1/detect/stream", json={"session": s["session"], "text": "", "final": True}).json()
    assert end["verdict"] == "not watermarked" and end["keyring_match"] is None


def test_stream_bodies_are_checked(ring_detector):
    c = _client(ring_detector)
    assert c.post("/v1/detect/stream", json={"text": 5}).status_code == 400
    assert c.post("/v1/detect/stream", json={"text": "a", "other": 1}).status_code == 400
    assert c.post("/v1/detect/stream", json={"session": "nope", "text": "a"}).status_code == 400


def test_the_single_key_service_streams_too(tokenizer, text):
    scheme = build_scheme(
        {"scheme": "kgw", "vocab_size": len(tokenizer), "tokenizer": "smollm2-135m"}, KEYS[1]
    )
    app = create_app(scheme, tokenizer, ServiceSettings(), None, [].append)
    c = TestClient(app, client=LOOPBACK, raise_server_exceptions=False)
    s = c.post("/v1/detect/stream", json={"text": text, "final": True}).json()
    assert s["verdict"] == "watermarked" and s["entries"][0]["name"] == "key"
