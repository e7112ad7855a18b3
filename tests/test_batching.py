"""De-duplication, batching, request bodies and batch digests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inboxleads.batching import (
    MAX_BATCH,
    Batch,
    Batcher,
    Deduper,
    batch_digest,
    batches,
    build_payload,
)
from inboxleads.identifiers import HandleRun, Kind, Lead


def lead(value: str, kind: Kind = Kind.USERNAME, data: dict[str, str] | None = None) -> Lead:
    return Lead(kind, value, "leads.txt", 1, data)


def unique(leads: list[Lead]) -> list[Lead]:
    dedup = Deduper()
    return [x for x in leads if dedup.first_time(x)]


# --- de-duplication --------------------------------------------------------------------


def test_usernames_differing_only_in_case_are_one_lead_and_the_first_wins() -> None:
    kept = unique([lead("Jack"), lead("jack"), lead("JACK"), lead("biz")])
    assert [x.value for x in kept] == ["Jack", "biz"]


def test_a_username_and_an_id_that_look_alike_are_different_leads() -> None:
    kept = unique([lead("12345"), lead("12345", Kind.PLATFORM_ID)])
    assert len(kept) == 2


def test_external_ids_compare_exactly() -> None:
    kept = unique([lead("abc", Kind.EXTERNAL_ID), lead("abc", Kind.EXTERNAL_ID)])
    assert len(kept) == 1


def test_deduper_counts_the_unique_leads_it_has_seen() -> None:
    dedup = Deduper()
    for x in [lead("a"), lead("A"), lead("1", Kind.PLATFORM_ID), lead("b")]:
        dedup.first_time(x)
    assert len(dedup) == 3


case_variants = st.lists(
    st.from_regex(r"[A-Za-z0-9_]{1,4}", fullmatch=True), min_size=0, max_size=60
)


@settings(max_examples=100, deadline=None)
@given(values=case_variants)
def test_deduper_keeps_the_first_spelling_of_every_handle_in_order(values: list[str]) -> None:
    kept = unique([lead(v) for v in values])
    expected: dict[str, str] = {}
    for v in values:
        expected.setdefault(v.lower(), v)
    assert [x.value for x in kept] == list(expected.values())


# --- batching --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, -1, MAX_BATCH + 1])
def test_batch_size_outside_1_to_2000_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="1-2000"):
        Batcher(size)


def test_batches_are_numbered_from_one() -> None:
    assert [b.seq for b in batches([lead(str(i)) for i in range(5)], 2)] == [1, 2, 3]


def test_no_leads_make_no_batches() -> None:
    assert list(batches([], 10)) == []


def test_batcher_returns_a_batch_as_soon_as_it_is_full() -> None:
    batcher = Batcher(2)
    assert batcher.add(lead("a")) is None
    assert batcher.pending == 1
    full = batcher.add(lead("b"))
    assert full is not None
    assert [x.value for x in full.leads] == ["a", "b"]
    assert batcher.pending == 0


def test_flush_sends_a_partial_batch_and_then_nothing() -> None:
    batcher = Batcher(10)
    batcher.add(lead("a"))
    partial = batcher.flush()
    assert partial is not None
    assert len(partial) == 1
    assert batcher.flush() is None


def test_batch_numbers_continue_after_a_flush() -> None:
    batcher = Batcher(10)
    batcher.add(lead("a"))
    first = batcher.flush()
    batcher.add(lead("b"))
    second = batcher.flush()
    assert first is not None and second is not None
    assert (first.seq, second.seq) == (1, 2)


@settings(max_examples=100, deadline=None)
@given(count=st.integers(0, 120), size=st.integers(1, 25))
def test_batching_keeps_order_loses_nothing_and_fills_every_batch_but_the_last(
    count: int, size: int
) -> None:
    leads = [lead(f"h{i}") for i in range(count)]
    result = list(batches(leads, size))
    assert [x for b in result for x in b.leads] == leads
    assert all(len(b) <= size for b in result)
    assert all(len(b) == size for b in result[:-1])
    assert all(len(b) > 0 for b in result)
    assert [b.seq for b in result] == list(range(1, len(result) + 1))


def test_full_size_batches_hold_2000_identifiers() -> None:
    result = list(batches([lead(f"h{i}") for i in range(4001)]))
    assert [len(b) for b in result] == [2000, 2000, 1]


# --- request bodies --------------------------------------------------------------------


def test_payload_groups_identifiers_by_kind_and_always_names_the_platform() -> None:
    body = build_payload(
        [
            lead("jack"),
            lead("12", Kind.PLATFORM_ID),
            lead("biz"),
            lead("abc", Kind.EXTERNAL_ID),
        ]
    )
    assert body == {
        "platform": "twitter",
        "usernames": ["jack", "biz"],
        "platformIds": ["12"],
        "externalIds": ["abc"],
    }


def test_leads_with_data_are_sent_as_lead_objects() -> None:
    body = build_payload([lead("jack", data={"first": "Jack"}), lead("biz")])
    assert body == {
        "platform": "twitter",
        "usernames": ["biz"],
        "leads": [{"username": "jack", "platform": "twitter", "data": {"first": "Jack"}}],
    }


def test_empty_data_is_sent_in_the_compact_arrays() -> None:
    body = build_payload([lead("jack", data={})])
    assert body == {"platform": "twitter", "usernames": ["jack"]}


def test_platform_ids_are_sent_as_strings_with_every_digit() -> None:
    body = build_payload([lead("1234567890123456789", Kind.PLATFORM_ID)])
    assert body["platformIds"] == ["1234567890123456789"]


def test_empty_arrays_are_never_sent() -> None:
    body = build_payload([lead("jack")])
    assert set(body) == {"platform", "usernames"}


mixed_leads = st.lists(
    st.builds(
        lead,
        st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True),
        st.sampled_from(list(Kind)),
        st.one_of(st.none(), st.just({"k": "v"})),
    ),
    max_size=50,
)


@settings(max_examples=100, deadline=None)
@given(leads=mixed_leads)
def test_payload_carries_every_identifier_exactly_once(leads: list[Lead]) -> None:
    body = build_payload(leads)
    sent: list[tuple[str, str]] = []
    for kind in Kind:
        sent += [(kind.value, v) for v in body.get(kind.array, [])]
        assert body.get(kind.array) != []
    for obj in body.get("leads", []):
        [(field, value)] = [(k, v) for k, v in obj.items() if k in {k.value for k in Kind}]
        sent.append((field, value))
        assert obj["platform"] == "twitter"
    assert sorted(sent) == sorted((x.kind.value, x.value) for x in leads)
    assert len(sent) <= MAX_BATCH


# --- digests ---------------------------------------------------------------------------


def test_same_batch_to_the_same_campaign_has_the_same_digest() -> None:
    a = [lead("jack"), lead("12", Kind.PLATFORM_ID)]
    b = [lead("jack"), lead("12", Kind.PLATFORM_ID)]
    assert batch_digest("camp1", a) == batch_digest("camp1", b)


def test_digest_differs_by_campaign_order_kind_and_value() -> None:
    base = batch_digest("camp1", [lead("jack"), lead("biz")])
    assert batch_digest("camp2", [lead("jack"), lead("biz")]) != base
    assert batch_digest("camp1", [lead("biz"), lead("jack")]) != base
    assert batch_digest("camp1", [lead("jack"), lead("bizz")]) != base
    assert batch_digest("camp1", [lead("12")]) != batch_digest(
        "camp1", [lead("12", Kind.PLATFORM_ID)]
    )


def test_digest_does_not_run_adjacent_values_together() -> None:
    assert batch_digest("c", [lead("ab"), lead("c")]) != batch_digest("c", [lead("a"), lead("bc")])


def test_batch_methods_agree_with_the_module_functions() -> None:
    [batch] = list(batches([lead("jack"), lead("biz")], 10))
    assert batch.payload() == build_payload(batch.leads)
    assert batch.digest("camp1") == batch_digest("camp1", batch.leads)


def test_reading_the_same_leads_twice_gives_the_same_batches_and_digests() -> None:
    def run() -> list[str]:
        leads = unique([lead(f"h{i % 37}") for i in range(100)])
        return [b.digest("camp1") for b in batches(leads, 7)]

    assert run() == run()


# -- compact runs of handles ---------------------------------------------------


def _run(first: int, values: list[str], source: str = "a.txt") -> HandleRun:
    return HandleRun(source, first, values)


def test_a_compact_batch_sends_and_hashes_exactly_like_its_leads() -> None:
    run = _run(5, ["jack", "Naval", "a_1"])
    compact, expanded = Batch(1, run=run), Batch(1, run.leads())
    assert (
        compact.payload()
        == expanded.payload()
        == {
            "platform": "twitter",
            "usernames": ["jack", "Naval", "a_1"],
        }
    )
    assert compact.digest("c1") == expanded.digest("c1")
    assert len(compact) == 3
    assert [(lead.value, lead.line) for lead in compact.leads] == [
        ("jack", 5),
        ("Naval", 6),
        ("a_1", 7),
    ]


def test_contiguous_runs_merge_into_full_compact_batches() -> None:
    batcher = Batcher(4)
    assert batcher.extend_run(_run(1, ["a", "b", "c"])) == []
    [full] = batcher.extend_run(_run(4, ["d", "e", "f"]))
    assert full.run is not None and full.run.values == ["a", "b", "c", "d"]
    last = batcher.flush()
    assert last is not None and last.run == _run(5, ["e", "f"])
    assert [b.seq for b in (full, last)] == [1, 2]


def test_a_run_after_a_gap_or_after_leads_becomes_leads_in_order() -> None:
    batcher = Batcher(10)
    batcher.extend_run(_run(1, ["a", "b"]))
    batcher.extend_run(_run(9, ["x"]))  # lines 3-8 were not plain handles
    batcher.add(Lead(Kind.PLATFORM_ID, "12", "a.txt", 10))
    batcher.extend_run(_run(11, ["y"]))
    batch = batcher.flush()
    assert batch is not None and batch.run is None
    assert [(lead.value, lead.line) for lead in batch.leads] == [
        ("a", 1),
        ("b", 2),
        ("x", 9),
        ("12", 10),
        ("y", 11),
    ]


def test_all_new_handles_remembers_nothing_when_one_was_seen() -> None:
    dedup = Deduper()
    assert dedup.all_new_handles(["Jack", "naval"])
    assert not dedup.all_new_handles(["paulg", "JACK"])
    assert not dedup.all_new_handles(["sama", "Sama"])
    assert dedup.first_time(Lead(Kind.USERNAME, "paulg", "a", 1))
    assert dedup.first_time(Lead(Kind.USERNAME, "sama", "a", 2))


# --- cutting by bytes ------------------------------------------------------------------


def body_size(batch: Batch) -> int:
    """The body as the client encodes it, measured independently of the batcher."""
    import json

    text = json.dumps(batch.payload(), separators=(",", ":"), ensure_ascii=False)
    return len(text.encode())


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=0, max_size=120),
    cap=st.integers(1024, 20_000),
    size=st.integers(1, 50),
    chunk=st.integers(1, 40),
)
def test_batches_never_exceed_the_byte_cap_and_keep_every_lead_in_order(
    sizes: list[int], cap: int, size: int, chunk: int
) -> None:
    leads = [lead(f"u{i}", data={"notes": "é" * n} if n else None) for i, n in enumerate(sizes)]
    batcher = Batcher(size, cap)
    out: list[Batch] = []
    for start in range(0, len(leads), chunk):
        out.extend(batcher.extend(leads[start : start + chunk]))
    last = batcher.flush()
    out.extend([last] if last else [])
    assert [x.value for b in out for x in b.leads] == [x.value for x in leads]
    for b in out:
        assert len(b) <= size
        # Over the cap only as a lead alone that is larger than the cap by itself.
        assert body_size(b) <= cap or len(b) == 1
    assert [b.seq for b in out] == list(range(1, len(out) + 1))


def test_handles_without_data_are_cut_by_count_only_under_the_default_cap() -> None:
    batcher = Batcher(2000)
    run = HandleRun("a.txt", 1, [f"h{i:014d}" for i in range(4500)])
    full = batcher.extend_run(run)
    assert [len(b) for b in full] == [2000, 2000] and all(b.compact for b in full)
    assert batcher.cut_by_size == 0


def test_a_small_cap_cuts_a_run_of_handles_by_bytes() -> None:
    batcher = Batcher(2000, 2000)
    full = batcher.extend_run(HandleRun("a.txt", 1, [f"h{i:014d}" for i in range(500)]))
    assert full and all(body_size(b) <= 2000 for b in full)
    assert batcher.cut_by_size == len(full)


@pytest.mark.parametrize("compact", [True, False])
def test_a_batch_splits_into_two_halves_in_order(compact: bool) -> None:
    values = [f"h{i}" for i in range(7)]
    batch = (
        Batch(3, run=HandleRun("a.txt", 10, values))
        if compact
        else Batch(3, [lead(v) for v in values])
    )
    first, second = batch.halves(8)
    assert (first.seq, second.seq) == (8, 9)
    assert [x.value for x in first.leads + second.leads] == values
    assert (len(first), len(second)) == (3, 4)
    assert [x.line for x in second.leads] == ([13, 14, 15, 16] if compact else [1, 1, 1, 1])
