"""The sandbox server in a process of its own, for a `with` block."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import deque
from typing import Any

from benchmarks.launcher import LIVE, ROOT, reap, signal_child, start_child


class Sandbox:
    """`python -m inboxleads sandbox --port 0 OPTIONS` in its own process, for a `with`."""

    def __init__(self, *options: str) -> None:
        self.options = list(options)
        self.base_url = ""
        self.token = ""
        self.cpu_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: deque[str] = deque(maxlen=20)

    def __enter__(self) -> Sandbox:
        argv = [sys.executable, "-m", "inboxleads", "sandbox", "--port", "0", *self.options]
        pipe = subprocess.PIPE
        proc = self._proc = start_child(argv, stdout=pipe, stderr=pipe, cwd=ROOT)
        assert proc.stdout is not None and proc.stderr is not None
        found: dict[str, str] = {}
        ready = threading.Event()
        stdout, stderr = proc.stdout, proc.stderr

        def drain() -> None:
            # Keeps reading so the server never blocks on a full pipe.
            for raw in stdout:
                match = re.match(r"export (\w+)=(\S+)", raw.decode("utf-8", "replace"))
                if match:
                    found[match.group(1)] = match.group(2)
                    if {"INBOX_BASE_URL", "INBOX_API_TOKEN"} <= found.keys():
                        ready.set()
            ready.set()

        def drain_errors() -> None:
            for raw in stderr:
                self._stderr.append(raw.decode("utf-8", "replace"))

        threading.Thread(target=drain, name="sandbox-stdout", daemon=True).start()
        threading.Thread(target=drain_errors, name="sandbox-stderr", daemon=True).start()
        if not ready.wait(30.0) or "INBOX_API_TOKEN" not in found:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the sandbox did not start: {self._errors()}")
        self.base_url = found["INBOX_BASE_URL"].rstrip("/")
        self.token = found["INBOX_API_TOKEN"]
        return self

    def _errors(self) -> str:
        return "".join(self._stderr)[-2000:]

    def env(self) -> dict[str, str]:
        """The environment for a client of this server."""
        env = dict(os.environ)
        env.update(
            INBOX_BASE_URL=self.base_url,
            INBOX_API_TOKEN=self.token,
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        return env

    def state(self) -> dict[str, Any]:
        """The server's `/_sandbox/state` snapshot."""
        url = self.base_url + "/_sandbox/state"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=60) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def __exit__(self, *exc_info: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.returncode is None and proc.pid in LIVE:
                signal_child(proc.pid, False, signal.SIGTERM)
                _, usage = reap(proc, 15.0)
                self.cpu_s = usage.ru_utime + usage.ru_stime
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
