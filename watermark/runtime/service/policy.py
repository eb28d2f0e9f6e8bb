"""Who may ask the detection service what, and how often: tokens, rate limits, daily quotas.

Pure Python (no web framework), so the rules are tested on their own. Every answer of a
detection endpoint leaks a little about the key (the stealing attacks work from such queries),
so access is explicit: bearer tokens kept only as SHA-256 hashes, a token bucket per client and
a daily quota of texts per client.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ConfigError

MIN_TOKEN_CHARS = 16
LOOPBACK_ID = "loopback"


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and switches of one service instance (the key and config travel separately)."""

    alpha: float = 1e-3
    rate_limit: int = 60  # requests per minute per client; 0 = unlimited
    daily_quota: int = 10_000  # texts per UTC day per client; 0 = unlimited
    max_body_bytes: int = 1 << 20
    max_text_chars: int = 50_000
    max_texts: int = 64
    timeout_s: float = 30.0  # reading the body, waiting for a worker, and detecting, each
    max_concurrency: int = 2  # detections running at once (worker threads)
    max_queue: int = 64  # requests waiting for a worker; past it, 503
    allow_token_display: bool = False  # per-token colours for loopback clients when no tokens are set
    log_text: bool = False
    allowed_hosts: tuple[str, ...] | None = None  # Host header values accepted (None = any)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}")
        for name in ("rate_limit", "daily_quota", "max_queue"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0")
        for name in ("max_body_bytes", "max_text_chars", "max_texts", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1")
        if not self.timeout_s > 0:
            raise ConfigError("timeout must be > 0 seconds")


@dataclass(frozen=True)
class Client:
    """An authenticated caller: a token's id (never the token) and its own limits."""

    id: str
    show_tokens: bool = False
    rate_limit: int | None = None  # None: the service's setting
    daily_quota: int | None = None


@dataclass(frozen=True)
class _Entry:
    digest: bytes = field(repr=False)
    client: Client


def token_digest(token: str) -> bytes:
    """SHA-256 of a bearer token: tokens are long random strings, so a fast hash is enough."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenStore:
    """Bearer tokens, kept only as hashes; lookups compare every entry in constant time."""

    def __init__(self, entries: list[tuple[bytes, Client]]):
        ids = [c.id for _, c in entries]
        if len(set(ids)) != len(ids):
            raise ConfigError("token ids must be unique")
        if len({d for d, _ in entries}) != len(entries):
            raise ConfigError("the same token is listed twice")
        self._entries = [_Entry(d, c) for d, c in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> Client | None:
        digest = token_digest(token)
        found = None
        for e in self._entries:  # no early exit: the time taken does not depend on which matched
            if hmac.compare_digest(e.digest, digest):
                found = e.client
        return found

    @classmethod
    def from_file(cls, path: str | Path) -> TokenStore:
        """One token per line (ids `token-1`, `token-2`, ...; `#` comments), or JSON: a list (or
        {"tokens": [...]}) of {"id", "token" | "sha256", "show_tokens", "rate_limit", "daily_quota"}."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the tokens file ({type(exc).__name__})") from None
        if text.lstrip().startswith(("[", "{")):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: not valid JSON (line {exc.lineno})") from None
            items = data.get("tokens") if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise ConfigError(f'{path}: expected a list of tokens or {{"tokens": [...]}}')
            entries = [_json_entry(path, n, item) for n, item in enumerate(items, 1)]
        else:
            entries = []
            for n, line in enumerate(text.splitlines(), 1):
                token = line.strip()
                if not token or token.startswith("#"):
                    continue
                _check_token(path, n, token)
                entries.append((token_digest(token), Client(f"token-{len(entries) + 1}")))
        if not entries:
            raise ConfigError(f"{path}: holds no tokens")
        try:
            return cls(entries)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _check_token(path: str | Path, n: int, token: str) -> None:
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(
            f"{path}: token {n} is shorter than {MIN_TOKEN_CHARS} characters or holds spaces "
            "(use e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def _json_entry(path: str | Path, n: int, item: Any) -> tuple[bytes, Client]:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise ConfigError(f'{path}: token {n} needs a non-empty string "id"')
    known = {"id", "token", "sha256", "show_tokens", "rate_limit", "daily_quota"}
    if set(item) - known:
        raise ConfigError(f"{path}: token {n} has unknown fields {sorted(set(item) - known)}")
    if ("token" in item) == ("sha256" in item):
        raise ConfigError(f'{path}: token {n} needs exactly one of "token" and "sha256"')
    if "token" in item:
        if not isinstance(item["token"], str):
            raise ConfigError(f'{path}: token {n}: "token" must be a string')
        _check_token(path, n, item["token"])
        digest = token_digest(item["token"])
    else:
        try:
            digest = bytes.fromhex(item["sha256"])
        except (TypeError, ValueError):
            digest = b""
        if len(digest) != 32:
            raise ConfigError(f'{path}: token {n}: "sha256" must be 64 hex digits')
    for name in ("rate_limit", "daily_quota"):
        v = item.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ConfigError(f'{path}: token {n}: "{name}" must be an integer >= 0')
    if not isinstance(item.get("show_tokens", False), bool):
        raise ConfigError(f'{path}: token {n}: "show_tokens" must be true or false')
    client = Client(
        item["id"], item.get("show_tokens", False), item.get("rate_limit"), item.get("daily_quota")
    )
    return digest, client


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


class RateLimiter:
    """A token bucket per client (`rate` requests a minute, bursts up to `rate`) and a daily
    quota of texts per client (UTC days). Used from the event loop only."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last time)
        self._days: dict[str, tuple[int, int]] = {}  # id -> (UTC day number, texts used)

    def take_request(self, client_id: str, rate: int) -> float | None:
        """None when allowed, else the seconds to wait."""
        if rate <= 0:
            return None
        now = self.clock()
        tokens, last = self._buckets.get(client_id, (float(rate), now))
        tokens = min(float(rate), tokens + (now - last) * rate / 60.0)
        if tokens >= 1.0:
            self._buckets[client_id] = (tokens - 1.0, now)
            return None
        self._buckets[client_id] = (tokens, now)
        return (1.0 - tokens) * 60.0 / rate

    def take_texts(self, client_id: str, n: int, quota: int) -> float | None:
        """Count n texts against today's quota: None when allowed, else seconds to UTC midnight."""
        if quota <= 0:
            return None
        now = self.clock()
        day = int(now // 86400)
        d, used = self._days.get(client_id, (day, 0))
        if d != day:
            used = 0
        if used + n > quota:
            self._days[client_id] = (day, used)
            return (day + 1) * 86400 - now
        self._days[client_id] = (day, used + n)
        return None

    def used_today(self, client_id: str) -> int:
        d, used = self._days.get(client_id, (0, 0))
        return used if d == int(self.clock() // 86400) else 0


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
