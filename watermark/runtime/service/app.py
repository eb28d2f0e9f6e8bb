"""The detection service as an ASGI app (FastAPI): `create_app(scheme, tokenizer, settings, tokens)`.

Endpoints: `POST /v1/detect` ({"text"} or {"texts"}, optional "tokens", "spans", "html" flags),
`GET /v1/info`, `GET /healthz` and `GET /` (the page). Checks run cheapest first: host, access,
rate limit, body size, JSON shape, text sizes, daily quota, a free worker; detection runs on
worker threads, never on the event loop. Each request is logged as one JSON line without its
text; no answer carries key bytes, and per-token colours only go to clients allowed to see them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ...schemes.base import WatermarkScheme
from .detector import Detector
from .keyring_detector import add_stream_routes
from .page import content_security_policy, page_html
from .policy import (
    LOOPBACK_ID,
    Client,
    RateLimiter,
    ServiceSettings,
    TokenStore,
    is_loopback,
    retry_after_header,
)

REQUEST_FIELDS = {"text", "texts", "tokens", "spans", "html"}


class ServiceError(Exception):
    """An answer other than 200, with a one-line message for the client and the log."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class JsonLineLog:
    """One JSON object per line on a stream (stderr by default), whole lines even from threads."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            stream = self.stream or sys.stderr
            stream.write(line)
            stream.flush()


class _Workers:
    """Detection on worker threads, never on the event loop: at most `max_concurrency` running and
    `max_queue` waiting; past that a request is answered 503 at once."""

    def __init__(self, settings: ServiceSettings):
        self.executor = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="wm-detect")
        self.max_in_flight = settings.max_concurrency + settings.max_queue
        self.timeout_s = settings.timeout_s
        self.in_flight = 0
        self.lock = threading.Lock()

    async def run(self, job: Callable[[], Any]) -> Any:
        with self.lock:
            if self.in_flight >= self.max_in_flight:
                raise ServiceError(503, "the server is busy; try again shortly", retry_after_header(1))
            self.in_flight += 1

        def done(_):
            with self.lock:
                self.in_flight -= 1

        future = self.executor.submit(job)
        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError(504, f"detection took longer than {self.timeout_s:g} s") from None


@dataclass
class _Service:
    """What the endpoints share: one key, config and tokenizer, the limits and who may call."""

    scheme: WatermarkScheme | None  # None: a keyring's service (its own detector)
    detector: Detector
    settings: ServiceSettings
    tokens: TokenStore | None  # None: loopback clients only
    limiter: RateLimiter
    workers: _Workers


def create_app(
    scheme: WatermarkScheme | None,
    tokenizer: Any,
    settings: ServiceSettings | None = None,
    tokens: TokenStore | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.time,
    detector: Any = None,
) -> FastAPI:
    """The service for one key, config and tokenizer. `tokens` None: loopback clients only.
    `detector`: another detector with Detector's interface (a keyring: `keyring_detector`; then
    `scheme` may be None)."""
    settings = settings or ServiceSettings()
    if not detector:
        if scheme is None:
            raise ValueError("create_app needs a scheme or a detector")
        detector = Detector(scheme, tokenizer, settings.alpha)
    service = _Service(
        scheme=scheme,
        detector=detector,
        settings=settings,
        tokens=tokens,
        limiter=RateLimiter(clock),
        workers=_Workers(settings),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.workers.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="wm detection", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    _add_guard(app, settings, log or JsonLineLog())
    _add_routes(app, service)
    add_stream_routes(
        app, service, tokenizer, (ServiceError, _authenticate, _read_body)
    )  # keyring_detector.py
    return app


# ---- every request: host check, security headers, one log line --------------------------------
def _add_guard(app: FastAPI, settings: ServiceSettings, log: Callable[[dict[str, Any]], None]) -> None:
    """The middleware every request passes: the Host check, security headers and its log line."""

    @app.middleware("http")
    async def guard_and_log(request: Request, call_next):
        started = time.perf_counter()
        request.state.info = {}
        host = _host_name(request.headers.get("host", ""))
        try:
            if settings.allowed_hosts is not None and host not in settings.allowed_hosts:
                raise ServiceError(400, "this Host is not served here (see --allowed-host)")
            response = await call_next(request)
        except ServiceError as exc:
            request.state.info["error"] = exc.message
            response = JSONResponse({"error": exc.message}, exc.status, exc.headers)
        except Exception as exc:  # a bug: the client learns nothing, the log gets the type only
            request.state.info["error"] = f"internal error ({type(exc).__name__})"
            response = JSONResponse({"error": "internal error"}, 500)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
        log(_log_entry(request, response, started))
        return response

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError):
        request.state.info["error"] = exc.message
        return JSONResponse({"error": exc.message}, exc.status, exc.headers)


def _log_entry(request: Request, response: Response, started: float) -> dict[str, Any]:
    """The request's log line: no text (unless --log-text put it in `info`), no token."""
    return {
        "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "method": request.method,
        "path": request.url.path,
        "status": response.status_code,
        "client": request.state.info.pop("client", None),
        "remote": request.client.host if request.client else None,
        **request.state.info,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


# ---- access ----------------------------------------------------------------------------------
def _authenticate(service: _Service, request: Request) -> Client:
    """The calling client (a bearer token, or loopback without tokens), within its rate limit."""
    settings, tokens = service.settings, service.tokens
    if tokens is None:
        if not is_loopback(request.client.host if request.client else None):
            raise ServiceError(403, "this server has no access tokens and answers loopback clients only")
        client = Client(LOOPBACK_ID, show_tokens=settings.allow_token_display)
    else:
        auth = request.headers.get("authorization", "")
        scheme_name, _, presented = auth.partition(" ")
        if scheme_name.lower() != "bearer" or not presented.strip():
            raise ServiceError(401, "a bearer token is required", {"WWW-Authenticate": 'Bearer realm="wm"'})
        found = tokens.lookup(presented.strip())
        if found is None:
            raise ServiceError(
                401, "invalid token", {"WWW-Authenticate": 'Bearer realm="wm", error="invalid_token"'}
            )
        client = found
    request.state.info["client"] = client.id
    rate = settings.rate_limit if client.rate_limit is None else client.rate_limit
    wait = service.limiter.take_request(client.id, rate)
    if wait is not None:
        raise ServiceError(429, f"rate limit of {rate} requests a minute reached", retry_after_header(wait))
    return client


# ---- the request body --------------------------------------------------------------------------
async def _read_body(settings: ServiceSettings, request: Request) -> bytes:
    """The JSON body, refused past the size limit (declared or streamed) or the time limit."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ServiceError(400, "bad Content-Length")
        if int(declared) > limit:
            raise ServiceError(413, f"request body of {declared} bytes; the limit is {limit}")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ServiceError(415, "send the request as Content-Type: application/json")

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ServiceError(413, f"request body over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        body = await asyncio.wait_for(collect(), settings.timeout_s)
    except asyncio.TimeoutError:
        raise ServiceError(408, "the request body did not arrive in time") from None
    request.state.info["bytes_in"] = len(body)
    return body


def _parse(settings: ServiceSettings, body: bytes) -> tuple[list[str], bool, dict[str, bool]]:
    """(texts, whether one "text" was sent, the tokens/spans/html flags); 400/413 on a bad shape."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ServiceError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ServiceError(400, 'expected a JSON object with "text" or "texts"')
    unknown = set(data) - REQUEST_FIELDS
    if unknown:
        raise ServiceError(400, f"unknown fields {sorted(unknown)}; known: {sorted(REQUEST_FIELDS)}")
    if ("text" in data) == ("texts" in data):
        raise ServiceError(400, 'give exactly one of "text" (a string) and "texts" (a list of strings)')
    single = "text" in data
    texts = [data["text"]] if single else data["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ServiceError(400, '"text" must be a string and "texts" a list of strings')
    if not texts:
        raise ServiceError(400, '"texts" is empty')
    if len(texts) > settings.max_texts:
        raise ServiceError(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts}")
    for i, t in enumerate(texts):
        if len(t) > settings.max_text_chars:
            where = "the text" if single else f"texts[{i}]"
            raise ServiceError(
                413, f"{where} has {len(t)} characters; the limit is {settings.max_text_chars}"
            )
    flags = {}
    for name in ("tokens", "spans", "html"):
        value = data.get(name, False)
        if not isinstance(value, bool):
            raise ServiceError(400, f'"{name}" must be true or false')
        flags[name] = value
    return texts, single, flags


# ---- endpoints ---------------------------------------------------------------------------------
def _add_routes(app: FastAPI, service: _Service) -> None:
    """POST /v1/detect, GET /v1/info, /healthz, the page at / and an empty favicon."""
    csp = content_security_policy()
    page = page_html()

    @app.post("/v1/detect")
    async def detect(request: Request):
        return await _detect(service, request)

    @app.get("/v1/info")
    async def info(request: Request):
        return _info(service, _authenticate(service, request))

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": csp})

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)


async def _detect(service: _Service, request: Request) -> JSONResponse:
    """POST /v1/detect: access, body, daily quota, then detection on a worker thread."""
    settings = service.settings
    client = _authenticate(service, request)
    texts, single, flags = _parse(settings, await _read_body(settings, request))
    info = request.state.info
    info.update(texts=len(texts), chars=sum(len(t) for t in texts))
    if settings.log_text:
        info["text"] = texts
    quota = settings.daily_quota if client.daily_quota is None else client.daily_quota
    wait = service.limiter.take_texts(client.id, len(texts), quota)
    if wait is not None:
        raise ServiceError(
            429, f"daily quota of {quota} texts reached (resets at 00:00 UTC)", retry_after_header(wait)
        )
    sources = ["text"] if single else [f"texts[{i}]" for i in range(len(texts))]
    outcome = await service.workers.run(
        lambda: service.detector.run(texts, sources, show_tokens=client.show_tokens, **flags)
    )
    info.update(tokens_scored=outcome.tokens_scored, verdicts=outcome.verdicts)
    errors = [r["error"] for r in outcome.rows if "error" in r]
    if errors:
        info["text_errors"] = len(errors)
    if single:
        row = outcome.rows[0]
        if outcome.html is not None:
            row["html"] = outcome.html
        return JSONResponse(row, 422 if "error" in row else 200)
    body: dict[str, Any] = {"results": outcome.rows}
    if outcome.html is not None:
        body["html"] = outcome.html
    return JSONResponse(body)


def _info(service: _Service, client: Client) -> dict[str, Any]:
    """GET /v1/info: the config, alpha and this client's limits (never the key)."""
    settings = service.settings
    return {
        "client": client.id,
        "config": service.detector.config.to_dict(),
        "alpha": settings.alpha,
        "token_display": client.show_tokens,
        "spans": bool(getattr(service.scheme, "has_spans", False)),
        "limits": {
            "rate_limit_per_minute": settings.rate_limit if client.rate_limit is None else client.rate_limit,
            "daily_quota_texts": settings.daily_quota if client.daily_quota is None else client.daily_quota,
            "used_today": service.limiter.used_today(client.id),
            "max_body_bytes": settings.max_body_bytes,
            "max_text_chars": settings.max_text_chars,
            "max_texts": settings.max_texts,
            "timeout_s": settings.timeout_s,
        },
    }


def _host_name(host: str) -> str:
    """The name in a Host header, without the port ("[::1]:80" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def keyring_app(ring_path: str, settings: Any, tokens: Any, log: Any) -> Any:
    """The service over a keyring file (`wm serve --keyring`)."""
    from ..keyring import load_keyring
    from .keyring_detector import KeyringServiceDetector, RingDetector

    detector = KeyringServiceDetector(RingDetector(load_keyring(ring_path), settings.alpha))
    return create_app(None, None, settings, tokens, log, detector=detector)
