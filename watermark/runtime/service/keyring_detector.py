"""`wm serve --keyring` and the streaming endpoint: detection over many keys, verdicts as text grows.

`KeyringServiceDetector` has the service `Detector`'s interface (`run`, `config`), so the app's
POST /v1/detect serves a keyring unchanged. Answers name entries only: no key, no fingerprint, no
config, no per-token colours (they would show an entry's green lists); GET /v1/info lists the
entry names. Detection over the ring runs under one lock (the schemes' caches are not thread-safe).

POST /v1/detect/stream (`add_stream_routes`): {"text": chunk, "session": id?, "final": bool?}.
The first call (no session) opens a session bound to the caller; each call appends its chunk and
answers the anytime-valid verdict so far (`runtime.follow`), so a client may stop at any answer.
Bounded: at most MAX_SESSIONS open (the least recently used is dropped), each idle at most
SESSION_TTL_S seconds and at most `max_text_chars` characters; a final call closes the session.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import InputError
from ..follow import StreamMonitor, monitor_for
from ..keyring_detect import RingDetector, keyring_row
from .detector import DetectOutcome

try:  # FastAPI resolves the endpoint's annotations in this module's globals
    from fastapi import Request
except ImportError:  # pragma: no cover - the service needs the serve extra anyway
    Request = Any  # type: ignore[misc,assignment]

MAX_SESSIONS = 256
SESSION_TTL_S = 600.0
KEYRING_TOKENS_NOTE = "per-token views are not given for keyring detection (they would show an entry's lists)"


@dataclass(frozen=True)
class _PublicConfig:
    """What GET /v1/info shows for a keyring: the entry names."""

    names: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"keyring": list(self.names)}


class KeyringServiceDetector:
    """The service detector over every entry of a keyring (entry names only in answers)."""

    def __init__(self, ring_detector: RingDetector):
        self.ring = ring_detector
        self.alpha = ring_detector.alpha
        self._lock = threading.Lock()

    @property
    def config(self) -> _PublicConfig:
        return _PublicConfig(tuple(self.ring.ring.names()))

    def run(self, texts: Sequence[str], sources: Sequence[str], *, tokens=False, show_tokens=False,
            spans=False, html=False) -> DetectOutcome:  # fmt: skip
        with self._lock:
            results = self.ring.detect_texts(list(texts))
        out = DetectOutcome(rows=[])
        for source, (res, norm) in zip(sources, results, strict=True):
            row = keyring_row(source, res, norm)
            if tokens or spans or html:
                row["tokens_note"] = KEYRING_TOKENS_NOTE
            if "error" not in row:
                out.tokens_scored += max(e["num_tokens_scored"] for e in row["entries"])
                out.verdicts[row["verdict"]] = out.verdicts.get(row["verdict"], 0) + 1
            out.rows.append(row)
        return out

    def new_monitor(self) -> StreamMonitor:
        members = [(m.entry.name, m.scheme, m.tokenizer) for m in self.ring.members]
        return monitor_for(
            members, self.ring.tokenizers, self.alpha, self.ring.weights(), self.ring.normalize
        )


@dataclass
class _Session:
    client: str
    monitor: StreamMonitor
    text: str = ""
    seen: float = field(default_factory=time.monotonic)


class StreamSessions:
    """Open streams, bounded in number, idle time and size; one lock for all stream work."""

    def __init__(self, factory, max_chars: int, clock=time.monotonic):
        self.factory, self.max_chars, self.clock = factory, max_chars, clock
        self.sessions: OrderedDict[str, _Session] = OrderedDict()
        self.lock = threading.Lock()

    def _expire(self) -> None:
        now = self.clock()
        for sid in [s for s, v in self.sessions.items() if now - v.seen > SESSION_TTL_S]:
            del self.sessions[sid]
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.popitem(last=False)

    def update(self, client: str, session: str | None, chunk: str, final: bool) -> dict[str, Any]:
        with self.lock:
            if session is None:
                self._expire()
                session = secrets.token_urlsafe(16)
                self.sessions[session] = _Session(client, self.factory())
            s = self.sessions.get(session)
            if s is None or s.client != client:
                raise InputError("no such stream session (expired, closed, or another client's)")
            if len(s.text) + len(chunk) > self.max_chars:
                raise InputError(f"the stream is over the limit of {self.max_chars} characters")
            s.text += chunk
            s.seen = self.clock()
            self.sessions.move_to_end(session)
            state = s.monitor.update(s.text, final=final)
            if final:
                del self.sessions[session]
        return {"session": session, **state}


def parse_stream_body(body: bytes) -> tuple[str | None, str, bool]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InputError("the body is not valid JSON") from None
    if not isinstance(data, dict) or set(data) - {"text", "session", "final"}:
        raise InputError('expected a JSON object with "text" and optionally "session", "final"')
    text, session, final = data.get("text", ""), data.get("session"), data.get("final", False)
    if (
        not isinstance(text, str)
        or not (session is None or isinstance(session, str))
        or not isinstance(final, bool)
    ):
        raise InputError('"text" must be a string, "session" a string, "final" true or false')
    return session, text, final


def add_stream_routes(app: Any, service: Any, tokenizer: Any, http: Any) -> None:
    """POST /v1/detect/stream on the app (access and rate limits as for /v1/detect). `http` is
    app.py's (ServiceError, authenticate, read_body): handed in, so this module never imports
    app.py, which imports it."""
    ServiceError, _authenticate, _read_body = http  # noqa: N806 - a class and two functions

    factory = getattr(service.detector, "new_monitor", None)
    if factory is None:
        name = service.scheme.config.tokenizer or "tokenizer"
        scheme, settings = service.scheme, service.settings

        def factory() -> StreamMonitor:
            return monitor_for([("key", scheme, name)], {name: tokenizer}, settings.alpha)

    sessions = StreamSessions(factory, service.settings.max_text_chars)

    @app.post("/v1/detect/stream")
    async def detect_stream(request: Request):
        client = _authenticate(service, request)
        try:
            session, chunk, final = parse_stream_body(await _read_body(service.settings, request))
            if session is None:  # a new stream counts as one text against the daily quota
                quota = service.settings.daily_quota if client.daily_quota is None else client.daily_quota
                if service.limiter.take_texts(client.id, 1, quota) is not None:
                    raise ServiceError(429, f"daily quota of {quota} texts reached")
            return await service.workers.run(lambda: sessions.update(client.id, session, chunk, final))
        except InputError as exc:
            raise ServiceError(400, str(exc)) from None
