"""Retries, rate-limit pacing and adaptive concurrency.

Each piece takes its clock, sleep and random source from the caller, so tests
drive them with a fake clock and no real waiting.

- `RetryPolicy`: exponential backoff with full jitter, `Retry-After` as a floor.
- `Pacer`: spaces request starts by the `X-RateLimit-Remaining` and
  `X-RateLimit-Reset` headers of the answers, and holds every sender while a
  429's `Retry-After` runs (the limit is per team, so one 429 speaks for all).
- `AdaptiveLimit`: the number of requests in flight: one until the first
  answer, then what that answer's rate-limit headers allow (all of
  `--concurrency` when it has none); halved on overload and grown back by
  one per window of successes (AIMD).
- `first`: await one thing unless another finishes first (the pacer's wait for
  news, and the engine's every wait that a stop may end).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .answers import RateInfo

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a batch is retried."""

    max_attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 60.0
    max_wait_s: float = 900.0

    def wait(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        wait = rng.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_wait_s)


PauseHook = Callable[[float, str], None]


class Pacer:
    """Decides when the next request may start."""

    # Waits shorter than this are ordinary spacing, not a pause worth showing.
    SHOW_PAUSE_S = 1.0
    RESET_ROUNDING_S = 0.5
    # After a reset, how long the others wait at most for the answer that tells the
    # new budget (they go as soon as it comes).
    STALE_WAIT_S = 1.0

    def __init__(self, clock: Clock, sleep: Sleep, on_pause: PauseHook | None = None) -> None:
        self._clock = clock
        self._sleep = sleep
        self._on_pause = on_pause
        self._next_start = 0.0
        self._blocked_until = 0.0
        self._block_reason = ""
        self._started = 0
        self._info_seq = -1
        self._remaining: int | None = None
        self._reset: float | None = None
        self._probing = False  # a request went to learn the budget after a reset
        self._news = asyncio.Event()  # set when an answer tells the budget

    async def wait_turn(self) -> int:
        """Wait until a request may start; return its start sequence number."""
        while True:
            now = self._clock()
            start = max(self._next_start, self._blocked_until)
            if start <= now:
                break
            wait = start - now
            probe = self._probing and self._blocked_until < self._next_start
            if self._on_pause is not None and wait >= self.SHOW_PAUSE_S and not probe:
                blocked = self._blocked_until >= self._next_start
                self._on_pause(wait, self._block_reason if blocked else "rate limit: pacing")
            if probe:
                await self._sleep_or_news(wait)
            else:
                await self._sleep(wait)
        self._next_start = max(now, self._next_start) + self._interval(now)
        seq = self._started
        self._started += 1
        return seq

    async def _sleep_or_news(self, wait: float) -> None:
        self._news.clear()
        await first(self._sleep(wait), self._news.wait())

    def _interval(self, now: float) -> float:
        if self._remaining is None or self._reset is None:
            return 0.0
        if self._reset <= now:
            # The window has moved on since the last answer. A sliding window frees its
            # slots one by one, not all at the reset: this request goes to learn the new
            # budget, and the next waits for its answer (a while at most).
            self._probing = True
            return self.STALE_WAIT_S

        # Requests started since the answer we learned from may not be counted yet.
        remaining = self._remaining - (self._started - self._info_seq - 1)
        if remaining <= 0:
            return self._reset - now
        # X-RateLimit-Reset is in whole seconds, rounded up: on average the
        # window frees half a second earlier, which matters for short windows.
        return max(0.0, self._reset - self.RESET_ROUNDING_S - now) / remaining

    def observe(self, rate: RateInfo | None, seq: int) -> None:
        """Learn the current budget from the answer to request number `seq` (an answer
        that shows none makes the budget unknown again)."""
        if seq < self._info_seq:
            return
        if self._probing:
            # The answer the others wait for: they go now, spaced by what it says.
            self._probing = False
            self._next_start = min(self._next_start, self._clock())
            self._news.set()
        if rate is None or rate.remaining is None or rate.reset is None:
            self._remaining = self._reset = None
            return
        self._info_seq = seq
        self._remaining = rate.remaining
        self._reset = rate.reset
        if rate.remaining <= 0:
            # The budget is spent: nothing more may start before the reset, even
            # a start that was already scheduled when this answer came in.
            self._next_start = max(self._next_start, rate.reset)

    def block(self, seconds: float, reason: str) -> None:
        """Hold every sender for `seconds` (a 429's Retry-After)."""
        until = self._clock() + seconds
        if until > self._blocked_until:
            self._blocked_until = until
            self._block_reason = reason

    @property
    def blocked_until(self) -> float:
        return self._blocked_until


class AdaptiveLimit:
    """At most `limit` requests in flight; the limit adapts to overload (AIMD).

    `opening`: one request at a time until `opened` is told what the first
    answer allows, so that a run's first burst never meets a rate limit blind.
    """

    def __init__(
        self, maximum: int, clock: Clock, cooldown_s: float = 2.0, *, opening: bool = False
    ) -> None:
        self.maximum = maximum
        self.opening = opening
        self.limit = 1.0 if opening else float(maximum)
        self.active = 0
        self._clock = clock
        self._cooldown_s = cooldown_s
        self._last_cut = float("-inf")
        self._changed = asyncio.Event()

    async def acquire(self) -> None:
        """Wait for a free slot."""
        while self.active >= max(1, int(self.limit)):
            self._changed.clear()
            await self._changed.wait()
        self.active += 1

    def release(self) -> None:
        """Give a slot back."""
        self.active -= 1
        self._changed.set()

    def opened(self, remaining: int | None) -> None:
        """The first answer came: it allows `remaining` more requests in the current
        rate-limit window (None: it showed no rate limit), up to the maximum."""
        if not self.opening:
            return
        self.opening = False
        allowed = self.maximum if remaining is None else remaining
        self.limit = float(min(self.maximum, max(1, allowed)))
        self._changed.set()

    def success(self) -> None:
        """An answer came back fine: grow by about one per `limit` successes."""
        if self.limit < self.maximum and not self.opening:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            self._changed.set()

    def overload(self) -> None:
        """A 429 or 503: halve the limit, once per cool-down (in-flight answers echo it)."""
        now = self._clock()
        if now - self._last_cut >= self._cooldown_s:
            self._last_cut = now
            self.limit = max(1.0, self.limit / 2)


async def first(work: Awaitable[T], *others: Awaitable[Any]) -> tuple[bool, T | None]:
    """Await `work` unless one of `others` finishes first: (True, result) or (False, None).

    The loser is cancelled and waited for, so nothing is left running; when
    `work` and another finish together, `work` wins (its result is not lost).
    An exception of whichever finished is raised.
    """
    tasks = [asyncio.ensure_future(work), *(asyncio.ensure_future(o) for o in others)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    head = tasks[0]
    if head.done() and not head.cancelled():
        return True, head.result()
    for task in tasks[1:]:
        if task.done() and not task.cancelled():
            task.result()
    return False, None
