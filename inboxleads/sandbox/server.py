"""A faithful stand-in of Inbox's "Add leads" endpoint, for tests, benchmarks and ``--sandbox``.

``POST {API_PREFIX}/campaigns/v2/{campaignId}/leads`` behaves as the API reference
says, plus these documented sandbox rules:

Checks, in order
    1. Auth: ``Authorization: Bearer <token>``. Missing, malformed or wrong: 401
       ``UNAUTHORIZED``. Any token starting with ``ro_`` is a read-only token: 403
       ``FORBIDDEN``.
    2. Path: ``campaignId`` must match ``^[0-9a-z]+$`` (400 ``VALIDATION_ERROR``); ids
       starting with ``missing`` do not exist (404 ``CAMPAIGN_NOT_FOUND``); any other
       campaign exists.
    3. Rate limit (when configured): a sliding window over arrival times. Every answer
       after the auth check carries ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``
       (Unix seconds at which the oldest request leaves the window). Over the limit: 429
       ``RATE_LIMITED`` with ``Retry-After``; a 429 does not use a slot, and answers to
       path errors only report the window without using a slot.
    4. Body: as in the reference (see `inboxleads.sandbox.state.validate_body`), with at
       most ``max_total`` identifiers across all arrays; 400 ``VALIDATION_ERROR`` naming
       the field and why.
    5. Faults, for a request that passed all of the above, drawn from the rng in this
       order: hang (sleeps 3600 s or until the client leaves, then drops the
       connection), drop (connection broken, batch not applied), error (500
       ``INTERNAL_ERROR`` / 502 ``BAD_GATEWAY`` / 503 ``SERVICE_UNAVAILABLE``, not
       applied); otherwise the batch is applied, then lost (connection broken after
       applying). A fault whose rate is 0 draws nothing, so a seed replays the same
       faults. Latency: the answer goes out ``latency_s`` plus ``username_latency_s``
       per username after the request arrived; reading, checking and applying the body
       are part of that time. A client giving up meanwhile does not stop it, so its
       batch may be applied all the same.

Resolution rule
    A username fails when it does not match ``^[A-Za-z0-9_]{1,15}$`` or, lower-cased,
    starts with ``gone``. A platform ID fails when it does not match ``^[0-9]{1,19}$``
    (so it is below 2**64) or ends with ``404``. An external ID fails when it does not
    match ``^[0-9a-z]+$`` or starts with ``gone``. A transient upstream failure: a
    username starting (case-insensitively) with ``flaky``, a platform ID ending with
    ``503`` and an external ID starting with ``flaky`` fail the first time the campaign
    receives them (in a request that was applied), and resolve every later time (the
    campaign remembers them; usernames compared lower-case; a repeat in the same
    request is a later time). Any other identifier resolves: it counts ``skipped``
    when the campaign already has it (usernames compared lower-case; an earlier
    duplicate in the same request counts), else ``added``.

A broken connection is an answer started with a ``Content-Length`` it never completes:
uvicorn closes the socket, so a real client fails with a transport error, and
`sandbox_transport` raises `httpx.RemoteProtocolError` in-process. On shutdown, pending
sleeps end at once and their requests are dropped. Unknown routes answer 404
``NOT_FOUND`` and wrong methods 405 ``METHOD_NOT_ALLOWED``, in the same error shape.
``GET {API_PREFIX}/_sandbox/state`` (no auth) returns what was received, as
`SandboxState.snapshot` does.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from .app import (
    API_PREFIX,
    DEFAULT_TOKEN,
    HANG_S,
    Faults,
    SandboxConfig,
    create_app,
    sandbox_transport,
)
from .state import SandboxState

__all__ = [
    "API_PREFIX",
    "DEFAULT_TOKEN",
    "HANG_S",
    "Faults",
    "RunningSandbox",
    "SandboxConfig",
    "SandboxState",
    "create_app",
    "sandbox_transport",
    "serve",
]

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
    """uvicorn, ending the sandbox's sleeps on shutdown and returning on SIGINT/SIGTERM."""

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
        # Ctrl-Break on Windows, where it exists, ends it like SIGTERM.
        signals = [
            signal.SIGINT,
            signal.SIGTERM,
            *filter(None, [getattr(signal, "SIGBREAK", None)]),
        ]
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
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


class RunningSandbox:
    """The sandbox on 127.0.0.1 (a free port) in a background thread, for a ``with`` block."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._app = create_app(config)
        self.state: SandboxState = self._app.state.sandbox
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def __enter__(self) -> RunningSandbox:
        sock, self.base_url = _bind("127.0.0.1", 0)
        self._sock = sock
        server = self._server = _Server(self._app)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.005)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=_GRACE_S + 5.0)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5.0)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None
