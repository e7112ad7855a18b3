"""The live totals a display folds from events, and the `--json` summary object.

The contract's invariants are checked where they can fail: tests/test_ledger.py
(the ledger's own checks) and tests/test_engine_random.py (runs against the sandbox).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from inboxleads import events as ev
from inboxleads.accounting import Summary, Tally
from inboxleads.events import Rejection
from inboxleads.ledger import Counts

from .conftest import CONTRACT_KEYS

REJECTION = Rejection("leads.txt", 3, "not a handle!", "character '!' is not allowed")

# 12 records: 1 rejected, 2 duplicates, 9 unique in 3 batches of 4, 4 and 1.
# Batch 1 is delivered at once, batch 2 after a 429, batch 3 is out of attempts.
RUN: list[ev.Event] = [
    ev.PhaseStarted("upload"),
    ev.RecordsRead(read=12, rejected=1, duplicates=2, rejections=(REJECTION,)),
    ev.BatchQueued(seq=1, size=4),
    ev.RequestStarted(seq=1, size=4, attempt=1),
    ev.RequestEnded(seq=1, status=200),
    ev.BatchDelivered(seq=1, size=4, added=3, skipped=1, failed=0, attempts=1),
    ev.BatchQueued(seq=2, size=4),
    ev.RequestStarted(seq=2, size=4, attempt=1),
    ev.RequestEnded(seq=2, status=429),
    ev.RetryScheduled(seq=2, attempt=1, reason="429", wait_s=2.0),
    ev.RatePaused(wait_s=2.0, reason="429: rate limited", resume_at=1002.0),
    ev.RequestStarted(seq=2, size=4, attempt=2),
    ev.RequestEnded(seq=2, status=200),
    ev.BatchDelivered(seq=2, size=4, added=2, skipped=0, failed=2, attempts=2),
    ev.BatchQueued(seq=3, size=1),
    ev.InputFinished(batches=3),
    ev.RequestStarted(seq=3, size=1, attempt=1),
    ev.RequestEnded(seq=3, status=None),
    ev.BatchUndelivered(seq=3, size=1, reason="connection error", attempts=1),
]


def fold(events: list[ev.Event]) -> Tally:
    tally = Tally()
    for event in events:
        tally.apply(event)
    return tally


def summary_of(
    events: list[ev.Event], counts: Counts | None = None, dry_run: bool = False, exit_code: int = 0
) -> dict[str, Any]:
    return Summary("camp1", counts or Counts(), fold(events), dry_run, 1.23456, exit_code).to_json()


def test_summary_has_every_key_the_contract_names() -> None:
    assert set(summary_of(RUN)) >= CONTRACT_KEYS


def test_summary_is_one_json_serialisable_object() -> None:
    text = json.dumps(summary_of(RUN))
    assert "\n" not in text
    assert json.loads(text)["campaign"] == "camp1"


def test_summary_takes_the_contracts_numbers_from_the_ledger_and_requests_from_events() -> None:
    counts = Counts(
        read=12, rejected=1, duplicates=2, unique=9, batches=3, delivered=8, undelivered=1,
        added=5, skipped=1, failed=2, undelivered_reasons=Counter({"connection error": 1}),
    )  # fmt: skip
    out = summary_of(RUN, counts, exit_code=1)
    assert {k: out[k] for k in CONTRACT_KEYS - {"campaign"}} == {
        "read": 12,
        "rejected": 1,
        "duplicates": 2,
        "unique": 9,
        "batches": 3,
        "requests": 4,
        "retries": 1,
        "added": 5,
        "skipped": 1,
        "failed": 2,
        "delivered": 8,
        "undelivered": 1,
        "resumed": 0,
        "dry_run": False,
        "elapsed_s": 1.235,
        "exit_code": 1,
    }
    assert out["undelivered_reasons"] == {"connection error": 1}
    assert out["stop_reason"] is None


def test_every_request_that_ended_leaves_nothing_in_flight() -> None:
    tally = fold(RUN)
    assert tally.in_flight == 0
    assert tally.by_status == {"200": 2, "429": 1, "error": 1}


def test_summary_lists_the_answers_by_status() -> None:
    assert summary_of(RUN)["responses"] == {"200": 2, "429": 1, "error": 1}


def test_explain_requests_count_as_requests_but_not_as_upload_retries() -> None:
    events: list[ev.Event] = [
        ev.RequestStarted(seq=1, size=4, attempt=1),
        ev.RequestEnded(seq=1, status=200),
        ev.PhaseStarted("explain"),
        ev.RequestStarted(seq=1, size=2, attempt=1, phase="explain"),
        ev.RequestEnded(seq=1, status=200, phase="explain"),
        ev.RequestStarted(seq=1, size=2, attempt=2, phase="explain"),
        ev.RequestEnded(seq=1, status=200, phase="explain"),
        ev.ExplainProgress(requests=2, identified=1, unconfirmed=1),
    ]
    out = summary_of(events)
    assert (out["requests"], out["upload_requests"], out["retries"]) == (3, 1, 0)
    tally = fold(events)
    assert (tally.phase, tally.explain_identified, tally.explain_unconfirmed) == ("explain", 1, 1)


def test_rate_pause_and_stop_are_remembered_for_the_display() -> None:
    tally = fold([RUN[10], ev.Stopping("interrupted")])
    assert (tally.paused_until, tally.pause_reason) == (1002.0, "429: rate limited")
    assert tally.stopping == "interrupted"


def test_extra_summary_keys_are_added() -> None:
    out = Summary("camp1", Counts(), Tally(), False, 0.0, 0, extra={"explained": 3}).to_json()
    assert out["explained"] == 3
    assert set(out) >= CONTRACT_KEYS
