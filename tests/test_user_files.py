"""The user's files and inputs, end to end: nothing overwritten, nothing too big, nothing
misread.

Every case runs the real command in a subprocess against a sandbox served from this
test process over loopback, and checks the exit code, that the inputs are byte for
byte unchanged, and what the server received (counted by the server, not taken
from the summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from inboxleads.sandbox import SandboxConfig

from .conftest import SECRET, CliResult, Run, api_env, cli_env, symlink_or_skip, write_lines
from .sandbox_server import RunningSandbox


@contextmanager
def sandbox(**config: int) -> Iterator[RunningSandbox]:
    with RunningSandbox(SandboxConfig(token=SECRET, **config)) as server:
        yield server


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes (inputs must not change)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def nothing_sent(result: CliResult, server: RunningSandbox) -> None:
    assert server.state.total_requests() == 0
    summary = result.summary
    assert (summary["requests"], summary["delivered"], summary["exit_code"]) == (0, 0, 2)


def usernames_received(server: RunningSandbox, campaign: str) -> list[str]:
    return [value.lower() for kind, value in server.state.received(campaign)]


# -- 1. an output that is an input --------------------------------------------------------


@pytest.mark.parametrize("option", ["--rejects", "--undelivered", "--explain-failures"])
@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    run_cli: Run, tmp_path: Path, option: str, spelling: str
) -> None:
    data = write_lines(tmp_path / "in.txt", ["jack", "not a handle!", "naval"])
    if spelling == "symlink":
        symlink_or_skip(tmp_path / "link.txt", "in.txt")
    os.link(data, tmp_path / "hard.txt")
    target = {"same": "in.txt", "dot": "./in.txt", "symlink": "link.txt", "hardlink": "hard.txt"}
    before = snapshot(tmp_path)
    with sandbox() as server:
        result = run_cli(
            "add", "inout1", "in.txt", option, target[spelling], "--json", env=api_env(server)
        )
        assert result.code == 2, result.stderr
        assert f"{option} {Path(target[spelling])}: is an input of this run" in result.stderr
        nothing_sent(result, server)
    assert snapshot(tmp_path) == before


def test_an_output_that_is_the_file_on_stdin_is_refused(tmp_path: Path) -> None:
    """`inboxleads add c - --rejects in.txt < in.txt`: stdin is that file."""
    data = write_lines(tmp_path / "in.txt", ["jack", "not a handle!"])
    before = snapshot(tmp_path)
    with sandbox() as server, data.open("rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-m", "inboxleads", "add", "inout5", "--rejects", "in.txt"],
            stdin=stdin,
            capture_output=True,
            env=api_env(server),
            cwd=tmp_path,
            timeout=60,
        )
        assert server.state.total_requests() == 0
    assert proc.returncode == 2
    assert b"--rejects in.txt: is an input of this run (stdin)" in proc.stderr
    assert snapshot(tmp_path) == before


def test_two_options_naming_one_file_are_refused(run_cli: Run, tmp_path: Path) -> None:
    write_lines(tmp_path / "in.txt", ["jack"])
    with sandbox() as server:
        result = run_cli(
            "add",
            "inout2",
            "in.txt",
            "--rejects",
            "out.csv",
            "--undelivered",
            "./out.csv",
            "--json",
            env=api_env(server),
        )
        assert result.code == 2
        assert "--undelivered and --rejects name the same file" in result.stderr
        nothing_sent(result, server)
    assert not (tmp_path / "out.csv").exists()


def test_a_report_replaces_its_file_only_when_complete(run_cli: Run, tmp_path: Path) -> None:
    """The old rejects file stays whole until the new one is moved into place."""
    write_lines(tmp_path / "in.txt", ["jack", "bad one!"])
    (tmp_path / "rejects.csv").write_text("yesterday's rejects\n")
    with sandbox() as server:
        result = run_cli("add", "inout3", "in.txt", "--rejects", "rejects.csv", env=api_env(server))
    assert result.code == 0, result.stderr
    rows = list(csv.reader(io.StringIO((tmp_path / "rejects.csv").read_text())))
    assert rows[0] == ["source", "line", "reason", "text"] and rows[1][1:4:2] == ["2", "bad one!"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "rejects.csv"]


def test_a_run_that_never_began_leaves_earlier_reports_alone(run_cli: Run, tmp_path: Path) -> None:
    write_lines(tmp_path / "in.txt", ["jack"])
    (tmp_path / "left.txt").write_text("naval\n")
    (tmp_path / "sync.journal").write_text("not a journal\n")
    result = run_cli(
        "add",
        "inout4",
        "in.txt",
        "--sandbox",
        "--undelivered",
        "left.txt",
        "--journal",
        "sync.journal",
    )
    assert result.code == 2
    assert (tmp_path / "left.txt").read_text() == "naval\n"


# -- 2. a journal that is not one -----------------------------------------------------------


@pytest.mark.parametrize(
    ("journal", "message"),
    [
        ("notes.txt", "notes.txt: not an inboxleads journal (left unchanged)"),
        ("nowhere/x.journal", "--journal nowhere/x.journal: the folder nowhere does not exist"),
        ("in.txt", "--journal in.txt: is an input of this run"),
    ],
)
def test_a_journal_that_cannot_be_this_runs_is_refused_and_nothing_changes(
    run_cli: Run, tmp_path: Path, journal: str, message: str
) -> None:
    write_lines(tmp_path / "in.txt", ["jack"])
    (tmp_path / "notes.txt").write_bytes(b"meeting notes\nlast line without newline")
    before = snapshot(tmp_path)
    with sandbox() as server:
        result = run_cli(
            "add", "jn1", "in.txt", "--journal", journal, "--json", env=api_env(server)
        )
        assert result.code == 2
        assert message in result.stderr
        nothing_sent(result, server)
    assert snapshot(tmp_path) == before  # no lock file either


# -- 3. every file problem has a clear ending -----------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rejects", "missing_dir/x.csv"], "--rejects missing_dir/x.csv: the folder"),
        (["--explain-failures", "missing/f.csv"], "--explain-failures missing/f.csv: the folder"),
        (["--ca-bundle", "nonexistent.pem"], "--ca-bundle nonexistent.pem: No such file"),
        (["--ca-bundle", "in.txt"], "--ca-bundle in.txt: cannot be read as PEM certificates"),
        (["--ca-bundle", "."], "--ca-bundle .: not a file of certificates"),
        (["--encoding", "klingon"], "--encoding 'klingon': unknown encoding"),
        (["--encoding", "rot13"], "--encoding 'rot13': not a text encoding"),
        (["--encoding", "idna"], "--encoding 'idna': cannot read lines of text"),
        (["--encoding", "undefined"], "--encoding 'undefined': cannot read lines of text"),
        (["--max-attempts", "101"], "--max-attempts must be between 1 and 100"),
        (["--max-request-bytes", "10"], "--max-request-bytes must be at least 1024"),
        (["--rejects", "x" * 300 + "/a.csv"], "File name too long"),
        (["--journal", "j" * 252], "the file name is too long for its folder"),
    ],
)
def test_a_bad_file_option_is_one_line_and_a_summary(
    run_cli: Run, tmp_path: Path, args: list[str], message: str
) -> None:
    write_lines(tmp_path / "in.txt", ["jack"])
    with sandbox() as server:
        result = run_cli("add", "ose1", "in.txt", *args, "--json", env=api_env(server))
        assert result.code == 2, result.stderr
        assert message in result.stderr
        assert "internal error" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        nothing_sent(result, server)


def test_a_missing_input_still_prints_the_json_summary(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("add", "ose2", "missing.txt", "--sandbox", "--json")
    assert result.code == 2
    assert "missing.txt: no such file" in result.stderr
    assert result.summary["exit_code"] == 2


# -- 4. request size ------------------------------------------------------------------------


def big_rows_csv(path: Path, rows: int, text_bytes: int, start: int = 0) -> Path:
    """A CSV of `rows` leads, each with about `text_bytes` of notes."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["username", "notes"])
        for i in range(start, start + rows):
            writer.writerow([f"big{i:05d}", f"{i:05d}" + "x" * (text_bytes - 5)])
    return path


def test_a_413_splits_the_batch_until_the_server_takes_it(run_cli: Run, tmp_path: Path) -> None:
    big_rows_csv(tmp_path / "big.csv", rows=300, text_bytes=12_000)
    before = snapshot(tmp_path)
    with sandbox(max_body_bytes=1_000_000) as server:
        result = run_cli("add", "size1", "big.csv", "--json", env=api_env(server))
        statuses = server.state.requests_by_status()
        received = usernames_received(server, "size1")
        bodies = server.state.bodies("size1")
    assert result.code == 0, result.stderr
    assert sorted(received) == [f"big{i:05d}" for i in range(300)]  # each once
    assert statuses[413] >= 1 and statuses[200] == len(bodies)
    summary = result.summary
    assert (summary["delivered"], summary["undelivered"], summary["added"]) == (300, 0, 300)
    assert summary["batches"] == len(bodies)
    assert summary["upload_requests"] == statuses[200] + statuses[413]
    assert "too large for the server" in result.stderr and "sending it in halves" in result.stderr
    said = re.search(
        r"([\d,]+) requests were too large for the server \(the smallest ([\d,]+)", result.stderr
    )
    assert said and int(said.group(1).replace(",", "")) == statuses[413]
    assert int(said.group(2).replace(",", "")) > 1_000_000
    assert snapshot(tmp_path) == before


def test_batches_are_cut_by_bytes_so_no_413_comes(run_cli: Run, tmp_path: Path) -> None:
    big_rows_csv(tmp_path / "big.csv", rows=200, text_bytes=12_000)
    with sandbox(max_body_bytes=1_000_000) as server:
        dry = run_cli(
            "add", "size2", "big.csv", "--dry-run", "--max-request-bytes", "900000", "--json"
        )
        result = run_cli(
            "add", "size2", "big.csv", "--max-request-bytes", "900000", env=api_env(server)
        )
        statuses = server.state.requests_by_status()
        received = usernames_received(server, "size2")
        bodies = server.state.bodies("size2")
    assert result.code == 0, result.stderr
    assert statuses == {200: len(bodies)}
    assert sorted(received) == [f"big{i:05d}" for i in range(200)]
    report = dry.summary
    assert report["max_request_bytes"] == 900_000
    assert report["batches"] == statuses[200] and report["batches_cut_by_size"] >= 2
    assert 800_000 < report["largest_request_bytes"] <= 900_000
    assert "batches cut at --max-request-bytes 900,000" in dry.stderr


def test_one_lead_too_large_alone_is_undelivered_with_the_servers_reason(
    run_cli: Run, tmp_path: Path
) -> None:
    path = tmp_path / "leads.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["username", "notes"])
        writer.writerows([["small1", "hi"], ["huge1", "y" * 300_000], ["small2", "yo"]])
    with sandbox(max_body_bytes=100_000) as server:
        result = run_cli(
            "add", "size3", "leads.csv", "--undelivered", "left.csv", "--json", env=api_env(server)
        )
        received = usernames_received(server, "size3")
    assert result.code == 1
    assert sorted(received) == ["small1", "small2"]
    summary = result.summary
    assert (summary["delivered"], summary["undelivered"]) == (2, 1)
    [reason] = summary["undelivered_reasons"]
    assert reason.startswith("rejected by the server: 413: PAYLOAD_TOO_LARGE")
    left = list(csv.DictReader(io.StringIO((tmp_path / "left.csv").read_text())))
    assert [row["username"] for row in left] == ["huge1"]


class CuttingProxy:
    """A server that closes the connection, unanswered, on a body over `limit` bytes (as
    some proxies do) and answers smaller ones, and the campaign look-up, as the API
    would; it counts what it took."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cut = 0
        self.received: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/api/v1"
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length > self.limit:
                    self.cut += 1
                    return  # closed without reading the body
                if head.startswith(b"GET "):  # the campaign look-up
                    answer = json.dumps({"name": "Proxied", "status": "active"}).encode()
                else:
                    body = json.loads(await reader.readexactly(length))
                    leads = [x["username"] for x in body.get("leads", [])]
                    names = body.get("usernames", []) + leads
                    self.received.extend(names)
                    answer = json.dumps({"added": len(names), "skipped": 0, "failed": 0}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, sock=self._sock), self._loop
        )
        self._server = started.result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._sock.close()


def test_a_connection_cut_while_sending_a_large_body_splits_it(
    run_cli: Run, tmp_path: Path
) -> None:
    big_rows_csv(tmp_path / "big.csv", rows=240, text_bytes=12_000)
    with CuttingProxy(limit=1_200_000) as proxy:
        env = cli_env(INBOX_BASE_URL=proxy.base_url, INBOX_API_TOKEN=SECRET)
        result = run_cli("add", "size4", "big.csv", "--json", env=env)
    assert result.code == 0, result.stderr
    assert proxy.cut >= 1
    assert sorted(proxy.received) == [f"big{i:05d}" for i in range(240)]
    summary = result.summary
    assert (summary["delivered"], summary["retries"]) == (240, 0)


# -- 5. journals follow what was sent, not file names ----------------------------------------


def test_a_rotated_symlink_resumes_its_journal(run_cli: Run, tmp_path: Path) -> None:
    write_lines(tmp_path / "export-day1.txt", ["a1", "b1", "c1", "d1"])
    write_lines(tmp_path / "export-day2.txt", ["a1", "b1", "c1", "d1", "e1", "f1"])
    latest = tmp_path / "latest.txt"
    common = ["--batch-size", "2", "--json"]
    with sandbox() as server:
        symlink_or_skip(latest, "export-day1.txt")
        day1 = run_cli(
            "add", "rot1", "latest.txt", "--journal", "sync.journal", *common, env=api_env(server)
        )
        latest.unlink()
        symlink_or_skip(latest, "export-day2.txt")
        day2 = run_cli(
            "add", "rot1", "latest.txt", "--journal", "sync.journal", *common, env=api_env(server)
        )
        received = usernames_received(server, "rot1")
    assert (day1.code, day2.code) == (0, 0), day2.stderr
    assert (tmp_path / "export-day1.txt").read_text() == "a1\nb1\nc1\nd1\n"
    assert (day2.summary["resumed"], day2.summary["delivered"]) == (4, 2)
    assert received == ["a1", "b1", "c1", "d1", "e1", "f1"]  # nothing sent twice


def test_resume_keeps_one_journal_for_a_rotated_symlink(run_cli: Run, tmp_path: Path) -> None:
    write_lines(tmp_path / "export-day1.txt", ["a2", "b2"])
    write_lines(tmp_path / "export-day2.txt", ["a2", "b2", "c2", "d2"])
    latest = tmp_path / "latest.txt"
    state = tmp_path / "state"
    with sandbox() as server:
        env = api_env(server, XDG_STATE_HOME=str(state))
        symlink_or_skip(latest, "export-day1.txt")
        run_cli("add", "rot2", "latest.txt", "--resume", "--batch-size", "2", env=env)
        latest.unlink()
        symlink_or_skip(latest, "export-day2.txt")
        day2 = run_cli(
            "add", "rot2", "latest.txt", "--resume", "--batch-size", "2", "--json", env=env
        )
        received = usernames_received(server, "rot2")
    assert day2.code == 0
    assert (day2.summary["resumed"], day2.summary["delivered"]) == (2, 2)
    assert received == ["a2", "b2", "c2", "d2"]
    journals = [p for p in state.rglob("*.journal")]
    assert len(journals) == 1


# -- 6. nothing read is not success ---------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [["jack@example.com", "naval@example.com"], ["jack, naval, biz"]],
    ids=["emails", "handles-on-one-line"],
)
def test_a_run_where_every_record_is_rejected_exits_2(
    run_cli: Run, tmp_path: Path, lines: list[str]
) -> None:
    write_lines(tmp_path / "in.txt", lines)
    before = snapshot(tmp_path)
    with sandbox() as server:
        result = run_cli("add", "rej1", "in.txt", "--json", env=api_env(server))
        assert result.code == 2
        assert "every record read was rejected" in result.stderr
        summary = result.summary
        assert (summary["read"], summary["rejected"], summary["upload_requests"]) == (
            len(lines),
            len(lines),
            0,
        )
        assert server.state.total_requests() == 0
    assert snapshot(tmp_path) == before


def test_an_empty_file_is_an_empty_run(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    result = run_cli("add", "rej2", "empty.txt", "--sandbox", "--json")
    assert result.code == 0
    assert result.summary["read"] == 0


def test_no_input_and_stdin_from_dev_null_is_a_usage_error(tmp_path: Path) -> None:
    """As under cron with an empty $EXPORT: stdin is /dev/null, not a list of leads."""
    with open(os.devnull, "rb") as null:
        proc = subprocess.run(
            [sys.executable, "-m", "inboxleads", "add", "rej3", "--sandbox", "--json"],
            stdin=null,
            capture_output=True,
            env=cli_env(),
            cwd=tmp_path,
            timeout=60,
        )
    assert proc.returncode == 2
    assert b"no input: stdin is not a pipe or a file" in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["exit_code"] == 2


@pytest.mark.parametrize("kind", ["lines", "csv"])
def test_classic_mac_line_endings_are_line_endings(run_cli: Run, tmp_path: Path, kind: str) -> None:
    name, text = {
        "lines": ("in.txt", "jack\rnaval\r@biz\r"),
        "csv": ("in.csv", "username,company\rjack,Acme\rnaval,Angel\r"),
    }[kind]
    (tmp_path / name).write_bytes(text.encode())
    before = snapshot(tmp_path)
    with sandbox() as server:
        result = run_cli("add", "cr1", name, "--json", env=api_env(server))
        received = usernames_received(server, "cr1")
    assert result.code == 0, result.stderr
    assert snapshot(tmp_path) == before
    assert sorted(received) == sorted(
        {"lines": ["jack", "naval", "biz"]}.get(kind, ["jack", "naval"])
    )


# -- 7. encodings ---------------------------------------------------------------------------


def test_a_windows_excel_export_reads_with_encoding_cp1252(run_cli: Run, tmp_path: Path) -> None:
    text = "sep=;\r\nusername;name\r\njack;José\r\nnaval;Zoë\r\nbiz;Bob\r\n"
    (tmp_path / "export.csv").write_bytes(text.encode("cp1252"))
    before = snapshot(tmp_path)
    with sandbox() as server:
        plain = run_cli("add", "enc1", "export.csv", "--json", env=api_env(server))
        assert plain.code == 1 or plain.code == 0
        assert plain.summary["rejected"] == 2
        assert plain.stderr.count("try --encoding cp1252") == 1
        result = run_cli(
            "add", "enc2", "export.csv", "--encoding", "cp1252", "--json", env=api_env(server)
        )
        bodies = server.state.bodies("enc2")
    assert result.code == 0, result.stderr
    names = {lead["username"]: lead["data"]["name"] for b in bodies for lead in b["leads"]}
    assert names == {"jack": "José", "naval": "Zoë", "biz": "Bob"}
    assert snapshot(tmp_path) == before


# -- 8. binary means binary -----------------------------------------------------------------


def test_one_line_with_a_nul_is_one_rejection(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"jack\nna\x00val\nbiz\n")
    before = snapshot(tmp_path)
    with sandbox() as server:
        result = run_cli("add", "nul1", "in.txt", "--json", env=api_env(server))
        received = usernames_received(server, "nul1")
    assert result.code == 0, result.stderr
    assert sorted(received) == ["biz", "jack"]
    assert result.summary["rejected"] == 1
    assert snapshot(tmp_path) == before


def test_a_real_binary_is_still_refused(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with sandbox() as server:
        result = run_cli("add", "nul2", "photo.png", "--json", env=api_env(server))
        assert result.code == 2
        assert "binary" in result.stderr
        nothing_sent(result, server)


# -- memory ----------------------------------------------------------------------------------

# Runs the command given and prints its exit status and peak RSS (KiB). A child's peak
# counts the memory of the process it was started from, so the command is started
# from this small launcher, not from the test process. macOS counts ru_maxrss in bytes.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
kib = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
print(os.waitstatus_to_exitcode(status), kib)
"""


def peak_rss_mb(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float]:
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "inboxleads", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    code, kib = proc.stdout.split()
    return int(code), int(kib) / 1024


@pytest.mark.posix  # os.wait4 and its resource usage
def test_memory_is_bounded_by_the_batches_in_flight_not_by_the_file(tmp_path: Path) -> None:
    """A 60 MB CSV of 15 KB rows: the peak is that of a tiny file plus what is in flight."""
    big_rows_csv(tmp_path / "small.csv", rows=40, text_bytes=15_000)
    big = big_rows_csv(tmp_path / "big.csv", rows=4000, text_bytes=15_000)
    with CuttingProxy(limit=10**12) as server:
        env = cli_env(INBOX_BASE_URL=server.base_url, INBOX_API_TOKEN=SECRET)
        options = ["--quiet", "--max-request-bytes", "2000000", "--concurrency", "2"]
        small_code, small_mb = peak_rss_mb(["add", "mem1", "small.csv", *options], env, tmp_path)
        big_code, big_mb = peak_rss_mb(["add", "mem1", "big.csv", *options], env, tmp_path)
    assert (small_code, big_code) == (0, 0)
    assert len(server.received) == 4040
    file_mb = big.stat().st_size / 2**20
    # In flight: 2 requests of 2 MB, each as leads, JSON text and bytes; plus the chunks
    # the reader holds. Far less than the file.
    assert big_mb - small_mb < 30, (small_mb, big_mb, file_mb)


# -- found by trying to break it ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'username,note\nalice,"see attachment\x00\ninnocent3\n"\nbob,ok\n',
        'username,note\nalice,"' + ("x" * 1000 + "\n") * 1100 + 'innocent3\n"\nbob,ok\n',
        'username,note\nalice,"' + "x" * (1024 * 1024 + 5) + '\ninnocent3\n"\nbob,ok\n',
    ],
    ids=["nul-in-a-quoted-cell", "record-over-1-mib", "line-over-1-mib-in-a-quoted-cell"],
)
def test_text_inside_a_quoted_cell_is_never_sent_as_leads(
    run_cli: Run, tmp_path: Path, text: str
) -> None:
    (tmp_path / "notes.csv").write_text(text)
    with sandbox() as server:
        result = run_cli("add", "inj1", "notes.csv", "--json", env=api_env(server))
        received = usernames_received(server, "inj1")
    assert result.code == 0, result.stderr
    assert received == ["bob"]
    assert (result.summary["read"], result.summary["rejected"]) == (2, 1)


@pytest.mark.parametrize("first", ["external_id", "x", "id", "username", "12345"])
def test_a_plain_undelivered_list_reads_back_whatever_its_first_name(
    run_cli: Run, tmp_path: Path, first: str
) -> None:
    """A username that looks like a column name (or a number) is written `@name`, so the
    list is not read back as a CSV whose header it is."""
    write_lines(tmp_path / "in.txt", [f"@{first}", "alice", "bob"])
    with sandbox() as server:
        refused = run_cli(
            "add", "missing1", "in.txt", "--undelivered", "left.txt", env=api_env(server)
        )
        assert refused.code == 3
        again = run_cli("add", "back1", "left.txt", "--json", env=api_env(server))
        received = server.state.received("back1")
    assert again.code == 0, again.stderr
    assert sorted(received) == sorted(
        [("username", first), ("username", "alice"), ("username", "bob")]
    )


def test_mixed_line_endings_are_all_line_endings(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "mix.txt").write_bytes(b"alice\nbob\rcarol\r\ndave\rerin\n")
    with sandbox() as server:
        result = run_cli("add", "mix1", "mix.txt", "--json", env=api_env(server))
        received = usernames_received(server, "mix1")
    assert result.code == 0, result.stderr
    assert sorted(received) == ["alice", "bob", "carol", "dave", "erin"]


def test_hard_linked_outputs_are_one_file(run_cli: Run, tmp_path: Path) -> None:
    write_lines(tmp_path / "in.txt", ["jack"])
    (tmp_path / "h1.csv").write_text("old\n")
    os.link(tmp_path / "h1.csv", tmp_path / "h2.csv")
    with sandbox() as server:
        result = run_cli(
            "add",
            "hl1",
            "in.txt",
            "--rejects",
            "h1.csv",
            "--undelivered",
            "h2.csv",
            "--json",
            env=api_env(server),
        )
        nothing_sent(result, server)
    assert "--undelivered and --rejects name the same file (h2.csv)" in result.stderr
    assert (tmp_path / "h2.csv").read_text() == "old\n"


# Windows limits a whole path to 260 characters unless long paths are enabled.
@pytest.mark.posix
def test_a_report_name_as_long_as_the_folder_allows_is_written(
    run_cli: Run, tmp_path: Path
) -> None:
    name = "r" * 250 + ".csv"
    write_lines(tmp_path / "in.txt", ["jack", "bad one!"])
    result = run_cli("add", "long1", "in.txt", "--sandbox", "--rejects", name)
    assert result.code == 0, result.stderr
    assert "bad one!" in (tmp_path / name).read_text()


@pytest.mark.posix  # a file size limit (ulimit -f)
@pytest.mark.bash
def test_quiet_still_says_every_error(run_cli: Run, tmp_path: Path) -> None:
    """The run ends on the API's refusal; the --undelivered file that hit a file size
    limit is said too, --quiet or not, and named in the summary."""
    write_lines(tmp_path / "in.txt", [f"u{i}" for i in range(5000)])
    argv = ["add", "missing2", "in.txt", "--sandbox", "-q", "--json", "--undelivered", "u.txt"]
    script = f"ulimit -f 8; exec {sys.executable} -m inboxleads " + " ".join(argv)
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=cli_env(),
    )
    assert proc.returncode == 3
    assert "--undelivered u.txt: cannot write: File too large" in proc.stderr
    assert "was not found (404)" in proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["other_errors"][0].startswith("--undelivered u.txt: cannot write")


def test_a_refused_run_ends_its_jsonl_stream_with_the_summary(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    result = run_cli("add", "js1", "photo.png", "--sandbox", "--progress", "jsonl")
    assert result.code == 2
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in events] == ["summary", "error"]
    assert events[0]["exit_code"] == 2


ONE_LINE_JSON = json.dumps([{"username": f"u{i}"} for i in range(60_000)])
NESTED = '{"username":"ok"}\n' + "[" * 50_000 + "\n"


@pytest.mark.parametrize(
    ("name", "data", "expected", "rejected"),
    [
        ("export.json", ONE_LINE_JSON.encode(), [f"u{i}" for i in range(60_000)], 0),
        ("h.csv", b'handle,"Tags; Notes; Misc"\n@jack,vip\n', ["jack"], 0),
        ("sw.csv", b"handle,note\n@a,x\n@b,y\r@c,z\n@d,w\n", ["a", "b", "c", "d"], 0),
        ("m.csv", b'handle,"Notes\n(internal)",city\n@jack,n1,SF\n', ["jack"], 0),
        (
            "t.jsonl",
            b'{"username":"jack"}\n{"username":"ev","data":{"name":"Ev \\ud83d"}}\n'
            b'{"username":"al","data":{"n":"a\\u0000b"}}\n',
            ["jack"],
            2,
        ),
        ("c.csv", b"handle,name\n@jack,J\n@ev,Ev \xed\xa0\xbd\xed\xb8\x80\n", ["jack"], 1),
        ("d.jsonl", NESTED.encode(), ["ok"], 1),
    ],
    ids=[
        "json-on-one-line",
        "delimiter-inside-a-quoted-name",
        "csv-switching-to-cr",
        "line-break-in-a-quoted-name",
        "jsonl-surrogate-and-nul",
        "cesu-8",
        "nested-json",
    ],
)
def test_inputs_of_every_shape_are_read_as_meant(
    run_cli: Run, tmp_path: Path, name: str, data: bytes, expected: list[str], rejected: int
) -> None:
    (tmp_path / name).write_bytes(data)
    with sandbox() as server:
        result = run_cli(
            "add",
            "shape1",
            name,
            "--json",
            "--rejects",
            "r.csv",
            "--undelivered",
            "u.txt",
            env=api_env(server),
        )
        received = usernames_received(server, "shape1")
    assert result.code == 0, result.stderr
    assert sorted(received) == sorted(expected)
    assert result.summary["rejected"] == rejected
    assert (tmp_path / name).read_bytes() == data


def test_an_input_named_in_bytes_that_are_not_utf8_is_reported_by_that_name(
    run_cli: Run, tmp_path: Path
) -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    (tmp_path / name).write_text("@jack\nnot a handle!\n")
    env = cli_env(XDG_STATE_HOME=str(tmp_path / "state"))
    result = run_cli(
        "add",
        "fn1",
        name,
        "--sandbox",
        "--json",
        "--rejects",
        "r.csv",
        "--resume",
        "--progress",
        "jsonl",
        env=env,
    )
    assert result.code == 0, result.stderr
    assert (tmp_path / "r.csv").read_bytes().splitlines()[1].startswith(b"caf\xe9.txt,2,")
    assert all(json.loads(line) for line in result.stderr.splitlines())


def test_undelivered_csv_cells_with_a_cr_read_back_whole(run_cli: Run, tmp_path: Path) -> None:
    """A CR in a cell (from JSON data here) is quoted in the CSV, so the row reads back
    whole; a lone CR is read as the line break it stands for."""
    (tmp_path / "in.jsonl").write_text(
        '{"username":"jack","data":{"note":"a\\rb"}}\n{"username":"ev","data":{"note":"ok"}}\n'
    )
    with sandbox() as server:
        run_cli("add", "missing3", "in.jsonl", "--undelivered", "left.csv", env=api_env(server))
        assert b'"a\rb"' in (tmp_path / "left.csv").read_bytes()
        back = run_cli("add", "cr9", "left.csv", "--json", env=api_env(server))
        bodies = server.state.bodies("cr9")
    assert back.code == 0, back.stderr
    notes = {lead["username"]: lead["data"]["note"] for b in bodies for lead in b["leads"]}
    assert notes == {"jack": "a\nb", "ev": "ok"}


def test_external_ids_beside_an_identifier_named_column_warn_how_to_read_back(
    run_cli: Run, tmp_path: Path
) -> None:
    (tmp_path / "crm.csv").write_text("external_id,twitter,name\nabc1,jack,Jack\ndef2,,Ev\n")
    with sandbox() as server:
        result = run_cli(
            "add",
            "missing4",
            "crm.csv",
            "--column",
            "external_id",
            "--undelivered",
            "left.csv",
            env=api_env(server),
        )
        back = run_cli(
            "add", "ext1", "left.csv", "--column", "external_id", "--json", env=api_env(server)
        )
        received = server.state.received("ext1")
    assert result.code == 3
    assert "left.csv: external IDs beside a data column named 'twitter'" in result.stderr
    assert sorted(received) == [("externalId", "abc1"), ("externalId", "def2")]
    assert back.code == 0


@pytest.mark.parametrize("read", ["--token-file", ".env"])
def test_a_file_the_run_reads_is_never_an_output(run_cli: Run, tmp_path: Path, read: str) -> None:
    write_lines(tmp_path / "in.txt", ["@a"])
    (tmp_path / "tok.txt").write_text("sandbox-token\n")
    (tmp_path / ".env").write_text("INBOX_API_TOKEN=sandbox-token\n")
    target = "tok.txt" if read == "--token-file" else ".env"
    extra = ["--token-file", "tok.txt"] if read == "--token-file" else []
    before = snapshot(tmp_path)
    result = run_cli("add", "tf1", "in.txt", "--sandbox", *extra, "--undelivered", target)
    assert result.code == 2
    assert f"--undelivered {target}: is the file" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_lead_larger_than_the_cap_on_its_own_is_said(run_cli: Run, tmp_path: Path) -> None:
    big_rows_csv(tmp_path / "big.csv", rows=3, text_bytes=5_000)
    result = run_cli("add", "ov1", "big.csv", "--dry-run", "--max-request-bytes", "1024")
    assert result.code == 0
    assert "3 leads are larger than --max-request-bytes (1,024) on their own" in result.stderr


# --- the journal's lock is a file of the run's own -----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rejects", "j.journal.lock"], "the lock of --journal and --rejects name the same file"),
        (["--undelivered", "./j.journal.lock"], "name the same file"),
    ],
)
def test_a_report_may_not_replace_the_journals_lock(
    run_cli: Run, tmp_path: Path, args: list[str], message: str
) -> None:
    """A report put in place of the lock would let a second run take a lock the first
    still holds: refused before anything is sent."""
    write_lines(tmp_path / "in.txt", ["jack"])
    result = run_cli("add", "lk1", "in.txt", "--sandbox", "--journal", "j.journal", *args)
    assert result.code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "j.journal").exists()


def test_an_input_named_as_the_journals_lock_is_never_locked_nor_changed(
    run_cli: Run, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "j.lock", ["jack"])
    before = path.read_bytes()
    result = run_cli("add", "lk2", "j.lock", "--sandbox", "--journal", "j")
    assert result.code == 2 and "is an input of this run" in result.stderr, result.stderr
    assert path.read_bytes() == before


@pytest.mark.posix  # a symbolic link
def test_a_lock_that_is_a_symbolic_link_is_refused_by_name(run_cli: Run, tmp_path: Path) -> None:
    write_lines(tmp_path / "in.txt", ["jack"])
    (tmp_path / "j.journal.lock").symlink_to(tmp_path / "elsewhere")
    result = run_cli("add", "lk3", "in.txt", "--sandbox", "--journal", "j.journal")
    assert result.code == 2 and "is a symbolic link" in result.stderr, result.stderr
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.posix  # folder modes
def test_the_state_directory_is_made_private_to_the_user(run_cli: Run, tmp_path: Path) -> None:
    write_lines(tmp_path / "in.txt", ["jack"])
    state = tmp_path / "state" / "deep"
    result = run_cli(
        "add",
        "st1",
        "in.txt",
        "--sandbox",
        "--resume",
        env=cli_env(INBOXLEADS_STATE_DIR=str(state)),
    )
    assert result.code == 0, result.stderr
    for folder in (tmp_path / "state", state, state / "journals"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


@pytest.mark.posix  # a closed descriptor 0
@pytest.mark.parametrize("named", [True, False], ids=["dash", "no-input"])
def test_a_closed_stdin_is_a_usage_error_whether_named_or_not(tmp_path: Path, named: bool) -> None:
    """`inboxleads add c - <&-` in a script whose stdin was closed: not an empty run
    (exit 0 would tell cron there was nothing to do)."""
    args = [sys.executable, "-m", "inboxleads", "add", "cl1", *(["-"] if named else [])]
    proc = subprocess.run(
        [*args, "--sandbox", "--json"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        timeout=60,
        preexec_fn=lambda: os.close(0),
        check=False,
    )
    assert proc.returncode == 2, proc.stderr.decode()
    assert "stdin" in proc.stderr.decode() and "closed" in proc.stderr.decode()
    assert json.loads(proc.stdout.decode().splitlines()[-1])["exit_code"] == 2


def test_a_missing_folder_behind_a_link_is_named(run_cli: Run, tmp_path: Path) -> None:
    write_lines(tmp_path / "in.txt", ["jack"])
    symlink_or_skip(tmp_path / "dang.csv", str(tmp_path / "nowhere" / "x.csv"))
    result = run_cli("add", "dl1", "in.txt", "--sandbox", "--rejects", "dang.csv")
    assert result.code == 2, result.stderr
    assert f"the folder {tmp_path / 'nowhere'} does not exist" in result.stderr


@pytest.mark.posix  # a closed descriptor 1 or 2
@pytest.mark.parametrize("closed", [1, 2], ids=["stdout", "stderr"])
def test_a_usage_error_with_a_closed_stream_goes_to_stderr_or_nowhere(
    tmp_path: Path, closed: int
) -> None:
    """`... --json --bogus 2>&- | json-reader`: the parser's usage text went to stdout
    when stderr was closed, into the reader of the JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", "inboxleads", "add", "cl2", "x.txt", "--json", "--bogus"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        timeout=60,
        preexec_fn=lambda: os.close(closed),
        check=False,
    )
    assert proc.returncode == 2
    if closed == 2:
        assert proc.stdout == b""
    else:
        assert b"No such option: --bogus" in proc.stderr


@pytest.mark.posix  # a closed descriptor 1, SIGTERM to the sandbox
def test_the_sandbox_serves_with_stdout_closed_and_ends_on_an_early_sigterm(
    tmp_path: Path,
) -> None:
    """It failed to start with 'Unable to configure formatter' (its log had no stdout);
    and a SIGTERM as soon as its URL was printed, before uvicorn took the signals over,
    was recorded and never acted on."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "inboxleads", "sandbox", "--port", "0"],
        cwd=tmp_path,
        env=cli_env(),
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1),
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert b"Sandbox listening on http://127.0.0.1:" in line, line
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.posix  # SIGHUP to the sandbox
@pytest.mark.parametrize("ignored", [False, True], ids=["hang-up", "under-nohup"])
def test_the_sandbox_ends_when_its_terminal_hangs_up(tmp_path: Path, ignored: bool) -> None:
    """A closed terminal left it serving (and holding its port) for good; under nohup,
    which ignores SIGHUP, it serves on."""
    import signal

    def child() -> None:
        if ignored:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "inboxleads", "sandbox", "--port", "0"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=child,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert "Sandbox listening on " in line, line
        base_url = line.split()[3]
        # Once it answers, uvicorn has the signals (a signal before that is replayed).
        answer = httpx.get(f"{base_url}/_sandbox/state", headers={"Authorization": "x"})
        assert answer.status_code in (200, 401)
        proc.send_signal(signal.SIGHUP)
        try:
            proc.wait(timeout=1.5 if ignored else 15)
        except subprocess.TimeoutExpired:
            assert ignored, "the sandbox served on after a hang-up"
        else:
            assert not ignored, "the sandbox ended on a hang-up it was told to ignore"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
