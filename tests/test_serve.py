"""`wm serve`: access, limits, verdicts and what never leaves the server, on the in-process app;
and the page in a real browser (headless Debian chromium through playwright) against uvicorn."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'wm-toolkit[serve]'")
from click.testing import CliRunner  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from wm_toolkit.watermark.keying.keys import Key, write_key_file  # noqa: E402
from wm_toolkit.watermark.runtime.service import ServiceSettings, TokenStore, create_app  # noqa: E402
from wm_toolkit.watermark.runtime.service.detector import Detector  # noqa: E402
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOKEN_A = "alice-token-0123456789abcdef"  # may not see token colours
TOKEN_B = "bob-token-0123456789abcdef01"  # "show_tokens": true
PLAIN = (
    "The river rose slowly through the night, and by morning the lower fields were under water. "
    "Farmers moved their animals to the hill behind the church, where the old road still held. "
    "Nobody in the village could remember a spring as wet as this one."
)
LOOPBACK = ("127.0.0.1", 40000)


@pytest.fixture(scope="module")
def kgw(tokenizer):
    config = GreenListConfig(vocab_size=len(tokenizer), tokenizer="smollm2-135m")
    return build_scheme(config, Key.from_seed("serve-tests"))


def green_text(scheme, tokenizer, n: int = 80, seed: int = 0) -> str:
    """A text of n " word" tokens, each green for its predecessor under `scheme` (h = 1): what a
    strongly watermarked generation looks like to the detector, without running a model."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    words = [i for i, t in enumerate(vocab) if t.startswith("Ġ") and t[1:].isascii() and t[1:].isalpha()]
    cands = np.array([i for i in words if vocab[i][1:].islower()])
    rng = np.random.default_rng(seed)
    ids = [tokenizer.convert_tokens_to_ids("The")]
    while len(ids) < n:
        seed_t = torch.from_numpy(scheme.seeds_for(np.array([[ids[-1]]])))
        green = scheme.is_green(seed_t.expand(len(cands)), torch.from_numpy(cands)).numpy()
        ids.append(int(rng.choice(cands[green])))
    text = tokenizer.decode(ids)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    return text


@pytest.fixture(scope="module")
def watermarked(kgw, tokenizer):
    return green_text(kgw, tokenizer)


@pytest.fixture
def tokens_file(tmp_path):
    p = tmp_path / "tokens.json"
    p.write_text(
        json.dumps(
            [
                {"id": "alice", "token": TOKEN_A},
                {"id": "bob", "token": TOKEN_B, "show_tokens": True},
            ]
        )
    )
    return p


def make(kgw, tokenizer, tokens=None, log=None, **settings):
    app = create_app(
        kgw, tokenizer, ServiceSettings(**settings), tokens, log=log if log is not None else [].append
    )
    return app


def client(app, host=("testclient", 50000)) -> TestClient:
    return TestClient(app, client=host, raise_server_exceptions=False)


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_required_when_configured_and_unknown_ones_refused(kgw, tokenizer, tokens_file):
    c = client(make(kgw, tokenizer, TokenStore.from_file(tokens_file)), LOOPBACK)
    r = c.post("/v1/detect", json={"text": PLAIN})
    assert r.status_code == 401 and "Bearer" in r.headers["WWW-Authenticate"]
    assert (
        c.post("/v1/detect", json={"text": PLAIN}, headers=auth("not-a-real-token-at-all")).status_code == 401
    )
    assert c.post("/v1/detect", json={"text": PLAIN}, headers=auth(TOKEN_A)).status_code == 200


def test_without_tokens_only_loopback_clients_are_answered(kgw, tokenizer):
    app = make(kgw, tokenizer)
    assert client(app, ("203.0.113.7", 1234)).post("/v1/detect", json={"text": PLAIN}).status_code == 403
    assert client(app, LOOPBACK).post("/v1/detect", json={"text": PLAIN}).status_code == 200
    assert client(app, ("::1", 1234)).post("/v1/detect", json={"text": PLAIN}).status_code == 200


def test_watermarked_and_plain_texts_get_the_right_verdicts(kgw, tokenizer, watermarked):
    c = client(make(kgw, tokenizer), LOOPBACK)
    r = c.post("/v1/detect", json={"texts": [watermarked, PLAIN]})
    assert r.status_code == 200
    wm, plain = r.json()["results"]
    assert wm["verdict"] == "watermarked" and wm["p_value"] < 1e-20 and wm["log10_p_value"] < -20
    assert plain["verdict"] == "not watermarked" and plain["p_value"] > 1e-3
    single = c.post("/v1/detect", json={"text": watermarked}).json()
    assert single["source"] == "text" and single["verdict"] == "watermarked"


def test_answers_carry_the_same_fields_as_wm_detect_json(kgw, tokenizer, watermarked, tmp_path):
    from wm_toolkit.cli.main import wm

    key_file = tmp_path / "key"
    write_key_file(key_file, kgw.key)
    (tmp_path / "w.txt").write_text(watermarked)
    res = CliRunner().invoke(wm, ["detect", "--key", str(key_file), str(tmp_path / "w.txt"), "--json"])
    assert res.exit_code == 0, res.output
    cli_row = json.loads(res.stdout)
    served = client(make(kgw, tokenizer), LOOPBACK).post("/v1/detect", json={"text": watermarked}).json()
    assert set(served) == set(cli_row)
    assert {k: v for k, v in served.items() if k != "source"} == {
        k: v for k, v in cli_row.items() if k != "source"
    }


def test_oversized_bodies_texts_and_batches_are_413(kgw, tokenizer):
    c = client(make(kgw, tokenizer, max_body_bytes=2000, max_text_chars=500, max_texts=3), LOOPBACK)
    assert c.post("/v1/detect", json={"text": "word " * 1000}).status_code == 413  # body > 2000 bytes
    r = c.post("/v1/detect", json={"text": "word " * 120})  # 600 characters
    assert r.status_code == 413 and "500" in r.json()["error"]
    assert c.post("/v1/detect", json={"texts": ["a text"] * 4}).status_code == 413
    # a body without Content-Length is counted as it arrives
    chunks = (b'{"text": "' + b"x" * 500 + b'"}' for _ in range(1))
    big = iter([b'{"text": "', b"y" * 3000, b'"}'])
    assert c.post("/v1/detect", content=big, headers={"Content-Type": "application/json"}).status_code == 413
    del chunks


def test_rate_limit_answers_429_with_retry_after(kgw, tokenizer, tokens_file):
    c = client(make(kgw, tokenizer, TokenStore.from_file(tokens_file), rate_limit=3), LOOPBACK)
    codes = [c.post("/v1/detect", json={"text": PLAIN}, headers=auth(TOKEN_A)).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = c.post("/v1/detect", json={"text": PLAIN}, headers=auth(TOKEN_A))
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 20  # one request per 20 s
    # limits are per token: bob still has his own bucket
    assert c.post("/v1/detect", json={"text": PLAIN}, headers=auth(TOKEN_B)).status_code == 200


def test_daily_quota_counts_texts_and_answers_429_until_midnight_utc(kgw, tokenizer):
    now = [86400 * 20000 + 3600.0]  # 01:00 UTC
    app = create_app(
        kgw, tokenizer, ServiceSettings(daily_quota=3), None, log=[].append, clock=lambda: now[0]
    )
    c = client(app, LOOPBACK)
    assert c.post("/v1/detect", json={"texts": [PLAIN, PLAIN]}).status_code == 200
    r = c.post("/v1/detect", json={"texts": [PLAIN, PLAIN]})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) == 23 * 3600
    assert c.post("/v1/detect", json={"text": PLAIN}).status_code == 200  # the third text fits
    now[0] += 23 * 3600
    assert c.post("/v1/detect", json={"texts": [PLAIN, PLAIN]}).status_code == 200


def test_token_colours_go_only_to_clients_allowed_to_see_them(kgw, tokenizer, tokens_file, watermarked):
    c = client(make(kgw, tokenizer, TokenStore.from_file(tokens_file)), LOOPBACK)
    body = {"text": watermarked, "tokens": True, "html": True}
    hidden = c.post("/v1/detect", json=body, headers=auth(TOKEN_A)).json()
    assert "tokens" not in hidden and "token_mask" not in hidden and "green lists" in hidden["tokens_hidden"]
    assert "t-green" not in hidden["html"] and "wm-hidden" in hidden["html"]
    shown = c.post("/v1/detect", json=body, headers=auth(TOKEN_B)).json()
    assert shown["token_mask"][0] == -1 and sum(shown["token_mask"][1:]) == len(shown["token_mask"]) - 1
    assert "".join(t["text"] for t in shown["tokens"]) == watermarked
    assert "t-green" in shown["html"] and "tokens_hidden" not in shown
    # loopback clients see colours only when the operator says so
    loop = client(make(kgw, tokenizer), LOOPBACK).post("/v1/detect", json=body).json()
    assert "tokens_hidden" in loop
    allowed = client(make(kgw, tokenizer, allow_token_display=True), LOOPBACK).post("/v1/detect", json=body)
    assert "tokens" in allowed.json()


def test_no_key_material_or_bearer_token_in_any_answer_or_log_line(kgw, tokenizer, tokens_file, watermarked):
    log: list[dict] = []
    c = client(
        make(kgw, tokenizer, TokenStore.from_file(tokens_file), log=log.append, rate_limit=6), LOOPBACK
    )
    answers = [
        c.post(
            "/v1/detect",
            json={"texts": [watermarked, PLAIN, "hi"], "tokens": True, "html": True, "spans": True},
            headers=auth(TOKEN_B),
        ),
        c.post("/v1/detect", json={"text": watermarked, "tokens": True}, headers=auth(TOKEN_A)),
        c.post("/v1/detect", json={"text": PLAIN}),
        c.post(
            "/v1/detect", content=b"{not json", headers={**auth(TOKEN_A), "Content-Type": "application/json"}
        ),
        c.get("/v1/info", headers=auth(TOKEN_A)),
        c.get("/healthz"),
        c.get("/"),
    ]
    answers += [c.post("/v1/detect", json={"text": PLAIN}, headers=auth(TOKEN_A)) for _ in range(5)]  # to 429
    assert {a.status_code for a in answers} >= {200, 400, 401, 429}
    secrets = [
        kgw.key.secret.hex(),
        kgw.key.secret.hex().upper(),
        kgw.key.derive("greenlist/lefthash/h=1").hex(),
    ]
    lines = [json.dumps(e) for e in log]
    assert len(lines) == len(answers)  # one line per request
    for blob in [a.text for a in answers] + [json.dumps(dict(a.headers)) for a in answers] + lines:
        assert not any(s in blob for s in secrets)
    for line in lines:
        assert TOKEN_A not in line and TOKEN_B not in line
        assert watermarked[:40] not in line and PLAIN[:40] not in line  # no text unless --log-text
    assert kgw.key.fingerprint in answers[4].text  # the public fingerprint is fine
    entry = next(e for e in log if e.get("texts") == 3)
    assert entry["client"] == "bob" and entry["status"] == 200 and entry["verdicts"]["watermarked"] == 1
    assert entry["bytes_in"] > 0 and entry["latency_ms"] >= 0 and entry["text_errors"] == 1


def test_log_holds_the_text_only_when_asked(kgw, tokenizer):
    log: list[dict] = []
    client(make(kgw, tokenizer, log=log.append, log_text=True), LOOPBACK).post(
        "/v1/detect", json={"text": PLAIN}
    )
    assert log[-1]["text"] == [PLAIN]


def test_spans_locate_the_watermark_inside_plain_text(kgw, tokenizer, watermarked):
    text = PLAIN + " " + watermarked + " " + PLAIN
    r = client(make(kgw, tokenizer), LOOPBACK).post("/v1/detect", json={"text": text, "spans": True})
    row = r.json()
    assert r.status_code == 200 and row["span_verdict"] == "watermarked" and len(row["spans"]) == 1
    (span,) = row["spans"]
    start = len(PLAIN) + 1
    assert abs(span["start_char"] - start) <= 25 and abs(span["end_char"] - (start + len(watermarked))) <= 25
    assert span["p_value"] <= row["alpha"] and span["end_token"] > span["start_token"]
    plain = client(make(kgw, tokenizer), LOOPBACK).post("/v1/detect", json={"text": PLAIN, "spans": True})
    assert plain.json()["spans"] == [] and plain.json()["span_verdict"] != "watermarked"


def test_bad_requests_get_one_clear_error(kgw, tokenizer):
    c = client(make(kgw, tokenizer), LOOPBACK)
    cases = [
        (dict(content=b"[1", headers={"Content-Type": "application/json"}), 400),
        (dict(content=b'{"text": "x"}', headers={"Content-Type": "text/plain"}), 415),
        (dict(json={"text": "x", "texts": ["y"]}), 400),
        (dict(json={"texts": []}), 400),
        (dict(json={"text": 3}), 400),
        (dict(json={"text": "x", "colour": True}), 400),
        (dict(json={"text": "x", "tokens": "yes"}), 400),
    ]
    for kwargs, code in cases:
        r = c.post("/v1/detect", **kwargs)
        assert r.status_code == code and isinstance(r.json()["error"], str), (kwargs, r.text)
    short = c.post("/v1/detect", json={"text": "Hi"})
    assert short.status_code == 422 and "tokens" in short.json()["error"]


def test_slow_detection_times_out_with_504(kgw, tokenizer, monkeypatch):
    real = Detector.run

    def slow(self, *a, **kw):
        time.sleep(1.0)
        return real(self, *a, **kw)

    monkeypatch.setattr(Detector, "run", slow)
    r = client(make(kgw, tokenizer, timeout_s=0.2), LOOPBACK).post("/v1/detect", json={"text": PLAIN})
    assert r.status_code == 504


def test_host_header_must_name_the_server_against_dns_rebinding(kgw, tokenizer):
    app = make(kgw, tokenizer, allowed_hosts=("127.0.0.1", "localhost", "::1"))
    c = TestClient(app, base_url="http://127.0.0.1:8000", client=LOOPBACK)
    assert c.get("/healthz").status_code == 200
    assert c.get("/healthz", headers={"Host": "evil.example:8000"}).status_code == 400


def test_page_is_one_self_contained_document_with_a_strict_policy(kgw, tokenizer):
    r = client(make(kgw, tokenizer), LOOPBACK).get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for ref in ("src=", "href=", "http://", "https://", "@import", "url("):
        assert ref not in r.text
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp


def test_html_view_escapes_the_input_text(kgw, tokenizer):
    evil = '<script>alert("x")</script> <img src=x onerror=alert(1)> and some more words to score here'
    c = client(make(kgw, tokenizer, allow_token_display=True), LOOPBACK)
    out = c.post("/v1/detect", json={"text": evil, "tokens": True, "html": True}).json()["html"]
    assert "<script" not in out and "<img" not in out
    import html
    import re

    assert evil in html.unescape(re.sub(r"<[^>]+>", "", out))  # every character shown, as text


def test_tokens_file_formats_and_refusals(tmp_path):
    from wm_toolkit.watermark.errors import ConfigError
    from wm_toolkit.watermark.runtime.service.policy import token_digest

    plain = tmp_path / "t.txt"
    plain.write_text(f"# ops\n{TOKEN_A}\n\n{TOKEN_B}\n")
    store = TokenStore.from_file(plain)
    assert store.lookup(TOKEN_B).id == "token-2" and store.lookup("nope") is None
    hashed = tmp_path / "h.json"
    hashed.write_text(
        json.dumps({"tokens": [{"id": "ci", "sha256": token_digest(TOKEN_A).hex(), "rate_limit": 5}]})
    )
    got = TokenStore.from_file(hashed).lookup(TOKEN_A)
    assert got.id == "ci" and got.rate_limit == 5 and not got.show_tokens
    assert TOKEN_A not in repr(TokenStore.from_file(plain).__dict__)  # only hashes are kept
    for bad in ("short\n", json.dumps([{"id": "x"}]), json.dumps([{"id": "a", "token": TOKEN_A}] * 2), ""):
        plain.write_text(bad)
        with pytest.raises(ConfigError):
            TokenStore.from_file(plain)


# ---- the page in a real browser ---------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(kgw, watermarked, tmp_path):
    """`wm serve` in a subprocess on a free loopback port, token display allowed for loopback."""
    key_file = tmp_path / "key"
    write_key_file(key_file, kgw.key)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [
        sys.executable,
        "-m",
        "wm_toolkit.cli.main",
        "serve",
        "--key",
        str(key_file),
        "--port",
        str(port),
        "--allow-token-display",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"wm serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("wm serve did not answer within 60 s")
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait(timeout=10)


def test_page_in_headless_chromium_shows_verdicts_and_coloured_tokens(live_server, watermarked, tmp_path):
    if CHROMIUM is None:
        pytest.skip(
            "no chromium on PATH: `apt-get install chromium` (make setup does it where apt-get exists)"
        )
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    expect = playwright.expect  # waits through locators: the page's CSP forbids playwright's eval
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(live_server)
            # a plain text, pasted
            page.fill("#text", PLAIN)
            page.click("#check")
            page.wait_for_selector(".wm-result")
            assert page.inner_text(".wm-verdict") == "not watermarked"
            # the watermarked text, dropped as a .jsonl file with two records
            jsonl = tmp_path / "drop.jsonl"
            jsonl.write_text(json.dumps({"text": watermarked}) + "\n" + json.dumps({"text": PLAIN}) + "\n")
            page.set_input_files("#file", str(jsonl))
            expect(page.locator("#fileinfo")).to_contain_text("2 text(s) loaded")
            page.click("#check")
            expect(page.locator(".wm-result")).to_have_count(2)
            verdicts = page.locator(".wm-verdict").all_inner_texts()
            assert verdicts == ["watermarked", "not watermarked"]
            assert "2 text(s) checked: 1 watermarked" in page.inner_text("#status")
            first = page.locator(".wm-result").first
            assert (
                first.locator(".wm-text .t-green").count() == 79
                and first.locator(".wm-text .t-red").count() == 0
            )
            assert page.locator(".wm-result").nth(1).locator(".wm-text .t-red").count() > 10
            assert "green: in the green list" in first.locator(".wm-legend").inner_text()
            assert "p-value" in first.inner_text()
            color = first.locator(".wm-text .t-green").first.evaluate("e => getComputedStyle(e).color")
            assert color == "rgb(10, 125, 50)"
            assert not errors, errors  # no script errors, no CSP violations
            # the screenshot kept under docs/ is refreshed on request, so a test run leaves the tree clean
            shot = (
                REPO / "docs" / "serve-page.png"
                if os.environ.get("WM_UPDATE_SCREENSHOT")
                else tmp_path / "page.png"
            )
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()


def test_wm_serve_refuses_a_public_address_without_tokens(tmp_path):
    from wm_toolkit.cli.main import wm

    res = CliRunner().invoke(wm, ["serve", "--host", "0.0.0.0", "--key", str(tmp_path / "k")])
    assert res.exit_code == 2 and "needs --tokens" in res.stderr


def test_detection_runs_off_the_event_loop_and_a_full_queue_answers_503(kgw, tokenizer, monkeypatch):
    import threading

    real = Detector.run
    started = threading.Event()

    def slow(self, *a, **kw):
        started.set()
        time.sleep(1.5)
        return real(self, *a, **kw)

    monkeypatch.setattr(Detector, "run", slow)
    app = make(kgw, tokenizer, max_concurrency=1, max_queue=0)
    with TestClient(app, client=LOOPBACK) as c:  # one event loop for every request
        first: list = []
        t = threading.Thread(target=lambda: first.append(c.post("/v1/detect", json={"text": PLAIN})))
        t.start()
        assert started.wait(10)
        t0 = time.perf_counter()
        assert c.get("/healthz").status_code == 200
        assert time.perf_counter() - t0 < 1.0  # the loop is free while the worker detects
        busy = c.post("/v1/detect", json={"text": PLAIN})
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        t.join()
        assert first[0].status_code == 200
