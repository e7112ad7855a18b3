"""The upload engine: read, de-duplicate, batch and deliver, concurrently.

One reader thread parses the inputs (blocking reads stay off the event loop);
the loop de-duplicates and batches what it hands over, and a fixed pool of
workers delivers batches through `deliver`, which owns attempts, backoff,
pacing, the journal and the accounting events. Later phases (explaining
failures) reuse `deliver` for their own requests.

Stopping has two steps: `request_stop` (first Ctrl-C, SIGTERM) takes no new
batch and lets in-flight requests finish for a short grace; a second call, or
a refusal from the API, abandons them at once. Either way every batch ends as
delivered, resumed or undelivered, so the counts always add up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from . import events as ev
from .batching import Batch, Batcher, Deduper
from .client import Answer, InboxClient, Outcome
from .errors import ApiRefused, InboxLeadsError, InputError, http_status_to_refusal
from .identifiers import HandleRun, Kind, Lead
from .inputs import Chunk, OpenInput, ReadOptions, Rejection, read_chunks
from .journal import Journal
from .pacing import AdaptiveLimit, Clock, Pacer, RetryPolicy, Sleep
from .reports import Reports

READ_CHUNK = 2048
T = TypeVar("T")


@dataclass
class EngineConfig:
    """Everything the engine needs to know about one run."""

    campaign: str
    read: ReadOptions = field(default_factory=ReadOptions)
    batch_size: int = 2000
    concurrency: int = 4
    timeout_s: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    flush_after_s: float = 5.0
    stop_grace_s: float = 10.0
    dry_run: bool = False
    keep_failed_batches: bool = False


@dataclass
class Delivery:
    """How one batch ended."""

    delivered: bool
    answer: Answer | None = None
    attempts: int = 0


class _NotSent(Exception):
    """A stop came before the request went out."""


class _Cancelled(Exception):
    """The reader thread was told to stop."""


class Engine:
    """Runs one upload; emits events for everything that happens."""

    def __init__(
        self,
        config: EngineConfig,
        inputs: list[OpenInput],
        client: InboxClient | None,
        emit: Callable[[ev.Event], None],
        *,
        reports: Reports | None = None,
        journal: Journal | None = None,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.inputs = inputs
        self.client = client
        self.emit = emit
        self.reports = reports or Reports()
        self.journal = journal
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.refused: ApiRefused | None = None
        self.input_error: InboxLeadsError | None = None
        self.pacer = Pacer(clock, sleep, self._on_pause)
        self.limit = AdaptiveLimit(config.concurrency, clock)
        self._stop = asyncio.Event()
        self._abort = asyncio.Event()
        self._in_flight = 0
        self._last_pause_end = 0.0
        # Regular files are finite and never trickle: they are drained on a stop
        # and never cut early, so their batches are the same on every run.
        self._regular_only = all(i.is_regular for i in inputs)
        # Delivered batches whose answer counted failures, kept for `explain`.
        self.failed_batches: list[tuple[Batch, int]] = []

    # -- stopping -------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, reason: str) -> None:
        """First call: finish in-flight requests (up to the grace), send nothing new.
        Second call: abandon in-flight requests now."""
        if self._stop.is_set():
            self._abort.set()
            self.emit(ev.Stopping(f"{reason} again", abandon=True))
            return
        self._stop.set()
        self.emit(ev.Stopping(reason))
        asyncio.get_running_loop().call_later(self.config.stop_grace_s, self._abort.set)

    def _refuse(self, answer: Answer) -> None:
        if self.refused is None:
            status = answer.status or 0
            hint = http_status_to_refusal(status, self.config.campaign) or answer.message
            self.refused = ApiRefused(f"{hint} [{answer.message}]", status)
            self._stop.set()
            self._abort.set()
            self.emit(ev.Stopping(f"the API answered {status}", abandon=True))

    def _on_pause(self, wait_s: float, reason: str) -> None:
        resume_at = self.clock() + wait_s
        # Several workers wait for the same pause: report it once.
        if resume_at - self._last_pause_end > 0.5:
            self._last_pause_end = resume_at
            self.emit(ev.RatePaused(wait_s, reason, resume_at))

    # -- the run --------------------------------------------------------------

    async def run(self) -> None:
        """Read every input and deliver every batch (or record why not)."""
        if self.config.dry_run:
            await self._produce(None)
            return
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=self.config.concurrency * 2)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.config.concurrency)]
        try:
            await self._produce(queue)
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)

    async def _worker(self, queue: asyncio.Queue[Batch | None]) -> None:
        while (batch := await queue.get()) is not None:
            await self.deliver_batch(batch)

    async def deliver_batch(self, batch: Batch) -> Delivery:
        """Deliver one upload batch, consulting and updating the journal."""
        digest = batch.digest(self.config.campaign) if self.journal is not None else ""
        known_failed = self.journal.failed_of(digest) if self.journal is not None else None
        if known_failed is not None:
            self.emit(ev.BatchResumed(batch.seq, len(batch)))
            self._keep_if_failed(batch, known_failed)
            return Delivery(True)
        result = await self.deliver(batch, "upload")
        if result.delivered and result.answer is not None:
            answer = result.answer
            if self.journal is not None:
                self.journal.record(digest, batch.seq, len(batch), answer)
            self.emit(
                ev.BatchDelivered(
                    batch.seq,
                    len(batch),
                    answer.added,
                    answer.skipped,
                    answer.failed,
                    result.attempts,
                )
            )
            self._keep_if_failed(batch, answer.failed)
        return result

    def _keep_if_failed(self, batch: Batch, failed: int) -> None:
        if failed and self.config.keep_failed_batches:
            self.failed_batches.append((batch, failed))

    async def deliver(self, batch: Batch, phase: str) -> Delivery:
        """Send `batch` in one request, retrying transient failures.

        Emits request and retry events; for the upload phase an undelivered
        batch is also recorded (event and undelivered report) here.
        """
        assert self.client is not None
        attempt = 0
        while True:
            if self._stop.is_set():
                reason = "not sent: the run was stopped"
                break
            attempt += 1
            try:
                answer = await self._attempt(batch, attempt, phase)
            except _NotSent:
                attempt -= 1
                reason = "not sent: the run was stopped"
                break
            if answer is None:
                reason = "abandoned in flight when the run stopped (it may have been applied)"
                break
            if answer.outcome is Outcome.OK:
                self.limit.success()
                return Delivery(True, answer, attempt)
            if answer.outcome is Outcome.REFUSED:
                self._refuse(answer)
                reason = f"not sent: the run was refused ({answer.status})"
                break
            if answer.outcome is Outcome.REJECTED:
                reason = f"rejected by the server: {answer.message}"
                break
            if answer.status in (429, 503):
                self.limit.overload()
            if answer.status == 429:
                # Retry-After is the floor, but an absurd one must not hold the run for days.
                hold = min(answer.retry_after or 1.0, self.config.retry.max_wait_s)
                self.pacer.block(hold, f"rate limit: {answer.message}")
            if attempt >= self.config.retry.max_attempts:
                reason = f"gave up after {attempt} attempts: {answer.message}"
                break
            wait = self.config.retry.wait(attempt, answer.retry_after, self.rng)
            self.emit(ev.RetryScheduled(batch.seq, attempt + 1, answer.message, wait, phase))
            if not await self._sleep_unless_stopped(wait):
                reason = f"not retried: the run was stopped ({answer.message})"
                break
        if phase == "upload":
            self._undelivered(batch, reason, attempt)
        return Delivery(False, None, attempt)

    def _undelivered(self, batch: Batch, reason: str, attempts: int) -> None:
        self.emit(ev.BatchUndelivered(batch.seq, len(batch), reason, attempts))
        self.reports.undelivered(batch.leads, reason)

    async def _attempt(self, batch: Batch, attempt: int, phase: str) -> Answer | None:
        """One request, holding a concurrency slot; None when abandoned by a stop."""
        assert self.client is not None
        await self.limit.acquire()
        try:
            finished, start_seq = await _race(self.pacer.wait_turn(), self._stop)
            if not finished or start_seq is None:
                raise _NotSent
            self._in_flight += 1
            self.emit(ev.RequestStarted(batch.seq, len(batch), attempt, phase))
            status: int | None = None
            try:
                payload = batch.payload()
                post = self.client.post_leads(
                    self.config.campaign, payload, self.config.timeout_s, self.clock()
                )
                finished, answer = await _race(post, self._abort)
                if not finished or answer is None:
                    return None
                status = answer.status
                self.pacer.observe(answer.rate, start_seq)
                return answer
            finally:
                self._in_flight -= 1
                self.emit(ev.RequestEnded(batch.seq, status, phase))
        finally:
            self.limit.release()

    async def _sleep_unless_stopped(self, seconds: float) -> bool:
        """Sleep; False when a stop came first."""
        finished, _ = await _race(self.sleep(seconds), self._stop)
        return finished

    # -- reading and batching ---------------------------------------------------

    async def _produce(self, queue: asyncio.Queue[Batch | None] | None) -> None:
        """Read records, de-duplicate, batch, and queue batches (or count them, dry)."""
        chunks: asyncio.Queue[Chunk | BaseException | None] = asyncio.Queue(maxsize=8)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        thread = threading.Thread(
            target=_read_all,
            args=(self.inputs, self.config.read, chunks, loop, cancel, self._keep_reading),
            name="inboxleads-reader",
            daemon=True,  # a reader blocked on a silent pipe must not hold the exit
        )
        thread.start()
        dedup = Deduper()
        batcher = Batcher(self.config.batch_size)
        last_input = [self.clock()]
        flusher = asyncio.create_task(self._flush_quiet_input(batcher, queue, last_input))
        draining = self._regular_only
        try:
            while True:
                if draining and not self._abort.is_set():
                    item = await chunks.get()
                else:
                    # A pipe may stay silent: a stop must not wait for its next line.
                    finished, item = await _race(
                        chunks.get(), self._abort if draining else self._stop
                    )
                    if not finished:
                        break
                if item is None:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, InboxLeadsError):
                        self.input_error = item
                        self.request_stop("input error")
                        break
                    raise item
                last_input[0] = self.clock()
                await self._take_chunk(item, dedup, batcher, queue)
        finally:
            cancel.set()
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        last = batcher.flush()
        if last is not None:
            await self._queue_batch(last, queue)
        self.emit(ev.InputFinished(batcher.count))

    def _keep_reading(self) -> bool:
        """While stopping, keep reading only regular files (quick, and finite), and
        nothing at all once the stop is abrupt."""
        return not self._abort.is_set() and (self._regular_only or not self._stop.is_set())

    async def _take_chunk(
        self,
        records: Chunk,
        dedup: Deduper,
        batcher: Batcher,
        queue: asyncio.Queue[Batch | None] | None,
    ) -> None:
        rejections: list[Rejection] = []
        duplicates = 0
        kinds: Counter[str] = Counter()
        full: list[Batch] = []
        read = 0
        leads: list[Lead] = []

        def take_leads() -> None:
            nonlocal duplicates
            if not leads:
                return
            unique = dedup.unique(leads)
            duplicates += len(leads) - len(unique)
            kinds.update(lead.kind for lead in unique)
            full.extend(batcher.extend(unique))
            leads.clear()

        for record in records:
            if isinstance(record, HandleRun):
                take_leads()  # keep the input's order
                read += len(record)
                if dedup.all_new_handles(record.values):
                    kinds[Kind.USERNAME] += len(record)
                    full.extend(batcher.extend_run(record))
                else:
                    leads.extend(record.leads())
                    take_leads()
            else:
                read += 1
                if isinstance(record, Rejection):
                    rejections.append(record)
                else:
                    leads.append(record)
        take_leads()
        self.emit(
            ev.RecordsRead(
                read,
                len(rejections),
                duplicates,
                tuple(rejections),
                records[0].source,  # the reader hands over one input at a time
                tuple((str(kind), n) for kind, n in kinds.items()),
            )
        )
        if rejections:
            self.reports.rejected(rejections)
        for batch in full:
            await self._queue_batch(batch, queue)

    async def _queue_batch(self, batch: Batch, queue: asyncio.Queue[Batch | None] | None) -> None:
        self.emit(ev.BatchQueued(batch.seq, len(batch)))
        if queue is None:
            return
        if self._stop.is_set():
            # Not sent: recorded at once rather than queued behind the stop.
            self._undelivered(batch, "not sent: the run was stopped", 0)
            return
        await queue.put(batch)

    async def _flush_quiet_input(
        self,
        batcher: Batcher,
        queue: asyncio.Queue[Batch | None] | None,
        last_input: list[float],
    ) -> None:
        """Send a partial batch when a slow pipe has been quiet for `flush_after_s`."""
        quiet = self.config.flush_after_s
        if quiet <= 0 or self._regular_only:
            return
        while True:
            idle = self.clock() - last_input[0]
            if idle >= quiet and batcher.pending:
                batch = batcher.flush()
                if batch is not None:
                    await self._queue_batch(batch, queue)
                idle = 0.0
            await self.sleep(max(quiet - idle, 0.05))


async def _race(awaitable: Awaitable[T], event: asyncio.Event) -> tuple[bool, T | None]:
    """Await `awaitable` unless `event` is set first: (True, result) or (False, None)."""
    if event.is_set():
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        return False, None
    work = asyncio.ensure_future(awaitable)
    stop = asyncio.ensure_future(event.wait())
    done, pending = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if work in done and not work.cancelled():
        return True, work.result()
    return False, None


def _read_all(
    inputs: list[OpenInput],
    options: ReadOptions,
    chunks: asyncio.Queue[Chunk | BaseException | None],
    loop: asyncio.AbstractEventLoop,
    cancel: threading.Event,
    keep_reading: Callable[[], bool],
) -> None:
    """The reader thread: parse every input and hand records to the loop in chunks."""
    buffer: Chunk = []

    def push(item: Chunk | BaseException | None) -> None:
        future = asyncio.run_coroutine_threadsafe(chunks.put(item), loop)
        while True:
            try:
                future.result(timeout=0.2)
                return
            except concurrent.futures.TimeoutError:
                if cancel.is_set():
                    future.cancel()
                    raise _Cancelled from None

    def hand_over() -> None:
        if cancel.is_set() or not keep_reading():
            raise _Cancelled
        if buffer:
            push(buffer.copy())
            buffer.clear()

    try:
        for source in inputs:
            try:
                for chunk in read_chunks(source, options, hand_over):
                    buffer.extend(chunk)
                    if len(buffer) >= READ_CHUNK:
                        hand_over()
                hand_over()  # a chunk never mixes two inputs
            finally:
                source.close()
        push(None)
    except _Cancelled:
        # The loop stopped waiting for records (it finished, or a stop raced the
        # read): nothing to hand over. Waiting here could outlive the interpreter.
        pass
    except InputError as exc:
        with contextlib.suppress(_Cancelled, RuntimeError):
            push(exc)
    except (OSError, ValueError, RuntimeError) as exc:
        with contextlib.suppress(_Cancelled, RuntimeError):
            push(InputError("input", f"read failed: {exc}"))
