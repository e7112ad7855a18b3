"""De-duplication and batching: pure, synchronous, deterministic.

The same inputs read with the same options always give the same batches in
the same order, with the same digests: the journal relies on that to skip
what an earlier run delivered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from .identifiers import HandleRun, Kind, Lead

MAX_BATCH = 2000
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


class Batcher:
    """Cuts a stream of unique leads into batches of at most `size`."""

    def __init__(self, size: int = MAX_BATCH) -> None:
        if not 1 <= size <= MAX_BATCH:
            raise ValueError(f"batch size must be 1-{MAX_BATCH}")
        self.size = size
        self.count = 0
        self._current: list[Lead] = []
        # Pending handles kept compact; never at the same time as _current.
        self._run: HandleRun | None = None

    def _expand_run(self) -> None:
        if self._run is not None:
            self._current = self._run.leads()
            self._run = None

    def add(self, lead: Lead) -> Batch | None:
        """Add one lead; return the batch it completes, if it does."""
        self._expand_run()
        self._current.append(lead)
        if len(self._current) >= self.size:
            return self.flush()
        return None

    def extend(self, leads: list[Lead]) -> list[Batch]:
        """Add many leads; return the batches they complete."""
        if not leads:
            return []
        self._expand_run()
        current = self._current
        current.extend(leads)
        size = self.size
        full = len(current) - len(current) % size
        batches = []
        for start in range(0, full, size):
            self.count += 1
            batches.append(Batch(self.count, current[start : start + size]))
        if full:
            self._current = current[full:]
        return batches

    def extend_run(self, run: HandleRun) -> list[Batch]:
        """Add a run of unique handles; batches stay compact where the run allows."""
        if self._current or (self._run is not None and not run.follows(self._run)):
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
        self.count += 1
        batch = Batch(self.count, self._current)
        self._current = []
        return batch

    @property
    def pending(self) -> int:
        """Leads waiting in the unfinished batch."""
        return len(self._current) + (len(self._run) if self._run is not None else 0)


def batches(leads: Iterable[Lead], size: int = MAX_BATCH) -> Iterator[Batch]:
    """Batch an iterable of leads (already unique)."""
    batcher = Batcher(size)
    for lead in leads:
        full = batcher.add(lead)
        if full is not None:
            yield full
    last = batcher.flush()
    if last is not None:
        yield last
