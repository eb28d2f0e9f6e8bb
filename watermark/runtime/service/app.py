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
from datetime import datetime, timezone
from typing import Any, TextIO

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ...schemes.base import WatermarkScheme
from .detector import Detector
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


def create_app(
    scheme: WatermarkScheme,
    tokenizer: Any,
    settings: ServiceSettings | None = None,
    tokens: TokenStore | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The service for one key, config and tokenizer. `tokens` None: loopback clients only."""
    settings = settings or ServiceSettings()
    log = log or JsonLineLog()
    detector = Detector(scheme, tokenizer, settings.alpha)
    limiter = RateLimiter(clock)
    executor = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="wm-detect")
    max_in_flight = settings.max_concurrency + settings.max_queue
    in_flight = [0]
    in_flight_lock = threading.Lock()
    csp = content_security_policy()
    page = page_html()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="wm detection", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    # ---- every request: host check, security headers, one log line ----------------------------
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
        entry = {
            "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
            "client": request.state.info.pop("client", None),
            "remote": request.client.host if request.client else None,
            **request.state.info,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        log(entry)
        return response

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError):
        request.state.info["error"] = exc.message
        return JSONResponse({"error": exc.message}, exc.status, exc.headers)

    # ---- access ------------------------------------------------------------------------------
    def authenticate(request: Request) -> Client:
        if tokens is None:
            if not is_loopback(request.client.host if request.client else None):
                raise ServiceError(403, "this server has no access tokens and answers loopback clients only")
            client = Client(LOOPBACK_ID, show_tokens=settings.allow_token_display)
        else:
            auth = request.headers.get("authorization", "")
            scheme_name, _, presented = auth.partition(" ")
            if scheme_name.lower() != "bearer" or not presented.strip():
                raise ServiceError(
                    401, "a bearer token is required", {"WWW-Authenticate": 'Bearer realm="wm"'}
                )
            found = tokens.lookup(presented.strip())
            if found is None:
                raise ServiceError(
                    401, "invalid token", {"WWW-Authenticate": 'Bearer realm="wm", error="invalid_token"'}
                )
            client = found
        request.state.info["client"] = client.id
        rate = settings.rate_limit if client.rate_limit is None else client.rate_limit
        wait = limiter.take_request(client.id, rate)
        if wait is not None:
            raise ServiceError(
                429, f"rate limit of {rate} requests a minute reached", retry_after_header(wait)
            )
        return client

    # ---- the request body ----------------------------------------------------------------------
    async def read_body(request: Request) -> bytes:
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

    def parse(body: bytes) -> tuple[list[str], bool, dict[str, bool]]:
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

    async def run_detection(job: Callable[[], Any]) -> Any:
        with in_flight_lock:
            if in_flight[0] >= max_in_flight:
                raise ServiceError(503, "the server is busy; try again shortly", retry_after_header(1))
            in_flight[0] += 1

        def done(_):
            with in_flight_lock:
                in_flight[0] -= 1

        future = executor.submit(job)
        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError(504, f"detection took longer than {settings.timeout_s:g} s") from None

    # ---- endpoints -----------------------------------------------------------------------------
    @app.post("/v1/detect")
    async def detect(request: Request):
        client = authenticate(request)
        texts, single, flags = parse(await read_body(request))
        info = request.state.info
        info.update(texts=len(texts), chars=sum(len(t) for t in texts))
        if settings.log_text:
            info["text"] = texts
        quota = settings.daily_quota if client.daily_quota is None else client.daily_quota
        wait = limiter.take_texts(client.id, len(texts), quota)
        if wait is not None:
            raise ServiceError(
                429, f"daily quota of {quota} texts reached (resets at 00:00 UTC)", retry_after_header(wait)
            )
        sources = ["text"] if single else [f"texts[{i}]" for i in range(len(texts))]
        outcome = await run_detection(
            lambda: detector.run(texts, sources, show_tokens=client.show_tokens, **flags)
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

    @app.get("/v1/info")
    async def info(request: Request):
        client = authenticate(request)
        return {
            "client": client.id,
            "config": detector.config.to_dict(),
            "alpha": settings.alpha,
            "token_display": client.show_tokens,
            "spans": bool(getattr(scheme, "has_spans", False)),
            "limits": {
                "rate_limit_per_minute": settings.rate_limit
                if client.rate_limit is None
                else client.rate_limit,
                "daily_quota_texts": settings.daily_quota
                if client.daily_quota is None
                else client.daily_quota,
                "used_today": limiter.used_today(client.id),
                "max_body_bytes": settings.max_body_bytes,
                "max_text_chars": settings.max_text_chars,
                "max_texts": settings.max_texts,
                "timeout_s": settings.timeout_s,
            },
        }

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": csp})

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    return app


def _host_name(host: str) -> str:
    """The name in a Host header, without the port ("[::1]:80" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
