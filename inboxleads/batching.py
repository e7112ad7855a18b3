"""De-duplication and batching: pure, synchronous, deterministic.

The same inputs read with the same options always give the same batches in
the same order, with the same digests: the journal relies on that to skip
what an earlier run delivered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .identifiers import Kind, Lead

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

    def first_time(self, lead: Lead) -> bool:
        """True the first time this identifier is seen, False for a duplicate."""
        return bool(self.unique([lead]))

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
        return out

    def __len__(self) -> int:
        return sum(len(s) for s in self.seen.values())


@dataclass
class Batch:
    """Up to `MAX_BATCH` leads sent in one request."""

    seq: int
    leads: list[Lead] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.leads)

    def payload(self) -> dict[str, Any]:
        """The request body: compact arrays, and `leads` objects for those with data."""
        return build_payload(self.leads)

    def digest(self, campaign: str) -> str:
        """A content hash of what this batch sends to which campaign."""
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

    def add(self, lead: Lead) -> Batch | None:
        """Add one lead; return the batch it completes, if it does."""
        self._current.append(lead)
        if len(self._current) >= self.size:
            return self.flush()
        return None

    def extend(self, leads: list[Lead]) -> list[Batch]:
        """Add many leads; return the batches they complete."""
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

    def flush(self) -> Batch | None:
        """Return the partial batch, if any (end of input, or a slow pipe went quiet)."""
        if not self._current:
            return None
        self.count += 1
        batch = Batch(self.count, self._current)
        self._current = []
        return batch

    @property
    def pending(self) -> int:
        """Leads waiting in the unfinished batch."""
        return len(self._current)


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
