"""End to end: the real CLI as a subprocess against the sandbox server over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from inboxleads.lock import RunLock

from .conftest import (
    CONTRACT_KEYS,
    SECRET,
    CliResult,
    api_env,
    assert_private,
    cli_env,
    write_lines,
)
from .sandbox_server import RunningSandbox

Run = Callable[..., CliResult]


def _mixed_forms(n: int) -> tuple[list[str], set[str]]:
    """n unique handles, each written in one of the accepted forms (and case)."""
    forms = [
        "@{}",
        "{}",
        "https://x.com/{}",
        "https://twitter.com/{}?lang=en",
        "mobile.twitter.com/{}/",
        "www.x.com/{}",
        "  {}  ",
        "http://www.twitter.com/{}#top",
    ]
    lines, handles = [], set()
    for i in range(n):
        handle = f"user_{i:07d}"
        shown = handle.upper() if i % 3 == 0 else handle
        lines.append(forms[i % len(forms)].format(shown))
        handles.add(handle)
    return lines, handles


def test_100k_mixed_forms_arrive_once_each_in_50_requests(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    lines, handles = _mixed_forms(100_000)
    # Noise that must not change what is sent: comments, blanks, case-variant duplicates.
    noisy = ["# export of 2026-11-27", "", *lines, "@USER_0000001", "x.com/user_0000002"]
    path = tmp_path / "leads.txt"
    path.write_bytes(("\ufeff" + "\r\n".join(noisy) + "\r\n").encode())

    result = run_cli("add", "c100k", str(path), "--json", env=api_env(sandbox_server))

    assert result.code == 0, result.stderr
    received = sandbox_server.state.received("c100k")
    assert Counter(kind for kind, _ in received) == {"username": 100_000}
    assert {value.lower() for _, value in received} == handles
    assert len(received) == len({v.lower() for _, v in received}), "a handle was sent twice"
    bodies = sandbox_server.state.bodies("c100k")
    assert len(bodies) == 50
    assert all(len(b["usernames"]) <= 2000 and b["platform"] == "twitter" for b in bodies)
    summary = result.summary
    assert summary.keys() >= CONTRACT_KEYS
    assert summary["upload_requests"] == 50 == sandbox_server.state.requests_by_status()[200]
    assert summary["requests"] == 51 and sandbox_server.state.lookups() == {200: 1}
    assert summary["added"] == len(sandbox_server.state.members("c100k")) == 100_000
    assert (summary["read"], summary["duplicates"], summary["unique"]) == (100_002, 2, 100_000)
    assert summary["delivered"] == 100_000 and summary["exit_code"] == 0


def test_summary_counts_are_the_servers_answers(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "gone_one", "gone_two", "naval", "44196404"])
    first = run_cli("add", "camp1", str(path), "--json", env=api_env(sandbox_server)).summary
    assert (first["added"], first["skipped"], first["failed"]) == (2, 0, 3)
    # Re-sending: the server now says skipped; the tool reports what the server said.
    again = run_cli("add", "camp1", str(path), "--json", env=api_env(sandbox_server)).summary
    assert (again["added"], again["skipped"], again["failed"]) == (0, 2, 3)
    assert again["exit_code"] == 0


def test_piped_stdin_without_file_and_dash(run_cli: Run, sandbox_server: RunningSandbox) -> None:
    piped = run_cli("add", "pipe1", "--json", stdin="@jack\n12\n", env=api_env(sandbox_server))
    assert piped.code == 0 and piped.summary["added"] == 2
    dashed = run_cli("add", "pipe2", "-", "--json", stdin="naval\n", env=api_env(sandbox_server))
    assert dashed.code == 0 and dashed.summary["added"] == 1
    assert sorted(sandbox_server.state.received("pipe1")) == [
        ("platformId", "12"),
        ("username", "jack"),
    ]


def test_json_stdout_is_one_object_and_progress_has_no_ansi(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(30)])
    result = run_cli(
        "add", "plain1", str(path), "--json", "--batch-size", "7", env=api_env(sandbox_server)
    )
    assert len(result.stdout.strip().splitlines()) == 1
    assert result.summary["batches"] == 5
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert "delivered" in result.stderr


def test_quiet_prints_nothing_on_success(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    result = run_cli("add", "quiet1", str(path), "--quiet", env=api_env(sandbox_server))
    assert (result.code, result.stdout, result.stderr) == (0, "", "")


def test_exit_3_for_a_wrong_token_names_the_fix(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "naval"])
    env = api_env(sandbox_server, INBOX_API_TOKEN="wrong-token")
    result = run_cli("add", "tok1", str(path), "--json", env=env)
    assert result.code == 3
    assert "token" in result.stderr and "401" in result.stderr
    assert result.summary["exit_code"] == 3 and result.summary["delivered"] == 0
    assert sandbox_server.state.received("tok1") == []


def test_exit_3_for_a_read_only_token_and_a_missing_campaign(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    ro = run_cli("add", "tok2", str(path), env=api_env(sandbox_server, INBOX_API_TOKEN="ro_x"))
    assert ro.code == 3 and "403" in ro.stderr
    missing = run_cli("add", "missing42", str(path), env=api_env(sandbox_server))
    assert missing.code == 3 and "campaign" in missing.stderr and "404" in missing.stderr


def test_refusal_stops_sending_at_once(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(500)])
    env = api_env(sandbox_server, INBOX_API_TOKEN="wrong-token")
    result = run_cli(
        "add", "stop1", str(path), "--batch-size", "10", "--concurrency", "1", "--json", env=env
    )
    assert result.code == 3
    # The campaign look-up met the 401 first: no batch went out.
    assert sandbox_server.state.lookups() == {401: 1}
    assert sandbox_server.state.requests_by_status() == {}
    assert result.summary["undelivered"] == 500


def test_exit_1_and_undelivered_file_when_the_server_always_fails(
    run_cli: Run, start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    server = start_sandbox(error_rate=1.0, seed=3)
    path = write_lines(tmp_path / "a.txt", ["jack", "@12345", "44196397", "naval"])
    out = tmp_path / "undelivered.txt"
    result = run_cli(
        "add",
        "fail1",
        str(path),
        "--max-attempts",
        "1",
        "--undelivered",
        str(out),
        "--json",
        env=api_env(server),
    )
    assert result.code == 1
    assert result.summary["undelivered"] == 4 and result.summary["delivered"] == 0
    assert out.read_text().splitlines() == ["jack", "@12345", "44196397", "naval"]
    assert_private(out)


def test_exit_4_when_another_run_holds_the_lock(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    journal = tmp_path / "run.journal"
    lock = RunLock(journal.with_name(journal.name + ".lock"))
    lock.acquire()
    try:
        result = run_cli(
            "add", "lock1", str(path), "--journal", str(journal), env=api_env(sandbox_server)
        )
    finally:
        lock.release()
    assert result.code == 4 and "another inboxleads run" in result.stderr
    assert sandbox_server.state.received("lock1") == []


@pytest.mark.posix  # a symbolic link
def test_a_journal_named_through_a_symlink_takes_the_journal_s_own_lock(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    """Two runs that name one journal by two paths would both send every batch."""
    path = write_lines(tmp_path / "a.txt", ["jack"])
    journal = tmp_path / "run.journal"
    (tmp_path / "link.journal").symlink_to(journal)
    lock = RunLock(journal.with_name(journal.name + ".lock"))
    lock.acquire()
    try:
        result = run_cli(
            "add",
            "lock2",
            str(path),
            "--journal",
            str(tmp_path / "link.journal"),
            env=api_env(sandbox_server),
        )
    finally:
        lock.release()
    assert result.code == 4 and "another inboxleads run" in result.stderr
    assert sandbox_server.state.received("lock2") == []
    assert not (tmp_path / "link.journal.lock").exists()


def test_usage_errors_exit_2_and_send_nothing(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    good = write_lines(tmp_path / "a.txt", ["jack"])
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" * 50)
    env = api_env(sandbox_server)
    cases = {
        ("add", "Bad-Id", str(good)): "campaign id",
        ("add", "ok1", str(good), "--batch-size", "0"): "batch-size",
        ("add", "ok1", str(good), "--batch-size", "2001"): "batch-size",
        ("add", "ok1", str(good), "--base-url", "http://example.com/api/v1"): "loopback",
        ("add", "ok1", str(tmp_path / "nope.txt")): "no such file",
        ("add", "ok1", str(tmp_path)): "directory",
        ("add", "ok1", str(good), str(binary)): "binary",
        ("add", "ok1", str(good), "--as", "nonsense"): "--as",
        ("add", "ok1", str(good), "--token", "a", "--token-file", str(good)): "token",
    }
    for args, words in cases.items():
        result = run_cli(*args, env=env)
        assert result.code == 2, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)
    no_token = cli_env(INBOX_BASE_URL=sandbox_server.base_url)
    missing = run_cli("add", "ok1", str(good), env=no_token)
    assert missing.code == 2 and "INBOX_API_TOKEN" in missing.stderr
    assert sandbox_server.state.requests_by_status() == {}


def test_dry_run_needs_no_token_and_sends_nothing(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(4500)] + ["bad one"])
    env = cli_env(INBOX_BASE_URL=sandbox_server.base_url)
    result = run_cli("add", "dry1", str(path), "--dry-run", "--json", env=env)
    summary = result.summary
    assert result.code == 0
    assert summary["dry_run"] is True and summary["batches"] == 3
    assert (summary["delivered"], summary["undelivered"], summary["requests"]) == (0, 0, 0)
    assert summary["rejected"] == 1 and summary["unique"] == 4500
    assert sandbox_server.state.requests_by_status() == {}


def test_token_from_dotenv_and_token_file(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    (tmp_path / ".env").write_text(f"INBOX_API_TOKEN={SECRET}\n")
    env = cli_env(INBOX_BASE_URL=sandbox_server.base_url)
    assert run_cli("add", "env1", str(path), env=env).code == 0
    (tmp_path / ".env").unlink()
    (tmp_path / "token.txt").write_text(SECRET + "\n")
    result = run_cli("add", "env2", str(path), "--token-file", "token.txt", env=env)
    assert result.code == 0
    # A real environment variable beats .env.
    (tmp_path / ".env").write_text("INBOX_API_TOKEN=stale-token\n")
    assert run_cli("add", "env3", str(path), env=api_env(sandbox_server)).code == 0


def _start_slow_run(server: RunningSandbox, tmp_path: Path) -> subprocess.Popen[bytes]:
    path = write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(2000)])
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inboxleads",
            "add",
            "sig1",
            str(path),
            "--batch-size",
            "100",
            "--concurrency",
            "2",
            "--json",
            "--undelivered",
            str(tmp_path / "left.txt"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=api_env(server),
        cwd=tmp_path,
    )


def _wait_for_requests(server: RunningSandbox, n: int) -> None:
    deadline = time.monotonic() + 30
    while sum(server.state.requests_by_status().values()) < n:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)


@pytest.mark.posix  # SIGINT to the run
def test_sigint_mid_run_exits_130_and_nothing_is_lost(
    start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    server = start_sandbox(latency_s=0.2)
    proc = _start_slow_run(server, tmp_path)
    _wait_for_requests(server, 2)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    summary = json.loads(out.decode().strip().splitlines()[-1])
    delivered = {v for _, v in server.state.received("sig1")}
    left = set((tmp_path / "left.txt").read_text().split())
    assert delivered | left == {f"h{i}" for i in range(2000)}
    assert summary["delivered"] + summary["undelivered"] == 2000 == summary["unique"]
    assert len(delivered) == summary["delivered"]


@pytest.mark.posix  # SIGTERM to the run
def test_sigterm_exits_143(start_sandbox: Callable[..., RunningSandbox], tmp_path: Path) -> None:
    server = start_sandbox(latency_s=0.2)
    proc = _start_slow_run(server, tmp_path)
    _wait_for_requests(server, 1)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()


def test_requests_really_overlap_up_to_the_concurrency(
    run_cli: Run, start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    server = start_sandbox(latency_s=0.4)
    path = write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(8 * 50)])
    result = run_cli(
        "add",
        "conc1",
        str(path),
        "--batch-size",
        "50",
        "--concurrency",
        "8",
        "--json",
        env=api_env(server),
    )
    assert result.code == 0 and result.summary["upload_requests"] == 8
    # The server saw all eight requests at once: they overlapped on the wire.
    assert server.state.max_in_flight == 8


@pytest.mark.posix  # SIGINT to the run
def test_sigint_while_stdin_stays_silent_exits_130_cleanly(tmp_path: Path) -> None:
    # The reader thread is blocked on a pipe that stays open. Exiting must not
    # trip over it: an earlier version aborted ("Fatal Python error", SIGABRT)
    # in about one run in three, so this tries three times.
    for attempt in range(3):
        left = tmp_path / f"left{attempt}.txt"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "inboxleads",
                "add",
                "quiet1",
                "--sandbox",
                "--json",
                "--flush-after",
                "60",
                "--undelivered",
                str(left),
                "--progress",
                "jsonl",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
            cwd=tmp_path,
        )
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(b"jack\n")
        proc.stdin.flush()  # and the pipe stays open
        # The loop took the line (its event says so): the reader is back on the pipe.
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if b'"records_read"' in line:
                break
        os.kill(proc.pid, signal.SIGINT)
        out, rest = proc.communicate(timeout=30)
        err = b"".join(seen) + rest
        assert proc.returncode == 130, err.decode()
        assert b"Fatal Python error" not in err and b"Traceback" not in err
        assert left.read_text().split() == ["jack"]
        assert json.loads(out.decode().splitlines()[-1])["undelivered"] == 1


def _reason_lines(stderr: str) -> dict[str, int]:
    """`N undelivered: REASON` lines of a summary (rich wraps long lines: joined back)."""
    text = " ".join(line.strip() for line in stderr.splitlines())
    found: dict[str, int] = {}
    for status in ("500", "502", "503"):
        marker = f" undelivered: gave up after 1 attempt: {status}:"
        if marker in text:
            count = text.split(marker)[0].rsplit(" ", 1)[-1]
            found[status] = int(count.replace(",", ""))
    return found


def test_the_summary_says_why_identifiers_were_not_delivered(
    run_cli: Callable[..., CliResult], start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    server = start_sandbox(error_rate=1.0, seed=3)
    write_lines(tmp_path / "a.txt", [f"why{i:03d}" for i in range(60)])
    opts = ["--max-attempts", "1", "--batch-size", "10"]
    plain = run_cli(
        "add", "why1", "a.txt", *opts, "--json", "--progress", "plain", env=api_env(server)
    )
    assert plain.code == 1
    # Counted at the server: every batch of 10 got one answer, and its status is its reason.
    statuses = server.state.requests_by_status()
    expected = {str(status): 10 * n for status, n in statuses.items()}
    assert sum(expected.values()) == 60
    assert _reason_lines(plain.stderr) == expected
    reasons = plain.summary["undelivered_reasons"]
    assert {key.split(": ")[1]: n for key, n in reasons.items()} == expected
    # Not asked for a file: a hint to ask for one, never "see --undelivered".
    assert "use --undelivered FILE to list them" in plain.stderr

    rich = run_cli(
        "add",
        "why2",
        "a.txt",
        *opts,
        "--undelivered",
        "left.txt",
        "--progress",
        "rich",
        env=api_env(server),
    )
    assert rich.code == 1
    after = server.state.requests_by_status()
    expected = {str(s): 10 * (after[s] - statuses.get(s, 0)) for s in after}
    assert _reason_lines(rich.stderr) == {s: n for s, n in expected.items() if n}
    assert "listed in left.txt" in " ".join(rich.stderr.split())
    assert len((tmp_path / "left.txt").read_text().split()) == 60
