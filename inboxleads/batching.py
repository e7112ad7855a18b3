"""De-duplication and batching: pure, synchronous, deterministic.

The same inputs read with the same options always give the same batches in
the same order, with the same digests: the journal relies on that to skip
what an earlier run delivered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from .identifiers import HandleRun, Kind, Lead

MAX_BATCH = 2000
# Requests are also cut by the size of their JSON body (`--max-request-bytes`): a CSV
# with long text per row would otherwise make bodies of tens of MB, which proxies
# and servers refuse (413) and which all sit in memory while in flight.
DEFAULT_MAX_REQUEST_BYTES = 4_000_000
MIN_REQUEST_BYTES = 1024
# The body's fixed part ({"platform":"twitter","usernames":[],"leads":[]...}), rounded up.
BODY_OVERHEAD = 160
# An identifier without data takes at most this much of a body: the longest
# identifier (an external ID of 64 characters), its quotes and a comma.
_PLAIN_LEAD_MAX = 64 + 3
_USERNAME = Kind.USERNAME
_ARRAY_OF = {kind: kind.array for kind in Kind}
PLATFORM = "twitter"


class Deduper:
    """Remembers every identifier seen; usernames compare case-insensitively."""

    def __init__(self) -> None:
        # One set per kind keeps the keys short: a username and an ID that look
        # alike are different leads.
        self.seen: dict[Kind, set[str]] = {kind: set() for kind in Kind}
        # Counted here, where each identifier is kept or dropped.
        self.kept = 0
        self.dropped = 0

    def first_time(self, lead: Lead) -> bool:
        """True the first time this identifier is seen, False for a duplicate."""
        return bool(self.unique([lead]))

    def all_new_handles(self, handles: list[str]) -> bool:
        """Remember these usernames and return True when none was seen before (nor
        twice among them); otherwise remember nothing and return False."""
        keys = list(map(str.lower, handles))
        usernames = self.seen[_USERNAME]
        if not usernames.isdisjoint(keys) or len(set(keys)) != len(keys):
            return False
        usernames.update(keys)
        self.kept += len(keys)
        return True

    def unique(self, leads: Iterable[Lead]) -> list[Lead]:
        """The leads seen for the first time, in order (a whole chunk in one call:
        this loop runs once per input line)."""
        seen = self.seen
        usernames = seen[_USERNAME]
        out: list[Lead] = []
        for lead in leads:
            kind = lead.kind
            if kind is _USERNAME:
                key = lead.value.lower()
                keys = usernames
            else:
                key = lead.value
                keys = seen[kind]
            if key not in keys:
                keys.add(key)
                out.append(lead)
            else:
                self.dropped += 1
        self.kept += len(out)
        return out

    def __len__(self) -> int:
        return sum(len(s) for s in self.seen.values())


class Batch:
    """Up to `MAX_BATCH` leads sent in one request: `Lead` objects, or a compact
    run of handles whose `Lead` objects are only made if something asks."""

    def __init__(
        self, seq: int, leads: list[Lead] | None = None, run: HandleRun | None = None
    ) -> None:
        self.seq = seq
        self._leads = leads if leads is not None or run is not None else []
        self.run = run

    @property
    def leads(self) -> list[Lead]:
        if self._leads is None:
            self._leads = self.run.leads() if self.run is not None else []
        return self._leads

    @property
    def compact(self) -> bool:
        """True while the batch is still a plain run of handles (no `Lead` objects made)."""
        return self._leads is None and self.run is not None

    def __len__(self) -> int:
        if self._leads is None and self.run is not None:
            return len(self.run)
        return len(self.leads)

    def halves(self, first_seq: int) -> list[Batch]:
        """This batch's leads as two batches (numbered `first_seq` and the next), in order."""
        if self._leads is None and self.run is not None:
            run, mid = self.run, len(self.run) // 2
            return [
                Batch(first_seq, run=HandleRun(run.source, run.first_line, run.values[:mid])),
                Batch(
                    first_seq + 1,
                    run=HandleRun(run.source, run.first_line + mid, run.values[mid:]),
                ),
            ]
        leads, mid = self.leads, len(self.leads) // 2
        return [Batch(first_seq, leads[:mid]), Batch(first_seq + 1, leads[mid:])]

    def payload(self) -> dict[str, Any]:
        """The request body: compact arrays, and `leads` objects for those with data."""
        if self._leads is None and self.run is not None:
            return {"platform": PLATFORM, "usernames": self.run.values}
        return build_payload(self.leads)

    def digest(self, campaign: str) -> str:
        """A content hash of what this batch sends to which campaign."""
        if self._leads is None and self.run is not None:
            text = "username:" + "\nusername:".join(self.run.values)
            return hashlib.sha256(f"{campaign}\n{text}".encode()).hexdigest()[:32]
        return batch_digest(campaign, self.leads)


def build_payload(leads: Iterable[Lead]) -> dict[str, Any]:
    """The Add leads body for these leads, always naming the platform."""
    body: dict[str, Any] = {"platform": PLATFORM}
    objects: list[dict[str, Any]] = []
    arrays: dict[Kind, list[str]] = {}
    for lead in leads:
        if lead.data:
            objects.append({lead.kind: lead.value, "platform": PLATFORM, "data": lead.data})
        elif lead.kind in arrays:
            arrays[lead.kind].append(lead.value)
        else:
            arrays[lead.kind] = [lead.value]
    for kind, values in arrays.items():
        body[_ARRAY_OF[kind]] = values
    if objects:
        body["leads"] = objects
    return body


def batch_digest(campaign: str, leads: Iterable[Lead]) -> str:
    """SHA-256 over the campaign and each lead's kind and value, in order."""
    text = "\n".join(f"{lead.kind}:{lead.value}" for lead in leads)
    return hashlib.sha256(f"{campaign}\n{text}".encode()).hexdigest()[:32]


def lead_bytes(lead: Lead) -> int:
    """How many bytes `lead` adds to a request body (as `InboxClient` encodes it)."""
    if lead.data:
        obj = {lead.kind: lead.value, "platform": PLATFORM, "data": lead.data}
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        return len(text.encode()) + 1
    return len(lead.value) + 3


class Batcher:
    """Cuts a stream of unique leads into batches of at most `size` leads and at most
    `max_bytes` of request body (a lead larger than that on its own goes alone)."""

    def __init__(self, size: int = MAX_BATCH, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        if not 1 <= size <= MAX_BATCH:
            raise ValueError(f"batch size must be 1-{MAX_BATCH}")
        if max_bytes < MIN_REQUEST_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_REQUEST_BYTES}")
        self.size = size
        self.max_bytes = max_bytes
        # Whether leads without data can fill a whole batch without reaching the byte
        # cap (the default): then only leads with data are measured.
        self._count_is_enough = size * _PLAIN_LEAD_MAX + BODY_OVERHEAD <= max_bytes
        self.count = 0
        # Batches cut short by the byte cap, and the largest body measured (dry-run report).
        self.cut_by_size = 0
        self.largest_measured = 0
        # Leads larger than the cap on their own (each goes in a request of its own).
        self.oversize = 0
        self._current: list[Lead] = []
        # The body size of `_current` when it was measured (None: it holds only
        # leads without data, which were counted, not measured).
        self._current_bytes: int | None = None
        # Pending handles kept compact; never at the same time as _current.
        self._run: HandleRun | None = None

    def _expand_run(self) -> None:
        if self._run is not None:
            self._current = self._run.leads()
            self._current_bytes = None
            self._run = None

    def add(self, lead: Lead) -> Batch | None:
        """Add one lead; return the batch it completes, if it does (see `extend`)."""
        full = self.extend([lead])
        if len(full) > 1:  # only with a batch size of 1: keep every batch
            raise ValueError("add() completed two batches; use extend()")
        return full[0] if full else None

    def extend(self, leads: list[Lead]) -> list[Batch]:
        """Add many leads; return the batches they complete."""
        if not leads:
            return []
        self._expand_run()
        # Measured while the batch being filled holds data (its size is then known),
        # or when these leads bring some; leads without data are only counted.
        if (
            not self._count_is_enough
            or (self._current_bytes is not None and self._current)
            or any(lead.data for lead in leads)
        ):
            return self._extend_measured(leads)
        current = self._current
        current.extend(leads)
        size = self.size
        full = len(current) - len(current) % size
        batches = []
        for start in range(0, full, size):
            batches.append(self._cut(current[start : start + size]))
        if full:
            self._current = current[full:]
        # Leads without data, counted only: not measured.
        self._current_bytes = None
        return batches

    def _extend_measured(self, leads: list[Lead]) -> list[Batch]:
        """`extend`, measuring each lead's share of the body."""
        current = self._current
        used = self._current_bytes
        if used is None:
            used = BODY_OVERHEAD + sum(map(lead_bytes, current))
        size, cap = self.size, self.max_bytes
        batches = []
        for lead in leads:
            cost = lead_bytes(lead)
            if cost + BODY_OVERHEAD > cap:
                self.oversize += 1
            if current and used + cost > cap:
                self.cut_by_size += 1
                batches.append(self._cut(current, used))
                current, used = [], BODY_OVERHEAD
            current.append(lead)
            used += cost
            if len(current) >= size:
                batches.append(self._cut(current, used))
                current, used = [], BODY_OVERHEAD
        self._current = current
        self._current_bytes = used if current else None
        return batches

    def _cut(self, leads: list[Lead], measured: int = 0) -> Batch:
        self.count += 1
        self.largest_measured = max(self.largest_measured, measured)
        return Batch(self.count, leads)

    def split(self, batch: Batch) -> list[Batch]:
        """`batch` as two halves, numbered after every batch formed so far."""
        self.count += 2
        return batch.halves(self.count - 1)

    def extend_run(self, run: HandleRun) -> list[Batch]:
        """Add a run of unique handles; batches stay compact where the run allows."""
        if (
            self._current
            or not self._count_is_enough
            or (self._run is not None and not run.follows(self._run))
        ):
            return self.extend(run.leads())
        if self._run is not None:
            run = HandleRun(run.source, self._run.first_line, self._run.values + run.values)
        batches = []
        size = self.size
        start = 0
        while len(run.values) - start >= size:
            self.count += 1
            part = HandleRun(run.source, run.first_line + start, run.values[start : start + size])
            batches.append(Batch(self.count, run=part))
            start += size
        rest = run.values[start:]
        self._run = HandleRun(run.source, run.first_line + start, rest) if rest else None
        return batches

    def flush(self) -> Batch | None:
        """Return the partial batch, if any (end of input, or a slow pipe went quiet)."""
        if self._run is not None:
            self.count += 1
            batch = Batch(self.count, run=self._run)
            self._run = None
            return batch
        if not self._current:
            return None
        batch = self._cut(self._current, self._current_bytes or 0)
        self._current = []
        self._current_bytes = None
        return batch

    @property
    def pending(self) -> int:
        """Leads waiting in the unfinished batch."""
        return len(self._current) + (len(self._run) if self._run is not None else 0)


def batches(
    leads: Iterable[Lead], size: int = MAX_BATCH, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES
) -> Iterator[Batch]:
    """Batch an iterable of leads (already unique)."""
    batcher = Batcher(size, max_bytes)
    for lead in leads:
        yield from batcher.extend([lead])
    last = batcher.flush()
    if last is not None:
        yield last
