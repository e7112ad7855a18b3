"""The CLI as scripts, cron and log shippers use it (issue 6).

Real subprocesses over loopback: progress modes on stderr, the run lock between
concurrent processes, the README's cron recipe run as written, where the token
may and may not go (files, stdin, terminals, error messages, redirects), and
the shell niceties (help, version, the sandbox command).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import inboxleads
import inboxleads.cli
from inboxleads.sandbox import API_PREFIX, DEFAULT_TOKEN, SandboxConfig, create_app
from inboxleads.sandbox.server import _bind, _uvicorn_config

from .conftest import SECRET, CliResult, api_env, assert_private, cli_env, write_lines
from .sandbox_server import RunningSandbox

Run = Callable[..., CliResult]
ROOT = Path(__file__).resolve().parent.parent
# The console script beside the interpreter: bin/inboxleads, or Scripts\inboxleads.exe on Windows.
SCRIPT = Path(sys.executable).parent / ("inboxleads.exe" if os.name == "nt" else "inboxleads")
LEADS_PATH = "/campaigns/v2/{campaign}/leads"
# SGR parameters that set a colour (foreground, background, 256/truecolour, bright).
COLOUR_SGR = re.compile(r"\x1b\[((?:\d+;)*(?:3\d|4\d|9\d|10\d)(?:;\d+)*)m")


# -- helpers ------------------------------------------------------------------


class LoopbackServer:
    """Any ASGI app under uvicorn on 127.0.0.1 (a free port), in a thread, as the sandbox runs."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.base_url = ""
        self.origin = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoopbackServer:
        sock, self.base_url = _bind("127.0.0.1", 0)
        self._sock = sock
        self.origin = self.base_url.removesuffix(API_PREFIX)
        server = self._server = uvicorn.Server(_uvicorn_config(self.app))
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="loopback", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@contextmanager
def loopback(app: Any) -> Iterator[LoopbackServer]:
    with LoopbackServer(app) as server:
        yield server


def failing_first(app: Any, failures: int) -> Any:
    """Wrap an ASGI app so that its first `failures` POSTs answer 503 (Retry-After: 0)."""
    seen = {"posts": 0}

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            seen["posts"] += 1
            if seen["posts"] <= failures:
                while (await receive()).get("more_body"):
                    pass
                error = {"error": {"code": "SERVICE_UNAVAILABLE", "message": "try again"}}
                answer = JSONResponse(error, status_code=503, headers={"Retry-After": "0"})
                await answer(scope, receive, send)
                return
        await app(scope, receive, send)

    return wrapped


def token_env(base_url: str) -> dict[str, str]:
    """A CLI environment with the secret token, pointed at any loopback server."""
    return cli_env(INBOX_BASE_URL=base_url, INBOX_API_TOKEN=SECRET)


def count_ids(body: dict[str, Any]) -> int:
    return sum(len(body.get(k, ())) for k in ("usernames", "platformIds", "externalIds", "leads"))


def stdout_json(result: CliResult) -> dict[str, Any]:
    """stdout must be exactly one JSON line (`... --json | jq .added` works)."""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def no_traceback_no_token(*texts: str | bytes) -> None:
    for text in texts:
        raw = text.encode() if isinstance(text, str) else text
        assert b"Traceback" not in raw, raw.decode("utf-8", "replace")
        assert SECRET.encode() not in raw, "token leaked"


def run_with_pty_stderr(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout a pipe); (code, stdout, terminal output)."""
    import pty  # POSIX only: importing it at the top would break collection on Windows

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            cwd=cwd,
        )
        os.close(slave)
        slave = -1
        reader.start()
        out, _ = proc.communicate(timeout=timeout)
        reader.join(timeout=10)
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode("utf-8", "replace")


def script_run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> CliResult:
    """Run the installed `inboxleads` console script, as a shell user would."""
    proc = subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        env=env or cli_env(),
        cwd=cwd,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    result = CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    assert "Traceback" not in result.stderr, result.stderr
    return result


# -- 1. --progress jsonl ------------------------------------------------------


def test_progress_jsonl_events_on_stderr_and_only_the_summary_on_stdout(
    run_cli: Run, tmp_path: Path
) -> None:
    app = create_app(SandboxConfig(token=SECRET))
    state = app.state.sandbox
    path = write_lines(
        tmp_path / "a.txt",
        ["jack", "not a handle!", "naval", "gone_one", "@JACK", "bad/one?", "44196397", "paulg"],
    )
    with loopback(failing_first(app, 1)) as server:
        result = run_cli(
            "add",
            "jsonl1",
            str(path),
            "--progress",
            "jsonl",
            "--json",
            "--batch-size",
            "3",
            "--concurrency",
            "1",
            env=token_env(server.base_url),
        )
    assert result.code == 0, result.stderr
    summary = stdout_json(result)
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert events and all(isinstance(e, dict) and "event" in e for e in events)
    names = [e["event"] for e in events]

    rejected = [e for e in events if e["event"] == "rejected"]
    assert len(rejected) == 2 == summary["rejected"]
    assert {r["text"] for r in rejected} == {"not a handle!", "bad/one?"}
    assert all(r["reason"] for r in rejected)

    delivered = [e for e in events if e["event"] == "batch_delivered"]
    assert len(delivered) == summary["batches"] == 2
    assert all({"added", "skipped", "failed"} <= d.keys() for d in delivered)
    assert sum(d["added"] for d in delivered) == summary["added"] == 4
    assert sum(d["failed"] for d in delivered) == summary["failed"] == 1

    retries = [e for e in events if e["event"] == "retry_scheduled"]
    assert len(retries) == 1 == summary["retries"]
    assert "503" in retries[0]["reason"] and 0 <= retries[0]["wait_s"] <= 1

    assert names[-1] == "summary" and names.count("summary") == 1
    final = {k: v for k, v in events[-1].items() if k not in ("event", "ts")}
    assert final == summary
    assert state.requests_by_status() == {200: 2}


def test_progress_jsonl_stderr_stays_json_when_the_api_refuses_the_token(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    env = api_env(sandbox_server, INBOX_API_TOKEN="wrong-token")
    result = run_cli("add", "jsonl2", str(path), "--progress", "jsonl", "--json", env=env)
    assert result.code == 3
    assert stdout_json(result)["exit_code"] == 3
    bad = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert not bad, f"not JSON on a --progress jsonl stream: {bad}"


# -- 2. plain, auto, none, quiet, NO_COLOR -----------------------------------


def test_progress_plain_prints_a_line_at_most_every_log_interval(
    run_cli: Run, start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    server = start_sandbox(latency_s=0.5)
    path = write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(25)])
    started = time.monotonic()
    result = run_cli(
        "add",
        "plain2",
        str(path),
        "--progress",
        "plain",
        "--log-interval",
        "1",
        "--batch-size",
        "5",
        "--concurrency",
        "1",
        env=token_env(server.base_url),
    )
    elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    assert elapsed >= 2.5
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("progress:")]
    assert 1 <= len(progress) <= elapsed / 1 + 2, progress
    shape = re.compile(
        r"progress: batches \d+/(\d+|\?) sent \d+ added \d+ .* elapsed \d+:\d\d"
        r" pct (\d+%|\?) eta (\d+:\d\d|\?)$"
    )
    assert all(shape.match(line) for line in progress), progress
    assert "added: 25" in result.stderr.splitlines()


def test_progress_auto_is_plain_when_stderr_is_not_a_terminal(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "naval"])
    result = run_cli("add", "auto1", str(path), env=api_env(sandbox_server))
    assert result.code == 0
    lines = result.stderr.splitlines()
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert not re.search("[\u2500-\u257f]", result.stderr), "a rich table on a pipe"
    # The campaign as the look-up found it, first, and again over the summary.
    assert lines[0] == 'campaign: auto1 "Sandbox campaign" (active)' and "added: 2" in lines
    assert lines.count(lines[0]) == 2
    assert lines[-1] == "All 2 unique identifiers delivered."


@pytest.mark.parametrize("flags", [["--progress", "none"], ["--quiet"], ["-q"]])
def test_progress_none_and_quiet_leave_stderr_empty_on_success(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path, flags: list[str]
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "bad one"])
    result = run_cli("add", "none1", str(path), *flags, "--json", env=api_env(sandbox_server))
    assert result.code == 0
    assert result.stderr == ""
    assert stdout_json(result)["added"] == 1


def test_progress_rich_on_a_pipe_writes_no_escape_codes_with_no_color(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    env = api_env(sandbox_server, NO_COLOR="1")
    result = run_cli("add", "rich1", str(path), "--progress", "rich", env=env)
    assert result.code == 0
    assert "\x1b" not in result.stderr and "delivered" in result.stderr


@pytest.mark.posix  # a pty
def test_progress_rich_on_a_terminal_has_no_colour_codes_with_no_color(
    sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "gone_x"])
    args = [sys.executable, "-m", "inboxleads", "add", "rich2", str(path), "--progress", "rich"]
    outputs = {}
    for no_color in (False, True):
        env = api_env(sandbox_server, TERM="xterm-256color")
        if no_color:
            env["NO_COLOR"] = "1"
        code, out, terminal = run_with_pty_stderr(args, env, tmp_path)
        assert code == 0, terminal
        no_traceback_no_token(out, terminal)
        assert "delivered" in terminal
        outputs[no_color] = terminal
    # Without NO_COLOR the same run is coloured, so the check below is not vacuous.
    assert COLOUR_SGR.search(outputs[False])
    assert not COLOUR_SGR.search(outputs[True]), COLOUR_SGR.findall(outputs[True])


# -- 3. the lock between real processes, --resume ----------------------------


def test_second_run_exits_4_and_a_wait_lock_run_resumes_after_the_first(
    start_sandbox: Callable[..., RunningSandbox],
    sandbox_server: RunningSandbox,
    tmp_path: Path,
) -> None:
    slow = start_sandbox(latency_s=0.35)
    path = write_lines(tmp_path / "a.txt", [f"h{i}" for i in range(40)])
    journal = tmp_path / "run.journal"
    args = [sys.executable, "-m", "inboxleads", "add", "lock2", str(path), "--journal"]
    args += [str(journal), "--batch-size", "4", "--concurrency", "1", "--json", "-q"]

    def start(*more: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*args, *more],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=api_env(slow),
            cwd=tmp_path,
        )

    first = start()
    try:
        deadline = time.monotonic() + 30
        while slow.state.max_in_flight < 1:
            assert first.poll() is None and time.monotonic() < deadline, "no request made"
            time.sleep(0.02)

        # The same command (pointed at another server, to see that it sends nothing).
        started = time.monotonic()
        second = subprocess.run(
            args, env=api_env(sandbox_server), capture_output=True, cwd=tmp_path, timeout=30
        )
        assert second.returncode == 4, second.stderr
        assert time.monotonic() - started < 10
        assert b"another inboxleads run" in second.stderr and b"--wait-lock" in second.stderr
        no_traceback_no_token(second.stdout, second.stderr)
        assert sandbox_server.state.total_requests() == 0
        assert first.poll() is None, "the first run ended before the second was refused"

        launched = time.monotonic()
        third = start("--wait-lock")
        out3, err3 = third.communicate(timeout=60)
        ended = time.monotonic()
        out1, err1 = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    no_traceback_no_token(out1, err1, out3, err3)
    assert first.returncode == 0 and third.returncode == 0, (err1, err3)
    one = json.loads(out1.decode().splitlines()[-1])
    three = json.loads(out3.decode().splitlines()[-1])
    assert one["delivered"] == 40 and one["upload_requests"] == 10
    assert (three["resumed"], three["unique"], three["upload_requests"]) == (40, 40, 0)
    assert slow.state.total_requests() == 10
    # The --wait-lock run was started before the first run's last answer and ended after it.
    last_answer = slow.state.last_answer
    assert last_answer is not None and launched < last_answer < ended


def test_resume_keeps_its_journal_under_xdg_state_home(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "naval", "paulg", "12345"])
    state = tmp_path / "state"
    env = api_env(sandbox_server, XDG_STATE_HOME=str(state))
    first = run_cli("add", "resume1", str(path), "--resume", "--json", env=env)
    assert first.code == 0 and first.summary["delivered"] == 4
    journals = list((state / "inboxleads" / "journals").iterdir())
    journal = [p for p in journals if p.suffix == ".journal"]
    assert [p.name[:8] for p in journal] == ["resume1-"]
    assert_private(journal[0])
    again = run_cli("add", "resume1", str(path), "--resume", "--json", env=env)
    summary = again.summary
    assert again.code == 0
    assert (summary["resumed"], summary["unique"], summary["upload_requests"]) == (4, 4, 0)
    assert len(sandbox_server.state.received("resume1")) == 4


# -- 4. the README's cron recipe ----------------------------------------------


def _cron_command(workdir: Path) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```cron\n(.*?)```", readme, re.S)
    assert block, "no ```cron block in README.md"
    entries = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(entries) == 1, entries
    command = entries[0].split(None, 5)[5]  # drop the five schedule fields
    command = command.replace("/srv/leads/.venv/bin/inboxleads", shlex.quote(str(SCRIPT)))
    return command.replace("/srv/leads", shlex.quote(str(workdir)))


@pytest.mark.posix  # a /bin/sh stand-in for mail, made executable
@pytest.mark.bash
def test_readme_cron_recipe_syncs_then_resumes_everything(
    sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    workdir = tmp_path / "leads"
    workdir.mkdir()
    (workdir / "export.csv").write_text(
        "name,twitter,company\nAda,@ada_l,Acme\nBob,https://x.com/bob_b,Beta\n"
        "Gone,gone_c,Gamma\nBad,not a handle,Delta\nAda again,ADA_L,Acme\n",
        encoding="utf-8",
    )
    (workdir / ".env").write_text(
        f"INBOX_API_TOKEN={SECRET}\nINBOX_BASE_URL={sandbox_server.base_url}\n"
    )
    # `mail` runs only on failure: a stand-in on PATH tells us if it ever ran.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mailed = tmp_path / "mailed"
    (bin_dir / "mail").write_text(f"#!/bin/sh\ncat > {shlex.quote(str(mailed))}\n")
    (bin_dir / "mail").chmod(0o755)
    env = cli_env(
        XDG_STATE_HOME=str(tmp_path / "state"),
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    assert not any(k.startswith("INBOX_") for k in env)
    command = _cron_command(workdir)

    summaries = []
    for _ in range(2):
        proc = subprocess.run(
            ["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"" and proc.stderr == b""  # all of it went to sync.log
        log = (workdir / "sync.log").read_text()
        summaries.append(json.loads(log.splitlines()[-1]))

    first, second = summaries
    assert (first["exit_code"], first["unique"], first["delivered"]) == (0, 3, 3)
    assert (first["rejected"], first["duplicates"]) == (1, 1)
    received = sandbox_server.state.received("c0ffee42")
    assert sorted(v for _, v in received) == ["ada_l", "bob_b", "gone_c"]
    assert sandbox_server.state.bodies("c0ffee42")[0]["leads"][0]["data"]["company"] == "Acme"
    assert (second["resumed"], second["unique"], second["upload_requests"]) == (3, 3, 0)
    assert len((workdir / "sync.log").read_text().splitlines()) == 2
    assert not mailed.exists(), "mail ran after a successful sync"
    for written in [*workdir.iterdir(), *(tmp_path / "state").rglob("*")]:
        if written.is_file() and written.name != ".env":
            assert SECRET.encode() not in written.read_bytes(), f"token in {written}"


# -- 5. secrets ---------------------------------------------------------------


def test_token_file_uses_the_first_line_stripped(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    token_file = tmp_path / "token.txt"
    token_file.write_text(f"  {SECRET}  \r\nsecond line is not the token\n")
    env = cli_env(INBOX_BASE_URL=sandbox_server.base_url)
    result = run_cli("add", "tf1", str(path), "--token-file", str(token_file), env=env)
    assert result.code == 0, result.stderr
    assert sandbox_server.state.received("tf1") == [("username", "jack")]


def test_token_dash_reads_the_token_from_stdin_when_leads_come_from_a_file(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "naval"])
    env = cli_env(INBOX_BASE_URL=sandbox_server.base_url)
    result = run_cli(
        "add", "td1", str(path), "--token", "-", "--json", stdin=SECRET + "\n", env=env
    )
    assert result.code == 0, result.stderr
    assert result.summary["added"] == 2


@pytest.mark.parametrize("inputs", [[], ["-"]], ids=["no-input", "dash-input"])
def test_token_dash_with_leads_on_stdin_is_a_usage_error(
    run_cli: Run, sandbox_server: RunningSandbox, inputs: list[str]
) -> None:
    env = cli_env(INBOX_BASE_URL=sandbox_server.base_url)
    result = run_cli("add", "td2", *inputs, "--token", "-", stdin=f"{SECRET}\njack\n", env=env)
    assert result.code == 2
    assert "--token -" in result.stderr and "stdin" in result.stderr
    assert sandbox_server.state.total_requests() == 0


def test_token_on_the_command_line_warns_in_a_log_file_too(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    """A cron log is where a token in `ps` matters: the warning does not need a terminal
    (and is an event of its own with --progress jsonl)."""
    path = write_lines(tmp_path / "a.txt", ["jack"])
    env = cli_env(INBOX_BASE_URL=sandbox_server.base_url)
    result = run_cli("add", "tw1", str(path), "--token", SECRET, env=env)
    assert result.code == 0
    assert "warning: a token on the command line shows in `ps`" in result.stderr
    assert SECRET not in result.stderr
    jsonl = run_cli("add", "tw1", str(path), "--token", SECRET, "--progress", "jsonl", env=env)
    events = [json.loads(line) for line in jsonl.stderr.splitlines()]
    assert any("shows in `ps`" in e.get("text", "") for e in events)
    quiet = run_cli("add", "tw1", str(path), "--token", SECRET, "--quiet", env=env)
    assert quiet.stderr == ""


@pytest.mark.posix  # a pty
def test_token_on_the_command_line_warns_on_a_terminal(
    sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    args = [sys.executable, "-m", "inboxleads", "add", "tw2", str(path), "--token", SECRET]
    env = cli_env(INBOX_BASE_URL=sandbox_server.base_url, TERM="dumb")
    code, out, terminal = run_with_pty_stderr([*args, "--progress", "none"], env, tmp_path)
    assert code == 0, terminal
    no_traceback_no_token(out, terminal)
    assert "warning" in terminal and "ps" in terminal and "--token-file" in terminal
    # --quiet keeps only errors: no warning either.
    code, out, terminal = run_with_pty_stderr([*args, "--quiet"], env, tmp_path)
    assert (code, terminal) == (0, "")


def test_refused_token_message_does_not_contain_the_token(run_cli: Run, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    with RunningSandbox(SandboxConfig(token="the-right-token")) as server:
        result = run_cli("add", "t401", str(path), "--json", env=token_env(server.base_url))
    assert result.code == 3
    assert "401" in result.stderr and "token" in result.stderr
    assert SECRET not in result.stderr


def _echoing_401_app() -> Starlette:
    """A server whose 401 repeats the token it was given, as some gateways do."""

    async def leads(request: Request) -> Response:
        given = request.headers.get("authorization", "")
        error = {"code": "UNAUTHORIZED", "message": f"invalid credentials: {given}"}
        return JSONResponse({"error": error}, status_code=401)

    return Starlette(
        routes=[
            Route(API_PREFIX + LEADS_PATH.replace("{campaign}", "{c}"), leads, methods=["POST"])
        ]
    )


def test_refused_token_message_hides_a_token_the_server_echoes(
    run_cli: Run, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    with loopback(_echoing_401_app()) as server:
        result = run_cli("add", "t401e", str(path), env=token_env(server.base_url))
    assert result.code == 3
    assert SECRET not in result.stderr


@pytest.mark.posix  # file modes and the umask
def test_written_files_are_private_even_with_umask_022(
    run_cli: Run, sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "gone_a", "naval", "not a handle!"])
    out = tmp_path / "out"
    out.mkdir()
    files = {
        "--rejects": out / "rejects.csv",
        "--undelivered": out / "undelivered.txt",
        "--journal": out / "run.journal",
        "--explain-failures": out / "failed.csv",
    }
    # A file that already exists with a public mode must not stay public either.
    files["--rejects"].write_text("old\n")
    files["--rejects"].chmod(0o644)
    args = [arg for option, file in files.items() for arg in (option, str(file))]
    previous = os.umask(0o022)
    try:
        result = run_cli("add", "priv1", str(path), *args, env=api_env(sandbox_server))
    finally:
        os.umask(previous)
    assert result.code == 0, result.stderr
    assert "not a handle!" in files["--rejects"].read_text()
    assert "gone_a" in files["--explain-failures"].read_text()
    written = sorted(p for p in out.iterdir() if p.is_file())
    assert set(files.values()) <= set(written)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert set(modes.values()) == {"0o600"}, modes


# -- 6. redirects -------------------------------------------------------------


class Recorder:
    """A loopback endpoint that records what it received and answers 200 with counts."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    async def answer(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append((request.url.path, dict(request.headers), body))
        count = count_ids(json.loads(body)) if body else 0
        return JSONResponse({"added": count, "skipped": 0, "failed": 0})


def test_cross_origin_redirect_is_refused_and_never_followed(run_cli: Run, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack", "naval"])
    target = Recorder()
    target_app = Starlette(routes=[Route("/{rest:path}", target.answer, methods=["GET", "POST"])])
    with loopback(target_app) as second:
        origin_seen: list[dict[str, str]] = []

        async def redirect(request: Request) -> Response:
            origin_seen.append(dict(request.headers))
            return RedirectResponse(second.origin + "/elsewhere" + request.url.path, 307)

        first_app = Starlette(routes=[Route("/{rest:path}", redirect, methods=["POST"])])
        with loopback(first_app) as first:
            result = run_cli(
                "add",
                "redir1",
                str(path),
                "--json",
                "--undelivered",
                "left.txt",
                env=token_env(first.base_url),
            )
    assert origin_seen and origin_seen[0]["authorization"] == f"Bearer {SECRET}"
    # Neither the leads nor the token went to the host the user did not configure.
    assert target.requests == []
    assert result.code == 3 and "--base-url" in result.stderr and "307" in result.stderr
    # The look-up met the redirect first (a warning), then the upload's request did.
    assert result.summary["undelivered"] == 2 and result.summary["upload_requests"] == 1
    assert result.summary["lookup_requests"] == 1
    assert (tmp_path / "left.txt").read_text().split() == ["jack", "naval"]


def test_same_origin_redirect_is_refused_too(run_cli: Run, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.txt", ["jack"])
    moved = Recorder()

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/moved" + request.url.path, 307)

    app = Starlette(
        routes=[
            Route("/moved/{rest:path}", moved.answer, methods=["POST"]),
            Route("/{rest:path}", redirect, methods=["POST"]),
        ]
    )
    with loopback(app) as server:
        result = run_cli("add", "redir2", str(path), "--json", env=token_env(server.base_url))
    assert moved.requests == []
    assert result.code == 3 and "/moved/api/v1/campaigns/v2/redir2/leads" in result.stderr


# -- 7. shell niceties --------------------------------------------------------


def test_top_level_help_lists_the_commands() -> None:
    result = script_run("--help")
    assert result.code == 0
    assert "add" in result.stdout and "sandbox" in result.stdout


def test_add_help_has_examples_and_exit_codes() -> None:
    result = script_run("add", "--help")
    assert result.code == 0
    assert "Examples" in result.stdout and "Exit codes" in result.stdout
    assert "--progress" in result.stdout and "--wait-lock" in result.stdout


def test_sandbox_help_lists_its_options() -> None:
    result = script_run("sandbox", "--help")
    assert result.code == 0
    assert "--port" in result.stdout and "--error-rate" in result.stdout


def test_python_m_version_prints_the_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "inboxleads", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.strip() == f"inboxleads {inboxleads.__version__}"


def test_every_option_of_every_command_has_help_text() -> None:
    group = typer.main.get_command(inboxleads.cli.app)
    # Typer may bring its own copy of click: recognise a group by its commands.
    commands: dict[str, Any] = {"(root)": group, **getattr(group, "commands", {})}
    assert {"add", "sandbox"} <= commands.keys()
    missing = [
        f"{name} {param.name}"
        for name, command in commands.items()
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, missing
    assert all((c.help or "").strip() for c in commands.values())


@pytest.mark.posix  # SIGTERM to the sandbox's process
def test_sandbox_command_prints_its_url_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(SCRIPT), "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        base_url = None
        deadline = time.monotonic() + 20
        while base_url is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no export line"
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            line = proc.stdout.readline().decode() if ready else ""
            assert line or proc.poll() is None, "the sandbox exited"
            match = re.fullmatch(r"export INBOX_BASE_URL=(http://127\.0\.0\.1:\d+/api/v1)\n", line)
            base_url = match.group(1) if match else None
        assert not base_url.endswith(":0/api/v1")
        with httpx.Client(timeout=10) as http:
            answer = http.post(
                base_url + "/campaigns/v2/sb1/leads",
                json={"platform": "twitter", "usernames": ["jack", "gone_x"]},
                headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
            )
            assert answer.json() == {"added": 1, "skipped": 0, "failed": 1}
            state = http.get(base_url + "/_sandbox/state").json()
        assert "sb1" in json.dumps(state)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


@pytest.mark.posix  # a pty
def test_token_dash_on_a_terminal_is_read_without_echo(
    sandbox_server: RunningSandbox, tmp_path: Path
) -> None:
    """`--token -` typed at a terminal: a prompt, no echo, and the terminal put back."""
    import pty  # POSIX only, as above

    path = write_lines(tmp_path / "a.txt", ["jack"])
    master, slave = pty.openpty()
    env = cli_env(INBOX_BASE_URL=sandbox_server.base_url, TERM="dumb")
    args = [sys.executable, "-m", "inboxleads", "add", "tty1", str(path), "--token", "-"]
    proc = subprocess.Popen(
        [*args, "--progress", "none", "--json"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        cwd=tmp_path,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"API token (not shown): " not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 4096)
        os.write(master, SECRET.encode() + b"\n")
        out, _ = proc.communicate(timeout=60)
        with contextlib.suppress(OSError):
            while select.select([master], [], [], 0.2)[0]:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0, seen
    assert SECRET.encode() not in seen
    assert json.loads(out.splitlines()[-1])["delivered"] == 1
