"""The ledger: one end per batch, reasons that say where a batch was, checks that can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from inboxleads import events as ev
from inboxleads.answers import Answer, Outcome
from inboxleads.batching import Batch
from inboxleads.identifiers import Kind, Lead
from inboxleads.ledger import Ledger, LedgerError, Waiting
from inboxleads.reports import Reports


def batch(seq: int, *names: str) -> Batch:
    return Batch(seq, [Lead(Kind.USERNAME, name, "in.txt", i) for i, name in enumerate(names, 1)])


def ok(added: int, skipped: int = 0, failed: int = 0) -> Answer:
    return Answer(Outcome.OK, 200, "", added, skipped, failed)


@pytest.fixture
def events() -> list[ev.Event]:
    return []


@pytest.fixture
def ledger(events: list[ev.Event]) -> Ledger:
    return Ledger(events.append, Reports())


def test_a_consistent_run_has_no_problems(ledger: Ledger) -> None:
    ledger.took(read=5, rejected=1, duplicates=1, unique=3)
    first, second = batch(1, "a", "b"), batch(2, "c")
    ledger.opened(first)
    ledger.opened(second)
    ledger.delivered(first, ok(1, 1), attempts=1)
    ledger.resumed(second)
    assert ledger.problems(handed_over=5, pending=0, dry_run=False) == []
    c = ledger.counts
    assert (c.delivered, c.resumed, c.added, c.skipped, c.batches) == (2, 1, 1, 1, 2)


def test_a_batch_lost_on_the_way_is_a_problem(ledger: Ledger) -> None:
    ledger.took(read=3, rejected=0, duplicates=0, unique=3)
    ledger.opened(batch(1, "a", "b"))
    ledger.close_all("the run was interrupted")
    # One identifier was kept but never batched nor ended.
    found = ledger.problems(handed_over=3, pending=0, dry_run=False)
    assert any("batched" in p for p in found)
    assert any("unique 3 != delivered 0 + undelivered 2" in p for p in found)


def test_records_handed_over_but_never_taken_are_a_problem(ledger: Ledger) -> None:
    ledger.took(read=2, rejected=2, duplicates=0, unique=0)
    assert ledger.problems(handed_over=2050, pending=0, dry_run=False) == [
        "the reader handed over 2050 records, 2 were taken"
    ]


def test_identifiers_still_in_the_batcher_are_a_problem(ledger: Ledger) -> None:
    ledger.took(read=4, rejected=0, duplicates=0, unique=4)
    ledger.opened(b := batch(1, "a", "b"))
    ledger.delivered(b, ok(2), 1)
    found = ledger.problems(handed_over=4, pending=2, dry_run=False)
    assert "2 identifiers were kept but never put in a batch" in found


def test_a_batch_left_open_is_a_problem(ledger: Ledger) -> None:
    ledger.took(read=1, rejected=0, duplicates=0, unique=1)
    ledger.opened(batch(1, "a"))
    assert "1 batches never ended" in ledger.problems(1, 0, dry_run=False)


def test_a_batch_cannot_end_twice(ledger: Ledger) -> None:
    b = batch(1, "a")
    ledger.opened(b)
    ledger.delivered(b, ok(1), 1)
    with pytest.raises(LedgerError):
        ledger.undelivered(b, "again", 1)
    with pytest.raises(LedgerError):
        ledger.resumed(batch(7, "never formed"))


def test_a_stop_says_where_each_open_batch_was(ledger: Ledger, events: list[ev.Event]) -> None:
    waiting, flying, retrying = batch(1, "a"), batch(2, "b", "c"), batch(3, "d")
    for b in (waiting, flying, retrying):
        ledger.opened(b)
    ledger.waiting(flying, Waiting.IN_FLIGHT)
    ledger.waiting(retrying, Waiting.RETRY, "503: busy")
    assert ledger.close_all("the run was interrupted (SIGINT)") == 3
    reasons = dict(ledger.counts.undelivered_reasons)
    assert reasons == {
        "not sent: the run was interrupted (SIGINT)": 1,
        "abandoned in flight: the run was interrupted (SIGINT) (it may have been applied)": 2,
        "not retried: the run was interrupted (SIGINT) (last attempt: 503: busy)": 1,
    }
    ended = [e for e in events if isinstance(e, ev.BatchUndelivered)]
    assert sorted(e.seq for e in ended) == [1, 2, 3]
    assert ledger.open_batches == 0


def test_undelivered_identifiers_are_written_to_the_report(tmp_path: Path) -> None:
    reports = Reports(undelivered=tmp_path / "left.txt")
    ledger = Ledger(lambda event: None, reports)
    ledger.opened(b := batch(1, "alice", "bob"))
    ledger.stopped(b, "the run was terminated (SIGTERM)")
    reports.close()
    assert (tmp_path / "left.txt").read_text().split() == ["alice", "bob"]


def test_a_dry_run_counts_planned_batches_without_ending_them(ledger: Ledger) -> None:
    ledger.took(read=3, rejected=0, duplicates=0, unique=3)
    ledger.planned(batch(1, "a", "b", "c"))
    assert ledger.problems(3, 0, dry_run=True) == []
    assert (ledger.counts.batches, ledger.counts.delivered, ledger.open_batches) == (1, 0, 0)
