"""--explain-failures: naming the identifiers behind the server's failed counts."""

from __future__ import annotations

import csv
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from inboxleads.errors import ExitStatus
from inboxleads.runner import AddJob, AddResult, run_add
from inboxleads.sandbox import Faults, SandboxConfig, create_app, sandbox_transport

from .conftest import SECRET, FakeTime, quiet_env, write_lines


def run_against(
    app: Starlette, path: Path, campaign: str = "ex1", **opts: Any
) -> tuple[AddResult, dict[str, Any]]:
    """Run `add` in-process against `app` through its transport, with fake time."""
    fake = FakeTime()
    job = AddJob(
        campaign=campaign,
        inputs=[str(path)],
        token=SECRET,
        base_url="http://127.0.0.1/api/v1",  # reached through the transport
        progress="none",
        **opts,
    )
    env = quiet_env(fake, transport=sandbox_transport(app))
    result = run_add(job, env)
    assert result.summary is not None
    return result, result.summary.to_json()


def sandbox_app(**faults: Any) -> Starlette:
    return create_app(SandboxConfig(token=SECRET, faults=Faults(**faults)))


def failed_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def bound(batch: int, failed: int) -> int:
    """The documented cost of explaining one batch of n with f failures: at most
    f * (ceil(log2(n / f)) + 2), never more than 2n - 2, none when f is 0 or n."""
    if failed <= 0 or failed >= batch:
        return 0
    return min(2 * batch - 2, failed * (math.ceil(math.log2(batch / failed)) + 2))


def make_leads(n: int, failing: set[int]) -> list[str]:
    return [f"gone_{i:05d}" if i in failing else f"ok_{i:05d}" for i in range(n)]


def test_scattered_failures_are_named_exactly_within_the_bound(tmp_path: Path) -> None:
    rng = random.Random(11)
    failing = {i for i in range(6000) if rng.random() < 0.01}
    lines = make_leads(6000, failing)
    out = tmp_path / "failed.csv"
    result, summary = run_against(
        sandbox_app(), write_lines(tmp_path / "a.txt", lines), explain_failures=out
    )
    assert result.status == ExitStatus.OK
    rows = failed_rows(out)
    assert {r["identifier"] for r in rows} == {lines[i] for i in failing}
    assert all(r["status"] == "failed" and r["source"].endswith("a.txt") for r in rows)
    assert {r["detail"] for r in rows} <= {
        "failed again when re-sent alone",
        *(f"all {k} failed again when re-sent together" for k in range(2, 2000)),
    }
    assert [int(r["line"]) - 1 for r in rows] == sorted(failing)
    assert summary["failed_identified"] == len(failing) == summary["failed"]
    assert summary["failed_unconfirmed"] == summary["unconfirmed_identifiers"] == 0
    per_batch = [len([i for i in failing if b * 2000 <= i < (b + 1) * 2000]) for b in range(3)]
    assert summary["explain_requests"] <= sum(bound(2000, f) for f in per_batch)
    # The upload's totals stay the upload's: re-sends are counted apart.
    assert summary["upload_requests"] == 3
    assert summary["requests"] == 3 + summary["explain_requests"]
    assert summary["added"] == 6000 - len(failing) and summary["skipped"] == 0


def test_clustered_all_failed_and_clean_batches(tmp_path: Path) -> None:
    # Batch 1: failures clustered at the start; batch 2: all fail; batch 3: none.
    failing = set(range(0, 7)) | set(range(100, 200))
    lines = make_leads(300, failing)
    out = tmp_path / "failed.csv"
    _, summary = run_against(
        sandbox_app(),
        write_lines(tmp_path / "a.txt", lines),
        batch_size=100,
        explain_failures=out,
    )
    rows = failed_rows(out)
    assert {r["identifier"] for r in rows} == {lines[i] for i in failing}
    # The all-failed batch is confirmed by its own (upload) answer.
    whole = {r["identifier"] for r in rows if r["detail"] == "all 100 of its batch failed (upload)"}
    assert whole == {lines[i] for i in range(100, 200)}
    # Only the first batch needs requests; the all-failed and clean ones need none.
    assert 0 < summary["explain_requests"] <= bound(100, 7)
    assert (summary["failed_identified"], summary["unconfirmed_identifiers"]) == (107, 0)


def test_no_failures_costs_no_request(tmp_path: Path) -> None:
    out = tmp_path / "failed.csv"
    _, summary = run_against(
        sandbox_app(), write_lines(tmp_path / "a.txt", make_leads(500, set())), explain_failures=out
    )
    assert summary["explain_requests"] == 0 and failed_rows(out) == []
    assert summary["failed_identified"] == summary["failed_unconfirmed"] == 0
    assert summary["unconfirmed_identifiers"] == 0 and "failed_unexplained" not in summary
    assert out.read_text().splitlines() == ["identifier,kind,status,detail,source,line"]


def test_budget_caps_requests_and_lists_the_rest_as_unconfirmed(tmp_path: Path) -> None:
    failing = {3, 500, 1200, 1900}
    lines = make_leads(2000, failing)
    out = tmp_path / "failed.csv"
    _, summary = run_against(
        sandbox_app(),
        write_lines(tmp_path / "a.txt", lines),
        explain_failures=out,
        explain_budget=3,
    )
    assert summary["explain_requests"] == 3
    rows = failed_rows(out)
    # Three requests narrow the batch down to four quarters of 500, one failure each
    # (two of them by subtraction); the budget stops there, so nothing is named.
    assert {r["status"] for r in rows} == {"unconfirmed"} and len(rows) == 2000
    assert Counter(r["detail"] for r in rows) == {
        "1 of these 500 failed (not narrowed down: explain budget spent)": 1000,
        "1 of these 500 failed, by the counts of the sets around them "
        "(not narrowed down: explain budget spent)": 1000,
    }
    # Every failing lead is listed: none is lost.
    assert {lines[i] for i in failing} <= {r["identifier"] for r in rows}
    assert (summary["failed_identified"], summary["failed_unconfirmed"]) == (0, 4)
    assert summary["unconfirmed_identifiers"] == 2000


def test_explanation_with_faults_still_names_exactly_the_failures(tmp_path: Path) -> None:
    failing = {5, 77, 1500, 2600}
    lines = make_leads(3000, failing)
    out = tmp_path / "failed.csv"
    app = sandbox_app(error_rate=0.2, lost_rate=0.1, seed=5)
    result, _ = run_against(
        app, write_lines(tmp_path / "a.txt", lines), explain_failures=out, max_attempts=30
    )
    assert result.status == ExitStatus.OK
    assert {r["identifier"] for r in failed_rows(out)} == {lines[i] for i in failing}
    state = app.state.sandbox
    assert state.faults().get("lost", 0) > 0
    assert any(status >= 500 for status in state.requests_by_status())


def test_interrupted_explanation_resumes_from_the_journal(tmp_path: Path) -> None:
    failing = {10, 900, 1800}
    lines = make_leads(2000, failing)
    path = write_lines(tmp_path / "a.txt", lines)
    journal = tmp_path / "run.journal"
    app = sandbox_app()
    out = tmp_path / "failed.csv"
    # First run: the budget stops the explanation part-way, as an interrupt would.
    _, first = run_against(app, path, journal=journal, explain_failures=out, explain_budget=4)
    assert first["explain_requests"] == 4
    # Second run: upload resumed from the journal, known answers not asked again.
    _, second = run_against(app, path, journal=journal, explain_failures=out)
    assert second["resumed"] == 2000 and second["upload_requests"] == 0
    assert {r["identifier"] for r in failed_rows(out)} == {lines[i] for i in failing}
    fresh_cost = run_against(
        sandbox_app(), path, campaign="ex2", explain_failures=tmp_path / "f2.csv"
    )[1]["explain_requests"]
    assert first["explain_requests"] + second["explain_requests"] == fresh_cost


def test_csv_data_is_kept_in_the_failed_file(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("handle,company\njack,Block\ngone_x,Nowhere\nnaval,AngelList\n")
    out = tmp_path / "failed.csv"
    run_against(sandbox_app(), path, explain_failures=out)
    assert failed_rows(out) == [
        {
            "identifier": "gone_x",
            "kind": "username",
            "status": "failed",
            "detail": "failed again when re-sent alone",
            "source": str(path),
            "line": "3",
            "company": "Nowhere",
        }
    ]


def test_dry_run_makes_no_explanation_request(tmp_path: Path) -> None:
    out = tmp_path / "failed.csv"
    _, summary = run_against(
        sandbox_app(),
        write_lines(tmp_path / "a.txt", make_leads(100, {1})),
        dry_run=True,
        explain_failures=out,
    )
    assert summary["requests"] == 0 and "explain_requests" not in summary
