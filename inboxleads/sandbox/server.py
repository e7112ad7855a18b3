"""Serving the sandbox on a loopback port with uvicorn; see `inboxleads.sandbox` for the rules."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator

import uvicorn
from starlette.applications import Starlette

from .. import stops
from .app import create_app
from .config import API_PREFIX, SandboxConfig

# Seconds uvicorn waits at shutdown for requests the sandbox cannot end itself (a client
# still uploading, say) before cancelling them; the sandbox's own sleeps end at once.
_GRACE_S = 1


class _QuietFilter(logging.Filter):
    """Hides uvicorn's complaints about the connections the sandbox breaks on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "ASGI callable returned without completing response."


_QUIET = _QuietFilter()


def _uvicorn_config(app: Starlette) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=_GRACE_S,
    )
    # After Config(): it (re)configures uvicorn's loggers.
    logger = logging.getLogger("uvicorn.error")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)
    return config


class _Server(uvicorn.Server):
    """uvicorn, ending the sandbox's sleeps on shutdown and returning on SIGINT, SIGTERM
    or SIGHUP."""

    def __init__(self, app: Starlette) -> None:
        super().__init__(_uvicorn_config(app))
        self._release: Callable[[], None] = app.state.sandbox_release

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Hanging and slow requests end as dropped connections instead of holding up the
        # exit until uvicorn cancels them (which it reports with a traceback).
        self._release()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the signal after shutting down; serve() is documented to return.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # Ctrl-Break on Windows, where it exists, ends it like SIGTERM, and so does a
        # hang-up (its terminal closed), unless it is ignored (nohup).
        signals = [
            signal.SIGINT,
            signal.SIGTERM,
            *filter(None, [getattr(signal, "SIGBREAK", None)]),
        ]
        hangup = getattr(signal, "SIGHUP", None)
        if hangup is not None and signal.getsignal(hangup) != signal.SIG_IGN:
            signals.append(hangup)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        # A signal that came before uvicorn took over (as soon as the URL was printed,
        # say) was only recorded: it ends the sandbox now.
        early = stops.received()
        if early:
            self.handle_exit(early[0], None)
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def _bind(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening socket on a loopback address, and the base URL that reaches it."""
    address = "127.0.0.1" if host == "localhost" else host.strip("[]")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise ValueError(f"the sandbox only listens on loopback hosts, not {host!r}")
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets that say TCP, and without
    # it every answer waits ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        # Listen now, so clients told the URL queue up even before uvicorn accepts.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    url_host = f"[{address}]" if ip.version == 6 else address
    return sock, f"http://{url_host}:{bound_port}{API_PREFIX}"


def serve(
    config: SandboxConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the sandbox until SIGINT/SIGTERM; call ``ready(base_url)`` once the port is bound."""
    sock, base_url = _bind(host, port)
    with sock:
        server = _Server(create_app(config))
        if ready is not None:
            ready(base_url)
        with contextlib.suppress(KeyboardInterrupt):  # a signal before uvicorn took over
            server.run(sockets=[sock])
