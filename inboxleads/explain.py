"""Naming the failed leads: bisect batches whose answer counted failures.

The API answers counts only. For a delivered batch with `failed = f` (0 < f <
n), half of it is sent again: identifiers already in the campaign count as
skipped and unresolvable ones fail again, so the answer's `failed` says how
many failures that half holds, and the other half holds the rest without a
request. Halves with no failures are dropped, halves where every identifier
failed are named whole, and the rest are split again. The cost for f
failures in a batch of n is at most about f * log2(n / f) requests, and never
more than n - 1.

Every request goes through `Engine.deliver`: the same concurrency, pacing,
retries and stop handling as the upload. With a journal, each answer is
recorded, so an interrupted explanation resumes without asking again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from . import events as ev
from .batching import Batch, batch_digest
from .engine import Engine
from .identifiers import Lead, readable
from .reports import CsvOut, replacing


@dataclass
class Explanation:
    """What the explanation found."""

    identified: list[Lead] = field(default_factory=list)
    # Sets of leads known to hold `failed` failures that could not be narrowed down.
    unexplained: list[tuple[list[Lead], int]] = field(default_factory=list)
    requests: int = 0

    @property
    def unexplained_leads(self) -> int:
        return sum(len(leads) for leads, _ in self.unexplained)


class Explainer:
    """Bisects failed batches through the engine, within a request budget."""

    def __init__(self, engine: Engine, budget: int | None = None) -> None:
        self.engine = engine
        self.budget = budget
        self.result = Explanation()
        self._seq = 0
        self._planned = 0

    async def run(self, batches: list[tuple[Batch, int]]) -> None:
        """Explain every (batch, failed count) pair; what was found is in `result`."""
        total = sum(failed for _, failed in batches)
        self.engine.emit(ev.PhaseStarted("explain", {"batches": len(batches), "failed": total}))
        await asyncio.gather(*(self._explain(batch.leads, failed) for batch, failed in batches))
        self._progress()

    def _progress(self) -> None:
        self.engine.emit(
            ev.ExplainProgress(
                self.result.requests,
                len(self.result.identified),
                self.result.unexplained_leads,
            )
        )

    async def _explain(self, leads: list[Lead], failed: int) -> None:
        if failed <= 0:
            return
        if failed >= len(leads):
            self.result.identified.extend(leads)
            self._progress()
            return
        half = leads[: len(leads) // 2]
        rest = leads[len(leads) // 2 :]
        failed_half = await self._count_failed(half)
        if failed_half is None:
            self.result.unexplained.append((leads, failed))
            self._progress()
            return
        # The counts should add up; if the server's view changed meanwhile,
        # trust the newer answer and never go below zero.
        failed_half = min(failed_half, failed)
        await asyncio.gather(
            self._explain(half, failed_half), self._explain(rest, failed - failed_half)
        )

    async def _count_failed(self, leads: list[Lead]) -> int | None:
        """How many of `leads` fail: from the journal, else from one request."""
        engine = self.engine
        digest = batch_digest(engine.config.campaign + "#explain", leads)
        if engine.journal is not None:
            known = engine.journal.failed_of(digest)
            if known is not None:
                return known
        if self.budget is not None and self._planned >= self.budget:
            return None
        if engine.stopping:
            return None
        self._planned += 1  # taken from the budget now: the branches run concurrently
        self._seq += 1
        delivery = await engine.deliver(Batch(self._seq, leads), "explain")
        self.result.requests += delivery.attempts  # what went out, retries included
        if not delivery.delivered or delivery.answer is None:
            return None
        if engine.journal is not None:
            engine.journal.record(digest, self._seq, len(leads), delivery.answer, "explain")
        return delivery.answer.failed


def write_failed(path: Path, explanation: Explanation) -> int:
    """Write the failed identifiers (and the unexplained sets) as CSV; return the rows."""
    rows: list[tuple[Lead, str]] = [(lead, "failed") for lead in explanation.identified]
    for leads, failed in explanation.unexplained:
        status = f"in a batch with failures ({failed} of {len(leads)} failed)"
        rows.extend((lead, status) for lead in leads)
    rows.sort(key=lambda row: (row[0].source, row[0].line))
    columns: dict[str, None] = {}
    for lead, _ in rows:
        if lead.data:
            columns.update(dict.fromkeys(lead.data))
    with replacing(path) as out:
        writer = CsvOut(out)
        writer.writerow(["identifier", "kind", "status", "source", "line", *columns])
        for lead, status in rows:
            data = lead.data or {}
            writer.writerow(
                [
                    readable(lead.kind, lead.value),
                    lead.kind.value,
                    status,
                    lead.source,
                    lead.line,
                    *(data.get(c, "") for c in columns),
                ]
            )
    return len(rows)
