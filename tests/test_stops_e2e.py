"""End to end: how runs end. Quiet pipes, signals, bad tokens, closed streams, deadlines.

Each test runs the CLI as a subprocess against a sandbox server in a process of its own
(`inboxleads sandbox --port 0`, stopped with SIGTERM by the fixture), and checks the exit
code, a bounded end time, that no traceback reached the user, and the --json summary's
equations against what the server applied (its `/_sandbox/state`) and what the
`--undelivered` file lists, both read by the test itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from inboxleads.reports import FLUSH_EVERY

from .conftest import CONTRACT_KEYS, SECRET, CliResult, cli_env, write_lines

CLI = [sys.executable, "-m", "inboxleads"]
# How long a first stop waits for requests in flight (README, "Interrupts").
GRACE_S = 10.0


def inboxleads(*args: str) -> list[str]:
    """The argv of `python -m inboxleads ARGS`."""
    return [*CLI, *args]


def words(text: str) -> list[str]:
    """Command-line words, written as one string."""
    return text.split()


def handles(n: int, start: int = 0) -> list[str]:
    """`n` distinct, valid usernames, in input order."""
    return [f"u{i:07d}" for i in range(start, start + n)]


def as_lines(values: Sequence[str]) -> bytes:
    return "".join(value + "\n" for value in values).encode()


def sleep_until(moment: float) -> None:
    """Wait for a moment on the monotonic clock: the timing of a signal is the experiment."""
    time.sleep(max(0.0, moment - time.monotonic()))


# --- the sandbox, in its own process ---------------------------------------------------


class Sandbox:
    """`inboxleads sandbox` in a process of its own, accepting only `SECRET`."""

    def __init__(self, log: Path, *options: str) -> None:
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                inboxleads("sandbox", "--port", "0", "--token", SECRET, *options),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=cli_env(),
            )
        self.base_url = self._read_base_url(log)

    def _read_base_url(self, log: Path) -> str:
        """The URL of its `export INBOX_BASE_URL=...` line, read by a thread: on Windows a
        pipe cannot be waited on with `select`."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        found: list[str] = []

        def read() -> None:
            seen = b""
            with contextlib.suppress(OSError):
                while chunk := os.read(fd, 4096):
                    seen += chunk
                    line = re.search(rb"^export INBOX_BASE_URL=(\S+)\r?\n", seen, re.MULTILINE)
                    if line:
                        found.append(line.group(1).decode())
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=20)
        if not found:
            self.proc.kill()  # its stdout ends, and with it the reader, before it is closed
            reader.join(timeout=10)
            self.stop()
            pytest.fail(f"the sandbox did not start:\n{log.read_text(errors='replace')}")
        return found[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM; TerminateProcess on Windows
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def state(self) -> dict[str, Any]:
        answer = httpx.get(self.base_url + "/_sandbox/state", timeout=30, trust_env=False)
        answer.raise_for_status()
        data = answer.json()
        assert isinstance(data, dict)
        return data

    def requests(self) -> int:
        """Every request the leads endpoint got, answered or not."""
        return int(self.state()["requests"])

    def lookups(self) -> int:
        """Every campaign look-up the server answered."""
        return sum(self.state()["lookups"].values())

    def applied(self, campaign: str) -> set[str]:
        """The usernames, lower-cased, of every request the server applied to `campaign`."""
        bodies = self.state()["campaigns"].get(campaign, {}).get("requests", [])
        out: set[str] = set()
        for body in bodies:
            out.update(value.lower() for value in body.get("usernames", []))
            out.update(
                lead["username"].lower() for lead in body.get("leads", []) if "username" in lead
            )
        return out

    def env(self, **extra: str) -> dict[str, str]:
        """A CLI environment pointing at this server, with the right token unless overridden."""
        return cli_env(**{"INBOX_BASE_URL": self.base_url, "INBOX_API_TOKEN": SECRET, **extra})


StartSandbox = Callable[..., Sandbox]


@pytest.fixture
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartSandbox]:
    """Start sandbox processes (`sandbox("--latency", "2")`); SIGTERM them after the test."""
    started: list[Sandbox] = []

    def start(*options: str) -> Sandbox:
        log = tmp_path_factory.mktemp("sandbox") / "stderr.log"
        server = Sandbox(log, *options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def slow_shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One slow sandbox for the many short early-signal runs (each uses its own campaign)."""
    server = Sandbox(tmp_path_factory.mktemp("sandbox") / "stderr.log", "--latency", "0.5")
    yield server
    server.stop()


# --- the CLI, in its own process ------------------------------------------------------


class Run:
    """One process (leading a process group): output drained by threads, its end time taken
    the moment it exits."""

    def __init__(
        self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, stdin_pipe: bool
    ) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            # A group of its own, so that a hung `bash -c` pipeline ends with its members
            # (POSIX; ignored on Windows).
            start_new_session=True,
        )
        self.spawned = time.monotonic()
        self.ended: float | None = None
        self._stdout = bytearray()
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._drain_stdout, daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
            threading.Thread(target=self._wait, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _drain_stdout(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while chunk := os.read(stream.fileno(), 65536):
            self._stdout += chunk

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._changed:
                self._stderr.append(raw.decode("utf-8", "replace"))
                self._changed.notify_all()

    def _wait(self) -> None:
        self.proc.wait()
        with self._changed:
            self.ended = time.monotonic()
            self._changed.notify_all()

    def write(self, data: bytes) -> None:
        """Write to the process's stdin and flush; the pipe stays open."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()

    def signal(self, signum: int) -> float:
        """Send `signum` (unless the process has already been reaped); return when."""
        self.proc.send_signal(signum)
        return time.monotonic()

    def wait_for_stderr(self, ready: Callable[[list[str]], bool], timeout: float) -> bool:
        """Wait until `ready(stderr lines)` holds or the process ends; say whether it held."""
        with self._changed:
            self._changed.wait_for(
                lambda: ready(self._stderr) or self.ended is not None, timeout=timeout
            )
            return ready(self._stderr)

    def finish(self, hang_after: float) -> CliResult:
        """Wait for the end; a run still going `hang_after` seconds after its start fails."""
        with self._changed:
            self._changed.wait_for(
                lambda: self.ended is not None,
                timeout=max(0.0, self.started + hang_after - time.monotonic()),
            )
        if self.ended is None:
            self.kill()
            pytest.fail(f"still running {hang_after} s after its start:\n{''.join(self._stderr)}")
        self._release()
        return CliResult(
            self.proc.returncode,
            self._stdout.decode("utf-8", "replace"),
            "".join(self._stderr),
        )

    @property
    def elapsed(self) -> float:
        assert self.ended is not None
        return self.ended - self.started

    def kill(self) -> None:
        """End the process and its group if it still runs, and close the pipes."""
        if self.proc.poll() is None:
            if os.name == "posix":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            else:  # no process groups (and no `bash -c` pipelines to end with it)
                self.proc.kill()
            self.proc.wait()
        self._release()

    def _release(self) -> None:
        self.close_stdin()
        for thread in self._threads:
            thread.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


StartRun = Callable[..., Run]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartRun]:
    """Start processes (`start(argv, env=..., stdin_pipe=True)`) in `tmp_path`; kill leftovers."""
    runs: list[Run] = []

    def begin(argv: Sequence[str], *, env: dict[str, str], stdin_pipe: bool = False) -> Run:
        run = Run(argv, env=env, cwd=tmp_path, stdin_pipe=stdin_pipe)
        runs.append(run)
        return run

    yield begin
    for run in runs:
        run.kill()


# --- what every run is checked for ----------------------------------------------------


def assert_clean(result: CliResult, token: str = SECRET) -> None:
    """No traceback, no ignored exception, no token in what the user saw."""
    shown = result.stdout + result.stderr
    assert "Traceback" not in shown, result.stderr[-4000:]
    assert "Exception ignored" not in shown, result.stderr[-4000:]
    assert token not in shown, "the token leaked into the output"


def read_undelivered(path: Path) -> list[str]:
    """The identifiers an --undelivered file lists (plain lines), lower-cased."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    assert SECRET not in text, "the token leaked into the undelivered file"
    return [line.strip().lstrip("@").lower() for line in text.splitlines() if line.strip()]


def last_json(result: CliResult) -> dict[str, Any]:
    """The --json summary: the last line of stdout."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"no --json summary on stdout (exit {result.code}):\n{result.stderr[-4000:]}"
    data = json.loads(lines[-1])
    assert isinstance(data, dict)
    return data


def check_accounting(
    summary: dict[str, Any],
    code: int,
    *,
    fed: Sequence[str],
    applied: set[str],
    undelivered: list[str],
) -> None:
    """The contract's equations, and the counts behind them, checked against the server.

    `fed` is every identifier of the input in order (all valid and distinct), so the
    records read are its first `read`; each of them must be applied by the server or
    listed as undelivered, and those applied and not listed are exactly the delivered.
    """
    assert summary.keys() >= CONTRACT_KEYS, CONTRACT_KEYS - summary.keys()
    assert summary["exit_code"] == code
    read, unique = summary["read"], summary["unique"]
    assert read == summary["rejected"] + summary["duplicates"] + unique, summary
    assert unique == summary["delivered"] + summary["undelivered"] + summary["resumed"], summary
    assert (summary["rejected"], summary["duplicates"], summary["resumed"]) == (0, 0, 0), summary
    assert 0 <= read <= len(fed), summary
    listed = set(undelivered)
    assert len(listed) == len(undelivered), "an identifier is listed twice as undelivered"
    assert len(listed) == summary["undelivered"], (len(listed), summary)
    was_read = set(fed[:read])
    assert applied <= was_read, "the server applied identifiers the summary does not count"
    assert listed <= was_read, "the undelivered file lists identifiers never read"
    missing = was_read - applied - listed
    assert not missing, f"{len(missing)} read but neither applied nor undelivered"
    assert len(applied - listed) == summary["delivered"], (len(applied - listed), summary)


def check_against(
    server: Sandbox,
    campaign: str,
    und: Path,
    summary: dict[str, Any],
    code: int,
    *,
    fed: Sequence[str],
) -> None:
    """`check_accounting` against what `server` applied to `campaign` and what the
    --undelivered file `und` lists."""
    check_accounting(
        summary, code, fed=fed, applied=server.applied(campaign), undelivered=read_undelivered(und)
    )


# --- 1. a quiet pipe ------------------------------------------------------------------


@pytest.mark.parametrize(
    "silence_s",
    [
        pytest.param(2.5, id="eof-after-2.5s"),
        # The end of input comes while the batch flushed after 1 s still waits for the one
        # sender (busy 2 s with the first batch, two more queued): it must not be dropped.
        pytest.param(1.5, id="eof-while-the-flushed-batch-waits"),
    ],
)
def test_quiet_pipe_after_a_partial_batch_delivers_everything(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, silence_s: float
) -> None:
    server = sandbox("--latency", "2")
    und = tmp_path / "und.txt"
    first, then = handles(6000), handles(5, start=6000)
    run = start(
        inboxleads(
            "add",
            "abcd",
            # (--no-check: the look-up would take the server's 2 s as well)
            *words("--concurrency 1 --flush-after 1 --json -q --no-check"),
            "--undelivered",
            str(und),
        ),
        env=server.env(),
        stdin_pipe=True,
    )

    def feed() -> None:
        try:
            run.write(as_lines(first))
            run.write(as_lines(then))
            time.sleep(silence_s)  # the silence is the point of the test
        except BrokenPipeError:
            pass
        finally:
            run.close_stdin()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    result = run.finish(hang_after=25)
    feeder.join(timeout=10)

    assert_clean(result)
    assert result.code == 0, result.stderr
    # Four requests of 2 s one after another, plus start-up: about 9 s.
    assert run.elapsed < 20, run.elapsed
    applied = server.applied("abcd")
    assert applied == set(first + then), f"{len(set(first + then) - applied)} not applied"
    summary = last_json(result)
    assert (summary["delivered"], summary["undelivered"]) == (6005, 0), summary
    listed = read_undelivered(und)
    assert listed == []
    check_accounting(summary, result.code, fed=first + then, applied=applied, undelivered=listed)


# --- 2. a token that cannot be an HTTP header -----------------------------------------


@pytest.mark.parametrize(
    ("token", "position"),
    [
        pytest.param("sandbox-token\u2019", 14, id="typographic-apostrophe"),
        pytest.param("sandbox token", 8, id="space-inside"),
        pytest.param("sandbox-tok\x01en", 12, id="control-character"),
    ],
)
def test_a_token_that_cannot_be_a_header_is_refused_before_sending(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, token: str, position: int
) -> None:
    server = sandbox()
    fed = handles(40_000)
    path = write_lines(tmp_path / "leads.txt", fed)
    und = tmp_path / "und.txt"
    run = start(
        inboxleads("add", "tok2", str(path), "--json", "--undelivered", str(und)),
        env=server.env(INBOX_API_TOKEN=token),
    )
    result = run.finish(hang_after=10)

    assert_clean(result, token=token)
    assert token.replace(token[position - 1], "") not in result.stderr, "the token leaked"
    assert result.code == 2, result.stderr
    assert run.elapsed < 5, run.elapsed
    assert server.requests() == 0
    assert "position" in result.stderr, result.stderr
    assert re.search(rf"(?<!\d){position}(?!\d)", result.stderr), result.stderr
    summary = last_json(result)
    check_against(server, "tok2", und, summary, 2, fed=fed)


# --- 3. a second Ctrl-C while a large file is read and sent ---------------------------


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    fed = handles(1_000_000)
    path = tmp_path_factory.mktemp("big") / "million.txt"
    path.write_bytes(as_lines(fed))
    return path, fed


@pytest.mark.posix  # SIGINT to the run
@pytest.mark.parametrize("first_s", [0.3, 0.6, 1.0])
def test_a_second_ctrl_c_ends_a_large_run_within_2_seconds(
    sandbox: StartSandbox,
    start: StartRun,
    tmp_path: Path,
    million: tuple[Path, list[str]],
    first_s: float,
) -> None:
    server = sandbox("--latency", "1")
    path, fed = million
    und = tmp_path / "und.txt"
    run = start(
        inboxleads("add", "big3", str(path), "--json", "--undelivered", str(und)),
        env=server.env(),
    )
    sleep_until(run.spawned + first_s)
    run.signal(signal.SIGINT)
    sleep_until(run.spawned + first_s + 0.3)
    second = run.signal(signal.SIGINT)
    result = run.finish(hang_after=first_s + 10)

    assert_clean(result)
    assert result.code == 130, result.stderr[-4000:]
    assert run.ended is not None
    assert run.ended - second <= 2.5, f"ended {run.ended - second:.2f} s after the second signal"
    summary = last_json(result)
    check_against(server, "big3", und, summary, 130, fed=fed)


# --- 4. lines read from stdin before a stop -------------------------------------------


def _records_read(lines: list[str]) -> int:
    """Records read so far, from --progress jsonl events."""
    total = best = 0
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or not isinstance(event.get("read"), int):
            continue
        if event.get("event") == "records_read":
            total += event["read"]
        else:  # a progress event carries the counts so far
            best = max(best, event["read"])
    return max(total, best)


@pytest.mark.posix  # SIGINT to the run
def test_lines_read_from_stdin_before_a_stop_are_listed_not_dropped(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path
) -> None:
    server = sandbox()
    fed = handles(5)
    und = tmp_path / "und.txt"
    run = start(
        inboxleads(
            "add",
            "pipe4",
            *words("--flush-after 60 --json --progress jsonl"),
            "--undelivered",
            str(und),
        ),
        env=server.env(),
        stdin_pipe=True,
    )
    run.write(as_lines(fed))  # and the pipe stays open
    # If no event ever says so, stop anyway: the summary's `read` will tell.
    run.wait_for_stderr(lambda lines: _records_read(lines) >= 5, timeout=10)
    stopped = run.signal(signal.SIGINT)
    result = run.finish(hang_after=25)

    assert_clean(result)
    assert result.code == 130, result.stderr[-4000:]
    assert run.ended is not None and run.ended - stopped <= GRACE_S + 2
    summary = last_json(result)
    assert (summary["read"], summary["unique"], summary["undelivered"]) == (5, 5, 5), summary
    listed = read_undelivered(und)
    assert sorted(listed) == fed
    applied = server.applied("pipe4")
    assert applied == set()
    check_accounting(summary, 130, fed=fed, applied=applied, undelivered=listed)


# --- 5. a signal in the first instants of the process ---------------------------------


def caught_signals(pid: int) -> int | None:
    """The caught-signal mask of process `pid` (bit n-1 for signal n); None once it has
    exited. From /proc where there is one (Linux), else from `ps -o caught=` (macOS)."""
    if Path("/proc/self/status").exists():
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        caught = next(line for line in text.splitlines() if line.startswith("SigCgt:"))
        return int(caught.split()[1], 16)
    shown = subprocess.run(
        ["ps", "-o", "caught=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    if shown.stderr.strip():  # this ps cannot say (a gone process only fails quietly)
        pytest.skip(f"cannot see which signals a process catches: {shown.stderr.strip()}")
    return int(shown.stdout.split()[0], 16) if shown.stdout.strip() else None


def wait_for_handlers(pid: int, deadline_s: float = 10.0) -> float:
    """Wait until process `pid` catches SIGTERM (its own handlers are in place); return when.

    Python catches SIGINT from its own start, SIGTERM only once the tool installs
    its handlers, first thing in its entry point: so the SIGTERM bit of the
    process's caught-signal mask marks the first instant the tool can answer
    for. Before it, the interpreter itself is still starting (site, the
    entry script) and a signal gets the interpreter's default behaviour.
    """
    bit = 1 << (signal.SIGTERM - 1)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        caught = caught_signals(pid)
        if caught is None:
            break  # it has exited already
        if caught & bit:
            return time.monotonic()
        time.sleep(0.0005)
    raise AssertionError("the tool never installed its signal handlers")


@pytest.mark.posix  # SIGINT or SIGTERM to the run
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize(
    ("signum", "code"),
    [
        pytest.param(signal.SIGINT, 130, id="SIGINT"),
        pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
        pytest.param(getattr(signal, "SIGHUP", 1), 129, id="SIGHUP"),
    ],
)
@pytest.mark.parametrize("delay_ms", [0, 5, 20, 50, 100, 160, 230, 300])
def test_a_signal_in_the_first_300_ms(
    slow_shared_sandbox: Sandbox,
    start: StartRun,
    tmp_path: Path,
    delay_ms: int,
    signum: int,
    code: int,
) -> None:
    server = slow_shared_sandbox
    campaign = f"early{int(signum)}x{delay_ms}"
    fed = handles(40)
    path = write_lines(tmp_path / "leads.txt", fed)
    und = tmp_path / "und.txt"
    run = start(
        inboxleads(
            "add",
            campaign,
            str(path),
            *words("--json --batch-size 10 --concurrency 2"),
            "--undelivered",
            str(und),
        ),
        env=server.env(),
    )
    ready = wait_for_handlers(run.proc.pid)
    sleep_until(ready + delay_ms / 1000)
    sent = run.signal(signum)
    result = run.finish(hang_after=20)

    assert_clean(result)
    assert result.code == code, (result.code, result.stderr[-4000:])
    assert run.ended is not None and run.ended - sent <= GRACE_S + 2
    # From the handlers' first instant on, a stopped run still ends with its summary.
    check_against(server, campaign, und, last_json(result), code, fed=fed)


@pytest.mark.posix  # SIGHUP to the run
@pytest.mark.parametrize("under_nohup", [False, True], ids=["hung-up", "under-nohup"])
def test_a_hang_up_mid_run_ends_it_in_order_unless_ignored(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, under_nohup: bool
) -> None:
    """The terminal closes (an ssh session drops) halfway: the run stops as for SIGTERM,
    with exit 129, its summary and its reports, and leaves no temporary file; under
    nohup, which ignores SIGHUP, it goes on to the end."""
    server = sandbox("--latency", "0.2")
    campaign = f"hup{int(under_nohup)}"
    fed = handles(20_000)
    path = write_lines(tmp_path / "leads.txt", fed)
    und = tmp_path / "und.txt"
    argv = inboxleads("add", campaign, str(path), "--json", "--undelivered", str(und))
    argv += words("--batch-size 500 --concurrency 2")
    if under_nohup:
        argv = ["nohup", *argv]
    run = start(argv, env=server.env())
    sleep_until(wait_for_handlers(run.proc.pid) + 0.8)
    sent = run.signal(signal.SIGHUP)
    result = run.finish(hang_after=30)

    code = 0 if under_nohup else 129
    assert_clean(result)
    assert result.code == code, (result.code, result.stderr[-4000:])
    summary = last_json(result)
    check_against(server, campaign, und, summary, code, fed=fed)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    if not under_nohup:
        assert run.ended is not None and run.ended - sent <= GRACE_S + 2
        assert summary["stop_reason"] == "the terminal hung up (SIGHUP)"
        assert summary["undelivered"] > 0


# --- 6. closed or broken streams ------------------------------------------------------


@pytest.mark.bash
@pytest.mark.parametrize(
    ("tail", "json_on_stdout"),
    [
        pytest.param(
            "--progress plain --batch-size 100 --log-interval 0.01 2>&1 | head -1;"
            ' exit "${PIPESTATUS[0]}"',
            False,
            id="stderr-into-head-1",
        ),
        pytest.param('--json -q | true; exit "${PIPESTATUS[0]}"', False, id="stdout-into-true"),
        pytest.param(">&-", False, id="stdout-closed"),
        pytest.param("--json 2>&-", True, id="stderr-closed"),
    ],
)
def test_closed_or_broken_streams_do_not_stop_the_upload(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, tail: str, json_on_stdout: bool
) -> None:
    server = sandbox()
    fed = handles(20_000)
    write_lines(tmp_path / "leads.txt", fed)
    command = shlex.join(inboxleads("add", "c0ffee42", "leads.txt", "--undelivered", "und.txt"))
    run = start(["bash", "-c", f"{command} {tail}"], env=server.env())
    result = run.finish(hang_after=35)

    assert_clean(result)
    assert result.code == 0, (result.code, result.stdout[-2000:], result.stderr[-2000:])
    assert run.elapsed < 30, run.elapsed
    applied = server.applied("c0ffee42")
    assert applied == set(fed), f"{len(set(fed) - applied)} not applied"
    listed = read_undelivered(tmp_path / "und.txt")
    assert listed == []
    if json_on_stdout:
        summary = last_json(result)
        check_accounting(summary, 0, fed=fed, applied=applied, undelivered=listed)


# --- 7. a token with surrounding whitespace -------------------------------------------


@pytest.mark.parametrize(
    ("variable", "dotenv"),
    [
        pytest.param(SECRET + "\n", None, id="env-trailing-newline"),
        pytest.param("  " + SECRET + "  ", None, id="env-spaces"),
        pytest.param(None, f'INBOX_API_TOKEN="{SECRET}\\n"\n', id="dotenv-escaped-newline"),
        pytest.param(None, f'INBOX_API_TOKEN="{SECRET}\n"\n', id="dotenv-newline-in-quotes"),
        pytest.param(None, f'INBOX_API_TOKEN="  {SECRET}  "\n', id="dotenv-spaces"),
    ],
)
def test_a_token_with_surrounding_whitespace_works(
    sandbox: StartSandbox,
    start: StartRun,
    tmp_path: Path,
    variable: str | None,
    dotenv: str | None,
) -> None:
    server = sandbox()
    fed = handles(30)
    path = write_lines(tmp_path / "leads.txt", fed)
    und = tmp_path / "und.txt"
    env = server.env()
    if variable is not None:
        env["INBOX_API_TOKEN"] = variable
    if dotenv is not None:
        del env["INBOX_API_TOKEN"]
        (tmp_path / ".env").write_text(dotenv, encoding="utf-8")
    run = start(inboxleads("add", "tok7", str(path), "--json", "--undelivered", str(und)), env=env)
    result = run.finish(hang_after=20)

    assert_clean(result)
    assert result.code == 0, result.stderr
    assert run.elapsed < 15, run.elapsed
    applied = server.applied("tok7")
    assert applied == set(fed)
    summary = last_json(result)
    check_accounting(summary, 0, fed=fed, applied=applied, undelivered=read_undelivered(und))


# --- 8. --max-time on a silent pipe ---------------------------------------------------


def test_max_time_ends_a_run_on_a_silent_pipe(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path
) -> None:
    server = sandbox()
    fed = handles(3)
    und = tmp_path / "und.txt"
    run = start(
        inboxleads("add", "late8", "--max-time", "1", "--json", "--undelivered", str(und)),
        env=server.env(),
        stdin_pipe=True,
    )
    run.write(as_lines(fed))  # and the pipe stays open, silent
    result = run.finish(hang_after=20)

    assert_clean(result)
    assert result.code == 1, result.stderr[-4000:]
    assert run.elapsed <= 1 + GRACE_S + 2, run.elapsed
    summary = last_json(result)
    assert "--max-time" in str(summary.get("stop_reason")), summary
    assert summary["read"] == 3, summary
    check_against(server, "late8", und, summary, 1, fed=fed)


# --- 9. an input error still prints the summary ---------------------------------------


def test_a_missing_input_file_still_prints_the_summary(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path
) -> None:
    server = sandbox()
    und = tmp_path / "und.txt"
    missing = tmp_path / "nope.txt"
    run = start(
        inboxleads("add", "miss9", str(missing), "--json", "--undelivered", str(und)),
        env=server.env(),
    )
    result = run.finish(hang_after=15)

    assert_clean(result)
    assert result.code == 2, result.stderr
    assert run.elapsed < 10, run.elapsed
    assert "nope.txt" in result.stderr
    assert server.requests() == 0
    summary = last_json(result)
    check_accounting(summary, 2, fed=[], applied=set(), undelivered=read_undelivered(und))


# --- stops of three kinds, for the cases below ----------------------------------------

# A stop as a test names it, and the exit status it gives.
STOPS = [("SIGTERM", 143), ("SIGINT", 130), ("--max-time", 1)]
EACH_STOP = pytest.mark.parametrize(("stop", "code"), STOPS, ids=["SIGTERM", "SIGINT", "max-time"])


def deadline_option(stop: str, seconds: float) -> list[str]:
    """The options of a run stopped by `stop`: --max-time SECONDS, or none for a signal."""
    return ["--max-time", f"{seconds:g}"] if stop == "--max-time" else []


def assert_stopped(run: Run, result: CliResult, code: int, sent: float) -> dict[str, Any]:
    """A stopped run ended cleanly, with `code`, within the grace and 2 s of its stop, and
    its summary says why; return the summary."""
    assert_clean(result)
    assert result.code == code, (result.code, result.stderr[-4000:])
    assert run.ended is not None and run.ended - sent <= GRACE_S + 2
    summary = last_json(result)
    assert summary["stop_reason"], summary
    return summary


def stop_after(run: Run, stop: str, seconds: float) -> float:
    """Stop `run` `seconds` after its handlers are in place (a signal), or leave it to its
    --max-time of `seconds` (see `deadline_option`); return when the stop was due."""
    if stop == "--max-time":
        return run.started + seconds
    sleep_until(wait_for_handlers(run.proc.pid) + seconds)
    return run.signal(getattr(signal, stop))


# --- 10. a pipe that never spoke ------------------------------------------------------


@pytest.mark.posix  # SIGTERM or SIGINT to the run (two stops of three)
@EACH_STOP
@pytest.mark.parametrize("before", [False, True], ids=["stdin-only", "file-then-stdin"])
def test_a_stop_while_stdin_has_sent_nothing_yet(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, stop: str, code: int, before: bool
) -> None:
    """The pipe stays open and silent from the start: the first stop ends the run."""
    server = sandbox()
    campaign = f"mute{code}{int(before)}"
    fed = handles(2500) if before else []
    inputs = [str(write_lines(tmp_path / "first.txt", fed))] if before else []
    und = tmp_path / "und.txt"
    options = deadline_option(stop, 1.5)
    run = start(
        inboxleads("add", campaign, *inputs, "-", "--json", "--undelivered", str(und), *options),
        env=server.env(),
        stdin_pipe=True,
    )
    sent = stop_after(run, stop, 1.5)
    result = run.finish(hang_after=25)

    summary = assert_stopped(run, result, code, sent)
    check_against(server, campaign, und, summary, code, fed=fed)
    if before:
        assert summary["read"] == len(fed), summary  # the file was read before stdin


# --- 11. a stderr nobody reads --------------------------------------------------------


@pytest.mark.posix  # SIGTERM to the run; a pipe's fill level by fcntl/ioctl
@pytest.mark.parametrize("stop", [None, signal.SIGTERM], ids=["to-the-end", "SIGTERM"])
def test_a_stderr_nobody_reads_does_not_hold_the_run(
    sandbox: StartSandbox, tmp_path: Path, stop: int | None
) -> None:
    """stderr is a pipe whose reader never reads: the display fills it within the first
    batches (one jsonl event each), and the run goes on and ends all the same."""
    server = sandbox("--latency", "0.02")
    campaign = "deaf11" if stop is None else "deaf11s"
    fed = handles(1500)
    path = write_lines(tmp_path / "leads.txt", fed)
    und = tmp_path / "und.txt"
    argv = inboxleads("add", campaign, str(path), "--json", "--undelivered", str(und))
    argv += words("--progress jsonl --batch-size 1 --concurrency 8 --log-interval 0.01")
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=write_end,
            env=server.env(),
            cwd=tmp_path,
        )
        os.close(write_end)
        write_end = -1
        if stop is not None:
            # Stop once the pipe is full (nothing more fits): before the fix, the process
            # was blocked in a write by then, and never answered the signal.
            pipe_full = _wait_for_a_full_pipe(read_end, proc)
            assert pipe_full, "the run ended before its stderr pipe was full"
            sent = time.monotonic()
            proc.send_signal(stop)
        try:
            out, _ = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("the run hung on a stderr nobody reads")
        ended = time.monotonic()
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)

    code = 0 if stop is None else 143
    assert proc.returncode == code, proc.returncode
    if stop is not None:
        assert ended - sent <= GRACE_S + 2 + 2  # grace, the end, the stderr's last 2 s
    lines = [line for line in out.decode().splitlines() if line.strip()]
    summary = json.loads(lines[-1])
    applied = server.applied(campaign)
    check_accounting(summary, code, fed=fed, applied=applied, undelivered=read_undelivered(und))
    if stop is None:
        assert applied == set(fed)


def _wait_for_a_full_pipe(fd: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    """Wait until the pipe holds as much as it can: what it holds (FIONREAD) has
    stopped growing while the run writes an event every 10 ms, for 0.2 s on Linux
    once within two pages of F_GETPIPE_SZ (a line that does not fit the last page's
    room takes a page of its own, so a full pipe holds 60 to 63 KiB of 64), for a
    second elsewhere (macOS, whose pipes grow as they fill)."""
    import fcntl
    import termios

    size = fcntl.fcntl(fd, 1032) if sys.platform.startswith("linux") else None  # F_GETPIPE_SZ
    end = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < end and proc.poll() is None:
        time.sleep(0.01)
        held = bytearray(4)
        fcntl.ioctl(fd, termios.FIONREAD, held)
        count = int.from_bytes(held, sys.byteorder)
        if count != last:
            last, since = count, time.monotonic()
            continue
        still = time.monotonic() - since
        if (size is not None and count >= size - 8192 and still >= 0.2) or (
            size is None and count > 0 and still >= 1.0
        ):
            return True
    return False


# --- 12. a stop while waiting for the lock --------------------------------------------


@pytest.mark.posix  # signals to the runs
@EACH_STOP
def test_a_stop_while_waiting_for_the_lock(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, stop: str, code: int
) -> None:
    """The process's exit code is the one its --json summary reports."""
    server = sandbox("--latency", "2")
    fed = handles(20)
    path = write_lines(tmp_path / "leads.txt", fed)
    journal = tmp_path / "sync.journal"
    common = ["add", "lock12", str(path), "--json", "--journal", str(journal), "--wait-lock"]
    common += ["--no-check"]  # the look-up would take the server's 2 s as well
    # One request at a time of 2 s each: the holder keeps the lock for 40 s.
    holder = start(inboxleads(*common, *words("--batch-size 1 --concurrency 1")), env=server.env())
    end = time.monotonic() + 20
    while server.requests() == 0:  # it sends: it holds the lock
        assert time.monotonic() < end and holder.proc.poll() is None, "the holder never sent"
        time.sleep(0.05)
    und = tmp_path / "und.txt"
    options = deadline_option(stop, 1)
    # The same batching as the holder: a journal of other batching is refused at once.
    same = words("--batch-size 1 --concurrency 1")
    waiter = start(
        inboxleads(*common, *same, "--undelivered", str(und), *options), env=server.env()
    )
    sent = stop_after(waiter, stop, 1)
    result = waiter.finish(hang_after=15)

    assert_clean(result)
    assert result.code == code, (result.code, result.stderr[-2000:])
    assert waiter.ended is not None and waiter.ended - sent <= 2
    assert "lock" in result.stderr
    summary = last_json(result)
    assert summary["exit_code"] == code
    assert (summary["read"], summary["requests"]) == (0, 0), summary
    holder.signal(signal.SIGINT)
    holder.signal(signal.SIGINT)
    assert holder.finish(hang_after=60).code == 130


# --- 13. signals in a storm -----------------------------------------------------------


@pytest.mark.posix  # signals to the run
@pytest.mark.parametrize("seed", range(4))
def test_a_storm_of_signals_still_ends_with_the_first_ones_status(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, seed: int
) -> None:
    """Many signals in a seeded random rhythm, some arriving as the process exits: the
    exit code is always the first signal's (never death by a signal), with the summary.
    The rest follow once the run has said it took the first (see below)."""
    import random

    rng = random.Random(seed)
    server = sandbox("--latency", "0.3")
    campaign = f"storm{seed}"
    fed = handles(60_000)
    path = write_lines(tmp_path / "leads.txt", fed)
    und = tmp_path / "und.txt"
    run = start(
        inboxleads("add", campaign, str(path), "--json", "--undelivered", str(und)),
        env=server.env(),
    )
    sleep_until(wait_for_handlers(run.proc.pid) + rng.uniform(0.0, 1.0))
    kinds = [rng.choice([signal.SIGINT, signal.SIGTERM]) for _ in range(rng.randint(3, 14))]
    first = kinds[0]

    def took_the_first(lines: list[str]) -> bool:
        """The run's "stopping (the run was interrupted (SIGINT)): ..." line."""
        return any(line.startswith("stopping (") and f"({first.name})" in line for line in lines)

    for i, signum in enumerate(kinds):
        if run.proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.proc.pid, signum)
        if i == 0:
            # Which signal came first is only known to the run once its handler has run.
            # CPython runs the Python handlers of signals that are pending together in
            # signal-number order (SIGINT, 2, before SIGTERM, 15), not in their order of
            # arrival: when a second signal arrives before the main thread has handled the
            # first (a busy machine, a long call in C, the first one caught by another
            # thread that is then preempted), the run sees them the other way round and
            # rightly ends 130 where 143 was expected, or the reverse. So the rest of the
            # storm waits until the run has said it is stopping for the first.
            said = run.wait_for_stderr(took_the_first, timeout=GRACE_S)
            assert said or run.ended is not None, f"no word of stopping for {first.name}"
        time.sleep(rng.choice([0.0, 0.0005, 0.005, 0.05, 0.2]))
    result = run.finish(hang_after=20)

    code = 130 if first == signal.SIGINT else 143
    assert_clean(result)
    assert result.code == code, (kinds, result.code, result.stderr[-2000:])
    check_against(server, campaign, und, last_json(result), code, fed=fed)


# --- 14. an --undelivered file that cannot be written in full --------------------------


@pytest.mark.posix  # a file size limit (ulimit -f)
@pytest.mark.bash
def test_a_report_that_fills_up_is_said_and_the_counts_still_hold(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path
) -> None:
    """A file size limit of 8 KiB (a full disk, in effect) cuts the --undelivered list: the
    run says so and how many may be missing, and its counts are the server's and its own."""
    server = sandbox("--latency", "2")
    fed = handles(5000)
    path = write_lines(tmp_path / "leads.txt", fed)
    und = tmp_path / "und.txt"
    argv = inboxleads("add", "full14", str(path), "--json", "--undelivered", str(und))
    argv += words("--batch-size 500 --concurrency 1 --max-time 1 --no-check")
    run = start(["bash", "-c", f"ulimit -f 8; exec {shlex.join(argv)}"], env=server.env())
    result = run.finish(hang_after=20)

    assert_clean(result)
    summary = last_json(result)
    applied = server.applied("full14")
    # Something was delivered, and a file of the tool's own failed: exit 1, not a success.
    assert result.code == 1, (result.code, result.stderr[-2000:])
    assert summary["exit_code"] == 1 and summary["delivered"] == len(applied) > 0, summary
    assert summary["read"] == summary["unique"] == len(fed), summary
    assert summary["unique"] == summary["delivered"] + summary["undelivered"], summary
    listed = read_undelivered(und)
    assert 0 < len(listed) < summary["undelivered"]
    assert not set(listed) & applied and set(listed) <= set(fed)
    said = re.search(
        r"--undelivered \S+: cannot write: .*; up to ([\d,]+) undelivered", result.stderr
    )
    assert said, result.stderr[-2000:]
    assert int(said.group(1).replace(",", "")) >= summary["undelivered"] - len(listed)
    assert not list(tmp_path.glob("*.part*")), "a spool was left behind"


# --- 15. a pipe that turns out to be binary -------------------------------------------


def test_utf16_on_a_pipe_is_read_once_it_arrives(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path
) -> None:
    """Its byte order mark decides the encoding, also when it comes late on a pipe."""
    server = sandbox()
    run = start(inboxleads("add", "bin15", "--json"), env=server.env(), stdin_pipe=True)
    time.sleep(0.3)  # the run is under way, waiting for input
    run.write("jack\nnaval\n".encode("utf-16"))
    run.close_stdin()
    result = run.finish(hang_after=15)

    assert_clean(result)
    assert result.code == 0, result.stderr
    summary = last_json(result)
    assert (summary["exit_code"], summary["read"], summary["delivered"]) == (0, 2, 2), summary
    assert server.requests() == 1


# --- 16. a journal that cannot be written ---------------------------------------------


@pytest.mark.posix  # a file size limit (ulimit -f)
@pytest.mark.bash
def test_a_journal_that_fills_up_ends_the_run_in_order(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path
) -> None:
    """The journal hits a 4 KiB file size limit after some 30 records: the run stops with
    its summary, and every identifier is in the journal, in the undelivered list or
    counted delivered by a request the server applied."""
    server = sandbox()
    fed = handles(200)
    path = write_lines(tmp_path / "leads.txt", fed)
    und = tmp_path / "und.txt"
    journal = tmp_path / "sync.journal"
    argv = inboxleads("add", "jour16", str(path), "--json", "-q", "--undelivered", str(und))
    argv += ["--journal", str(journal), *words("--batch-size 5 --concurrency 2")]
    # stdout goes through `cat`, so the limit concerns the files the run writes.
    command = f"ulimit -f 4; {shlex.join(argv)} | cat; exit ${{PIPESTATUS[0]}}"
    run = start(["bash", "-c", command], env=server.env())
    result = run.finish(hang_after=20)

    assert_clean(result)
    assert result.code == 1, (result.code, result.stderr[-2000:])
    assert "journal" in result.stderr and "File too large" in result.stderr
    summary = last_json(result)
    applied = server.applied("jour16")
    check_accounting(summary, 1, fed=fed, applied=applied, undelivered=read_undelivered(und))
    recorded = [
        json.loads(line)
        for line in journal.read_text(encoding="utf-8").splitlines()[1:]
        if line.endswith("}")
    ]
    assert 0 < 5 * len(recorded) <= summary["delivered"] < len(fed), (len(recorded), summary)


# --- 17. a stop while failures are being explained ------------------------------------


@pytest.mark.posix  # SIGTERM or SIGINT to the run (two stops of three)
@pytest.mark.parametrize(
    ("stop", "code"),
    [*STOPS[::2], ("2xSIGINT", 130)],
    ids=["SIGTERM", "max-time", "two-SIGINTs"],
)
def test_a_stop_during_explain_failures_is_honest_about_its_requests(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, stop: str, code: int
) -> None:
    server = sandbox("--latency", "0.3")
    campaign = f"expl{code}"
    fed = [f"gone{i:05d}" if i % 97 == 0 else f"u{i:07d}" for i in range(8000)]
    path = write_lines(tmp_path / "leads.txt", fed)
    argv = inboxleads("add", campaign, str(path), "--json", "--explain-failures", "failed.csv")
    argv += words("--progress plain --log-interval 0.2")
    run = start([*argv, *deadline_option(stop, 2.5)], env=server.env())
    in_explain = run.wait_for_stderr(lambda lines: "phase: explain\n" in lines, timeout=20)
    assert in_explain, "the explain phase never started"
    sent = run.started + 2.5
    if stop != "--max-time":
        time.sleep(0.7)
        sent = run.signal(signal.SIGTERM if stop == "SIGTERM" else signal.SIGINT)
    if stop == "2xSIGINT":  # the second abandons explain requests in flight: still counted
        time.sleep(0.2)
        sent = run.signal(signal.SIGINT)
    result = run.finish(hang_after=30)

    summary = assert_stopped(run, result, code, sent)
    assert summary["delivered"] == len(fed), summary
    # Every count of requests is the server's own count of what reached it.
    assert summary["requests"] == server.requests() + server.lookups(), summary
    assert summary["explain_requests"] == server.requests() - summary["upload_requests"] > 0
    assert (tmp_path / "failed.csv").exists()


# --- 18. a token source that makes the run wait ---------------------------------------


@pytest.mark.posix  # a fifo; SIGINT to the run
@pytest.mark.parametrize(("stop", "code"), STOPS[1:], ids=["SIGINT", "max-time"])
@pytest.mark.parametrize("source", ["token-file-fifo", "token-from-stdin"])
def test_a_stop_while_waiting_for_the_token(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, source: str, stop: str, code: int
) -> None:
    """A token file that is a pipe nobody writes to, or `--token -` on a silent stdin: the
    run waits for it, and a first stop or --max-time still ends it with its summary."""
    server = sandbox()
    path = write_lines(tmp_path / "leads.txt", handles(30))
    env = server.env()
    del env["INBOX_API_TOKEN"]
    if source == "token-file-fifo":
        os.mkfifo(tmp_path / "token.fifo")
        token = ["--token-file", "token.fifo"]
    else:
        token = ["--token", "-"]
    argv = inboxleads("add", "tokw18", str(path), "--json", "--progress", "plain", *token)
    argv += deadline_option(stop, 1)
    run = start(argv, env=env, stdin_pipe=source == "token-from-stdin")
    sent = stop_after(run, stop, 1)
    result = run.finish(hang_after=15)

    summary = assert_stopped(run, result, code, sent)
    assert "stopped while waiting for --token" in result.stderr
    assert f"run ended with exit code {code} (stopped: " in result.stderr  # the plain summary
    assert (summary["read"], summary["requests"]) == (0, 0)
    assert server.requests() == 0


@pytest.mark.posix  # a pseudo-terminal
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty hang-up semantics")
def test_a_terminal_that_hangs_up_at_the_token_prompt_stops_the_run(
    sandbox: StartSandbox, tmp_path: Path
) -> None:
    """The window closes while `--token -` asks: the read fails (EIO) just before the
    SIGHUP comes, and restoring the terminal's echo fails too; neither is a bug (it
    was exit 70, "internal error"), the run is stopped by the hang-up (129)."""
    import pty

    server = sandbox()
    path = write_lines(tmp_path / "leads.txt", handles(30))
    out = tmp_path / "out.json"
    env = server.env()
    del env["INBOX_API_TOKEN"]
    argv = inboxleads("add", "hup18", str(path), "--json", "--token", "-")
    pid, master = pty.fork()
    if pid == 0:  # the child: its terminal is the pty; stdout goes to a file
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.chdir(tmp_path)
        os.execve(argv[0], argv, env)
    try:
        seen = b""
        deadline = time.monotonic() + 20
        while b"API token" not in seen and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                seen += os.read(master, 1024)
        assert b"API token" in seen, seen
    finally:
        os.close(master)  # the terminal goes away: a hang-up
    deadline = time.monotonic() + 20
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if ended[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the run did not end after its terminal hung up")
    assert os.waitstatus_to_exitcode(ended[1]) == 129
    summary = json.loads(out.read_text().splitlines()[-1])
    assert summary["exit_code"] == 129
    assert summary["stop_reason"] == "the terminal hung up (SIGHUP)"
    assert server.requests() == 0


@pytest.mark.posix  # a fifo; a signal to the run
@EACH_STOP
def test_a_fifo_with_no_writer_holds_up_neither_the_files_before_it_nor_a_stop(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path, stop: str, code: int
) -> None:
    """Opening a fifo waits until something opens it to write, maybe for good. The file
    named before it is read and sent meanwhile, and a stop or --max-time ends the run
    with its plain summary and its --json."""
    server = sandbox()
    fed = handles(30)
    path = write_lines(tmp_path / "leads.txt", fed)
    os.mkfifo(tmp_path / "later.fifo")
    argv = inboxleads("add", "fifo18", str(path), "later.fifo", "--json", "--progress", "plain")
    argv += ["--flush-after", "0.2", "--undelivered", "left.txt"]
    run = start([*argv, *deadline_option(stop, 2)], env=server.env())
    deadline = time.monotonic() + 20
    while server.requests() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = stop_after(run, stop, 2) if stop != "--max-time" else run.started + 2
    result = run.finish(hang_after=15)

    summary = assert_stopped(run, result, code, sent)
    assert f"run ended with exit code {code} (stopped: " in result.stderr  # the plain summary
    assert (summary["read"], summary["delivered"]) == (len(fed), len(fed)), summary
    assert server.requests() == summary["upload_requests"] == 1
    assert (tmp_path / "left.txt").read_text() == ""


@pytest.mark.posix  # a fifo; a signal to the run
def test_a_line_on_a_fifo_is_read_when_it_arrives(
    sandbox: StartSandbox, start: StartRun, tmp_path: Path
) -> None:
    """A fifo named by its path is read as stdin is: its first line is read at once and
    sent after --flush-after, though its writer stays quiet; nothing is held back."""
    server = sandbox()
    fifo = tmp_path / "leads.fifo"
    os.mkfifo(fifo)
    argv = inboxleads("add", "fifo19", str(fifo), "--json", "--flush-after", "0.2")
    run = start(argv, env=server.env())
    with open(fifo, "wb", buffering=0) as writer:  # opened once the run opens its end
        writer.write(b"lateq\n")
        deadline = time.monotonic() + 20
        while server.requests() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.requests() == 1, "the line waited for more input"
        sent = run.signal(signal.SIGTERM)
        result = run.finish(hang_after=15)
    summary = assert_stopped(run, result, 143, sent)
    assert (summary["read"], summary["delivered"]) == (1, 1), summary


# --- 19. a --rejects file that fills up -----------------------------------------------


@pytest.mark.posix  # a file size limit (ulimit -f)
@pytest.mark.bash
def test_a_rejects_file_that_fills_up_keeps_what_fits(start: StartRun, tmp_path: Path) -> None:
    """A 100 KiB size limit: the rejects file keeps nearly all of it in whole rows, and the
    error's count of what is missing covers every row the file lacks."""
    bad = [f"not a handle {i:05d} " + "x" * 60 for i in range(20_000)]
    path = write_lines(tmp_path / "leads.txt", [*handles(10), *bad])
    argv = inboxleads("add", "rej19", str(path), "--sandbox", "--json", "-q")
    argv += ["--rejects", "rejects.csv"]
    command = f"ulimit -f 100; {shlex.join(argv)} | cat; exit ${{PIPESTATUS[0]}}"
    run = start(["bash", "-c", command], env=cli_env())
    result = run.finish(hang_after=30)

    assert_clean(result)
    assert result.code == 1, (result.code, result.stderr[-2000:])  # delivered, list cut short
    summary = last_json(result)
    assert (summary["rejected"], summary["delivered"]) == (len(bad), 10), summary
    kept = (tmp_path / "rejects.csv").read_bytes()
    # At most one group of rows between two flushes is lost (FLUSH_EVERY rows of ~200 bytes).
    assert 100 * 1024 - FLUSH_EVERY * 250 < len(kept) <= 100 * 1024, len(kept)
    assert kept.endswith(b"\n")
    rows = kept.decode().splitlines()[1:]
    assert all(row.count(",") >= 3 for row in rows)
    said = re.search(r"--rejects \S+: cannot write: .*; up to ([\d,]+) entries", result.stderr)
    assert said, result.stderr[-2000:]
    assert int(said.group(1).replace(",", "")) >= len(bad) - len(rows)
