"""The sandbox server on a free loopback port in a background thread, for a ``with`` block."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

from inboxleads.sandbox import SandboxConfig, SandboxState, create_app
from inboxleads.sandbox.server import _GRACE_S, _bind, _Server


class RunningSandbox:
    """The sandbox on 127.0.0.1 (a free port) in a background thread, for a ``with`` block."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._app = create_app(config)
        self.state: SandboxState = self._app.state.sandbox
        self.base_url = ""
        self._server: _Server | None = None
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
