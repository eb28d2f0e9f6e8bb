"""`wm serve`: the detection service (key and config stay on the server) and its page."""

from __future__ import annotations

import click

from wm_toolkit.watermark.errors import ConfigError, WmError

from .common import (
    err_console,
    key_option,
    load_key,
    model_option,
    pop_scheme_flags,
    resolve_config,
    scheme_options,
)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@click.command()
@scheme_options
@key_option
@model_option("Tokenizer to use (default: the one named in the config, else smollm2-135m).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--tokens",
    "tokens_path",
    type=click.Path(dir_okay=False),
    default=None,
    help='Bearer tokens: one per line, or JSON [{"id", "token" or "sha256", "show_tokens", "rate_limit", '
    '"daily_quota"}]. Kept in memory as hashes only. Without it only loopback clients are answered.',
)
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=1e-3,
    show_default=True,
    help="Significance level for the verdict.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(0),
    default=60,
    show_default=True,
    help="Requests a minute per client (0: none).",
)
@click.option(
    "--daily-quota",
    type=click.IntRange(0),
    default=10_000,
    show_default=True,
    help="Texts a UTC day per client (0: none).",
)
@click.option("--max-body-bytes", type=click.IntRange(1), default=1 << 20, show_default=True)
@click.option("--max-text-chars", type=click.IntRange(1), default=50_000, show_default=True)
@click.option(
    "--max-texts", type=click.IntRange(1), default=64, show_default=True, help="Texts in one request."
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds for reading a body, and for detecting.",
)
@click.option(
    "--concurrency", type=click.IntRange(1), default=2, show_default=True, help="Detections running at once."
)
@click.option(
    "--max-queue",
    type=click.IntRange(0),
    default=64,
    show_default=True,
    help="Requests waiting for a worker; past it the server answers 503.",
)
@click.option(
    "--allow-token-display",
    is_flag=True,
    help="Show per-token colours to loopback clients (no --tokens). They reveal green lists: with --tokens, "
    'allow them per token with "show_tokens": true.',
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Host header values to answer (default: the loopback names when bound to loopback, else any).",
)
@click.option(
    "--log-text", is_flag=True, help="Also log the texts (by default the log holds sizes and verdicts only)."
)
@click.option(
    "--keyring",
    "keyring_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Serve every entry of this keyring (`wm keyring`); answers name entries only, never keys or configs.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append the request log here (default stderr).",
)
def serve(
    key_path,
    model,
    host,
    port,
    tokens_path,
    alpha,
    rate_limit,
    daily_quota,
    max_body_bytes,
    max_text_chars,
    max_texts,
    timeout,
    concurrency,
    max_queue,
    allow_token_display,
    allowed_hosts,
    log_text,
    log_file,
    scheme,
    config_path,
    **kwargs,
):
    """Serve detection over HTTP: POST /v1/detect, GET /healthz, and a page at /."""
    try:
        import uvicorn  # noqa: F401 (checked here, run by _run_server)

        from wm_toolkit.watermark.runtime.service import create_app
    except ImportError:
        raise WmError("wm serve needs FastAPI and uvicorn: pip install 'wm-toolkit[serve]'") from None
    from wm_toolkit.watermark.config_resolve import bind_tokenizer
    from wm_toolkit.watermark.modeling.models import canonical_name, load_tokenizer
    from wm_toolkit.watermark.runtime.service import ServiceSettings, TokenStore
    from wm_toolkit.watermark.runtime.service.app import JsonLineLog
    from wm_toolkit.watermark.schemes import build_scheme

    loopback = _check_exposure(host, tokens_path, allow_token_display)
    store = TokenStore.from_file(tokens_path) if tokens_path else None
    settings = ServiceSettings(
        alpha=alpha,
        rate_limit=rate_limit,
        daily_quota=daily_quota,
        max_body_bytes=max_body_bytes,
        max_text_chars=max_text_chars,
        max_texts=max_texts,
        timeout_s=timeout,
        max_concurrency=concurrency,
        max_queue=max_queue,
        allow_token_display=allow_token_display,
        log_text=log_text,
        allowed_hosts=tuple(h.lower() for h in allowed_hosts) or (LOOPBACK_NAMES if loopback else None),
    )
    if ring_path := kwargs.pop("keyring_path"):  # a keyring: runtime/service/keyring_detector.py
        return _serve_keyring(ring_path, settings, store, log_file, host, port)
    key = load_key(key_path)
    config = resolve_config(scheme, config_path, pop_scheme_flags(kwargs))
    tok_name = canonical_name(model or config.tokenizer)
    tok = load_tokenizer(tok_name)
    config = bind_tokenizer(config, len(tok), tok_name)
    scheme_obj = build_scheme(config, key)
    log_stream = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115 (lives as long as the server)
    app = create_app(scheme_obj, tok, settings, store, JsonLineLog(log_stream))
    who = f"{len(store)} token(s)" if store else "loopback clients only"
    shown = "http://[{}]:{}/" if ":" in host else "http://{}:{}/"
    err_console.print(
        f"wm serve: {config.scheme}, key {key.fingerprint}, alpha {alpha:g}, {who}, on "
        + shown.format(host, port)
    )
    _run_server(app, host, port, log_stream)


def _serve_keyring(ring_path: str, settings, store, log_file: str | None, host: str, port: int) -> None:
    from wm_toolkit.watermark.runtime.service.app import JsonLineLog, keyring_app

    from .terminal import visible

    log_stream = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115
    app = keyring_app(ring_path, settings, store, JsonLineLog(log_stream))
    shown = visible(ring_path, one_line=True)
    err_console.print(f"wm serve: keyring {shown}, alpha {settings.alpha:g}, on {host}:{port}")
    _run_server(app, host, port, log_stream)


def _check_exposure(host: str, tokens_path: str | None, allow_token_display: bool) -> bool:
    """Whether `host` is loopback; a server others can reach needs --tokens (exit 2 otherwise),
    and showing tokens is a per-token right there, not a flag."""
    from wm_toolkit.watermark.runtime.service.policy import is_loopback

    loopback = is_loopback(host) or host == "localhost"
    if not loopback and not tokens_path:
        raise ConfigError(
            f"binding to {host} needs --tokens: without tokens only loopback clients are answered"
        )
    if allow_token_display and tokens_path:
        raise ConfigError(
            '--allow-token-display is for loopback clients; with --tokens set "show_tokens" per token'
        )
    return loopback


def _run_server(app, host: str, port: int, log_stream) -> None:
    """uvicorn until stopped, one torch thread per request thread; the log file closed after."""
    import torch
    import uvicorn

    torch.set_num_threads(1)  # requests run in parallel threads; each detection is small
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=5,
            limit_concurrency=256,  # open connections; past it uvicorn answers 503
        )
    finally:
        if log_stream:
            log_stream.close()
