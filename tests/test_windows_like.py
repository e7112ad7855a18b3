"""The main job in an interpreter made Windows-like (see `windows_like.py`): no fcntl,
no os.fchmod, no add_signal_handler, select on sockets only, a SIGBREAK. The Windows
code paths run here on any POSIX machine; what cannot be simulated (CRLF text mode,
LockFileEx, a real console) is said in the README."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inboxleads import cli
from inboxleads.errors import Interrupted

from .conftest import SECRET, CliResult, api_env, cli_env, write_lines
from .sandbox_server import RunningSandbox

LAUNCHER = Path(__file__).with_name("windows_like.py")
BAD = ["not a handle!", "https://example.com/alice"]


def windows_like(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(LAUNCHER), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> CliResult:
    out, err = proc.communicate(timeout=timeout)
    result = CliResult(proc.returncode, out.decode(), err.decode())
    assert "Traceback" not in result.stderr, result.stderr
    assert SECRET not in result.stdout + result.stderr
    return result


@pytest.fixture
def run_windows_like(tmp_path: Path) -> Iterator[Callable[..., CliResult]]:
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        proc = windows_like(*args, cwd=tmp_path, env=env or cli_env())
        started.append(proc)
        return finish(proc)

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()


def handles(count: int, prefix: str = "win") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(count)]


def test_the_interpreter_is_windows_like(tmp_path: Path) -> None:
    """The simulation holds: what it removes is really gone for the tool."""
    probe = (
        "import windows_like\n"
        "windows_like.make_windows_like()\n"
        "import asyncio, os\n"
        "try:\n    import fcntl\nexcept ImportError:\n    print('no fcntl')\n"
        "print('fchmod' if hasattr(os, 'fchmod') else 'no fchmod')\n"
        "loop = asyncio.new_event_loop()\n"
        "try:\n    loop.add_signal_handler(2, print)\n"
        "except NotImplementedError:\n    print('no add_signal_handler')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=LAUNCHER.parent,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert out.split("\n")[:3] == ["no fcntl", "no fchmod", "no add_signal_handler"]


def test_the_main_job_runs_with_its_files_on_a_windows_like_interpreter(
    run_windows_like: Callable[..., CliResult], tmp_path: Path
) -> None:
    good = handles(2500)
    leads = write_lines(tmp_path / "leads.txt", [*good[:1000], *BAD, *good[1000:], good[0]])
    before = leads.read_bytes()
    result = run_windows_like(
        "add",
        "winjob",
        "leads.txt",
        "--sandbox",
        "--journal",
        "run.journal",
        "--rejects",
        "rejects.csv",
        "--undelivered",
        "left.txt",
        "--json",
    )
    assert result.code == 0, result.stderr
    summary = result.summary
    assert (summary["read"], summary["rejected"], summary["duplicates"]) == (2503, 2, 1)
    assert summary["added"] == len(good) and summary["batches"] == 2
    rejected = (tmp_path / "rejects.csv").read_text(encoding="utf-8").splitlines()
    assert [row.split(",")[-1] for row in rejected[1:]] == [BAD[0], BAD[1]]
    assert (tmp_path / "left.txt").read_bytes() == b""
    journal = (tmp_path / "run.journal").read_bytes().splitlines()
    assert json.loads(journal[0])["campaign"] == "winjob"
    assert len(journal) == 1 + 2  # the header, then one line a delivered batch
    assert leads.read_bytes() == before  # the input is never changed
    for name in ("rejects.csv", "left.txt", "run.journal"):
        assert b"\r" not in (tmp_path / name).read_bytes()


def test_resume_on_a_windows_like_interpreter_sends_each_batch_once(
    run_windows_like: Callable[..., CliResult], sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    good = handles(3000, "res")
    write_lines(tmp_path / "leads.txt", good)
    env = api_env(sandbox_server, INBOXLEADS_STATE_DIR=str(tmp_path / "state"))
    first = run_windows_like("add", "winres", "leads.txt", "--resume", "--json", env=env)
    again = run_windows_like("add", "winres", "leads.txt", "--resume", "--json", env=env)
    assert (first.code, again.code) == (0, 0), first.stderr + again.stderr
    assert first.summary["added"] == len(good)
    assert again.summary["resumed"] == len(good) and again.summary["upload_requests"] == 0
    received = [value for _, value in sandbox_server.state.received("winres")]
    assert sorted(received) == sorted(good)  # each handle reached the server once
    journals = list((tmp_path / "state" / "journals").glob("winres-*.journal"))
    assert len(journals) == 1


def test_a_held_lock_is_exit_4_and_wait_lock_then_resumes(
    start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    server = start_sandbox(latency_s=0.4)
    good = handles(600, "lck")
    write_lines(tmp_path / "leads.txt", good)
    env = api_env(server)
    args = ["add", "winlock", "leads.txt", "--journal", "run.journal", "--json"]
    holder = windows_like(*args, "--batch-size", "100", "--concurrency", "1", cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 30
        while not server.state.received("winlock") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.state.received("winlock"), "the first run sent nothing"
        refused = finish(windows_like(*args, "--batch-size", "100", cwd=tmp_path, env=env))
        waiting = windows_like(*args, "--batch-size", "100", "--wait-lock", cwd=tmp_path, env=env)
        first = finish(holder)
        second = finish(waiting)
    finally:
        for proc in (holder,):
            if proc.poll() is None:
                proc.kill()
    assert refused.code == 4 and "another inboxleads run" in refused.stderr
    assert "another inboxleads run" in refused.summary["stop_reason"]  # refused: says why
    assert first.code == 0 and first.summary["added"] == len(good)
    assert second.code == 0 and second.summary["resumed"] == len(good)
    assert sorted(value for _, value in server.state.received("winlock")) == sorted(good)


@pytest.mark.posix
@pytest.mark.parametrize(
    ("signum", "status", "reason"),
    [(signal.SIGINT, 130, "SIGINT"), (21, 143, "Ctrl-Break")],
    ids=["ctrl-c", "ctrl-break"],
)
def test_a_stop_signal_without_add_signal_handler_ends_with_the_summary(
    start_sandbox: Callable[..., RunningSandbox],
    tmp_path: Path,
    signum: int,
    status: int,
    reason: str,
) -> None:
    server = start_sandbox(latency_s=0.3)
    good = handles(2000, "sig")
    write_lines(tmp_path / "leads.txt", good)
    proc = windows_like(
        "add",
        "winsig",
        "leads.txt",
        "--batch-size",
        "100",
        "--concurrency",
        "2",
        "--undelivered",
        "left.txt",
        "--json",
        cwd=tmp_path,
        env=api_env(server),
    )
    try:
        deadline = time.monotonic() + 30
        while not server.state.received("winsig") and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signum)
        result = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.code == status, result.stderr
    summary = result.summary
    assert summary["exit_code"] == status and reason in summary["stop_reason"]
    delivered = {value for _, value in server.state.received("winsig")}
    left = (tmp_path / "left.txt").read_text(encoding="utf-8").split()
    # Counted on both sides: the server's records and the file the user acts on.
    assert delivered.isdisjoint(left) and delivered | set(left) == set(good)
    assert summary["delivered"] == len(delivered) and summary["undelivered"] == len(left)


@pytest.mark.posix
def test_ctrl_c_while_a_pipe_that_cannot_be_polled_stays_quiet(
    sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    """On Windows select() takes no pipes: the reader then blocks in its read, and a
    stop abandons it. What the pipe brought before is delivered; the run still ends."""
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "add", "winpipe", "-", "--flush-after", "0.2", "--json"],
        cwd=tmp_path,
        env=api_env(sandbox_server),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"alice\nbob\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while len(sandbox_server.state.received("winpipe")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["delivered"] == 2 and summary["undelivered"] == 0
    assert sorted(v for _, v in sandbox_server.state.received("winpipe")) == ["alice", "bob"]


def keys(text: str) -> Callable[[], str]:
    pressed = iter(text)
    return lambda: next(pressed)


@pytest.mark.parametrize(
    ("typed", "token"),
    [
        ("tok_abc\r", "tok_abc"),
        ("tok_abx\bc\r", "tok_abc"),  # Backspace takes the last key back
        ("\btok\r", "tok"),
        ("to\xe0Hk\r", "tok"),  # an arrow key (two codes) is not text
        ("tok\x1a", "tok"),  # Ctrl-Z ends the line as Enter does
    ],
)
def test_a_token_typed_at_a_windows_console_is_read_key_by_key(typed: str, token: str) -> None:
    assert cli._typed_unseen(keys(typed)) == token


def test_ctrl_c_typed_at_a_windows_console_stops_the_run() -> None:
    with pytest.raises(Interrupted) as stopped:
        cli._typed_unseen(keys("tok\x03"))
    assert stopped.value.exit_status == 130


@pytest.mark.posix  # a pty
def test_a_token_typed_where_echo_cannot_be_turned_off_is_refused(tmp_path: Path) -> None:
    """Without termios (and not a Windows console) a terminal would show the token as
    typed: the run refuses to ask for it, and says how else to give it."""
    import os
    import pty

    write_lines(tmp_path / "leads.txt", ["jack"])
    main, child = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "add", "tty1", "leads.txt", "--token", "-"],
            cwd=tmp_path,
            env=cli_env(),
            stdin=child,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(child)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(main)
    assert proc.returncode == 2, err.decode()
    assert "cannot hide what is typed" in err.decode() and "--token-file" in err.decode()
