"""The sandbox's pure half: body validation, the resolution rule, campaign state.

Nothing here knows about HTTP; `inboxleads.sandbox.app` wraps it in an ASGI app.
The rules are those documented in the docstring of `inboxleads.sandbox`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import half_character

MAX_ARRAY = 2000
"""Items per array, per the API reference."""

KINDS = ("platformId", "username", "externalId")
"""Identifier kinds, named as the keys of a lead object."""

ARRAYS = (("platformIds", "platformId"), ("usernames", "username"), ("externalIds", "externalId"))
"""Body arrays of bare identifiers and the kind of their items, in processing order."""

_BODY_KEYS = frozenset({"platform", "platformIds", "usernames", "externalIds", "leads"})
_LOGGED = ("usernames", "platformIds", "externalIds", "leads")
_LEAD_KEYS = frozenset({"platformId", "username", "externalId", "platform", "data"})


class BodyError(ValueError):
    """A request body the endpoint refuses with 400; the message names the field and why."""


def validate_body(body: object, max_total: int) -> dict[str, Any]:
    """Return `body` if the endpoint accepts it, else raise `BodyError`."""
    if not isinstance(body, dict):
        raise BodyError("body: must be a JSON object")
    unknown = body.keys() - _BODY_KEYS
    if unknown:
        raise BodyError(f"{sorted(unknown)[0]}: unknown field")
    if "platform" in body and body["platform"] != "twitter":
        raise BodyError('platform: must be "twitter"')
    present = False
    total = 0
    for name, _kind in ARRAYS:
        if name in body:
            present = True
            total += _check_strings(name, body[name])
    if "leads" in body:
        present = True
        total += _check_leads(body["leads"])
    if not present:
        raise BodyError("body: one of platformIds, usernames, externalIds or leads is required")
    if total > max_total:
        raise BodyError(f"body: {total} identifiers in one request, at most {max_total} allowed")
    return body


# A JSON escape of a surrogate (\ud800 to \udfff, any case): the only way half of a
# character gets into a body read from strictly decoded text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]").search

# Writes what was read back as JSON text, halves of characters as they are.
_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)

# Where a value sits in a body: None for the body, else (the parent's path, its key or
# index); spelled out only for an error message.
_Path = tuple[Any, str | int] | None


def check_whole_characters(text: str, body: object) -> None:
    """Raise `BodyError` when a string or key of `body`, read from the JSON `text`,
    holds half of a character: a lone surrogate escape such as ``\\ud800`` (a pair,
    ``\\ud83d\\ude00``, reads as the one character it writes). UTF-8 cannot carry one,
    so no answer could show it back. Only a text with such an escape is looked through.
    """
    if _SURROGATE_ESCAPE(text) is None:
        return
    try:
        # One C-level pass for the common case, a pair (an emoji written in ASCII).
        if half_character(_ENCODER.encode(body)) is None:
            return
    except RecursionError:
        pass
    # Depth first, in document order, without recursion (a body may nest deeply).
    stack: list[tuple[_Path, object]] = [(None, body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            problem = half_character(value)
            if problem is not None:
                raise BodyError(f"{_spell(path)}: {problem}")
        elif isinstance(value, dict):
            for key in value:
                problem = half_character(key)
                if problem is not None:
                    raise BodyError(f"{_spell(path)}: a key {problem}")
            stack.extend(((path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((path, index), item) for index, item in reversed(list(enumerate(value))))


def _spell(path: _Path) -> str:
    """A path of `check_whole_characters` as the messages name fields: ``leads[0].data.a``."""
    steps: list[str | int] = []
    while path is not None:
        path, step = path
        steps.append(step)
    steps.reverse()
    # A key at the top names itself; the body, or an index into it, is "body".
    first = steps[0] if steps else None
    spelled = "body"
    if isinstance(first, str):
        spelled, steps = first, steps[1:]
    for step in steps:
        spelled += f"[{step}]" if isinstance(step, int) else f".{step}"
    return spelled


def _check_array(name: str, value: object) -> list[Any]:
    if not isinstance(value, list):
        raise BodyError(f"{name}: must be an array")
    if not 1 <= len(value) <= MAX_ARRAY:
        raise BodyError(f"{name}: must have 1 to {MAX_ARRAY} items, got {len(value)}")
    return value


def _check_strings(name: str, value: object) -> int:
    items = _check_array(name, value)
    # C-level passes over the list; the index is only looked for once something is wrong.
    if set(map(type, items)) != {str} or "" in items:
        index = next(i for i, item in enumerate(items) if type(item) is not str or not item)
        raise BodyError(f"{name}[{index}]: must be a non-empty string")
    return len(items)


def _check_leads(value: object) -> int:
    leads = _check_array("leads", value)
    for index, lead in enumerate(leads):
        where = f"leads[{index}]"
        if not isinstance(lead, dict):
            raise BodyError(f"{where}: must be an object")
        unknown = lead.keys() - _LEAD_KEYS
        if unknown:
            raise BodyError(f"{where}.{sorted(unknown)[0]}: unknown field")
        identifiers = [kind for kind in KINDS if kind in lead]
        if len(identifiers) != 1:
            raise BodyError(f"{where}: needs exactly one of platformId, username or externalId")
        identifier = lead[identifiers[0]]
        if type(identifier) is not str or not identifier:
            raise BodyError(f"{where}.{identifiers[0]}: must be a non-empty string")
        if "platform" in lead and lead["platform"] != "twitter":
            raise BodyError(f'{where}.platform: must be "twitter"')
        if "data" in lead:
            data = lead["data"]
            if not isinstance(data, dict):
                raise BodyError(f"{where}.data: must be an object")
            for key, item in data.items():
                if type(item) is not str:
                    raise BodyError(f"{where}.data.{key}: must be a string")
    return len(leads)


def lead_identifier(lead: dict[str, Any]) -> tuple[str, str]:
    """The (kind, value) of a validated lead object."""
    for kind in KINDS:
        if kind in lead:
            return kind, lead[kind]
    raise AssertionError("lead without identifier passed validation")


def count_usernames(body: dict[str, Any]) -> int:
    """How many usernames a validated body carries (they cost the server a profile fetch)."""
    return len(body.get("usernames", ())) + sum(
        1 for lead in body.get("leads", ()) if "username" in lead
    )


# Whether a value resolves, in one C-level match each (the hot path of a benchmark):
# the format, and the "deleted account" marker as a lookahead / lookbehind.
_RESOLVES: dict[str, Callable[[str], object]] = {
    "username": re.compile(r"(?!(?i:gone))[A-Za-z0-9_]{1,15}").fullmatch,
    # 19 digits at most already keeps the value below 2**64.
    "platformId": re.compile(r"[0-9]{1,19}(?<!404)").fullmatch,
    "externalId": re.compile(r"(?!gone)[0-9a-z]+").fullmatch,
}


# Identifiers that fail the first time a campaign receives them and resolve on every
# later send (a transient upstream failure), found by one C-level search over a body's
# values joined with line breaks around each: a body without any (a benchmark sends a
# million handles) costs nothing more. Each match holds at least one character of the
# value; the line breaks around that character delimit it.
_FLAKY: dict[str, re.Pattern[str]] = {
    "username": re.compile(r"\n[Ff][Ll][Aa][Kk][Yy]"),
    "platformId": re.compile(r"503\n"),
    "externalId": re.compile(r"\nflaky"),
}


def _flaky_in(kind: str, values: list[str]) -> list[str]:
    """The flaky values among `values` (which resolve, so none holds a line break)."""
    joined = "\n" + "\n".join(values) + "\n"
    found: list[str] = []
    for match in _FLAKY[kind].finditer(joined):
        inside = match.start() + (joined[match.start()] == "\n")
        found.append(joined[joined.rfind("\n", 0, inside) + 1 : joined.find("\n", inside)])
    return found


def _key(kind: str, value: str) -> str:
    """How a campaign tells identifiers apart: usernames compared lower-case."""
    return value.lower() if kind == "username" else value


class _Campaign:
    __slots__ = ("bodies", "data", "members", "seen_flaky")

    def __init__(self) -> None:
        # One set per kind: the same text as a username and as an external ID is two leads.
        self.members: dict[str, set[str]] = {kind: set() for kind in KINDS}
        self.bodies: list[dict[str, Any]] = []
        # The `data` each lead came with when it was added, by (kind, key); a re-send
        # is skipped, data and all, so the first data stays.
        self.data: dict[tuple[str, str], dict[str, str]] = {}
        # The flaky identifiers this campaign has received once (and failed).
        self.seen_flaky: dict[str, set[str]] = {kind: set() for kind in KINDS}

    def first_sends(self, kind: str, values: list[str]) -> list[str]:
        """`values` (all resolving) without the flaky ones received for the first time:
        those fail now, and are remembered, so they resolve when received again."""
        found = _flaky_in(kind, values)
        if not found:
            return values
        seen = self.seen_flaky[kind]
        first: dict[str, str] = {}  # key -> its first occurrence, `found` being in order
        for value in found:
            key = _key(kind, value)
            if key not in seen and key not in first:
                first[key] = value
        if not first:
            return values
        seen.update(first)
        # Only the first occurrence of each fails: a repeat in the same body resolves.
        kept = list(values)
        for index in sorted((values.index(value) for value in first.values()), reverse=True):
            del kept[index]
        return kept

    def first_send(self, kind: str, value: str) -> bool:
        """Whether `value` (resolving) is flaky and received for the first time (it fails)."""
        return not self.first_sends(kind, [value])


class SandboxState:
    """Campaign membership, the data each lead came with, and a log of what the sandbox
    received.

    Safe to read from another thread while the server runs in a thread of its own.
    The bodies returned are the server's own objects: read them, don't mutate them.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        # For benchmarks: when the first request arrived and the last answer was ready.
        self.first_arrival: float | None = None
        self.last_answer: float | None = None
        # When the first request for each campaign arrived, at either endpoint (a client's
        # look-up included): how long a client took to start, on a clock it can share.
        self._first_request: dict[str, float] = {}
        self._campaigns: dict[str, _Campaign] = {}
        self._by_status: dict[int, int] = {}
        self._lookups: dict[int, int] = {}
        self._faults: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    def enter(self) -> None:
        """A request arrived: count it in flight (to show a client's real concurrency)."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.first_arrival is None:
                self.first_arrival = self._clock()

    def arrive(self, campaign: str) -> None:
        """A request for `campaign` arrived at either endpoint, whether it is answered or
        refused: remember when, if it is the campaign's first."""
        with self._lock:
            if campaign not in self._first_request:
                self._first_request[campaign] = self._clock()

    def first_requests(self) -> dict[str, float]:
        """When the first request for each campaign arrived, on the state's clock."""
        with self._lock:
            return dict(self._first_request)

    def leave(self) -> None:
        """A request was answered (or broken off)."""
        with self._lock:
            self.in_flight -= 1
            self.last_answer = self._clock()

    def apply(self, campaign: str, body: dict[str, Any]) -> tuple[int, int, int]:
        """Add a validated body's identifiers to `campaign`; return (added, skipped, failed)."""
        added = skipped = failed = 0
        with self._lock:
            state = self._campaigns.get(campaign)
            if state is None:
                state = self._campaigns[campaign] = _Campaign()
            state.bodies.append(body)
            for name, kind in ARRAYS:
                values = body.get(name)
                if not values:
                    continue
                # Counts only, so whole-list operations do: what resolves, minus what the
                # set already held (earlier in this request included), was added.
                resolved = state.first_sends(kind, list(filter(_RESOLVES[kind], values)))
                members = state.members[kind]
                before = len(members)
                members.update(map(str.lower, resolved) if kind == "username" else resolved)
                failed += len(values) - len(resolved)
                added += len(members) - before
                skipped += len(resolved) - (len(members) - before)
            for lead in body.get("leads", ()):
                kind, value = lead_identifier(lead)
                if not _RESOLVES[kind](value) or state.first_send(kind, value):
                    failed += 1
                    continue
                key = _key(kind, value)
                members = state.members[kind]
                if key in members:
                    skipped += 1
                else:
                    members.add(key)
                    added += 1
                    if "data" in lead:
                        state.data[kind, key] = lead["data"]
        return added, skipped, failed

    def record_status(self, status: int) -> None:
        """Count an answer sent by the leads endpoint."""
        with self._lock:
            self._by_status[status] = self._by_status.get(status, 0) + 1

    def record_lookup(self, status: int) -> None:
        """Count an answer sent by the campaign endpoint (``GET /campaigns/{id}``)."""
        with self._lock:
            self._lookups[status] = self._lookups.get(status, 0) + 1

    def record_fault(self, fault: str) -> None:
        """Count a request left without an answer: "drop", "lost", "hang" or "shutdown"."""
        with self._lock:
            self._faults[fault] = self._faults.get(fault, 0) + 1

    def received(self, campaign: str) -> list[tuple[str, str]]:
        """Each (kind, value) of each applied request to `campaign`, in order, re-sends included."""
        out: list[tuple[str, str]] = []
        for body in self.bodies(campaign):
            for name, kind in ARRAYS:
                out.extend((kind, value) for value in body.get(name, ()))
            out.extend(lead_identifier(lead) for lead in body.get("leads", ()))
        return out

    def members(self, campaign: str) -> set[tuple[str, str]]:
        """The (kind, key) of each lead in `campaign`; usernames lower-cased."""
        with self._lock:
            state = self._campaigns.get(campaign)
            if state is None:
                return set()
            return {(kind, key) for kind, keys in state.members.items() for key in keys}

    def count(self, campaign: str) -> int:
        """How many leads `campaign` holds."""
        with self._lock:
            state = self._campaigns.get(campaign)
            return sum(map(len, state.members.values())) if state else 0

    def data(self, campaign: str) -> dict[tuple[str, str], dict[str, str]]:
        """The `data` object each lead of `campaign` was added with, by (kind, key) as in
        `members`; leads added without one (bare identifiers too) are not in it."""
        with self._lock:
            state = self._campaigns.get(campaign)
            return {lead: dict(data) for lead, data in state.data.items()} if state else {}

    def lookups(self) -> dict[int, int]:
        """Answers sent by the campaign endpoint, by status code; not in the leads counts."""
        with self._lock:
            return dict(self._lookups)

    def requests_by_status(self) -> dict[int, int]:
        """Answers sent by the leads endpoint, by status code (unanswered requests not included)."""
        with self._lock:
            return dict(self._by_status)

    def faults(self) -> dict[str, int]:
        """Requests left without an answer, by fault (see `record_fault`); "lost" were applied."""
        with self._lock:
            return dict(self._faults)

    def total_requests(self) -> int:
        """Every request the leads endpoint got, answered or not."""
        with self._lock:
            return sum(self._by_status.values()) + sum(self._faults.values())

    def bodies(self, campaign: str) -> list[dict[str, Any]]:
        """The JSON bodies applied to `campaign`, in order."""
        with self._lock:
            state = self._campaigns.get(campaign)
            return list(state.bodies) if state else []

    def campaigns(self) -> list[str]:
        """Campaigns that received at least one applied request."""
        with self._lock:
            return list(self._campaigns)

    def snapshot(self) -> dict[str, Any]:
        """Everything above as one JSON-ready object (served at ``/_sandbox/state``)."""
        campaigns: dict[str, Any] = {}
        for campaign in self.campaigns():
            with self._lock:
                state = self._campaigns[campaign]
                size = sum(len(keys) for keys in state.members.values())
                bodies = list(state.bodies)
                data = {f"{kind}:{key}": value for (kind, key), value in state.data.items()}
            requests = [{name: body.get(name, []) for name in _LOGGED} for body in bodies]
            campaigns[campaign] = {"members": size, "requests": requests, "data": data}
        by_status = self.requests_by_status()
        faults = self.faults()
        return {
            "requests": sum(by_status.values()) + sum(faults.values()),
            "by_status": {str(status): n for status, n in sorted(by_status.items())},
            "faults": faults,
            "lookups": {str(status): n for status, n in sorted(self.lookups().items())},
            "max_in_flight": self.max_in_flight,
            # Seconds on the state's clock (default `time.monotonic`, shared by local processes).
            "timing": {
                "first_arrival": self.first_arrival,
                "last_answer": self.last_answer,
                "first_request_by_campaign": self.first_requests(),
            },
            "campaigns": campaigns,
        }
