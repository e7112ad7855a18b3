"""What the sections share: table rows, sizes and files, runs of the clients, server state."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.launcher import HERE, Measured, run_measured
from benchmarks.server import Sandbox

PEER = HERE / "peer_async.py"
CLIENTS = ("ours", "peer")
CHUNK = 2000  # identifiers per request, ours (by default) and the peers alike


@dataclass
class Row:
    """One line of the table."""

    section: str
    measure: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "%":
            return f"{self.value:.1f} %"
        if self.unit == "x":
            return f"{self.value:.2f}x"
        if self.unit == "":
            return f"{self.value:.3f}"
        if self.unit == "n":  # a count
            return f"{self.value:.0f}"
        if self.unit == "s" and self.value < 1:
            return f"{self.value:.3f} s"
        return (
            f"{self.value:.2f} {self.unit}" if self.value < 100 else f"{self.value:.0f} {self.unit}"
        )


@dataclass
class Context:
    """What every section shares: sizes, the work directory, the client command."""

    quick: bool
    work: Path
    handles: int  # latency and peers
    cost_handles: int
    client: list[str]
    rows: list[Row] = field(default_factory=list)
    latency_points: list[dict[str, float]] = field(default_factory=list)
    _files: dict[tuple[str, int], Path] = field(default_factory=dict)
    _campaigns: int = 0

    def handles_file(self, n: int, prefix: str = "user") -> Path:
        """A file of `n` unique plain handles (valid usernames), made once."""
        key = (prefix, n)
        if key not in self._files:
            path = self.work / f"{prefix}-{n}.txt"
            with path.open("w", encoding="ascii") as out:
                step = 100_000
                for start in range(0, n, step):
                    stop = min(n, start + step)
                    out.write("".join(f"{prefix}{i:07d}\n" for i in range(start, stop)))
            self._files[key] = path
        return self._files[key]

    def campaign(self, tag: str) -> str:
        """A fresh campaign id (lowercase letters and digits)."""
        self._campaigns += 1
        return f"bench{tag}{os.getpid()}n{self._campaigns}"

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.section:<10} {row.measure:<44} {row.shown():>12}  {row.note}", flush=True)
        return row


def client_command() -> list[str]:
    """The `inboxleads` console script of this interpreter's environment, else `-m`."""
    script = Path(sys.executable).with_name("inboxleads")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "inboxleads"]


def summary_of(run: Measured) -> dict[str, Any]:
    """The `--json` summary: the last line of stdout that is a JSON object."""
    for line in reversed(run.stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    raise RuntimeError(f"no JSON summary (exit {run.returncode}): {run.stderr[-1000:]}")


def run_ours(
    ctx: Context,
    server: Sandbox,
    path: Path,
    campaign: str,
    *options: str,
) -> tuple[Measured, dict[str, Any]]:
    """`inboxleads add CAMPAIGN FILE --json --quiet OPTIONS` against `server`."""
    argv = [*ctx.client, "add", campaign, str(path), "--json", "--quiet", *options]
    run = run_measured(argv, env=server.env(), cwd=ctx.work)
    summary = summary_of(run)
    if run.returncode != 0:
        raise RuntimeError(f"inboxleads exited {run.returncode}: {run.stderr[-1000:]}")
    return run, summary


def run_peer(
    ctx: Context, server: Sandbox, path: Path, campaign: str, concurrency: int
) -> tuple[Measured, dict[str, Any]]:
    """`python peer_async.py CAMPAIGN FILE CONCURRENCY` against `server`."""
    argv = [sys.executable, str(PEER), campaign, str(path), str(concurrency)]
    run = run_measured(argv, env=server.env(), cwd=ctx.work)
    if run.returncode != 0:
        raise RuntimeError(f"peer_async.py exited {run.returncode}: {run.stderr[-1000:]}")
    return run, summary_of(run)


def run_client(
    ctx: Context, server: Sandbox, who: str, path: Path, campaign: str, concurrency: int
) -> tuple[Measured, int]:
    """Ours (default options otherwise) or the peer at `concurrency`: the run and how
    many identifiers it delivered."""
    if who == "ours":
        run, summary = run_ours(ctx, server, path, campaign, "--concurrency", str(concurrency))
        return run, int(summary["delivered"])
    run, summary = run_peer(ctx, server, path, campaign, concurrency)
    return run, int(summary["added"])  # fresh handles to a fresh campaign: all added


def answers_by_status(state: dict[str, Any]) -> dict[int, int]:
    """Answers of both endpoints (leads and the campaign look-up) by status."""
    answers: dict[int, int] = {}
    for counts in (state["by_status"], state.get("lookups", {})):
        for status, n in counts.items():
            answers[int(status)] = answers.get(int(status), 0) + int(n)
    return answers


def first_request_at(state: dict[str, Any], campaign: str) -> float:
    """When the first request for `campaign` (either endpoint) arrived, server clock."""
    first = (state.get("timing") or {}).get("first_request_by_campaign") or {}
    if campaign not in first:
        raise RuntimeError(
            f"the sandbox reports no first request for {campaign} (inboxleads/sandbox/state.py)"
        )
    return float(first[campaign])


def campaign_span(state: dict[str, Any], campaign: str) -> float:
    """From `campaign`'s first request to the server's last answer: the campaign's span
    when it was the last to be sent to."""
    last = (state.get("timing") or {}).get("last_answer")
    if last is None:
        raise RuntimeError("the sandbox reports no timing (inboxleads/sandbox/state.py)")
    return float(last) - first_request_at(state, campaign)


def leads_span(state: dict[str, Any]) -> float:
    """From the first request to the leads endpoint to the last answer, on the server."""
    timing = state.get("timing") or {}
    first, last = timing.get("first_arrival"), timing.get("last_answer")
    if first is None or last is None:
        raise RuntimeError("the sandbox reports no timing (inboxleads/sandbox/state.py)")
    return float(last) - float(first)
