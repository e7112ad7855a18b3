"""The ledger: where every identifier of a run is counted, and how every batch ended.

Counts are taken where things happen, never derived from one another:

- `read` and `rejected` as the loop takes each chunk from the reader (the
  reader keeps its own count of what it handed over, checked against `read`);
- `duplicates` and `unique` by the de-duplicator, as it drops or keeps each
  identifier;
- `batched` as each batch is formed, and `delivered`, `undelivered`,
  `resumed` as each batch ends.

A batch is opened when it is formed and ended exactly once. While open it is
in one of the `Waiting` states, which say what the run was doing with it, so
that a batch still open when the run stops is recorded undelivered with a
reason that says what happened to it (never sent, abandoned in flight, not
retried). `check` compares the independent counts before the summary is
printed; a mismatch is a bug of the tool, never reported as success.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from . import events as ev

if TYPE_CHECKING:  # annotations only: the display imports this module (accounting)
    from .answers import Answer
    from .batching import Batch
    from .reports import Reports


class Waiting(Enum):
    """Where an open batch is, which decides what a stop makes of it."""

    SLOT = "formed, waiting to be sent"
    IN_FLIGHT = "in flight"
    RETRY = "waiting to be retried"


class LedgerError(Exception):
    """The ledger was told something impossible (a batch ended twice): a bug."""


@dataclass
class Counts:
    """The contract's numbers of a run, as the ledger counted them."""

    read: int = 0
    rejected: int = 0
    duplicates: int = 0
    unique: int = 0
    batches: int = 0
    batched: int = 0
    delivered: int = 0
    undelivered: int = 0
    resumed: int = 0
    added: int = 0
    skipped: int = 0
    failed: int = 0
    undelivered_reasons: Counter[str] = field(default_factory=Counter)


class Ledger:
    """Counts of one run and the open batches; emits the end of each batch."""

    def __init__(self, emit: Callable[[ev.Event], None], reports: Reports) -> None:
        self.counts = Counts()
        self._emit = emit
        self._reports = reports
        self._open: dict[int, tuple[Batch, Waiting, str]] = {}

    # -- what was read ----------------------------------------------------------

    def took(self, read: int, rejected: int, duplicates: int, unique: int) -> None:
        """A chunk was taken from the reader; `duplicates` and `unique` as the deduper said."""
        c = self.counts
        c.read += read
        c.rejected += rejected
        c.duplicates += duplicates
        c.unique += unique

    # -- batches ----------------------------------------------------------------

    def opened(self, batch: Batch) -> None:
        """A batch was formed (it holds identifiers the deduper kept)."""
        if batch.seq in self._open:
            raise LedgerError(f"batch {batch.seq} formed twice")
        self.counts.batches += 1
        self.counts.batched += len(batch)
        self._open[batch.seq] = (batch, Waiting.SLOT, "")
        self._emit(ev.BatchQueued(batch.seq, len(batch)))

    def split(self, batch: Batch, parts: list[Batch], reason: str) -> None:
        """An open batch is sent as `parts` instead (the server found it too large):
        the parts are open, each to end on its own; the batch itself never ends."""
        self._close(batch)
        if sum(map(len, parts)) != len(batch):
            raise LedgerError(f"batch {batch.seq} was split into parts of another size")
        self.counts.batches += len(parts) - 1
        for part in parts:
            if part.seq in self._open:
                raise LedgerError(f"batch {part.seq} formed twice")
            self._open[part.seq] = (part, Waiting.SLOT, "")
        into = tuple(part.seq for part in parts)
        self._emit(ev.BatchSplit(batch.seq, len(batch), into, reason))

    def planned(self, batch: Batch) -> None:
        """A dry run formed a batch: counted, never opened."""
        self.counts.batches += 1
        self.counts.batched += len(batch)
        self._emit(ev.BatchQueued(batch.seq, len(batch)))

    def waiting(self, batch: Batch, where: Waiting, last_error: str = "") -> None:
        """Where an open batch is now (and the last error, while it waits to be retried)."""
        if batch.seq not in self._open:
            raise LedgerError(f"batch {batch.seq} is not open")
        self._open[batch.seq] = (batch, where, last_error)

    def _close(self, batch: Batch) -> None:
        if self._open.pop(batch.seq, None) is None:
            raise LedgerError(f"batch {batch.seq} ended twice, or was never formed")

    def delivered(self, batch: Batch, answer: Answer, attempts: int) -> None:
        """The server answered 200 for the batch: its counts, as it gave them."""
        self._close(batch)
        c = self.counts
        c.delivered += len(batch)
        c.added += answer.added
        c.skipped += answer.skipped
        c.failed += answer.failed
        self._emit(
            ev.BatchDelivered(
                batch.seq, len(batch), answer.added, answer.skipped, answer.failed, attempts
            )
        )

    def resumed(self, batch: Batch) -> None:
        """An earlier run delivered this batch (the journal says so)."""
        self._close(batch)
        self.counts.resumed += len(batch)
        self._emit(ev.BatchResumed(batch.seq, len(batch)))

    def undelivered(self, batch: Batch, reason: str, attempts: int) -> None:
        """The batch will not be delivered by this run; its identifiers are listed."""
        self._close(batch)
        self.counts.undelivered += len(batch)
        self.counts.undelivered_reasons[reason] += len(batch)
        self._reports.undelivered_batch(batch, reason)
        self._emit(ev.BatchUndelivered(batch.seq, len(batch), reason, attempts))

    @property
    def open_batches(self) -> int:
        return len(self._open)

    def stopped(self, batch: Batch, cause: str) -> None:
        """End an open batch as undelivered because the run stopped (`cause`): the
        reason says where the batch was when it did."""
        if batch.seq not in self._open:
            raise LedgerError(f"batch {batch.seq} is not open")
        _, where, last_error = self._open[batch.seq]
        if where is Waiting.IN_FLIGHT:
            reason = f"abandoned in flight: {cause} (it may have been applied)"
        elif where is Waiting.RETRY:
            reason = f"not retried: {cause} (last attempt: {last_error})"
        else:
            reason = f"not sent: {cause}"
        self.undelivered(batch, reason, 0)

    def close_all(self, cause: str) -> int:
        """End every batch still open as undelivered (see `stopped`); return how many."""
        left = [batch for batch, _, _ in self._open.values()]
        for batch in left:
            self.stopped(batch, cause)
        return len(left)

    # -- the check ----------------------------------------------------------------

    def problems(self, handed_over: int, pending: int, dry_run: bool) -> list[str]:
        """Every way the independent counts disagree (empty when the run is consistent).

        `handed_over` is the reader's own count of the records it handed to the
        loop; `pending` is what the batcher still holds.
        """
        c = self.counts
        found: list[str] = []
        if handed_over != c.read:
            found.append(f"the reader handed over {handed_over} records, {c.read} were taken")
        if c.read != c.rejected + c.duplicates + c.unique:
            found.append(
                f"read {c.read} != rejected {c.rejected} + duplicates {c.duplicates} "
                f"+ unique {c.unique}"
            )
        if pending:
            found.append(f"{pending} identifiers were kept but never put in a batch")
        if c.batched + pending != c.unique:
            found.append(f"{c.batched} identifiers were batched, {c.unique} were kept")
        if self._open:
            found.append(f"{len(self._open)} batches never ended")
        ended = c.delivered + c.undelivered + c.resumed
        if not dry_run and ended != c.unique:
            found.append(
                f"unique {c.unique} != delivered {c.delivered} + undelivered "
                f"{c.undelivered} + resumed {c.resumed}"
            )
        if sum(c.undelivered_reasons.values()) != c.undelivered:
            found.append("the undelivered reasons do not add up to the undelivered count")
        return found
