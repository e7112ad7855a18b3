"""The sandbox server on a free loopback port in a background thread, for a ``with`` block."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from inboxleads.sandbox import SandboxConfig, SandboxState, create_app
from inboxleads.sandbox.server import _GRACE_S, _bind, _Server


class RunningSandbox:
    """The sandbox on 127.0.0.1 (a free port) in a background thread, for a ``with`` block."""

    def __init__(
        self, config: SandboxConfig | None = None, wrap: Callable[[Any], Any] | None = None
    ) -> None:
        """`wrap` puts an ASGI app of the test's in front of the sandbox's (to make
        one endpoint misbehave); the state stays the sandbox's."""
        self._app = create_app(config)
        self._wrap = wrap
        self.state: SandboxState = self._app.state.sandbox
        self.base_url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def __enter__(self) -> RunningSandbox:
        sock, self.base_url = _bind("127.0.0.1", 0)
        self._sock = sock
        server = self._server = _Server(self._app)
        if self._wrap is not None:
            server.config.app = self._wrap(self._app)  # uvicorn loads it when it starts
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
