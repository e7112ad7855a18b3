"""Delivery under faults: retries, rate limits, hangs, crashes and resume.

Runs go over real loopback HTTP to the sandbox server. Backoff waits use an
injected sleep that only advances a fake clock, so retries cost no real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from inboxleads.errors import ExitStatus
from inboxleads.job import AddJob
from inboxleads.runner import AddResult, run_add
from inboxleads.sandbox import SandboxConfig

from .conftest import SECRET, FakeTime, Run, api_env, quiet_env, write_lines
from .sandbox_server import RunningSandbox

Start = Callable[..., RunningSandbox]


def run_in_process(
    server: RunningSandbox, path: Path, campaign: str, fake: FakeTime | None = None, **opts: object
) -> tuple[AddResult, str]:
    """Run `add` in this process against `server`, with fake time unless told otherwise."""
    fake = fake or FakeTime()
    job = AddJob(
        campaign=campaign,
        inputs=[str(path)],
        token=SECRET,
        base_url=server.base_url,
        progress="jsonl",
        **opts,  # type: ignore[arg-type]
    )
    err = io.StringIO()
    env = quiet_env(fake, stderr=err)
    result = run_add(job, env)
    assert SECRET not in err.getvalue()
    return result, err.getvalue()


def _handles(n: int) -> list[str]:
    return [f"lead_{i:05d}" for i in range(n)]


def test_flaky_server_still_gets_every_lead(start_sandbox: Start, tmp_path: Path) -> None:
    server = start_sandbox(error_rate=0.3, drop_rate=0.1, lost_rate=0.1, seed=7)
    handles = _handles(3000)
    path = write_lines(tmp_path / "a.txt", handles)
    result, events = run_in_process(server, path, "flaky1", batch_size=100, max_attempts=20)
    assert result.status == ExitStatus.OK, events
    assert result.summary is not None
    summary = result.summary.to_json()
    assert {v for _, v in server.state.members("flaky1")} == set(handles)
    assert summary["delivered"] == 3000 and summary["undelivered"] == 0
    assert summary["retries"] > 0 and summary["upload_requests"] == 30 + summary["retries"]
    faults = server.state.faults()
    assert faults.get("drop", 0) > 0 and faults.get("lost", 0) > 0
    # An answer lost after the batch was applied makes the retry count as skipped.
    assert summary["skipped"] > 0
    assert summary["added"] + summary["skipped"] + summary["failed"] == 3000
    assert '"event": "retry_scheduled"' in events


def test_server_that_always_fails_gives_exit_1_and_a_complete_undelivered_file(
    start_sandbox: Start, tmp_path: Path
) -> None:
    server = start_sandbox(error_rate=1.0, seed=1)
    handles = _handles(250)
    path = write_lines(tmp_path / "a.txt", handles)
    out = tmp_path / "left.txt"
    fake = FakeTime()
    result, _ = run_in_process(
        server, path, "down1", fake, batch_size=100, max_attempts=4, undelivered=out
    )
    assert result.status == ExitStatus.PARTIAL
    assert sorted(out.read_text().split()) == handles
    assert sum(server.state.requests_by_status().values()) == 3 * 4
    # Three waits per batch, exponential with full jitter: each within its ceiling.
    assert len(fake.slept) >= 9 and max(fake.slept) <= 4.0


def test_a_400_marks_only_that_batch_undelivered_and_is_not_retried(tmp_path: Path) -> None:
    handles = _handles(25)
    path = write_lines(tmp_path / "a.txt", handles)
    out = tmp_path / "left.txt"
    # This server takes at most 10 identifiers a request: the last batch of 5 fits.
    with RunningSandbox(SandboxConfig(token=SECRET, max_total=10)) as server:
        result, events = run_in_process(
            server, path, "bad1", batch_size=10, undelivered=out, concurrency=1
        )
        assert server.state.requests_by_status() == {200: 3}
    assert result.status == ExitStatus.OK, events
    with RunningSandbox(SandboxConfig(token=SECRET, max_total=9)) as server:
        result, events = run_in_process(server, path, "bad2", batch_size=10, undelivered=out)
        assert server.state.requests_by_status() == {400: 2, 200: 1}
    assert result.status == ExitStatus.PARTIAL
    assert "VALIDATION_ERROR" in events
    assert sorted(out.read_text().split()) == handles[:20]


def test_hanging_server_ends_within_the_timeouts(start_sandbox: Start, tmp_path: Path) -> None:
    server = start_sandbox(hang_rate=1.0)
    path = write_lines(tmp_path / "a.txt", _handles(20))
    started = time.monotonic()
    result, events = run_in_process(
        server, path, "hang1", batch_size=10, timeout_s=0.3, max_attempts=2
    )
    assert result.status == ExitStatus.PARTIAL
    assert "no answer within 0.3 s" in events
    # Two batches, two attempts each, 0.3 s per attempt, run two at a time.
    assert time.monotonic() - started < 30


def test_rate_limited_server_sees_few_429s_and_loses_nothing(
    start_sandbox: Start, tmp_path: Path
) -> None:
    server = start_sandbox(rate_limit=20, rate_window_s=1.0)
    handles = _handles(600)
    path = write_lines(tmp_path / "a.txt", handles)
    job_result, events = run_in_process(
        server, path, "rate1", _RealTime(), batch_size=10, concurrency=4
    )
    assert job_result.status == ExitStatus.OK, events
    by_status = server.state.requests_by_status()
    assert by_status[200] == 60
    assert by_status.get(429, 0) <= 6, by_status  # at most a tenth of the requests
    assert {v for _, v in server.state.members("rate1")} == set(handles)


class _RealTime(FakeTime):
    """Real time, for the one test where the server's clock must agree with ours."""

    def clock(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(seconds)


def _journal_digests(path: Path) -> set[str]:
    digests = set()
    for line in path.read_text().splitlines()[1:]:
        with contextlib.suppress(ValueError, KeyError):  # a line torn by the kill
            digests.add(json.loads(line)["batch"])
    return digests


def test_kill_9_then_resume_sends_only_what_the_journal_lacks(
    run_cli: Run, start_sandbox: Start, tmp_path: Path
) -> None:
    server = start_sandbox(latency_s=0.1)
    handles = _handles(4000)
    path = write_lines(tmp_path / "a.txt", handles)
    journal = tmp_path / "run.journal"
    args = ["add", "crash1", str(path), "--batch-size", "100", "--concurrency", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "inboxleads", *args, "--journal", str(journal), "-q"],
        env=api_env(server),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 30
    while len(_journal_digests(journal) if journal.exists() else ()) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no handler runs (TerminateProcess on Windows)
    proc.wait()
    while server.state.in_flight:  # requests of the killed run still being answered
        time.sleep(0.01)
    recorded = len(_journal_digests(journal))
    before = len(server.state.bodies("crash1"))
    assert 5 <= recorded < 40

    result = run_cli(*args, "--journal", str(journal), "--json", env=api_env(server))
    assert result.code == 0, result.stderr
    summary = result.summary
    assert summary["resumed"] == recorded * 100
    assert summary["delivered"] + summary["resumed"] == 4000 == summary["unique"]
    assert len(server.state.bodies("crash1")) - before == 40 - recorded
    assert {v for _, v in server.state.members("crash1")} == set(handles)
    # At most the batches in flight at the kill (2) were sent twice.
    twice = [v for v, n in Counter(v for _, v in server.state.received("crash1")).items() if n > 1]
    assert len(twice) <= 2 * 100


def test_journal_of_another_campaign_is_refused(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    journal = str(tmp_path / "j.journal")
    assert (
        run_cli("add", "one1", str(path), "--journal", journal, env=api_env(sandbox_server)).code
        == 0
    )
    other = run_cli("add", "two2", str(path), "--journal", journal, env=api_env(sandbox_server))
    assert other.code == 2 and "another run" in other.stderr
    # Keyed by campaign and batching, not by input names: another file of the same
    # campaign goes on with the same journal, another batch size does not.
    other_input = write_lines(tmp_path / "b.txt", ["naval"])
    again = run_cli(
        "add", "one1", str(other_input), "--journal", journal, env=api_env(sandbox_server)
    )
    assert again.code == 0, again.stderr
    resized = run_cli(
        "add",
        "one1",
        str(path),
        "--journal",
        journal,
        "--batch-size",
        "10",
        env=api_env(sandbox_server),
    )
    assert resized.code == 2 and "(batch_size: 2000, this run: 10)" in resized.stderr


OK_ANSWER = {"added": 1, "skipped": 0, "failed": 0}


def _capped_run(
    tmp_path: Path, answers: list[httpx.Response], handles: list[str], **opts: int
) -> tuple[AddResult, FakeTime, list[str]]:
    """Run `add` against a transport that gives `answers` in turn, then 200s, with fake
    time; return the result, the clock and the warning lines."""
    fake = FakeTime()
    given = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        return next(given, httpx.Response(200, json=OK_ANSWER))

    path = write_lines(tmp_path / "a.txt", handles)
    job = AddJob(
        campaign="cap1",
        inputs=[str(path)],
        token=SECRET,
        base_url="http://127.0.0.1:9/api/v1",
        progress="plain",
        **opts,  # type: ignore[arg-type]
    )
    err = io.StringIO()
    env = quiet_env(fake, stderr=err, transport=httpx.MockTransport(handler))
    result = run_add(job, env)
    return result, fake, [line for line in err.getvalue().splitlines() if "warning" in line]


def test_a_retry_after_of_an_hour_waits_15_minutes_and_says_so(tmp_path: Path) -> None:
    hour = httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": "slow down"})
    result, fake, warnings = _capped_run(tmp_path, [hour, hour], ["jack"])
    assert result.status == ExitStatus.OK
    assert max(fake.slept) == 900.0 and sum(fake.slept) < 2 * 900 + 10
    assert warnings == [
        "warning: the server asked to wait 3,600 s (Retry-After); waiting 15 minutes at most"
    ]


def test_a_rate_limit_reset_a_day_away_waits_15_minutes_and_says_so(tmp_path: Path) -> None:
    reset = str(int(FakeTime().now) + 86_400)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    spent = httpx.Response(200, headers=headers, json=OK_ANSWER)
    result, fake, warnings = _capped_run(
        tmp_path, [spent], ["jack", "naval"], batch_size=1, concurrency=1
    )
    assert result.status == ExitStatus.OK
    assert 890 <= sum(fake.slept) <= 901
    assert warnings == [
        "warning: the server asked to wait 86,400 s (X-RateLimit-Reset); waiting 15 minutes at most"
    ]
