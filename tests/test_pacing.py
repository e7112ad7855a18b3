"""Retry backoff, rate-limit pacing and adaptive concurrency, on a fake clock.

No test here sleeps for real: the fake sleep moves the fake clock forward.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inboxleads.answers import RateInfo
from inboxleads.pacing import AdaptiveLimit, Pacer, RetryPolicy

T = TypeVar("T")


class FakeTime:
    """A clock that moves only when something sleeps on it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        target = self.now + seconds
        await asyncio.sleep(0)  # let other senders run, as a real sleep would
        self.now = max(self.now, target)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def rate(remaining: int | None, reset: float | None) -> RateInfo:
    return RateInfo(limit=300, remaining=remaining, reset=reset)


# --- RetryPolicy -------------------------------------------------------------------------


def test_retry_waits_grow_exponentially_within_their_ceiling() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=60.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 60), (20, 60)]:
        waits = [policy.wait(attempt, None, rng) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # full jitter reaches near the ceiling


def test_retry_waits_are_jittered_so_batches_do_not_retry_in_lockstep() -> None:
    rng = random.Random(1)
    waits = {RetryPolicy().wait(3, None, rng) for _ in range(20)}
    assert len(waits) == 20


def test_same_seed_gives_the_same_waits() -> None:
    policy = RetryPolicy()
    first = [policy.wait(a, None, random.Random(42)) for a in range(1, 8)]
    second = [policy.wait(a, None, random.Random(42)) for a in range(1, 8)]
    assert first == second


def test_retry_after_is_a_floor_for_the_wait() -> None:
    assert RetryPolicy().wait(1, 60.0, random.Random(0)) == 60.0


def test_wait_never_exceeds_the_maximum_even_for_a_long_retry_after() -> None:
    assert RetryPolicy(max_wait_s=900.0).wait(1, 86_400.0, random.Random(0)) == 900.0


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(1, 60),
    retry_after=st.one_of(st.none(), st.floats(0, 5000)),
    seed=st.integers(0, 2**32),
)
def test_every_wait_lies_between_retry_after_and_the_maximum(
    attempt: int, retry_after: float | None, seed: int
) -> None:
    policy = RetryPolicy()
    wait = policy.wait(attempt, retry_after, random.Random(seed))
    assert 0.0 <= wait <= policy.max_wait_s
    if retry_after is not None:
        assert wait >= min(retry_after, policy.max_wait_s)


# --- Pacer -------------------------------------------------------------------------------


def test_without_rate_headers_requests_start_at_once_in_sequence() -> None:
    t = FakeTime()
    pacer = Pacer(t.clock, t.sleep)

    async def go() -> list[int]:
        return [await pacer.wait_turn() for _ in range(5)]

    assert run(go()) == [0, 1, 2, 3, 4]
    assert t.sleeps == []


def test_requests_are_spread_evenly_over_what_is_left_of_the_window() -> None:
    t = FakeTime(1000.0)
    pacer = Pacer(t.clock, t.sleep)
    starts: list[float] = []

    async def go() -> None:
        seq = await pacer.wait_turn()
        starts.append(t.now)
        pacer.observe(rate(remaining=10, reset=1010.0), seq)
        for _ in range(4):
            await pacer.wait_turn()
            starts.append(t.now)

    run(go())
    gaps = [b - a for a, b in itertools.pairwise(starts[1:])]
    # 10 requests left for the 10 s to the reset, less the half second the
    # whole-second header rounds up on average.
    assert gaps == pytest.approx([0.95, 0.95, 0.95])


def test_with_no_budget_left_the_next_request_waits_for_the_reset() -> None:
    t = FakeTime(1000.0)
    pauses: list[tuple[float, str]] = []
    pacer = Pacer(t.clock, t.sleep, lambda wait, why: pauses.append((wait, why)))

    async def go() -> None:
        seq = await pacer.wait_turn()
        pacer.observe(rate(remaining=0, reset=1045.0), seq)
        await pacer.wait_turn()
        await pacer.wait_turn()

    run(go())
    # The first start after the reset learns the new budget; the next waits a moment.
    assert t.now == pytest.approx(1045.0 + Pacer.STALE_WAIT_S)
    [(wait, why)] = pauses
    assert wait == pytest.approx(45.0)
    assert why == "rate limit: pacing"


def test_no_request_starts_before_the_reset_once_the_budget_is_spent() -> None:
    t = FakeTime(1000.0)
    pacer = Pacer(t.clock, t.sleep)

    async def go() -> None:
        seq = await pacer.wait_turn()
        pacer.observe(rate(remaining=0, reset=1045.0), seq)
        await pacer.wait_turn()

    run(go())
    assert t.now >= 1045.0


def test_after_the_reset_one_request_goes_to_learn_the_budget_before_the_others() -> None:
    # A sliding window frees its slots one by one: waiters released all at once at the
    # reset met 429s every window.
    t = FakeTime(1000.0)
    pacer = Pacer(t.clock, t.sleep)

    async def go() -> list[float]:
        seq = await pacer.wait_turn()
        pacer.observe(rate(remaining=2, reset=1004.0), seq)
        await pacer.wait_turn()
        t.now = 1010.0
        starts = []
        for _ in range(3):
            await pacer.wait_turn()
            starts.append(t.now)
        return starts

    starts = run(go())
    stale = Pacer.STALE_WAIT_S
    assert starts == pytest.approx([1010.0, 1010.0 + stale, 1010.0 + 2 * stale])


def test_an_answer_without_rate_headers_makes_the_budget_unknown_again() -> None:
    t = FakeTime(1000.0)
    pacer = Pacer(t.clock, t.sleep)

    async def go() -> None:
        seq = await pacer.wait_turn()
        pacer.observe(rate(remaining=1, reset=1060.0), seq)
        seq = await pacer.wait_turn()
        pacer.observe(None, seq)  # the server stopped showing its budget
        for _ in range(5):
            await pacer.wait_turn()

    run(go())
    assert t.now == pytest.approx(1000.0 + 59.5)  # only the spacing before the news


def test_a_block_holds_the_next_request_and_is_shown_with_its_reason() -> None:
    t = FakeTime(1000.0)
    pauses: list[tuple[float, str]] = []
    pacer = Pacer(t.clock, t.sleep, lambda wait, why: pauses.append((wait, why)))

    async def go() -> None:
        await pacer.wait_turn()
        pacer.block(30.0, "rate limit: 429")
        await pacer.wait_turn()

    run(go())
    assert t.now == pytest.approx(1030.0)
    [(wait, why)] = pauses
    assert wait == pytest.approx(30.0)
    assert why == "rate limit: 429"
    assert pacer.blocked_until == pytest.approx(1030.0)


def test_a_429_holds_every_sender_not_just_the_one_that_got_it() -> None:
    t = FakeTime(1000.0)
    pacer = Pacer(t.clock, t.sleep)
    starts: list[float] = []

    async def sender() -> None:
        await pacer.wait_turn()
        starts.append(t.now)

    async def go() -> None:
        pacer.block(20.0, "rate limit: 429")
        await asyncio.gather(*(sender() for _ in range(3)))

    run(go())
    assert starts == pytest.approx([1020.0, 1020.0, 1020.0])


def test_a_shorter_block_does_not_cut_a_longer_one() -> None:
    t = FakeTime(1000.0)
    pacer = Pacer(t.clock, t.sleep)
    pacer.block(60.0, "first")
    pacer.block(5.0, "second")
    assert pacer.blocked_until == 1060.0


def test_short_spacing_waits_are_not_shown_as_pauses() -> None:
    t = FakeTime(1000.0)
    pauses: list[tuple[float, str]] = []
    pacer = Pacer(t.clock, t.sleep, lambda wait, why: pauses.append((wait, why)))

    async def go() -> None:
        seq = await pacer.wait_turn()
        pacer.observe(rate(remaining=100, reset=1010.0), seq)
        for _ in range(5):
            await pacer.wait_turn()

    run(go())
    assert t.sleeps and all(s < 1.0 for s in t.sleeps)
    assert pauses == []


def test_an_older_answer_does_not_override_what_a_newer_one_said() -> None:
    t = FakeTime(1000.0)
    pacer = Pacer(t.clock, t.sleep)

    async def go() -> None:
        for _ in range(3):
            await pacer.wait_turn()
        pacer.observe(rate(remaining=100, reset=1010.0), 2)
        pacer.observe(rate(remaining=0, reset=1060.0), 1)  # arrived late, says less
        await pacer.wait_turn()
        await pacer.wait_turn()

    run(go())
    assert t.now < 1001.0


def test_answers_without_rate_headers_change_nothing() -> None:
    t = FakeTime(1000.0)
    pacer = Pacer(t.clock, t.sleep)

    async def go() -> None:
        seq = await pacer.wait_turn()
        pacer.observe(None, seq)
        pacer.observe(rate(remaining=None, reset=1100.0), seq)
        pacer.observe(rate(remaining=0, reset=None), seq)
        await pacer.wait_turn()
        await pacer.wait_turn()

    run(go())
    assert t.sleeps == []


# --- AdaptiveLimit ------------------------------------------------------------------------


def test_overload_halves_the_limit_once_per_cooldown() -> None:
    t = FakeTime(1000.0)
    limit = AdaptiveLimit(8, t.clock, cooldown_s=2.0)
    limit.overload()
    limit.overload()  # an echo of the same overload from another request in flight
    assert limit.limit == 4.0
    t.now += 2.0
    limit.overload()
    assert limit.limit == 2.0


def test_limit_never_drops_below_one() -> None:
    t = FakeTime(1000.0)
    limit = AdaptiveLimit(4, t.clock, cooldown_s=1.0)
    for _ in range(10):
        limit.overload()
        t.now += 1.0
    assert limit.limit == 1.0


def test_successes_grow_the_limit_back_but_not_past_the_maximum() -> None:
    t = FakeTime(1000.0)
    limit = AdaptiveLimit(4, t.clock)
    limit.overload()
    assert limit.limit == 2.0
    limit.success()
    limit.success()
    assert 2.8 < limit.limit < 3.2  # about one more per `limit` successes
    for _ in range(50):
        limit.success()
    assert limit.limit == 4.0


def test_an_opening_limit_lets_one_request_fly_until_the_first_answer() -> None:
    t = FakeTime(1000.0)
    limit = AdaptiveLimit(8, t.clock, opening=True)
    assert limit.limit == 1.0
    limit.success()  # a success while opening does not open it
    assert limit.limit == 1.0
    limit.opened(3)  # the first answer's budget: 3 more this window
    assert limit.limit == 3.0
    limit.opened(100)  # only the first answer opens it
    assert limit.limit == 3.0


@pytest.mark.parametrize(("remaining", "opened_to"), [(None, 8.0), (0, 1.0), (5, 5.0), (99, 8.0)])
def test_the_first_answer_opens_the_limit_as_far_as_it_allows(
    remaining: int | None, opened_to: float
) -> None:
    limit = AdaptiveLimit(8, FakeTime(1000.0).clock, opening=True)
    limit.opened(remaining)
    assert limit.limit == opened_to


def test_an_opening_limit_wakes_its_waiters_when_it_opens() -> None:
    limit = AdaptiveLimit(4, FakeTime(1000.0).clock, opening=True)

    async def go() -> None:
        await limit.acquire()
        second = asyncio.create_task(limit.acquire())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not second.done()
        limit.opened(None)
        await asyncio.wait_for(second, timeout=1)
        assert limit.active == 2

    run(go())


def test_no_more_requests_in_flight_than_the_limit() -> None:
    t = FakeTime(1000.0)
    limit = AdaptiveLimit(2, t.clock)

    async def go() -> None:
        await limit.acquire()
        await limit.acquire()
        third = asyncio.create_task(limit.acquire())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not third.done()
        limit.release()
        await asyncio.wait_for(third, timeout=1)
        assert limit.active == 2

    run(go())


def test_after_an_overload_fewer_requests_fly_at_once() -> None:
    t = FakeTime(1000.0)
    limit = AdaptiveLimit(4, t.clock)
    limit.overload()

    async def go() -> int:
        tasks = [asyncio.create_task(limit.acquire()) for _ in range(4)]
        for _ in range(3):
            await asyncio.sleep(0)
        done = sum(task.done() for task in tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return done

    assert run(go()) == 2


def test_growing_the_limit_lets_a_waiting_request_start() -> None:
    t = FakeTime(1000.0)
    limit = AdaptiveLimit(2, t.clock)
    limit.overload()  # down to 1

    async def go() -> None:
        await limit.acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        assert not waiting.done()
        limit.success()  # 1 -> 2
        await asyncio.wait_for(waiting, timeout=1)
        assert limit.active == 2

    run(go())
