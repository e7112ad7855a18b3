"""Randomized, seeded schedules run against the upload engine, in process, with the sandbox.

Each seed derives one schedule (`make_schedule`): an input (a regular file, stdin
redirected from a file, or a pipe that a thread feeds in random chunks with random
pauses), server faults, zero to two SIGINT/SIGTERM stops at random moments, sometimes
an injected exception (client, journal, display) and sometimes a first run, stopped
partway, whose journal the main run resumes. Everything a run must satisfy is computed
from the generated input, the sandbox's log and the --undelivered file, never from the
tool's own tally: see `check_run`.

    INBOXLEADS_SCHEDULES=N     seeds 0..N-1 (default 500), split over a few slices
    INBOXLEADS_SEED_START=S    start the window at seed S instead of 0
    INBOXLEADS_SEED=12[,40]    only these seeds
    INBOXLEADS_REPEAT=K        run each selected seed K times (races do not fire every time)

Signals. While a schedule runs, this test installs ignoring handlers for SIGINT and
SIGTERM, and the run (handle_signals=True) replaces them with its own. A stop is only
sent while a handler that is neither ours nor a default one is installed, checked under
a lock held across the check and the `os.kill`. During the run `signal.signal` is wrapped
(see `guarded_signals`): every change of a handler takes that same lock, and a restore of
SIGINT/SIGTERM to a default (the old runner restores SIG_DFL for SIGTERM at the end of a
run) installs the ignoring handler instead, so a stop racing the end of a run can never
reach pytest. Stops triggered by a stderr line are sent from inside the write (the thread
that emits events), timer stops from a thread.

Pipes. The feeder writes nothing after the first stop and closes the pipe only when its
data is complete or once the run has returned (never mid-line), so what the run took
from the pipe (everything that is not left in it afterwards) can be compared with what
it counted.

Hangs. A watchdog thread sends SIGUSR2 to the main thread once the time bound (plus a
margin) has passed; the handler notes what every asyncio task was waiting on and raises
`RunOverdue`, a SystemExit so that asyncio lets it out of the loop. faulthandler ends the
process as a last resort.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import io
import itertools
import json
import logging
import math
import os
import random
import signal
import string
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from inboxleads.job import AddJob
from inboxleads.journal import Journal
from inboxleads.runner import AddResult, Environment, run_add
from inboxleads.sandbox import API_PREFIX, Faults, SandboxConfig, create_app, sandbox_transport

from .conftest import SECRET

CAMPAIGN = "rnd"
# Plain http to loopback passes the runner's checks; env.transport replaces the network.
BASE_URL = "http://127.0.0.1:9" + API_PREFIX
SLICES = 5
NO_STOP_BOUND_S = 10.0
AFTER_STOP_S = 2.0
WATCHDOG_MARGIN_S = 0.5
# A stop sent this close to the end may reach a run that is already finishing.
LATE_STOP_S = 0.2
EXIT_BUG = 70
EXIT_PARTIAL = 1
EXIT_BY_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

# Orphaned coroutines and streams of runs that had to be broken off (hangs) are collected
# later, in whatever test runs then; they are reported here as hangs already.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    # Stops are SIGINT/SIGTERM sent to this process; a hang is broken off by SIGUSR2.
    pytest.mark.posix,
]


async def fast_sleep(seconds: float) -> None:
    """The tool's sleep: backoff and pacing cost (almost) nothing; the clock stays real."""
    await asyncio.sleep(min(seconds, 0.005))


# -- schedules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StopPlan:
    """One stop: a signal sent with a stderr line, or after a delay, counted from `after`."""

    sig: signal.Signals
    line: int | None  # the stop comes with this stderr line counted from `after`
    delay_s: float  # ... or this long after `after` (when `line` is None)
    after: str  # "start", "input written" (the pipe got all its data), "first stop"

    def __str__(self) -> str:
        when = f"stderr line {self.line}" if self.line is not None else f"{self.delay_s:.3f} s"
        return f"{self.sig.name} at {when} after {self.after}"


@dataclass(frozen=True)
class Injection:
    """An exception raised by the client, the journal or the display on its `at`-th call."""

    where: str  # "client" (transport request), "journal" (Journal.record), "display" (write)
    at: int
    error: str  # "RuntimeError", "UnicodeEncodeError", "BrokenPipeError"

    @property
    def is_bug(self) -> bool:
        """BrokenPipeError is a closed stream, which a run must survive; the rest are bugs."""
        return self.error != "BrokenPipeError"

    def make(self) -> BaseException:
        if self.error == "UnicodeEncodeError":
            return UnicodeEncodeError("ascii", "\u00e9", 0, 1, "injected")
        if self.error == "BrokenPipeError":
            return BrokenPipeError(32, "Broken pipe (injected)")
        return RuntimeError(f"injected into the {self.where}")

    def __str__(self) -> str:
        call = {"client": "request", "journal": "Journal.record", "display": "stderr write"}
        return f"{self.error} on {call[self.where]} #{self.at}"


@dataclass
class Schedule:
    """Everything one seed decides."""

    seed: int
    lines: list[str]
    is_record: list[bool]
    records: list[tuple[bool, str]]  # (rejected, lower-cased username), in input order
    source: str  # "file", "stdin-file" (a regular file as stdin), "pipe"
    chunks: list[tuple[float, bytes]]  # pipe: (pause before, bytes)
    silence_s: float  # pipe: quiet time after the last chunk, before EOF
    keep_open: bool  # pipe: not closed until the run has returned
    batch_size: int
    concurrency: int
    max_attempts: int
    timeout_s: float
    flush_after_s: float
    stop_grace_s: float
    faults: Faults
    stops: list[StopPlan]
    inject: Injection | None
    journal: bool
    pre_stop: StopPlan | None  # resume: a first run with the same journal, stopped so
    # The sandbox answers 413 to larger bodies: batches are split, down to one lead.
    max_body_bytes: int = 0
    # The campaign look-up: "ok" (the sandbox answers), "404" or "503" (answered so
    # here, every time: a warning, or retries then a warning), "skip" (--no-check).
    lookup: str = "ok"

    @property
    def data(self) -> bytes:
        return "".join(line + "\n" for line in self.lines).encode()

    @property
    def regular(self) -> bool:
        return self.source != "pipe"

    def describe(self) -> str:
        rejected, duplicates, unique = expected_counts(self.records)
        parts = [f"seed={self.seed}"]
        if self.source == "pipe":
            pauses = "/".join(f"{p * 1000:.0f}" for p, _ in self.chunks)
            end = "open until the run returns" if self.keep_open else "closed at the end"
            silence = f", silence {self.silence_s * 1000:.0f} ms" if self.silence_s else ""
            parts.append(
                f"pipe({len(self.lines)} lines, {len(self.data) // 1000} KB in "
                f"{len(self.chunks)} chunks, pauses {pauses} ms"
                f"{silence}, {end})"
            )
        else:
            parts.append(f"{self.source}({len(self.lines)} lines, {len(self.data) // 1000} KB)")
        parts.append(
            f"records={len(self.records)} (unique {len(unique)}, dup {duplicates}, rej {rejected})"
        )
        parts.append(
            f"batch={self.batch_size} conc={self.concurrency} attempts={self.max_attempts} "
            f"timeout={self.timeout_s:.2f} flush={self.flush_after_s:.2f} "
            f"grace={self.stop_grace_s:.2f}"
        )
        f = self.faults
        parts.append(
            f"faults(err {f.error_rate:.2f} drop {f.drop_rate:.2f} lost {f.lost_rate:.2f} "
            f"hang {f.hang_rate:.3f} lat {f.latency_s * 1000:.1f} ms)"
        )
        if self.max_body_bytes:
            parts.append(f"413 over {self.max_body_bytes} bytes")
        if self.lookup != "ok":
            parts.append(f"lookup={self.lookup}")
        parts.append("stops=[" + "; ".join(map(str, self.stops)) + "]")
        if self.inject is not None:
            parts.append(f"inject={self.inject}")
        if self.journal:
            parts.append("journal")
        if self.pre_stop is not None:
            parts.append(f"resume(first run stopped: {self.pre_stop})")
        return " ".join(parts)


def _dress(rng: random.Random, base: str) -> str:
    """A way of writing a (lower-case) handle: any case, maybe @, maybe padded."""
    style = rng.random()
    if style < 0.4:
        text = base
    elif style < 0.6:
        text = base.upper()
    elif style < 0.7:
        text = base.capitalize()
    else:
        text = "".join(c.upper() if rng.random() < 0.5 else c for c in base)
    if rng.random() < 0.1:
        text = "@" + text
    if rng.random() < 0.05:
        text = " " + text + "  "
    return text


def _pause(rng: random.Random) -> float:
    roll = rng.random()
    if roll < 0.45:
        return 0.0
    if roll < 0.88:
        return rng.uniform(0.0, 0.03)
    return rng.uniform(0.0, 0.3)


def make_schedule(seed: int) -> Schedule:
    """The schedule of one seed; nothing in it depends on anything but the seed."""
    rng = random.Random(seed)
    roll = rng.random()
    source = "file" if roll < 0.55 else "stdin-file" if roll < 0.65 else "pipe"
    flush_after_s = rng.uniform(0.05, 0.15) if rng.random() < 0.7 else rng.uniform(0.15, 0.3)
    quiet_end = source == "pipe" and rng.random() < 0.3
    # Two profiles reach states that small, fast schedules hardly do: a bulky input (long
    # comment lines, several read blocks, so the reader is still busy when stops come) and
    # a slow server with a backlog of batches (requests outlast the quiet-pipe flush).
    bulky = rng.random() < 0.06
    slow = not bulky and rng.random() < (0.5 if quiet_end else 0.03)
    if slow and quiet_end:
        flush_after_s = rng.uniform(0.05, 0.1)
    size = rng.random()
    if bulky:
        n = rng.randint(1500, 3000)
    elif slow:
        n = rng.randint(60, 600)
    elif size < 0.45:
        n = rng.randint(0, 40)
    elif size < 0.85:
        n = rng.randint(41, 400)
    else:
        n = rng.randint(401, 3000)
    p_dup = rng.choice([0.0, 0.05, 0.2, 0.3])
    p_rej = rng.choice([0.0, 0.02, 0.1])
    p_junk = rng.choice([0.0, 0.03, 0.1])
    # bulky: about 300-700 KB in all, most of it comments
    filler = "# " + "x" * (rng.randint(600_000, 1_400_000) // max(n, 1)) if bulky else ""
    tag = "".join(rng.choices(string.ascii_lowercase, k=3))
    lines: list[str] = []
    is_record: list[bool] = []
    records: list[tuple[bool, str]] = []
    bases: list[str] = []

    def add(text: str, record: tuple[bool, str] | None) -> None:
        lines.append(text)
        is_record.append(record is not None)
        if record is not None:
            records.append(record)

    for i in range(n):
        while rng.random() < p_junk:
            add(rng.choice(["", "   ", f"# note {i}", "#"]), None)
        if bulky and rng.random() < 0.5:
            add(filler, None)
        base = f"gone{i}{tag}" if rng.random() < 0.03 else f"u{i}_{tag}"
        bases.append(base)
        add(_dress(rng, base), (False, base))
        while rng.random() < p_dup:
            again = rng.choice(bases)
            add(_dress(rng, again), (False, again))
        if rng.random() < p_rej:
            add(rng.choice([f"bad!{i}", f"{i}-bad-{tag}", f"waytoolongname{i}x"]), (True, ""))
    if rng.random() < 0.2:
        add("# the end", None)

    resume = n > 0 and source != "pipe" and rng.random() < 0.15
    concurrency = rng.randint(1, 6)
    max_attempts = rng.randint(1, 6)
    timeout_s = rng.uniform(0.1, 0.3)
    stop_grace_s = rng.uniform(0.2, 0.5)
    error_rate = 0.0 if rng.random() < 0.4 else rng.uniform(0.0, 0.3)
    drop_rate = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 0.15)
    lost_rate = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 0.15)
    hang_rate = 0.0 if rng.random() < 0.85 else rng.uniform(0.005, 0.04)
    roll = rng.random()
    if slow:
        latency_s = rng.uniform(0.04, 0.08)
    elif roll < 0.5:
        latency_s = 0.0
    else:
        latency_s = rng.uniform(0, 0.002) if roll < 0.85 else rng.uniform(0.002, 0.01)
    # The time spent waiting on the server stays under about `budget` seconds, retries
    # included.
    budget = (0.55 if slow else 0.3) * max(0.3, 1 - error_rate - drop_rate - lost_rate)
    fewest = math.ceil(n * latency_s / (budget * concurrency))  # the batch size that allows
    if slow:
        batch_size = min(50, max(1, fewest))  # as many batches as the budget allows
    else:
        batch_size = rng.randint(min(50, max(1, math.ceil(n / 120), fewest)), 50)
    latency_s = min(latency_s, budget * concurrency / (math.ceil(max(n, 1) / batch_size) + 1))
    faults = Faults(
        error_rate=error_rate,
        drop_rate=drop_rate,
        lost_rate=lost_rate,
        hang_rate=hang_rate,
        latency_s=latency_s,
        seed=seed,
    )

    chunks: list[tuple[float, bytes]] = []
    silence_s = 0.0
    keep_open = False
    data = "".join(line + "\n" for line in lines).encode()
    if source == "pipe":
        pieces = rng.randint(1, 4)
        cuts = sorted(rng.sample(range(1, len(data)), min(pieces - 1, max(len(data) - 1, 0))))
        bounds = [0, *cuts, len(data)]
        chunks = [(_pause(rng), data[a:b]) for a, b in itertools.pairwise(bounds)]
        if quiet_end:
            # With a slow server: EOF soon after the flush, while batches still queue.
            silence_s = flush_after_s * (rng.uniform(1.1, 1.6) if slow else rng.uniform(1.2, 2.5))
        # An empty pipe held open would block before the run can see a signal.
        keep_open = bool(data) and rng.random() < 0.2

    def signum() -> signal.Signals:
        return rng.choice([signal.SIGINT, signal.SIGTERM])

    count = rng.choices([0, 1, 2], weights=[45, 35, 20])[0]
    stops: list[StopPlan] = []
    if keep_open:
        stops.append(StopPlan(signum(), None, rng.uniform(0.0, 0.2), "input written"))
        count = max(count, 1)
    elif bulky and rng.random() < 0.5:
        # Two stops in quick succession while the reader still has blocks to go.
        stops.append(StopPlan(signum(), rng.randint(1, 6), 0.0, "start"))
        stops.append(StopPlan(signum(), rng.randint(1, 3), 0.0, "first stop"))
        count = 0
    elif count:
        if rng.random() < 0.5:
            stops.append(StopPlan(signum(), rng.randint(1, 30), 0.0, "start"))
        else:
            stops.append(StopPlan(signum(), None, rng.uniform(0.0, 0.3), "start"))
    if count == 2:
        if rng.random() < 0.5:
            stops.append(StopPlan(signum(), rng.randint(1, 8), 0.0, "first stop"))
        else:
            stops.append(StopPlan(signum(), None, rng.uniform(0.0, 0.3), "first stop"))

    inject: Injection | None = None
    if rng.random() < 0.25:
        where = rng.choices(["client", "journal", "display", "closed"], weights=[3, 2, 2.5, 2.5])
        if where[0] == "client":
            error = rng.choice(["RuntimeError", "UnicodeEncodeError"])
            inject = Injection("client", rng.randint(1, 15), error)
        elif where[0] == "journal":
            inject = Injection("journal", rng.randint(1, 8), "RuntimeError")
        elif where[0] == "display":
            inject = Injection("display", rng.randint(1, 25), "RuntimeError")
        else:
            inject = Injection("display", rng.randint(1, 25), "BrokenPipeError")

    pre_stop: StopPlan | None = None
    if resume:
        if rng.random() < 0.6:
            pre_stop = StopPlan(signum(), rng.randint(1, 12), 0.0, "start")
        else:
            pre_stop = StopPlan(signum(), None, rng.uniform(0.0, 0.08), "start")
    journal = resume or (inject is not None and inject.where == "journal") or rng.random() < 0.15
    # Drawn last, so that every earlier draw of a seed stays what it was.
    max_body_bytes = rng.choice([250, 500, 1000]) if not slow and rng.random() < 0.15 else 0
    lookup = rng.choices(["ok", "404", "503", "skip"], weights=[70, 10, 10, 10])[0]

    return Schedule(
        seed=seed,
        lines=lines,
        is_record=is_record,
        records=records,
        source=source,
        chunks=chunks,
        silence_s=silence_s,
        keep_open=keep_open,
        batch_size=batch_size,
        concurrency=concurrency,
        max_attempts=max_attempts,
        timeout_s=timeout_s,
        flush_after_s=flush_after_s,
        stop_grace_s=stop_grace_s,
        faults=faults,
        stops=stops,
        inject=inject,
        journal=journal,
        pre_stop=pre_stop,
        max_body_bytes=max_body_bytes,
        lookup=lookup,
    )


def expected_counts(records: list[tuple[bool, str]]) -> tuple[int, int, set[str]]:
    """(rejected, duplicates, unique set) of these records; the first occurrence wins."""
    rejected = duplicates = 0
    unique: set[str] = set()
    for is_rejected, key in records:
        if is_rejected:
            rejected += 1
        elif key in unique:
            duplicates += 1
        else:
            unique.add(key)
    return rejected, duplicates, unique


# -- the harness around one run ----------------------------------------------------------


class RunOverdue(SystemExit):
    """Raised in the main thread by the watchdog: the run is past its time bound."""


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Our SIGINT/SIGTERM handler around a run: a stray signal must not reach pytest."""


def engine_handler_installed(sig: signal.Signals) -> bool:
    """True while someone other than us (the run) handles `sig`; not SIG_DFL, not SIG_IGN."""
    handler = signal.getsignal(sig)
    return callable(handler) and handler not in (_ignore, signal.default_int_handler)


@contextlib.contextmanager
def guarded_signals(monkeypatch: pytest.MonkeyPatch, lock: threading.Condition) -> Iterator[None]:
    """While the run goes on: handler changes wait for a stop being sent, and a restore of
    a default SIGINT/SIGTERM handler installs ours instead (a late stop must not kill us)."""
    real = signal.signal

    def guarded(signalnum: int, handler: Any) -> Any:
        if signalnum in (signal.SIGINT, signal.SIGTERM) and (
            handler == signal.SIG_DFL or handler is signal.default_int_handler
        ):
            handler = _ignore
        with lock:
            return real(signalnum, handler)

    with monkeypatch.context() as patch:
        patch.setattr(signal, "signal", guarded)
        yield


class Control:
    """The state the threads around one run share, under one lock."""

    def __init__(self, plans: list[StopPlan], grace_s: float) -> None:
        self.cond = threading.Condition()
        self.plans = plans
        self.grace_s = grace_s
        self.t0 = 0.0
        self.returned = False
        self.sent: list[tuple[signal.Signals, float]] = []
        self.lines = 0
        self.lines_at_stop: list[int] = []
        self.fed_at: float | None = None

    def start(self) -> None:
        with self.cond:
            self.t0 = time.monotonic()

    def finish(self) -> None:
        with self.cond:
            self.returned = True
            self.cond.notify_all()

    @property
    def halted(self) -> bool:
        """The feeder writes nothing more: a stop came, or the run is over."""
        return self.returned or bool(self.sent)

    def bound(self) -> float:
        """Seconds after the start by which the run must have returned."""
        if not self.sent:
            return NO_STOP_BOUND_S
        bound = self.sent[0][1] + self.grace_s + AFTER_STOP_S
        if len(self.sent) > 1:
            bound = min(bound, self.sent[1][1] + AFTER_STOP_S)
        return bound

    def send_locked(self, sig: signal.Signals) -> bool:
        """Send `sig` to this process if the run handles it now; the lock must be held."""
        if self.returned or not engine_handler_installed(sig):
            return False
        os.kill(os.getpid(), sig)
        self.sent.append((sig, time.monotonic() - self.t0))
        self.lines_at_stop.append(self.lines)
        self.cond.notify_all()
        return True

    def on_line(self) -> None:
        """A line reached stderr: send the next stop if it is due with this line."""
        with self.cond:
            self.lines += 1
            index = len(self.sent)
            if index >= len(self.plans):
                return
            plan = self.plans[index]
            if plan.line is None:
                return
            since = self.lines - (self.lines_at_stop[-1] if index else 0)
            if since >= plan.line:
                self.send_locked(plan.sig)

    def wait_halt(self, seconds: float) -> bool:
        """Wait up to `seconds`; True (at once) when halted."""
        end = time.monotonic() + seconds
        with self.cond:
            while not self.halted:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self.halted

    def stopper(self) -> None:
        """Thread: sends the timer stops, in order, each once the one before it came."""
        for index, plan in enumerate(self.plans):
            with self.cond:
                while not self.returned and len(self.sent) < index:
                    self.cond.wait()
                if self.returned:
                    return
                if plan.line is not None:
                    continue  # sent by `on_line`; the next plan waits for it
                if plan.after == "input written":
                    while not self.returned and self.fed_at is None:
                        self.cond.wait()
                    if self.returned or self.fed_at is None:
                        return
                    ref = self.fed_at
                elif plan.after == "first stop":
                    ref = self.t0 + self.sent[0][1]
                else:
                    ref = self.t0
                fire_at = ref + plan.delay_s
                while not self.returned and (now := time.monotonic()) < fire_at:
                    self.cond.wait(fire_at - now)
                # The run may not have installed its handlers yet (it opens the inputs
                # first, and a pipe's first bytes may be late): wait for them.
                while not self.returned and not self.send_locked(plan.sig):
                    self.cond.wait(0.002)
                if self.returned:
                    return


class Stderr(io.StringIO):
    """env.stderr: counts lines (for line-triggered stops) and can fail like a bug or a
    closed stream on its N-th write."""

    def __init__(self, control: Control, inject: Injection | None) -> None:
        super().__init__()
        self.control = control
        self.inject = inject
        self.writes = 0
        self.fired = False
        self.broken = False

    def write(self, s: str) -> int:
        self.writes += 1
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe (injected)")
        if self.inject is not None and self.writes == self.inject.at:
            self.fired = True
            self.broken = self.inject.error == "BrokenPipeError"
            raise self.inject.make()
        written = super().write(s)
        for _ in range(s.count("\n")):
            self.control.on_line()
        return written

    def flush(self) -> None:
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe (injected)")
        super().flush()


class Transport(httpx.AsyncBaseTransport):
    """The sandbox's transport, whose N-th request may raise instead, and which may
    answer every campaign look-up with an error of its own (`lookup`)."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, inject: Injection | None, lookup: str = "ok"
    ) -> None:
        self.inner = inner
        self.inject = inject
        self.lookup = lookup
        self.requests = 0
        self.fired = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.inject is not None and self.requests == self.inject.at:
            self.fired = True
            raise self.inject.make()
        if request.method == "GET" and self.lookup in ("404", "503"):
            status = int(self.lookup)
            body = {"error": {"code": "X", "message": "look-up refused here", "status": status}}
            return httpx.Response(status, json=body)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Feeder:
    """Writes a schedule's bytes into a pipe: chunks, pauses, silence, EOF (or not)."""

    def __init__(self, control: Control, schedule: Schedule) -> None:
        self.control = control
        self.schedule = schedule
        read_fd, self.write_fd = os.pipe()
        import fcntl  # POSIX only: importing it at the top would break collection on Windows

        with contextlib.suppress(OSError, AttributeError):  # F_SETPIPE_SZ is Linux's
            fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        # Never block holding the lock (a stop is sent under it): a full pipe is retried.
        os.set_blocking(self.write_fd, False)
        self.stdin = os.fdopen(read_fd, "rb")
        self.written = 0
        self.open = True
        self.closed_before_stop = False
        self.thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def _close_locked(self) -> None:
        if self.open:
            self.open = False
            os.close(self.write_fd)

    def _write(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            with self.control.cond:
                if self.control.halted:
                    return False
                try:
                    done = os.write(self.write_fd, view)
                except BlockingIOError:
                    done = 0
                self.written += done
            view = view[done:]
            if view and self.control.wait_halt(0.002):
                return False
        return True

    def _run(self) -> None:
        control = self.control
        try:
            for pause, data in self.schedule.chunks:
                if pause > 0 and control.wait_halt(pause):
                    return
                if not self._write(data):
                    return
            with control.cond:
                control.fed_at = time.monotonic()
                control.cond.notify_all()
            if self.schedule.silence_s > 0 and control.wait_halt(self.schedule.silence_s):
                return
            if not self.schedule.keep_open:
                with control.cond:
                    if not control.halted:
                        self._close_locked()
                        self.closed_before_stop = True
        finally:
            with control.cond:
                while not control.returned:
                    control.cond.wait()
                self._close_locked()

    def leftover(self) -> bytes | None:
        """What the run left in the pipe, read to EOF; None when that cannot be known (the
        run closed our end, or our write end is somehow still open)."""
        with self.control.cond:
            if self.open or self.stdin.closed:
                return None
        try:
            return self.stdin.read()
        except (OSError, ValueError):
            return None


def _waiting_on(frame: FrameType | None) -> str:
    """What each asyncio task awaits, innermost last, and where the main thread was."""
    chains: Counter[str] = Counter()
    with contextlib.suppress(RuntimeError):
        for task in asyncio.all_tasks():
            links: list[str] = []
            coro: Any = task.get_coro()
            while coro is not None:
                code_frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                if code_frame is None:
                    break
                where = Path(code_frame.f_code.co_filename).stem
                links.append(f"{where}.{code_frame.f_code.co_name}:{code_frame.f_lineno}")
                coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            chains[" > ".join(links) or repr(task)] += 1
    tasks = "; ".join(f"{n}x {chain}" if n > 1 else chain for chain, n in chains.items())
    main: list[str] = []
    while frame is not None and len(main) < 3:
        main.append(
            f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}:{frame.f_lineno}"
        )
        frame = frame.f_back
    return f"tasks: [{tasks or 'none'}]; main thread in {' < '.join(main)}"


class Watchdog:
    """Breaks a run off in the main thread once it is past its bound.

    The exception is raised only where the main thread waits (the event loop's selector,
    a lock): raised in the middle of arbitrary code it could leave the interpreter in a
    state that later breaks pytest itself. After `FORCE_AFTER` refused tries it is raised
    wherever the thread is; after `GIVE_UP_AFTER` faulthandler ends the process.
    """

    EVERY_S = 0.25
    FORCE_AFTER = 20
    GIVE_UP_AFTER = 40
    WAITING_IN = frozenset({"selectors.py", "threading.py", "queue.py"})

    def __init__(self, control: Control) -> None:
        self.control = control
        self.armed = False
        self.fired = 0
        self.diagnosis = ""
        self.main = threading.main_thread().ident
        self.thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed:
            return
        waiting = frame is not None and Path(frame.f_code.co_filename).name in self.WAITING_IN
        if not waiting and self.fired < self.FORCE_AFTER:
            return
        if not self.diagnosis:
            self.diagnosis = _waiting_on(frame)
        raise RunOverdue

    def _run(self) -> None:
        control = self.control
        assert self.main is not None
        with control.cond:
            while not control.returned and self.fired < self.GIVE_UP_AFTER:
                due = control.t0 + control.bound() + WATCHDOG_MARGIN_S + self.fired * self.EVERY_S
                now = time.monotonic()
                if now < due:
                    control.cond.wait(due - now)
                    continue
                self.fired += 1
                signal.pthread_kill(self.main, signal.SIGUSR2)


@dataclass
class RunOutcome:
    """What one run did, as seen from outside."""

    label: str
    result: AddResult | None = None
    escaped: str | None = None
    hang: str | None = None
    elapsed: float = 0.0
    bound: float = NO_STOP_BOUND_S
    sent: list[tuple[signal.Signals, float]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    bug_fired: bool = False
    broken_stream: bool = False
    applied: set[str] = field(default_factory=set)
    undelivered: list[str] = field(default_factory=list)
    consumed: tuple[int, int] | None = None  # pipe: complete records taken, with a partial one
    closed_before_stop: bool = False

    def describe(self) -> str:
        sent = ", ".join(f"{sig.name}@{t:.3f}s" for sig, t in self.sent) or "none"
        text = f"{self.label}: stops sent [{sent}], "
        if self.hang is not None:
            return text + f"broken off after {self.elapsed:.2f} s (bound {self.bound:.2f} s)"
        text += f"returned after {self.elapsed:.2f} s (bound {self.bound:.2f} s)"
        if self.result is not None:
            text += f", exit {int(self.result.status)}"
        if self.summary is not None:
            keys = ("read", "unique", "delivered", "undelivered", "resumed")
            text += ", summary " + " ".join(f"{k}={self.summary.get(k)}" for k in keys)
        text += f", sandbox applied {len(self.applied)}, undelivered file {len(self.undelivered)}"
        if self.consumed is not None:
            text += f", took {self.consumed[0]} records from the pipe"
        if self.bug_fired:
            text += ", injected bug fired"
        if self.broken_stream:
            text += ", stderr closed"
        return text


@contextlib.contextmanager
def journal_fault(
    monkeypatch: pytest.MonkeyPatch, inject: Injection | None
) -> Iterator[list[bool]]:
    """Make Journal.record raise on its N-th call; yields [fired]."""
    fired = [False]
    if inject is None or inject.where != "journal":
        yield fired
        return
    original = Journal.record
    calls = [0]

    def record(self: Journal, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == inject.at:
            fired[0] = True
            raise inject.make()
        original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Journal, "record", record)
        yield fired


def parse_undelivered(path: Path) -> list[str]:
    """The identifiers of a plain-lines --undelivered file, lower-cased; [] when absent."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        value = line.strip()
        if value:
            out.append(value.removeprefix("@").lower())
    return out


def describe_exception(exc: BaseException) -> str:
    """The exception and its innermost frames. (Not `traceback.format_exc`: on 3.11 that
    parses source with `ast`, which is not safe to re-enter from a finalizer.)"""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{type(exc).__name__}: {exc} (at {where})"


def run_once(
    schedule: Schedule,
    label: str,
    plans: list[StopPlan],
    inject: Injection | None,
    *,
    app: Starlette,
    input_path: Path,
    journal_path: Path | None,
    undelivered_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RunOutcome:
    """One call of run_add with its stops, feeder, injections and watchdog."""
    control = Control(plans, schedule.stop_grace_s)
    stderr = Stderr(control, inject if inject is not None and inject.where == "display" else None)
    client_inject = inject if inject is not None and inject.where == "client" else None
    transport = Transport(sandbox_transport(app), client_inject, schedule.lookup)
    feeder = Feeder(control, schedule) if schedule.source == "pipe" else None
    stdin_file = open(input_path, "rb") if schedule.source == "stdin-file" else None  # noqa: SIM115
    stdin: Any = feeder.stdin if feeder is not None else stdin_file or io.BytesIO(b"")
    stdout = io.StringIO()
    env = Environment(
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        stdin_isatty=False,
        stderr_isatty=False,
        clock=time.time,
        monotonic=time.monotonic,
        sleep=fast_sleep,
        rng=random.Random(schedule.seed),
        transport=transport,
        handle_signals=True,
    )
    job = AddJob(
        campaign=CAMPAIGN,
        inputs=[str(input_path)] if schedule.source == "file" else ["-"],
        token=SECRET,
        base_url=BASE_URL,
        batch_size=schedule.batch_size,
        concurrency=schedule.concurrency,
        timeout_s=schedule.timeout_s,
        max_attempts=schedule.max_attempts,
        flush_after_s=schedule.flush_after_s,
        progress="jsonl",
        stop_grace_s=schedule.stop_grace_s,
        journal=journal_path,
        undelivered=undelivered_path,
        json_summary=True,
        no_check=schedule.lookup == "skip",
    )
    state = app.state.sandbox
    before = len(state.received(CAMPAIGN))
    watchdog = Watchdog(control)
    threads = [threading.Thread(target=control.stopper, name="stopper", daemon=True)]
    threads.append(watchdog.thread)
    if feeder is not None:
        threads.append(feeder.thread)
    out = RunOutcome(label)
    threads_before = set(threading.enumerate())
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
    previous = {sig: signal.getsignal(sig) for sig in handled}
    faulthandler.dump_traceback_later(NO_STOP_BOUND_S + 40, exit=True)
    try:
        signal.signal(signal.SIGINT, _ignore)
        signal.signal(signal.SIGTERM, _ignore)
        signal.signal(signal.SIGUSR2, watchdog.handler)
        with (
            journal_fault(monkeypatch, inject) as journal_fired,
            guarded_signals(monkeypatch, control.cond),
        ):
            control.start()
            watchdog.armed = True
            for thread in threads:
                thread.start()
            try:
                try:
                    out.result = run_add(job, env)
                finally:
                    watchdog.armed = False
                    out.elapsed = time.monotonic() - control.t0
                    # The run may have restored the defaults: a late SIGTERM would end pytest.
                    signal.signal(signal.SIGINT, _ignore)
                    signal.signal(signal.SIGTERM, _ignore)
                    control.finish()
            except RunOverdue:
                out.hang = watchdog.diagnosis or "(no diagnosis)"
            except BaseException as exc:
                out.escaped = describe_exception(exc)
            out.bug_fired = journal_fired[0]
    finally:
        control.finish()
        for thread in threads:
            if thread.ident is not None:
                thread.join(timeout=15)
        faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stdin_file is not None:
            stdin_file.close()
    if watchdog.fired and out.hang is None:
        out.hang = watchdog.diagnosis or "(the watchdog fired, yet the run returned)"
    if out.hang is not None or out.escaped is not None:
        # A run broken off leaves tasks, coroutines and threads behind: let them end now
        # (the pipe is closed), not in the middle of whatever runs next.
        deadline = time.monotonic() + 1.0
        for thread in set(threading.enumerate()) - threads_before - set(threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        gc.collect()
    with control.cond:
        out.sent = list(control.sent)
        out.bound = control.bound()
    fired = out.bug_fired or transport.fired or stderr.fired
    out.bug_fired = fired and inject is not None and inject.is_bug
    out.broken_stream = stderr.broken
    out.applied = {value.lower() for _, value in state.received(CAMPAIGN)[before:]}
    out.undelivered = parse_undelivered(undelivered_path)
    lines = [line for line in stdout.getvalue().splitlines() if line.strip()]
    if lines:
        with contextlib.suppress(ValueError):
            summary = json.loads(lines[-1])
            out.summary = summary if isinstance(summary, dict) else None
    if feeder is not None:
        out.closed_before_stop = feeder.closed_before_stop
        left = feeder.leftover()
        feeder.stdin.close()
        if left is not None:
            data = schedule.data
            taken = data[: feeder.written - len(left)]
            whole = taken.count(b"\n")
            complete = sum(schedule.is_record[:whole])
            partial = not taken.endswith(b"\n") and bool(taken) and schedule.is_record[whole]
            out.consumed = (complete, complete + int(partial))
    return out


# -- what a run must satisfy -------------------------------------------------------------


def _sample(values: set[str]) -> str:
    return ", ".join(sorted(values)[:3])


def check_run(schedule: Schedule, out: RunOutcome, prev: set[str]) -> list[tuple[str, str]]:
    """(kind, message) for each thing the run got wrong."""
    if out.hang is not None:
        return [("hang", f"no return within the bound; {out.hang}")]
    if out.escaped is not None:
        return [("exception", f"escaped run_add: {out.escaped}")]
    problems: list[tuple[str, str]] = []
    if out.elapsed > out.bound:
        problems.append(("slow", f"returned after {out.elapsed:.2f} s, bound {out.bound:.2f} s"))
    summary = out.summary
    assert out.result is not None
    status = int(out.result.status)
    if summary is None:
        return [*problems, ("summary", f"no --json summary on stdout (exit {status})")]
    try:
        read, rejected, duplicates, unique = (
            int(summary[k]) for k in ("read", "rejected", "duplicates", "unique")
        )
        delivered, undelivered, resumed = (
            int(summary[k]) for k in ("delivered", "undelivered", "resumed")
        )
    except (KeyError, TypeError, ValueError) as exc:
        return [*problems, ("summary", f"summary lacks a count: {exc!r}")]
    if summary.get("exit_code") != status:
        problems.append(("exit code", f"summary exit_code {summary.get('exit_code')} != {status}"))

    # What was read: a prefix of the records, counted as the test counts it.
    total = len(schedule.records)
    if not 0 <= read <= total:
        return [*problems, ("read", f"read={read}, but the input has {total} records")]
    exp_rejected, exp_duplicates, uniq = expected_counts(schedule.records[:read])
    got = (rejected, duplicates, unique)
    if got != (exp_rejected, exp_duplicates, len(uniq)):
        problems.append(
            (
                "counts",
                f"rejected/duplicates/unique {got} != {(exp_rejected, exp_duplicates, len(uniq))}"
                f" expected of the first {read} records",
            )
        )
    stops = len(out.sent)
    # A regular file is read to its end unless a second stop abandons it (no read starts
    # after an abort); a pipe is, once closed, as finite as a file, and read as one.
    finite = schedule.regular or out.closed_before_stop
    read_all = stops == 0 or (finite and stops <= 1)
    if read_all and not out.bug_fired and read != total:
        why = "a regular file" if schedule.regular else "the pipe was closed before any stop"
        problems.append(("read", f"read {read} of {total} records ({why}, {stops} stop(s))"))
    if out.consumed is not None and not out.bug_fired:
        low, high = out.consumed
        if not low <= read <= high:
            problems.append(
                ("read", f"took {low} complete records from the pipe but counted read={read}")
            )

    # Where every unique identifier went, from the sandbox and the undelivered file.
    applied = out.applied
    listed = set(out.undelivered)
    if len(listed) != len(out.undelivered):
        twice = len(out.undelivered) - len(listed)
        problems.append(("undelivered file", f"{twice} identifiers listed twice"))
    if not applied <= uniq:
        problems.append(("sets", f"applied but not read: {_sample(applied - uniq)}"))
    if not listed <= uniq:
        problems.append(("sets", f"listed undelivered but not read: {_sample(listed - uniq)}"))
    lost = uniq - applied - listed - prev
    if lost:
        problems.append(
            (
                "lost",
                f"{len(lost)} read identifiers neither applied, nor listed undelivered, "
                f"nor applied by the first run: {_sample(lost)}",
            )
        )
    if undelivered != len(listed):
        problems.append(("counts", f"undelivered={undelivered}, the file lists {len(listed)}"))
    skipped = uniq - listed - applied
    if resumed != len(skipped):
        problems.append(
            ("counts", f"resumed={resumed}, but {len(skipped)} read identifiers were not sent")
        )
    if delivered != len(uniq) - len(listed) - resumed:
        problems.append(
            (
                "counts",
                f"delivered={delivered} != unique {len(uniq)} - undelivered {len(listed)}"
                f" - resumed {resumed}",
            )
        )
    if delivered + undelivered + resumed != unique:
        problems.append(
            (
                "counts",
                f"delivered+undelivered+resumed = "
                f"{delivered + undelivered + resumed} != unique {unique}",
            )
        )
    if read != rejected + duplicates + unique:
        problems.append(("counts", f"read {read} != rejected+duplicates+unique"))

    # The exit code.
    everything = not listed and uniq <= applied | prev and not lost
    normal = 0 if everything else EXIT_PARTIAL
    if out.bug_fired:
        allowed = {EXIT_BUG}
    elif out.sent:
        allowed = {EXIT_BY_SIGNAL[out.sent[0][0]]}
        if out.elapsed - out.sent[0][1] <= LATE_STOP_S:
            allowed.add(normal)
    else:
        allowed = {normal}
    if status not in allowed:
        why = (
            "an injected bug fired"
            if out.bug_fired
            else f"first stop {out.sent[0][0].name}"
            if out.sent
            else "everything delivered"
            if everything
            else "not everything delivered"
        )
        problems.append(("exit code", f"exit {status}, expected {sorted(allowed)} ({why})"))
    return problems


# -- one schedule, and the test ----------------------------------------------------------


@dataclass
class Failure:
    seed: int
    description: str
    runs: list[str]
    problems: list[tuple[str, str]]


def run_schedule(seed: int, root: Path, monkeypatch: pytest.MonkeyPatch) -> Failure | None:
    """Run one seed's schedule (first run, then main run) and check both."""
    schedule = make_schedule(seed)
    where = root / f"seed{seed}"
    for again in itertools.count(1):
        if not where.exists():
            break
        where = root / f"seed{seed}-{again}"
    where.mkdir(parents=True)
    input_path = where / "leads.txt"
    input_path.write_bytes(schedule.data)
    app = create_app(
        SandboxConfig(token=SECRET, faults=schedule.faults, max_body_bytes=schedule.max_body_bytes)
    )
    journal_path = where / "run.journal" if schedule.journal else None
    common: dict[str, Any] = {
        "app": app,
        "input_path": input_path,
        "journal_path": journal_path,
        "monkeypatch": monkeypatch,
    }
    problems: list[tuple[str, str]] = []
    runs: list[str] = []
    prev: set[str] = set()
    if schedule.pre_stop is not None:
        first = run_once(
            schedule,
            "first run",
            [schedule.pre_stop],
            None,
            undelivered_path=where / "first-undelivered.txt",
            **common,
        )
        runs.append(first.describe())
        problems += [
            (kind, "first run: " + text) for kind, text in check_run(schedule, first, prev)
        ]
        if first.result is None:
            return Failure(seed, schedule.describe(), runs, problems)
        prev = first.applied
    main = run_once(
        schedule,
        "run",
        schedule.stops,
        schedule.inject,
        undelivered_path=where / "undelivered.txt",
        **common,
    )
    runs.append(main.describe())
    problems += check_run(schedule, main, prev)
    if problems:
        return Failure(seed, schedule.describe(), runs, problems)
    return None


def selected_seeds() -> list[int]:
    only = os.environ.get("INBOXLEADS_SEED", "").replace(",", " ").split()
    if only:
        return [int(seed) for seed in only]
    start = int(os.environ.get("INBOXLEADS_SEED_START", "0"))
    count = int(os.environ.get("INBOXLEADS_SCHEDULES", "500"))
    return list(range(start, start + count))


def repeats() -> int:
    return max(1, int(os.environ.get("INBOXLEADS_REPEAT", "1")))


def report(failures: list[Failure], ran: int, seconds: float) -> str:
    kinds = Counter(kind for failure in failures for kind in {k for k, _ in failure.problems})
    lines = [
        f"{len(failures)} of {ran} schedules failed ({seconds:.1f} s); schedules with each kind "
        "of failure: " + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()),
        "seeds: " + ",".join(str(failure.seed) for failure in failures),
        "reproduce one with INBOXLEADS_SEED=<seed> pytest tests/test_engine_random.py",
    ]
    for failure in failures:
        lines.append("")
        lines.append(failure.description)
        lines.extend("  " + run for run in failure.runs)
        lines.extend(f"  [{kind}] {text}" for kind, text in failure.problems)
    return "\n".join(lines)


class Notes(list[str]):
    """What `quiet_hooks` swallowed, kept short (pytest shows fixture values on failure)."""

    def __repr__(self) -> str:
        return f"<{len(self)} notes>"


class _NoteFilter(logging.Filter):
    def __init__(self, notes: Notes) -> None:
        super().__init__()
        self.notes = notes

    def filter(self, record: logging.LogRecord) -> bool:
        self.notes.append("asyncio: " + " | ".join(record.getMessage().splitlines())[:160])
        return False


@pytest.fixture(scope="module")
def quiet_hooks() -> Iterator[Notes]:
    """Exceptions nobody can raise any more (finalizers of abandoned coroutines and tasks,
    threads left behind by a broken-off run, asyncio's "exception was never retrieved")
    are noted here without formatting a traceback. pytest's hooks and log handler would
    format it on the spot, from any thread or from inside a garbage collection, and on
    3.11 formatting a traceback parses source with `ast`, which is not re-entrant: its
    state gets corrupted and pytest itself crashes later. Hangs, escaped exceptions and
    wrong exit codes are reported from the runs already."""
    notes = Notes()
    unraisable_hook, thread_hook = sys.unraisablehook, threading.excepthook
    asyncio_log = logging.getLogger("asyncio")
    log_filter = _NoteFilter(notes)

    def on_unraisable(info: Any) -> None:
        notes.append(f"unraisable {type(info.exc_value).__name__} in {info.object!r:.80}")

    def on_thread(args: Any) -> None:
        notes.append(f"thread {getattr(args.thread, 'name', '?')}: {args.exc_type.__name__}")

    sys.unraisablehook = on_unraisable
    threading.excepthook = on_thread
    asyncio_log.addFilter(log_filter)
    try:
        yield notes
    finally:
        gc.collect()
        asyncio_log.removeFilter(log_filter)
        sys.unraisablehook, threading.excepthook = unraisable_hook, thread_hook


@pytest.mark.parametrize("part", range(SLICES))
def test_random_schedules(
    part: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_hooks: Notes
) -> None:
    seeds = [seed for seed in selected_seeds()[part::SLICES] for _ in range(repeats())]
    if not seeds:
        pytest.skip("no seed falls in this slice")
    started = time.monotonic()
    failures: list[Failure] = []
    for seed in seeds:
        noted = len(quiet_hooks)
        failure = run_schedule(seed, tmp_path, monkeypatch)
        if failure is not None:
            failure.runs.extend(f"noted meanwhile: {note}" for note in quiet_hooks[noted:][:3])
            failures.append(failure)
    gc.collect()  # now, under quiet_hooks, rather than while pytest formats a failure
    assert not failures, report(failures, len(seeds), time.monotonic() - started)
