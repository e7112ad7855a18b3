"""The counts of a run, folded from its events, and the `--json` summary."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inboxleads import events as ev
from inboxleads.accounting import Summary, Tally
from inboxleads.inputs import Rejection

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


def summary_of(events: list[ev.Event], dry_run: bool = False, exit_code: int = 0) -> dict[str, Any]:
    return Summary("camp1", fold(events), dry_run, 1.23456, exit_code).to_json()


def test_summary_has_every_key_the_contract_names() -> None:
    assert set(summary_of(RUN)) >= CONTRACT_KEYS


def test_summary_is_one_json_serialisable_object() -> None:
    text = json.dumps(summary_of(RUN))
    assert "\n" not in text
    assert json.loads(text)["campaign"] == "camp1"


def test_summary_counts_a_run_as_the_user_sees_it() -> None:
    out = summary_of(RUN, exit_code=1)
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


def test_counts_hold_the_contracts_invariants_after_a_run() -> None:
    tally = fold(RUN)
    tally.check()
    assert tally.read == tally.rejected + tally.duplicates + tally.unique
    assert tally.unique == tally.delivered + tally.undelivered + tally.resumed


def test_check_fails_while_identifiers_are_still_pending() -> None:
    tally = fold(RUN[:8])
    assert tally.pending == 5
    with pytest.raises(AssertionError):
        tally.check()


def test_every_request_that_ended_leaves_nothing_in_flight() -> None:
    tally = fold(RUN)
    assert tally.in_flight == 0
    assert tally.by_status == {"200": 2, "429": 1, "error": 1}


def test_summary_lists_the_answers_by_status() -> None:
    assert summary_of(RUN)["responses"] == {"200": 2, "429": 1, "error": 1}


def test_added_skipped_failed_are_the_servers_counts_not_batch_sizes() -> None:
    tally = fold([ev.BatchDelivered(seq=1, size=10, added=0, skipped=0, failed=0, attempts=1)])
    assert (tally.delivered, tally.added, tally.skipped, tally.failed) == (10, 0, 0, 0)


def test_resumed_batches_count_as_resumed_not_delivered() -> None:
    tally = fold(
        [
            ev.RecordsRead(read=5, rejected=0, duplicates=0),
            ev.BatchQueued(seq=1, size=5),
            ev.BatchResumed(seq=1, size=5),
        ]
    )
    tally.check()
    assert (tally.resumed, tally.delivered, tally.requests, tally.batches_done) == (5, 0, 0, 1)


def test_dry_run_counts_batches_but_delivers_nothing() -> None:
    events: list[ev.Event] = [
        ev.RecordsRead(read=3000, rejected=10, duplicates=90),
        ev.BatchQueued(seq=1, size=2000),
        ev.BatchQueued(seq=2, size=900),
        ev.InputFinished(batches=2),
    ]
    out = summary_of(events, dry_run=True)
    assert out["dry_run"] is True
    assert (out["batches"], out["requests"], out["delivered"], out["undelivered"]) == (2, 0, 0, 0)
    assert out["unique"] == 2900


def test_explain_requests_count_as_requests_but_not_as_upload_retries() -> None:
    events: list[ev.Event] = [
        ev.RequestStarted(seq=1, size=4, attempt=1),
        ev.RequestEnded(seq=1, status=200),
        ev.PhaseStarted("explain"),
        ev.RequestStarted(seq=1, size=2, attempt=1, phase="explain"),
        ev.RequestEnded(seq=1, status=200, phase="explain"),
        ev.RequestStarted(seq=1, size=2, attempt=2, phase="explain"),
        ev.RequestEnded(seq=1, status=200, phase="explain"),
        ev.ExplainProgress(requests=2, identified=1, unexplained=1),
    ]
    out = summary_of(events)
    assert (out["requests"], out["upload_requests"], out["retries"]) == (3, 1, 0)
    tally = fold(events)
    assert (tally.phase, tally.explain_identified, tally.explain_unexplained) == ("explain", 1, 1)


def test_rate_pause_and_stop_are_remembered_for_the_display() -> None:
    tally = fold([RUN[10], ev.Stopping("interrupted")])
    assert (tally.paused_until, tally.pause_reason) == (1002.0, "429: rate limited")
    assert tally.stopping == "interrupted"


def test_extra_summary_keys_are_added() -> None:
    out = Summary("camp1", Tally(), False, 0.0, 0, extra={"explained": 3}).to_json()
    assert out["explained"] == 3
    assert set(out) >= CONTRACT_KEYS


# A run: chunks of input, then one outcome per batch.
outcomes = st.lists(
    st.tuples(
        st.integers(1, 50),  # batch size
        st.sampled_from(["delivered", "resumed", "undelivered"]),
        st.integers(1, 4),  # attempts
        st.integers(0, 50),  # failed (capped at size)
    ),
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(
    batches=outcomes,
    rejected=st.integers(0, 20),
    duplicates=st.integers(0, 20),
)
def test_any_run_folds_to_counts_that_add_up(
    batches: list[tuple[int, str, int, int]], rejected: int, duplicates: int
) -> None:
    unique = sum(size for size, *_ in batches)
    # Duplicates arrive in a later chunk than their first sighting.
    events: list[ev.Event] = [
        ev.RecordsRead(unique + rejected, rejected, 0),
        ev.RecordsRead(duplicates, 0, duplicates),
    ]
    requests = retries = failed_total = 0
    for seq, (size, outcome, attempts, failed) in enumerate(batches, start=1):
        events.append(ev.BatchQueued(seq, size))
        if outcome == "resumed":
            events.append(ev.BatchResumed(seq, size))
            continue
        for attempt in range(1, attempts + 1):
            events.append(ev.RequestStarted(seq, size, attempt))
            events.append(ev.RequestEnded(seq, 200 if attempt == attempts else 503))
        requests += attempts
        retries += attempts - 1
        if outcome == "delivered":
            failed = min(failed, size)
            failed_total += failed
            events.append(ev.BatchDelivered(seq, size, size - failed, 0, failed, attempts))
        else:
            events.append(ev.BatchUndelivered(seq, size, "503", attempts))
    tally = fold(events)
    tally.check()
    out = Summary("c", tally, False, 0.0, 0).to_json()
    assert out["read"] == out["rejected"] + out["duplicates"] + out["unique"]
    assert out["unique"] == out["delivered"] + out["undelivered"] + out["resumed"]
    assert (out["requests"], out["retries"], out["batches"]) == (requests, retries, len(batches))
    assert out["failed"] == failed_total
    assert out["added"] + out["skipped"] + out["failed"] == out["delivered"]
