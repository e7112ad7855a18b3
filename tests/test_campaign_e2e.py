"""The campaign look-up end to end: `inboxleads add` in its own process against the
sandbox over real loopback HTTP, which knows the campaign's name, status and
variables, keeps each lead's data, and counts look-ups apart from uploads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from inboxleads.sandbox import SandboxCampaign

from .conftest import CliResult, api_env, write_lines
from .sandbox_server import RunningSandbox

VARIABLES = {"company-name": "Company name", "city": "City", "first-line": "First line"}
CAMPAIGN = SandboxCampaign(name="Spring outreach", status="active", variables=VARIABLES)
CSV = [
    "twitter,Company Name,CITY,note",
    "@jack,Block,San Francisco,met at the conference",
    "@paulg,Y Combinator,,",
    "naval,AngelList,Palo Alto,prefers short DMs",
]
Wrap = Callable[[Any], Any]


def failing_look_up(status: int) -> Wrap:
    """An app in front of the sandbox that answers every campaign look-up with `status`
    (the leads endpoint is the sandbox's own)."""

    def wrap(app: Any) -> Any:
        async def front(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "")
            look_up = scope["type"] == "http" and scope["method"] == "GET"
            if look_up and "/leads" not in path and path.startswith("/api/v1/campaigns/"):
                body = {"error": {"code": "X", "message": f"look-up {status}", "status": status}}
                await JSONResponse(body, status)(scope, receive, send)
                return
            await app(scope, receive, send)

        return front

    return wrap


@pytest.fixture
def server_with(
    start_sandbox: Callable[..., RunningSandbox],
) -> Callable[..., RunningSandbox]:
    """Sandboxes showing the campaign `CAMPAIGN` unless told otherwise."""

    def start(campaign: SandboxCampaign = CAMPAIGN, **options: Any) -> RunningSandbox:
        return start_sandbox(campaign=campaign, **options)

    return start


def summary_of(result: CliResult) -> dict[str, Any]:
    return json.loads(result.stdout.splitlines()[-1])


def warnings(result: CliResult) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def test_name_and_status_head_the_run_and_the_summary(
    server_with: Callable[..., RunningSandbox], run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    server = server_with()
    path = write_lines(tmp_path / "a.txt", ["@jack", "@paulg"])
    result = run_cli(
        "add", "spring1", str(path), "--json", "--progress", "plain", env=api_env(server)
    )
    assert result.code == 0, result.stderr
    summary = summary_of(result)
    assert (summary["campaign_name"], summary["campaign_status"]) == ("Spring outreach", "active")
    lines = result.stderr.splitlines()
    assert lines[0] == 'campaign: spring1 "Spring outreach" (active)'  # before anything else
    assert 'campaign: spring1 "Spring outreach" (active)' in lines[1:]  # and in the summary
    # The look-up is a request of its own, counted apart; the server saw it as one.
    assert summary["lookup_requests"] == 1 == sum(server.state.lookups().values())
    assert summary["requests"] == summary["upload_requests"] + 1
    assert summary["upload_requests"] == server.state.total_requests() == 1


def test_columns_are_sent_under_the_variables_keys_by_key_and_display_name(
    server_with: Callable[..., RunningSandbox], run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    # Display names unlike their keys, so that each match says which it went by.
    shown = {"company-name": "Organisation", "city": "Town", "first-line": "First line"}
    server = server_with(SandboxCampaign(name="Spring outreach", variables=shown))
    head = "twitter,Company_Name,TOWN,note"  # the first variable by key, the second by name
    path = write_lines(tmp_path / "a.csv", [head, *CSV[1:]])
    result = run_cli("add", "spring2", str(path), "--json", env=api_env(server))
    assert result.code == 0, result.stderr
    data = server.state.data("spring2")
    assert data[("username", "jack")] == {
        "company-name": "Block",
        "city": "San Francisco",
        "note": "met at the conference",
    }
    assert data[("username", "paulg")] == {"company-name": "Y Combinator"}
    summary = summary_of(result)
    assert summary["columns"]["data"] == {
        "Company_Name": "company-name",
        "TOWN": "city",
        "note": "note",
    }
    # first-line is in no column: said once, by its key and display name.
    (warning,) = [w for w in warnings(result) if "no column provides" in w]
    assert "first-line ('First line')" in warning and "personalisation" in warning


def test_map_beats_the_automatic_mapping(
    server_with: Callable[..., RunningSandbox], run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    server = server_with()
    path = write_lines(tmp_path / "a.csv", CSV)
    argv = ["add", "spring3", str(path), "--json", "--map", "note=first-line"]
    argv += ["--map", "Company Name=org"]
    result = run_cli(*argv, env=api_env(server))
    assert result.code == 0, result.stderr
    jack = server.state.data("spring3")[("username", "jack")]
    assert jack == {"org": "Block", "city": "San Francisco", "first-line": "met at the conference"}
    assert summary_of(result)["columns"]["data"]["Company Name"] == "org"
    # company-name is now provided by no column.
    (warning,) = [w for w in warnings(result) if "no column provides" in w]
    assert "company-name ('Company name')" in warning and "first-line" not in warning


def test_a_dry_run_shows_each_column_and_its_key(
    server_with: Callable[..., RunningSandbox], run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    server = server_with()
    path = write_lines(tmp_path / "a.csv", CSV)
    result = run_cli("add", "spring4", str(path), "--dry-run", "--json", env=api_env(server))
    assert result.code == 0, result.stderr
    assert "'Company Name' as 'company-name', 'CITY' as 'city', 'note'" in result.stderr
    assert summary_of(result)["columns"]["data"]["CITY"] == "city"
    assert server.state.total_requests() == 0 and sum(server.state.lookups().values()) == 1


def test_401_on_the_look_up_ends_a_quiet_pipe_run_at_once_with_nothing_sent(
    server_with: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    server = server_with()
    env = api_env(server, INBOX_API_TOKEN="wrong-token")
    argv = [sys.executable, "-m", "inboxleads", "add", "spring5", "-", "--json"]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        # The pipe stays open and silent: the run must not wait for it.
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, err
    assert elapsed < 2.0 + 1.0  # the interpreter's start on a busy machine, then 2 s at most
    assert b"Traceback" not in err and b"401" in err
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["exit_code"] == 3 and summary["upload_requests"] == 0
    assert server.state.total_requests() == 0 and server.state.lookups() == {401: 1}


@pytest.mark.parametrize("status", [404, 503])
def test_a_look_up_that_fails_otherwise_only_warns(
    server_with: Callable[..., RunningSandbox],
    run_cli: Callable[..., CliResult],
    tmp_path: Path,
    status: int,
) -> None:
    server = server_with(wrap=failing_look_up(status))
    path = write_lines(tmp_path / "a.csv", CSV)
    argv = ["add", "spring6", str(path), "--json", "--max-attempts", "2", "--progress", "plain"]
    result = run_cli(*argv, env=api_env(server))
    assert result.code == 0, result.stderr
    (warning,) = [w for w in warnings(result) if "look-up" in w]
    assert "campaign look-up failed" in warning and str(status) in warning
    summary = summary_of(result)
    assert "campaign_name" not in summary
    assert summary["lookup_requests"] == (2 if status == 503 else 1)  # a 5xx is retried
    assert summary["delivered"] == 3 == len(server.state.members("spring6"))
    # Unmapped: the columns go out under their own names.
    assert server.state.data("spring6")[("username", "jack")]["Company Name"] == "Block"


def progress_events(stderr: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] == "progress"]


def test_progress_rises_from_0_to_1_with_an_eta_on_a_file_and_is_null_on_a_pipe(
    server_with: Callable[..., RunningSandbox], run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    server = server_with(latency_s=0.15)
    leads = [f"lead_{i:05d}" for i in range(5000)]
    path = write_lines(tmp_path / "a.txt", leads)
    argv = ["add", "spring7", str(path), "--batch-size", "200", "--concurrency", "2"]
    argv += ["--progress", "jsonl", "--log-interval", "0.1"]
    result = run_cli(*argv, env=api_env(server))
    assert result.code == 0, result.stderr
    seen = progress_events(result.stderr)
    fractions = [e["fraction"] for e in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and len(set(fractions)) > 5, fractions
    etas = [e["eta_s"] for e in seen if e["eta_s"] is not None and 0 < e["fraction"] < 1]
    assert etas, seen
    # The fraction follows the batches that ended (25 in all), not the bytes read ahead.
    assert all(abs(e["fraction"] - e["batches_done"] / 25) <= 0.1 for e in seen), seen
    # The number of batches is said once, when the input has been read.
    finished = [line for line in result.stderr.splitlines() if '"input_finished"' in line]
    assert len(finished) == 1 and json.loads(finished[0])["batches"] == 25
    assert seen[-1]["delivered"] == 5000 and seen[-1]["eta_s"] == 0.0

    argv[2] = "-"
    argv[1] = "spring8"
    result = run_cli(*argv, stdin="\n".join(leads) + "\n", env=api_env(server))
    assert result.code == 0, result.stderr
    seen = progress_events(result.stderr)
    assert seen and all(e["fraction"] is None and e["eta_s"] is None for e in seen)
    assert seen[-1]["delivered"] == 5000


def test_map_of_a_value_that_is_not_utf8_is_a_usage_error(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.csv", CSV)
    result = run_cli("add", "spring9", str(path), "--sandbox", "--json", "--map", "note=x\udcff")
    assert result.code == 2 and "--map" in result.stderr and "UTF-8" in result.stderr
    assert summary_of(result)["exit_code"] == 2


def test_map_of_a_column_only_one_input_has(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """Each table maps the columns it has (an undelivered file read back beside its
    export, say); a name no input has is a mistake, known before anything is sent
    when every input is a file, and said at the end when one is a pipe."""
    lines = write_lines(tmp_path / "a.txt", ["@sama"])
    table = write_lines(tmp_path / "b.csv", CSV)
    other = write_lines(tmp_path / "c.csv", ["twitter,first-line", "@biz,hello"])
    argv = ["add", "spring10", str(table), str(other), str(lines), "--sandbox", "--json"]
    result = run_cli(*argv, "--map", "note=first-line")
    assert result.code == 0, result.stderr
    assert summary_of(result)["delivered"] == 5

    result = run_cli("add", "spring11", str(lines), "--sandbox", "--json", "--map", "note=x")
    assert result.code == 2 and "--map 'note': no input has a column of that name" in result.stderr
    assert summary_of(result)["upload_requests"] == 0

    result = run_cli("add", "spring12", "-", "--sandbox", "--map", "note=x", stdin="@jack\n")
    assert result.code == 0, result.stderr
    assert "warning: --map 'note': no input had a column of that name" in result.stderr


def test_a_journal_none_of_whose_batches_match_says_so(
    server_with: Callable[..., RunningSandbox], run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """The journal knows a batch by its identifiers: new data alone resumes, but rows
    cut into other batches go out again (the campaign skips its leads), and the run
    says why instead of resuming nothing in silence."""
    server = server_with()
    path = write_lines(tmp_path / "a.csv", CSV)
    argv = ["add", "spring13", str(path), "--json", "--journal", "j.journal", "--batch-size", "2"]
    first = run_cli(*argv, env=api_env(server))
    assert first.code == 0 and summary_of(first)["delivered"] == 3, first.stderr
    mapped = run_cli(*argv, "--map", "note=first-line", env=api_env(server))
    assert summary_of(mapped)["resumed"] == 3
    assert "none of this run's batches" not in mapped.stderr
    write_lines(path, [CSV[0], *reversed(CSV[1:])])  # the same rows, in other batches
    again = run_cli(*argv, env=api_env(server))
    summary = summary_of(again)
    assert again.code == 0 and (summary["resumed"], summary["skipped"]) == (0, 3)
    assert "none of this run's batches is among the 2 the journal records" in again.stderr
