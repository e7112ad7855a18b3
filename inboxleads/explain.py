"""Naming the failed leads: narrow down batches whose answer counted failures.

The API answers counts only. Re-sending a set of identifiers is safe (those
already in the campaign count as skipped) and its answer's `failed` says how
many of that set fail now. An identifier is listed as failed only when a set
it belongs to was seen to fail whole, by that set's own answer: the upload's
answer for its batch, or the answer to a re-send of exactly that set. Never by
subtraction: a failure that does not repeat (an upstream error on the first
send) would otherwise be blamed on an identifier that was added.

Each batch is explained on index ranges of it, so every set is a contiguous
slice. `explain(set, count, real)`, starting from the batch and its upload
count:

- count 0: nothing to find (a set inferred to hold none is never sent);
- count < size: the first half is re-sent (its count is real); the second
  half's count is inferred as count - first (a negative one means the answers
  disagree: that half is not narrowed down); both are explained;
- count >= size: when real, every identifier of the set is confirmed failed;
  when inferred, the set is re-sent to confirm, and explained again with the
  count its answer gives.

When answers disagree (a failure that does not repeat), a set S whose own
answer counted more failures than were confirmed inside it (or left there not
narrowed down) has its other identifiers listed as `unconfirmed`, never
`failed`, each under the smallest such S that holds it. Sets the explanation
could not narrow down (the budget was spent, the run was stopped, a re-send
was not delivered) are listed as `unconfirmed` as well. Each row's `detail`
says what the server's answers said: a set's own answer as a count, and a count
inferred by subtraction as what the counts of the sets around it suggest, never
as a failure of these identifiers.

Each `unconfirmed` row also says whether it is in the campaign now: it is when,
after the answer its detail quotes, it was re-sent in a set whose answer's
failures were all confirmed on other identifiers of that set (an answer of 0
among them): it did not fail there, so it was added or already a member. That
takes a failure confirmed later to have been one when that set was sent, as
unresolvable accounts stay so; a failure that does not repeat only ever goes
the other way. Otherwise the row says whether it was re-sent since at all.

Cost, in sets re-sent (a retry of one is counted in `explain_requests` too):
each set is sent at most once and the batch itself never (its answer is the
upload's), so a batch of n costs at most 2n - 2. For f failures in a batch
of n it is at most f * (ceil(log2(n / f)) + 2), none when f is 0 or n, as
the tests measure over every placement of failures in batches of up to 10
and random ones in batches of up to 2000; failures that do not repeat count
in f as the upload counted them. Of that, confirming the sets inferred to
fail whole costs about one request for every two failures.

Batches are explained concurrently; with a budget, one after another (the sets
of a batch still go concurrently), so the budget names what it can, batch by
batch, instead of narrowing every batch part of the way. Every request goes
through `Engine.deliver`: the same concurrency, pacing, retries and stop
handling as the upload. With a journal, each answer is
recorded by the digest of its set, so an interrupted explanation resumes
without asking again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from . import events as ev
from .batching import Batch, batch_digest
from .engine import Engine
from .identifiers import Lead, readable
from .reports import Reports

BUDGET_SPENT = "explain budget spent"
STOPPED = "the run was stopped"
NOT_DELIVERED = "a re-send was not delivered"

Span = tuple[int, int]  # [lo, hi) of a batch's leads


@dataclass
class Explanation:
    """What the explanation found: rows of (lead, detail)."""

    failed: list[tuple[Lead, str]] = field(default_factory=list)
    unconfirmed: list[tuple[Lead, str]] = field(default_factory=list)
    # Failures the upload counted in the explained batches that were not confirmed.
    failed_unconfirmed: int = 0
    # Unconfirmed rows re-sent since without failure: in the campaign now.
    unconfirmed_resolved: int = 0
    requests: int = 0


@dataclass
class _Loose:
    """A set that was not narrowed down, and how many failures the counts put in it."""

    span: Span
    count: int
    detail: str


class _Case:
    """One batch being explained: what its sets' answers said, and what is left to do."""

    def __init__(self, batch: Batch, failed: int) -> None:
        self.leads = batch.leads
        self.failed = failed
        whole = (0, len(batch.leads))
        # The answers of sets sent on their own: the batch's (the upload's) and re-sends.
        self.answers: dict[Span, int] = {whole: failed}
        self.confirmed: list[Span] = []
        self.loose: list[_Loose] = []
        # Sets still to explain: their count, and whether it is their own answer.
        self.open: dict[Span, tuple[int, bool]] = {whole: (failed, True)}

    def where(self, span: Span) -> str:
        return "upload" if span == (0, len(self.leads)) else "re-sent"


class Explainer:
    """Narrows down failed batches through the engine, within a request budget.

    `run` makes the requests; `conclude` (after it, however it ended, or without
    it) settles what is left open and returns the `Explanation`.
    """

    def __init__(
        self, engine: Engine, batches: list[tuple[Batch, int]], budget: int | None = None
    ) -> None:
        self.engine = engine
        self.budget = budget
        self._cases = [_Case(batch, failed) for batch, failed in batches]
        self._requests = 0
        self._seq = 0
        self._planned = 0
        # Identifiers confirmed failed, and in sets not narrowed down, so far.
        self._confirmed = 0
        self._loose = 0
        self._started = False

    async def run(self) -> None:
        """Explain every batch: concurrently (within the engine's limits), or within a
        budget one batch after another, each batch's sets still concurrently."""
        self._started = True
        total = sum(case.failed for case in self._cases)
        self.engine.emit(ev.PhaseStarted("explain", {"batches": len(self._cases), "failed": total}))
        if self.budget is None:
            await asyncio.gather(
                *(self._explain(case, next(iter(case.open))) for case in self._cases)
            )
        else:
            # Spread over every batch at once, a budget narrows each one part of the
            # way and names none; spent batch by batch, it names what it can.
            for case in self._cases:
                await self._explain(case, next(iter(case.open)))
        self._progress()

    def _progress(self, unconfirmed: int | None = None) -> None:
        """Say what is known so far: the identifiers confirmed failed, and those in sets
        not narrowed down (at the end, every identifier listed as unconfirmed)."""
        if unconfirmed is None:
            unconfirmed = self._loose
        self.engine.emit(ev.ExplainProgress(self._requests, self._confirmed, unconfirmed))

    def _confirm(self, case: _Case, span: Span) -> None:
        del case.open[span]
        case.confirmed.append(span)
        self._confirmed += span[1] - span[0]

    async def _explain(self, case: _Case, span: Span) -> None:
        """Explain the open set `span` of `case` (see the module docstring)."""
        count, real = case.open[span]
        lo, hi = span
        if count <= 0:
            del case.open[span]
            return
        if count >= hi - lo:
            if real:
                self._confirm(case, span)
                self._progress()
                return
            answer = await self._count_failed(case, span)
            if isinstance(answer, str):
                self._leave(case, span, answer)
                self._progress()
                return
            case.open[span] = (answer, True)
            await self._explain(case, span)
            return
        mid = lo + (hi - lo) // 2
        first = await self._count_failed(case, (lo, mid))
        if isinstance(first, str):
            self._leave(case, span, first)
            self._progress()
            return
        del case.open[span]
        case.open[(lo, mid)] = (first, True)
        branches = [self._explain(case, (lo, mid))]
        rest = count - first
        if rest < 0:
            detail = (
                f"not narrowed down: the answers disagree ({first} failed among the "
                f"{mid - lo} re-sent beside these, more than the {count} counted for both)"
            )
            case.loose.append(_Loose((mid, hi), 0, detail))
            self._loose += hi - mid
            self._progress()
        elif rest > 0:
            case.open[(mid, hi)] = (rest, False)
            branches.append(self._explain(case, (mid, hi)))
        await asyncio.gather(*branches)

    def _leave(self, case: _Case, span: Span, reason: str) -> None:
        """The open set `span` cannot be narrowed down: it is listed as unconfirmed."""
        count, real = case.open.pop(span)
        detail = _loose_detail(span, count, real, reason, case.where(span))
        case.loose.append(_Loose(span, count, detail))
        self._loose += span[1] - span[0]

    async def _count_failed(self, case: _Case, span: Span) -> int | str:
        """How many of the set `span` fail: from the journal, else from one request.
        When it cannot be known, why not."""
        engine = self.engine
        leads = case.leads[span[0] : span[1]]
        digest = batch_digest(engine.job.campaign + "#explain", leads)
        known = None if engine.journal is None else engine.journal.failed_of(digest)
        if known is None:
            if self.budget is not None and self._planned >= self.budget:
                return BUDGET_SPENT
            if engine.stopping:
                return STOPPED
            self._planned += 1  # taken from the budget now: the branches run concurrently
            self._seq += 1
            delivery = await engine.deliver(Batch(self._seq, leads), "explain")
            self._requests += delivery.attempts  # what went out, retries included
            if not delivery.delivered or delivery.answer is None:
                return STOPPED if engine.stopping else NOT_DELIVERED
            if engine.journal is not None:
                engine.journal.record(digest, self._seq, len(leads), delivery.answer, "explain")
            known = delivery.answer.failed
        case.answers[span] = known
        return known

    def conclude(self) -> Explanation:
        """Settle every set left open (a stop, or no run at all) and say what was found."""
        out = Explanation(requests=self._requests)
        for case in self._cases:
            for span in list(case.open):
                count, real = case.open[span]
                if count <= 0:
                    del case.open[span]
                elif real and count >= span[1] - span[0]:
                    self._confirm(case, span)  # the set's own answer: no request needed
                else:
                    self._leave(case, span, STOPPED)
            _conclude(case, out)
        if self._started:
            self._progress(len(out.unconfirmed))
        return out


def _conclude(case: _Case, out: Explanation) -> None:
    """The rows of one batch, once nothing is open."""
    n = len(case.leads)
    confirmed = [0] * n
    for lo, hi in case.confirmed:
        detail = _confirmed_detail((lo, hi), case.where((lo, hi)))
        out.failed.extend((lead, detail) for lead in case.leads[lo:hi])
        confirmed[lo:hi] = [1] * (hi - lo)
    listed: list[str | None] = [None] * n
    # The size of the set whose answer (or inferred count) each listed row quotes.
    quoted = [0] * n
    pending = [0] * n
    for loose in case.loose:
        lo, hi = loose.span
        listed[lo:hi] = [loose.detail] * (hi - lo)
        quoted[lo:hi] = [hi - lo] * (hi - lo)
        pending[lo] += loose.count
    # Prefix sums: the confirmed failures in a set, and the failures of the sets not
    # narrowed down inside it (every set is a node of the halving, so a loose one that
    # meets a set that was sent is inside it).
    confirmed_before = [0, *accumulate(confirmed)]
    pending_before = [0, *accumulate(pending)]
    # The smallest re-sent set holding each lead, and the smallest whose answer's
    # failures were all confirmed (elsewhere in it, for a lead not confirmed itself).
    resent, resolving = [n + 1] * n, [n + 1] * n
    by_size = sorted(case.answers, key=lambda s: s[1] - s[0])
    for lo, hi in reversed(by_size):
        if (lo, hi) == (0, n):
            continue  # the upload: nothing was sent before it
        resent[lo:hi] = [hi - lo] * (hi - lo)
        if confirmed_before[hi] - confirmed_before[lo] == case.answers[(lo, hi)]:
            resolving[lo:hi] = [hi - lo] * (hi - lo)
    for span in by_size:
        lo, hi = span
        counted = case.answers[span]
        found = confirmed_before[hi] - confirmed_before[lo]
        left = pending_before[hi] - pending_before[lo]
        if found + left >= counted:
            continue
        detail = _disagreement_detail(span, counted, found, left, case.where(span))
        for i in range(lo, hi):
            if not confirmed[i] and listed[i] is None:
                listed[i] = detail
                quoted[i] = hi - lo
    for i, (lead, why) in enumerate(zip(case.leads, listed, strict=True)):
        if why is None:
            continue
        # Sent again after the answer its detail quotes, within that set: a set whose
        # failures were all confirmed on other leads says this one did not fail.
        if resolving[i] < quoted[i]:
            out.unconfirmed_resolved += 1
            since = "re-sent since without failure: in the campaign now"
        elif resent[i] < quoted[i]:
            since = "re-sent since, in a set whose failures were not all confirmed"
        else:
            since = "not re-sent since"
        out.unconfirmed.append((lead, f"{why}; {since}"))
    out.failed_unconfirmed += max(0, case.failed - confirmed_before[n])


def _these(span: Span) -> str:
    size = span[1] - span[0]
    return "this one" if size == 1 else f"these {size}"


def _confirmed_detail(span: Span, where: str) -> str:
    size = span[1] - span[0]
    if where == "upload":
        return f"all {size} of its batch failed (upload)"
    if size == 1:
        return "failed again when re-sent alone"
    return f"all {size} failed again when re-sent together"


def _loose_detail(span: Span, count: int, real: bool, reason: str, where: str) -> str:
    """Why the set `span` is listed: a count, never a failure, is what is known of it."""
    size = span[1] - span[0]
    if real:
        return (
            f"its own answer counted {count} failed among {_these(span)} ({where}); "
            f"not narrowed down ({reason})"
        )
    # Inferred by subtraction: a guess about these identifiers, never a fact.
    if count >= size:
        guess = (
            "the counts of the sets around it suggest a failure here"
            if size == 1
            else f"the counts of the sets around them suggest each of these {size} failed"
        )
        return f"not checked ({reason}): {guess}, not confirmed"
    failures = "a failure" if count == 1 else f"{count} failures"
    return (
        f"not narrowed down ({reason}): the counts of the sets around them suggest "
        f"{failures} among these {size}, not confirmed"
    )


def _disagreement_detail(span: Span, counted: int, found: int, left: int, where: str) -> str:
    head = f"the server counted {counted} failed among {_these(span)} ({where})"
    if not found and not left:
        return f"{head}; none failed again when re-sent"
    parts = [f"{found} confirmed when re-sent"] if found else []
    if left:
        parts.append(f"{left} in sets not narrowed down (by their counts)")
    return f"{head}; {', '.join(parts)}, the rest did not fail again"


# The file's own columns, before the leads' data.
COLUMNS = ("identifier", "kind", "status", "detail", "source", "line")


def data_columns(keys: Iterable[str]) -> dict[str, str]:
    """The file's column for each data key: the key itself, unless it is named like
    one of the file's own columns (in any case, as spreadsheets compare them); then
    `data.` before it, as many times as it takes to name no other column."""
    keys = list(dict.fromkeys(keys))
    own = {c.casefold() for c in COLUMNS}
    taken = own | {k.casefold() for k in keys}
    names: dict[str, str] = {}
    for key in keys:
        name = key
        if key.casefold() in own:
            name = "data." + key
            while name.casefold() in taken:
                name = "data." + name
            taken.add(name.casefold())
        names[key] = name
    return names


def write_failed(reports: Reports, path: Path, explanation: Explanation) -> int:
    """Write the failed and the unconfirmed identifiers to `path` as CSV, through
    `reports` (a write that fails is said there, with the rows it may lack); return
    the rows."""
    found = [(lead, "failed", detail) for lead, detail in explanation.failed]
    found += [(lead, "unconfirmed", detail) for lead, detail in explanation.unconfirmed]
    found.sort(key=lambda row: (row[0].source, row[0].line))
    columns = data_columns(key for lead, _, _ in found if lead.data for key in lead.data)
    rows = [
        [
            readable(lead.kind, lead.value),
            lead.kind.value,
            status,
            detail,
            lead.source,
            lead.line,
            *(data.get(c, "") for c in columns),
        ]
        for lead, status, detail in found
        for data in [lead.data or {}]
    ]
    reports.write_table("--explain-failures", path, [*COLUMNS, *columns.values()], rows)
    return len(rows)
