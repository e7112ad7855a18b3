"""Measured child processes: start, reap with their rusage, stop; the benchmark's own end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENT_TIMEOUT_S = 240.0

LIVE: dict[int, tuple[subprocess.Popen[bytes], bool]] = {}
"""Children still running, by pid, with whether they lead a process group of their own."""


@dataclass
class Measured:
    """A finished child process: exit code, wall time and its (and its reaped children's)
    resource usage from `os.wait4`."""

    returncode: int
    started_s: float  # `time.monotonic()` just before the fork
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    stdout: str
    stderr: str

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def start_child(argv: list[str], *, group: bool = False, **kwargs: Any) -> subprocess.Popen[bytes]:
    proc: subprocess.Popen[bytes] = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, start_new_session=group, **kwargs
    )
    LIVE[proc.pid] = (proc, group)
    return proc


def signal_child(pid: int, group: bool, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def reap(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, Any]:
    """Wait for `proc` with `os.wait4` (for its rusage); SIGTERM then SIGKILL on timeout."""
    _, group = LIVE.get(proc.pid, (proc, False))

    def overdue() -> None:
        signal_child(proc.pid, group, signal.SIGTERM)
        time.sleep(5.0)
        signal_child(proc.pid, group, signal.SIGKILL)

    timer = threading.Timer(timeout_s, overdue)
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    LIVE.pop(proc.pid, None)
    if group:  # anything the group left behind
        signal_child(proc.pid, True, signal.SIGKILL)
    return proc.returncode, usage


# Runs a command and reports its exit code, wall time and rusage as JSON to a file.
# Linux counts the memory of the process that forked a child in the child's ru_maxrss
# (the peak of the image replaced at exec), so the command is started from this small
# process rather than from the benchmark, whose own peak would show up in every number.
_MEASURE = """
import json, os, signal, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
# Stopping is the command's business (it shares this process group): outlive it.
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda *_: None)
_, status, usage = os.wait4(pid, 0)
wall = time.monotonic() - start
with open(report, "w") as out:
    json.dump([os.waitstatus_to_exitcode(status), start, wall, usage.ru_utime,
               usage.ru_stime, usage.ru_maxrss], out)
"""


def as_installed(env: dict[str, str]) -> dict[str, str]:
    """`env` for a measured command, which may keep byte-code as an installed package
    does (an environment that sets PYTHONDONTWRITEBYTECODE would otherwise have every
    run compile the package from source, about 50 ms that no installed copy pays)."""
    return {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}


def compile_package() -> None:
    """Byte-compile the package once, as pip does when it installs it."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "inboxleads")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_measured(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = CLIENT_TIMEOUT_S,
) -> Measured:
    """Run a command to completion in a process group of its own, timing it and taking
    its rusage (its reaped children included). Its start is read from `time.monotonic()`
    just before the fork: CLOCK_MONOTONIC, which the sandbox's timing uses too."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        report = Path(scratch) / "rusage.json"
        launcher = [sys.executable, "-I", "-S", "-c", _MEASURE, str(report)]
        env = as_installed(env if env is not None else dict(os.environ))
        proc = start_child([*launcher, *argv], group=True, stdout=out, stderr=err, env=env, cwd=cwd)
        reap(proc, timeout_s)
        try:
            code, started, wall, user, system, maxrss_kib = json.loads(report.read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"no measurement of {argv[0]} (killed?)") from exc
        out.seek(0)
        err.seek(0)
        return Measured(
            code,
            started,
            wall,
            user,
            system,
            maxrss_kib / 1024,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def cleanup_children() -> None:
    """Stop every child still running: SIGTERM, a short wait, then SIGKILL."""
    for pid, (_, group) in list(LIVE.items()):
        signal_child(pid, group, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    for pid, (proc, group) in list(LIVE.items()):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_child(pid, group, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
        LIVE.pop(pid, None)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def terminate_on_signals() -> None:
    """SIGTERM and SIGHUP end the benchmark through SystemExit, which stops the children."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
