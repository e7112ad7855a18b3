"""Shared fixtures: a sandbox server on loopback, and CLI runners that hunt for the token.

Every CLI run in the tests goes through `run_cli` (a real subprocess) or
`invoke` (in-process through Typer's runner); both fail the test when the
token appears in stdout, stderr or any file the run left under `tmp_path`.

Two markers say what a test needs beyond Python and the package; where that is missing
(Windows is no POSIX system, and bash may be absent anywhere) the test is skipped:

    posix   a POSIX system: a pty, a fifo, fcntl/termios, a signal sent to another
            process, /dev files, file modes (0600, chmod), resource limits, /bin/sh scripts
    bash    a bash command line (pipelines, `ulimit`, redirections of the shell)
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from inboxleads.runner import Environment
from inboxleads.sandbox import Faults, SandboxCampaign, SandboxConfig

from .sandbox_server import RunningSandbox

MARKERS = {
    "posix": "needs a POSIX system (pty, fifo, fcntl/termios, signals sent to another "
    "process, /dev files, file modes, resource limits, /bin/sh scripts)",
    "bash": "runs a bash command line",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip, saying why, the tests that need what this system lacks."""
    reasons: dict[str, str] = {}
    if os.name != "posix":
        reasons["posix"] = f"needs a POSIX system (this one is os.name == {os.name!r})"
    if shutil.which("bash") is None:
        reasons["bash"] = "needs bash, and there is none on PATH"
    for item in items:
        for name, reason in reasons.items():
            if item.get_closest_marker(name) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


# A token that cannot appear by chance, so finding it anywhere is a leak.
SECRET = "tok_SECRET_7f3a9c1e5b2d4f6a8c0e"

# The keys the command-line contract promises in the --json summary.
CONTRACT_KEYS = frozenset(
    [
        "campaign",
        "read",
        "rejected",
        "duplicates",
        "unique",
        "batches",
        "requests",
        "retries",
        "added",
        "skipped",
        "failed",
        "delivered",
        "undelivered",
        "resumed",
        "dry_run",
        "elapsed_s",
        "exit_code",
    ]
)


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def quiet_env(
    fake: FakeTime,
    *,
    stdin: IO[bytes] | None = None,
    stderr: io.StringIO | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Environment:
    """An in-process Environment: no terminal, no signal handlers, time from `fake`."""
    return Environment(
        stdin=stdin if stdin is not None else io.BytesIO(b""),
        stdout=io.StringIO(),
        stderr=stderr if stderr is not None else io.StringIO(),
        stdin_isatty=False,
        stderr_isatty=False,
        clock=fake.clock,
        sleep=fake.sleep,
        transport=transport,
        handle_signals=False,
    )


@dataclass
class CliResult:
    """What a CLI run showed the user."""

    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        """The --json summary: the last line of stdout."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"no stdout; stderr was:\n{self.stderr}"
        data = json.loads(lines[-1])
        assert isinstance(data, dict)
        return data


Run = Callable[..., CliResult]


def assert_no_token(result: CliResult, root: Path, token: str = SECRET) -> None:
    """Fail when the token shows in the output or in any file under `root`."""
    assert token not in result.stdout, "token leaked to stdout"
    assert token not in result.stderr, "token leaked to stderr"
    for path in root.rglob("*"):
        if path.is_file() and path.name != ".env" and path.name != "token.txt":
            assert token.encode() not in path.read_bytes(), f"token leaked into {path}"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this one, minus anything that changes output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INBOX_", "NO_COLOR"))}
    env.update({"COLUMNS": "120", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., CliResult]:
    """Run `python -m inboxleads ARGS` in `tmp_path`, as a user would, and hunt for the token."""

    def run(
        *args: str,
        stdin: str | bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> CliResult:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            [sys.executable, "-m", "inboxleads", *args],
            input=data if data is not None else b"",
            capture_output=True,
            env=env if env is not None else cli_env(),
            cwd=cwd or tmp_path,
            timeout=timeout,
            check=False,
        )
        result = CliResult(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )
        assert "Traceback" not in result.stderr, result.stderr
        assert_no_token(result, tmp_path)
        return result

    return run


@pytest.fixture
def sandbox_server() -> Iterator[RunningSandbox]:
    """A sandbox on a free loopback port that accepts only `SECRET`."""
    with RunningSandbox(SandboxConfig(token=SECRET)) as server:
        yield server


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., RunningSandbox]]:
    """Start sandboxes with faults: `start_sandbox(error_rate=0.3, seed=1)`."""
    running: list[RunningSandbox] = []

    def start(
        campaign: SandboxCampaign | None = None,
        wrap: Callable[[Any], Any] | None = None,
        **faults: Any,
    ) -> RunningSandbox:
        """A sandbox with `faults`, showing `campaign`, behind `wrap` (see RunningSandbox)."""
        config = SandboxConfig(token=SECRET, faults=Faults(**faults))
        if campaign is not None:
            config.campaign = campaign
        server = RunningSandbox(config, wrap=wrap)
        server.__enter__()
        running.append(server)
        return server

    yield start
    for server in running:
        server.__exit__(None, None, None)


def api_env(server: RunningSandbox, **extra: str) -> dict[str, str]:
    """Environment pointing a CLI subprocess at `server` with the secret token."""
    return cli_env(**{"INBOX_BASE_URL": server.base_url, "INBOX_API_TOKEN": SECRET, **extra})


def assert_private(path: Path) -> None:
    """The file is the user's alone (mode 0600), where files have POSIX modes: elsewhere
    (Windows) a mode says nothing about who may read the file, and there is nothing to check."""
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path} has mode {mode:#o}, not 0o600"


def symlink_or_skip(link: Path, target: str) -> None:
    """`link` -> `target`, or skip the test where this user may not make symbolic links
    (Windows without Developer Mode or the privilege to create them)."""
    try:
        link.symlink_to(target)
    except OSError as exc:
        if os.name == "posix":
            raise
        pytest.skip(f"cannot make a symbolic link here: {exc}")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
