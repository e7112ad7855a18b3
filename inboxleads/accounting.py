"""What the displays show while a run goes on, and the summary it ends with.

`Tally` folds the run's events into the running totals a display shows (in
flight, retries, answers by status, what was read per input). The contract's
numbers of the summary come from the ledger (`ledger.Counts`), where each is
counted where it happens; the tally only adds what the ledger does not keep
(requests, retries, answers by status, the dry-run report).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import events as ev
from .ledger import Counts

EXAMPLES = 3
# The ETA is drawn from the progress of the last this many seconds.
ETA_WINDOW_S = 30.0


@dataclass
class Tally:
    """Running totals of one run."""

    read: int = 0
    rejected: int = 0
    duplicates: int = 0
    unique: int = 0
    batches: int = 0
    batches_total: int | None = None
    batches_done: int = 0
    requests: int = 0
    retries: int = 0
    in_flight: int = 0
    sent: int = 0
    added: int = 0
    skipped: int = 0
    failed: int = 0
    delivered: int = 0
    undelivered: int = 0
    resumed: int = 0
    batches_failed_any: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    paused_until: float | None = None
    pause_reason: str = ""
    stopping: str = ""
    abandoning: bool = False
    phase: str = "upload"
    explain_requests: int = 0
    explain_identified: int = 0
    explain_unconfirmed: int = 0
    # What was read, by input and by kind, and why records were rejected.
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, list[Any]] = field(default_factory=dict)
    # Per table input: its identifier columns, and each data column with its key.
    columns: dict[str, ev.ColumnsRead] = field(default_factory=dict)
    # What the campaign look-up found (None: not asked, or it failed).
    campaign: ev.Campaign | None = None
    lookup_requests: int = 0
    # The bytes of input read so far, and in all when every input is a regular file.
    bytes_read: int = 0
    bytes_total: int | None = None
    # Whether batches are sent (not in a dry run): progress is then weighted by them.
    sending: bool = True
    # The monotonic clock the ETA is measured on, and (time, fraction) samples.
    clock: Callable[[], float] = time.monotonic
    _samples: deque[tuple[float, float]] = field(default_factory=deque)
    _highest: float = 0.0

    @property
    def pending(self) -> int:
        """Unique identifiers read but neither delivered, undelivered nor resumed yet."""
        return self.unique - self.delivered - self.undelivered - self.resumed

    def apply(self, event: ev.Event) -> None:
        """Fold one event into the totals."""
        if isinstance(event, ev.RecordsRead):
            self.read += event.read
            self.rejected += event.rejected
            self.duplicates += event.duplicates
            self.unique += event.unique
            self.bytes_read = max(self.bytes_read, event.position)
            self._read_details(event)
        elif isinstance(event, ev.BatchQueued):
            self.batches += 1
        elif isinstance(event, ev.InputFinished):
            self.batches_total = event.batches
        elif isinstance(event, ev.RequestStarted):
            self.in_flight += 1
            if event.phase == "upload":
                self.requests += 1
                self.sent += event.size
            elif event.phase == "lookup":
                self.lookup_requests += 1
            else:
                self.explain_requests += 1
            if event.attempt > 1 and event.phase == "upload":
                self.retries += 1
        elif isinstance(event, ev.RequestEnded):
            self.in_flight -= 1
            key = str(event.status) if event.status is not None else "error"
            self.by_status[key] = self.by_status.get(key, 0) + 1
        elif isinstance(event, ev.BatchDelivered):
            self.batches_done += 1
            self.delivered += event.size
            self.added += event.added
            self.skipped += event.skipped
            self.failed += event.failed
            if event.failed:
                self.batches_failed_any += 1
        elif isinstance(event, ev.BatchResumed):
            self.batches_done += 1
            self.resumed += event.size
            # Found in the journal at once: no measure of how fast the rest will go.
            self._samples.clear()
        elif isinstance(event, ev.BatchUndelivered):
            self.batches_done += 1
            self.undelivered += event.size
        elif isinstance(event, ev.BatchSplit):
            self.batches += len(event.into) - 1
            if self.batches_total is not None:
                self.batches_total += len(event.into) - 1
        elif isinstance(event, ev.RatePaused):
            self.paused_until = event.resume_at
            self.pause_reason = event.reason
        elif isinstance(event, ev.Stopping):
            self.stopping = event.reason
            self.abandoning = self.abandoning or event.abandon
        elif isinstance(event, ev.PhaseStarted):
            self.phase = event.name
        elif isinstance(event, ev.ColumnsRead):
            self.columns[event.source] = event
        elif isinstance(event, ev.Campaign):
            self.campaign = event
        if isinstance(
            event,
            ev.RecordsRead
            | ev.BatchDelivered
            | ev.BatchResumed
            | ev.BatchUndelivered
            | ev.InputFinished,
        ):
            self._sample()
        elif isinstance(event, ev.ExplainProgress):
            self.explain_identified = event.identified
            self.explain_unconfirmed = event.unconfirmed

    def fraction(self) -> float | None:
        """How far the run has come, 0 to 1: the share of the input's bytes read,
        weighted by the share of the records read that are done with (rejected,
        duplicates, and identifiers whose batch ended: delivered, resumed or not
        delivered). None when the size of the input is not known (a pipe)."""
        if self.bytes_total is None:
            return None
        if self.batches_total is not None:
            share = 1.0
        elif self.bytes_total <= 0:
            share = 0.0
        else:
            share = min(1.0, self.bytes_read / self.bytes_total)
        if self.sending and self.read:
            # Weighted by the records read that are done with: rejected, duplicates,
            # and identifiers whose batch ended (a batch formed or in flight is not).
            ended = self.delivered + self.undelivered + self.resumed
            share *= min(1.0, (ended + self.rejected + self.duplicates) / self.read)
        elif self.sending and self.batches_total is None:
            share = 0.0  # nothing read yet, so nothing done
        # Never back: the reader running ahead of the senders lowers the estimate.
        self._highest = max(self._highest, share)
        return self._highest

    def eta(self) -> float | None:
        """Seconds left at the rate of the last `ETA_WINDOW_S` seconds; None while
        unknown (no size, or no progress to measure yet)."""
        fraction = self.fraction()
        if fraction is None:
            return None
        if fraction >= 1.0:
            return 0.0
        now = self.clock()
        self._sample(now)
        then, before = self._samples[0]
        if now - then < 1.0 or fraction <= before:
            return None
        return (1.0 - fraction) * (now - then) / (fraction - before)

    def _sample(self, now: float | None = None) -> None:
        """Remember how far the run was, and when (for the ETA)."""
        fraction = self.fraction()
        if fraction is None:
            return
        now = self.clock() if now is None else now
        samples = self._samples
        if not samples or fraction != samples[-1][1]:
            samples.append((now, fraction))
        # Keep one sample older than the window, so that the rate spans all of it.
        while len(samples) > 2 and samples[1][0] <= now - ETA_WINDOW_S:
            samples.popleft()

    def _read_details(self, event: ev.RecordsRead) -> None:
        if event.source:
            counts = self.sources.setdefault(
                event.source, {"read": 0, "rejected": 0, "duplicates": 0, "unique": 0}
            )
            counts["read"] += event.read
            counts["rejected"] += event.rejected
            counts["duplicates"] += event.duplicates
            counts["unique"] += event.unique
        for kind, n in event.kinds:
            self.kinds[kind] = self.kinds.get(kind, 0) + n
        for r in event.rejections:
            entry = self.reasons.setdefault(r.reason, [0, []])
            entry[0] += 1
            if len(entry[1]) < EXAMPLES:
                entry[1].append(f"{r.source}:{r.line}: {r.text[:80]}")

    def columns_used(self) -> dict[str, Any] | None:
        """The summary's `columns`: the identifier columns (in order of preference)
        and each data column with the key it was sent as, over every table input;
        with several whose columns differ, each one's under `inputs` as well."""
        if not self.columns:
            return None
        identifiers: dict[str, None] = {}
        data: dict[str, str] = {}
        each: dict[str, Any] = {}
        for source, read in self.columns.items():
            identifiers.update(dict.fromkeys(read.identifiers))
            for name, key in read.data:
                data.setdefault(name, key)
            each[source] = {"identifier": list(read.identifiers), "data": dict(read.data)}
        out: dict[str, Any] = {"identifier": list(identifiers), "data": data}
        first = next(iter(each.values()))
        if any(columns != first for columns in each.values()):
            out["inputs"] = each
        return out

    def report(self) -> dict[str, Any]:
        """What was read: per input, per kind, and rejections by reason with examples."""
        return {
            "sources": self.sources,
            "kinds": self.kinds,
            "rejections": {
                reason: {"count": count, "examples": examples}
                for reason, (count, examples) in sorted(
                    self.reasons.items(), key=lambda item: -item[1][0]
                )
            },
        }


@dataclass
class Summary:
    """The final report of a run: the contract's `--json` object."""

    campaign: str
    counts: Counts
    tally: Tally
    dry_run: bool
    elapsed_s: float
    exit_code: int
    stop_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Where --undelivered wrote the identifiers left over (None: not asked for).
    undelivered_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The summary object, with every key the contract names."""
        c, t = self.counts, self.tally
        out: dict[str, Any] = {
            "campaign": self.campaign,
            "read": c.read,
            "rejected": c.rejected,
            "duplicates": c.duplicates,
            "unique": c.unique,
            "batches": c.batches,
            "requests": t.requests + t.explain_requests + t.lookup_requests,
            "retries": t.retries,
            "added": c.added,
            "skipped": c.skipped,
            "failed": c.failed,
            "delivered": c.delivered,
            "undelivered": c.undelivered,
            "resumed": c.resumed,
            "dry_run": self.dry_run,
            "elapsed_s": round(self.elapsed_s, 3),
            "exit_code": self.exit_code,
            "undelivered_reasons": dict(c.undelivered_reasons.most_common()),
            "stop_reason": self.stop_reason,
            "upload_requests": t.requests,
            "lookup_requests": t.lookup_requests,
            "responses": dict(sorted(t.by_status.items())),
        }
        if t.campaign is not None:
            out["campaign_name"] = t.campaign.name
            out["campaign_status"] = t.campaign.status
        columns = t.columns_used()
        if columns is not None:
            out["columns"] = columns
        if self.dry_run:
            out["report"] = t.report()
        out.update(self.extra)
        return out
