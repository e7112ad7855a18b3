"""The upload engine: read, de-duplicate, batch and deliver, concurrently, and stop in order.

The parts of a run live in one task group: the producer (pulls chunks from
the reader thread, de-duplicates, cuts batches, flushes a partial batch when
a pipe goes quiet, and starts one sender task per batch as a sending slot
frees up) and the senders (each delivers one batch through `deliver`: pacing,
attempts, backoff, the journal). The ledger (`ledger.py`) counts every
identifier and records how every batch ended; it is the only place a batch
ends.

The states of a run, and what moves it from one to the next:

    RUNNING ──(1st SIGINT/SIGTERM, --max-time, an input error)──▶ STOPPING
    RUNNING | STOPPING ──(2nd signal, grace over, API refusal,
                          an exception in any part)──────────────▶ ABORTING
    any ──(every task has ended)─────────────────────────────────▶ FINISHED

- RUNNING: batches are formed and sent as the input comes.
- STOPPING (`request_stop`): no request starts any more; a batch waiting for a
  slot, a turn or a retry is not sent. Requests in flight get the grace
  (`stop_grace_s`). The input is read as far as it has come (a regular file
  to its end, a pipe as long as lines have already arrived, never waiting
  for more), so the undelivered report lists every line the user sent.
- ABORTING (`abort`): every task is cancelled at once: requests in flight are
  abandoned, the producer stops wherever it is, the reader starts no read.
- FINISHED (`_finish`, always, whatever ended the run): what the reader
  already read is taken (waiting `DRAIN_S` at most), the partial batch is
  formed, and the ledger ends every batch still open as undelivered, with a
  reason that says where it was (not sent, abandoned in flight, not
  retried). Nothing read is left unaccounted; `problems` then compares the
  independent counts.

An exception in any task ends the task group: the others are cancelled (as
for an abort) and the run finishes as above with `bug` (or `error`, for one
of the tool's own errors such as a journal that cannot be written) set; the
runner turns that into exit 70 (or the error's status) with the summary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import events as ev
from .answers import Answer, CampaignInfo, Outcome
from .batching import Batch, Batcher, Deduper
from .client import InboxClient
from .errors import ApiRefused, InboxLeadsError, InputError, cut, http_status_to_refusal, printable
from .identifiers import HandleRun, Kind, Lead
from .inputs import Chunk, ColumnsUsed, Notice, OpenInput
from .job import AddJob
from .journal import Journal
from .ledger import Ledger, Waiting
from .pacing import AdaptiveLimit, Clock, Pacer, RetryPolicy, Sleep, first
from .reader import End, Reader
from .reports import Reports

T = TypeVar("T")
Companion = Callable[[], Awaitable[None]]
# How long an ending run waits for the reader to hand over what it already read.
DRAIN_S = 0.5
# The campaign variables a warning names at most.
MOST_NAMED = 20
# The campaign look-up holds the start of a run (the input is read after it) and its
# failure only costs a warning: each attempt waits this long at most, and it is tried
# this many times at most (fewer if --max-attempts says so).
LOOKUP_TIMEOUT_S = 10.0
LOOKUP_ATTEMPTS = 3
# How long the first request may go unanswered before the others stop waiting for
# what its answer would show (a hung request must not hold a run for --timeout).
OPENING_PATIENCE_S = 5.0


@dataclass
class Delivery:
    """How one request (with its retries) ended."""

    delivered: bool
    answer: Answer | None = None
    attempts: int = 0  # requests that went out (a stop can come before one does)


class Engine:
    """Runs one upload; emits events for everything that happens."""

    def __init__(
        self,
        job: AddJob,
        inputs: list[OpenInput],
        client: InboxClient | None,
        emit: Callable[[ev.Event], None],
        *,
        reports: Reports | None = None,
        journal: Journal | None = None,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        self.job = job
        self.retry = RetryPolicy(max_attempts=job.max_attempts)
        self.client = client
        self.emit = emit
        self.reports = reports or Reports()
        self.journal = journal
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.ledger = Ledger(emit, self.reports)
        self.reader = Reader(inputs, job.read, batch_hint=job.batch_size)
        self.deduper = Deduper()
        self.batcher = Batcher(job.batch_size, job.max_request_bytes)
        self.pacer = Pacer(clock, sleep, self._on_pause)
        # Polite from the first request: one at a time until an answer shows the
        # rate limit (the campaign look-up's, when there is one).
        self.limit = AdaptiveLimit(job.concurrency, clock, opening=True)
        self._slots = asyncio.Semaphore(job.concurrency)
        # Why the run stopped early (None while it did not): goes into reasons and the summary.
        self.cause: str | None = None
        self.refused: ApiRefused | None = None
        self.input_error: InboxLeadsError | None = None
        self.error: InboxLeadsError | None = None
        self.bug: BaseException | None = None
        self.bug_trace = ""
        self._stop = asyncio.Event()
        self._abort = asyncio.Event()
        self._on_abort = on_abort
        self._grace: asyncio.TimerHandle | None = None
        self._patience: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._senders: set[asyncio.Task[None]] = set()
        self.finished = False
        self._group: asyncio.TaskGroup | None = None
        self._last_pause_end = 0.0
        # Warnings said once a run (a split batch, a wait the server asked for capped).
        self._said: set[str] = set()
        # Requests the server found too large, and the smallest body among them.
        self.too_large = 0
        self.smallest_too_large = 0
        # Regular files are finite and never trickle: they are read to the end on a
        # stop and never cut early, so their batches are the same on every run.
        self._regular_only = all(i.is_regular for i in inputs)
        # Delivered batches whose answer counted failures, kept for `explain`.
        self.failed_batches: list[tuple[Batch, int]] = []
        # What the campaign look-up found (None: not asked, or it failed).
        self.campaign: CampaignInfo | None = None
        self._mapped_found: set[str] = set()  # the --map names some header had
        self._batches_said: int | None = None  # the batches InputFinished said
        # The batches the journal recorded when the run began.
        self._journal_known = journal.delivered_batches if journal is not None else 0

    # -- stopping -------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def request_stop(self, cause: str) -> None:
        """First call: send nothing new, give in-flight requests the grace.
        A second call: abort. Once the run has finished, nothing is left to stop."""
        if self.finished:
            return
        if self._stop.is_set():
            self.abort(f"{cause} again")
            return
        self.cause = self.cause or cause
        self._stop.set()
        self.emit(ev.Stopping(cause))
        self.reader.close()
        loop = asyncio.get_running_loop()
        self._grace = loop.call_later(self.job.stop_grace_s, self.abort, "the grace period ran out")

    def abort(self, why: str) -> None:
        """Abandon everything now: cancel every task of the run."""
        if self._abort.is_set() or self.finished:
            return
        self.cause = self.cause or why
        self._stop.set()
        self._abort.set()
        self.reader.halt()
        self.emit(ev.Stopping(why, abandon=True))
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._on_abort is not None:
            self._on_abort()

    def _refuse(self, answer: Answer, *, abandon: bool = True) -> None:
        """The API refused the run: send nothing more. Requests in flight are
        abandoned; with nothing in flight (the look-up), the run stops as for a
        first signal, so the input is still read as far as it has come and listed."""
        if self.refused is None:
            status = answer.status or 0
            self.refused = ApiRefused(self._explained(answer), status)
            why = f"the API refused the run ({status})"
            if abandon:
                self.abort(why)
            else:
                self.request_stop(why)

    def _explained(self, answer: Answer) -> str:
        """The server's message, after what the user must fix when its status says."""
        status = answer.status
        hint = http_status_to_refusal(status, self.job.campaign) if status else None
        return f"{hint} [{answer.message}]" if hint else answer.message

    def _on_pause(self, wait_s: float, reason: str) -> None:
        resume_at = self.clock() + wait_s
        # Several senders wait for the same pause: report it once.
        if resume_at - self._last_pause_end > 0.5:
            self._last_pause_end = resume_at
            self.emit(ev.RatePaused(wait_s, reason, resume_at))

    async def _until_stop(self, work: Awaitable[T]) -> tuple[bool, T | None]:
        """Await `work` unless a stop comes first."""
        return await first(work, self._stop.wait())

    # -- the run --------------------------------------------------------------

    async def run(self, companions: Sequence[Companion] = ()) -> None:
        """Read every input and end every batch (delivered, undelivered or resumed).

        `companions` (a display ticker) run beside the upload in the same task
        group and are cancelled when it ends. Never raises for a failure of a
        part of the run: see `bug` and `error`.
        """
        try:
            await self.supervise(self._upload(), companions)
        finally:
            self._finish()

    async def supervise(self, work: Awaitable[None], companions: Sequence[Companion] = ()) -> None:
        """Run `work` in a task group with its companions: an abort cancels it, and an
        exception in it, in a companion or in any task it starts ends the group and
        is recorded (`bug`, `error`)."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                main = group.create_task(_awaited(work))
                self._track(main)
                side = [group.create_task(_awaited(make())) for make in companions]
                main.add_done_callback(lambda _: [task.cancel() for task in side])
        except BaseExceptionGroup as failure:
            self._failed(failure)
        finally:
            self._group = None

    async def _upload(self) -> None:
        if self.job.looks_up and self.client is not None:
            await self._look_up()
        # Only now: a header is read with the campaign's variables. (After a stop in
        # the look-up as well: the input is read as far as it has come, and listed.)
        self.reader.start()
        await self._produce()
        while self._senders:
            await asyncio.wait(set(self._senders))

    async def _look_up(self) -> None:
        """Ask the API for the campaign, before any input is read: 401 refuses the run
        (a dry run only warns); any other failure is a warning, and the Add-leads
        answers decide."""
        assert self.client is not None
        client, job = self.client, self.job

        timeout = min(job.timeout_s, LOOKUP_TIMEOUT_S)

        def get() -> Awaitable[Answer]:
            return client.get_campaign(job.campaign, timeout, self.clock())

        answer, _ = await self._attempts(get, 0, 0, "lookup", most=LOOKUP_ATTEMPTS)
        if answer is None:
            return  # stopped
        found = answer.campaign
        if answer.outcome is Outcome.OK and found is not None:
            self.limit.success()
            self.campaign = found
            self.reader.use_variables(found.variables)
            self.emit(ev.Campaign(found.id, found.name, found.status, found.variables))
            if found.status == "completed":
                name = f" {cut(found.name)!r}" if found.name else ""
                self.emit(
                    ev.Note(
                        f"campaign {found.id}{name} is completed: leads added to it "
                        "may never be contacted"
                    )
                )
            return
        if answer.status == 401 and not job.dry_run:
            self._refuse(answer, abandon=False)
            return
        why = self._explained(answer)
        self.emit(
            ev.Note(
                f"campaign look-up failed ({why}): sending anyway, the Add-leads answers decide"
                if not job.dry_run
                else f"campaign look-up failed ({why})"
            )
        )

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._abort.is_set():
            task.cancel()

    def _failed(self, failure: BaseExceptionGroup[BaseException]) -> None:
        self.fail(_leaf(failure))

    def fail(self, exc: BaseException) -> None:
        """An exception in a part of the run: record it and abort."""
        if isinstance(exc, InboxLeadsError):
            self.error = self.error or exc
            self.abort(f"the run failed ({exc.message})")
            return
        if self.bug is None:
            self.bug = exc
            self.bug_trace = "".join(traceback.format_exception(exc))
        self.abort(f"internal error ({type(exc).__name__})")

    def end(self) -> None:
        """The run is over (upload and any later phase): signals change nothing now."""
        self.finished = True
        if self._grace is not None:
            self._grace.cancel()

    def _finish(self) -> None:
        """Account for everything the upload holds, whatever ended it."""
        for timer in (self._grace, self._patience):
            if timer is not None:
                timer.cancel()
        cause = self.cause or "internal error (the run ended early)"
        try:
            for chunk in self.reader.drain(DRAIN_S):
                self._end_now(self._take_chunk(chunk), cause)
            self._end_now(self._flush(), cause)
            if self.batcher.oversize:
                self.emit(
                    ev.Note(
                        f"{self.batcher.oversize:,} leads are larger than --max-request-bytes "
                        f"({self.job.max_request_bytes:,}) on their own: each is sent "
                        "in a request of its own"
                    )
                )
            if self.too_large:
                smallest = self.smallest_too_large
                size = f" (the smallest {smallest:,} bytes)" if smallest else ""
                self.emit(
                    ev.Note(
                        f"{self.too_large:,} requests were too large for the server{size}; "
                        "a smaller --max-request-bytes saves sending them twice"
                    )
                )
            left = self.ledger.close_all(cause)
            if left and self.cause is None and self.bug is None:
                self.bug = RuntimeError(f"{left} batches were still open when the run ended")
        except Exception as exc:  # the check below reports what this left open
            if self.bug is None:
                self.bug = exc
                self.bug_trace = "".join(traceback.format_exception(exc))
        self._input_finished()

    def _end_now(self, batches: list[Batch], cause: str) -> None:
        """Batches formed once the run has ended are not sent."""
        if not self.job.dry_run:
            for batch in batches:
                self.ledger.stopped(batch, cause)

    def problems(self) -> list[str]:
        """Every way the run's independent counts disagree (see `Ledger.problems`)."""
        return self.ledger.problems(self.reader.handed_over, self.batcher.pending, self.job.dry_run)

    # -- reading and batching -------------------------------------------------

    async def _produce(self) -> None:
        """Pull chunks, form batches, start their senders; flush a quiet pipe's partial batch."""
        reader = self.reader
        pipe = not self._regular_only
        quiet = self.job.flush_after_s if pipe else 0.0
        last_input = self.clock()
        while True:
            try:
                item = reader.take()
            except InputError as exc:
                self.input_error = exc
                self.request_stop("an input could not be read")
                break
            if isinstance(item, End):
                break
            if item is not None:
                last_input = self.clock()
                await self._start(self._take_chunk(item))
                # Let the loop run between chunks: on a stop no send awaits anything,
                # and a second signal must not wait for the whole input to be read.
                await asyncio.sleep(0)
                continue
            # Nothing ready. A stop lets the reader end by itself (a file at its end,
            # a pipe once nothing more has arrived), so only wait for it.
            watch_pipe = pipe and not self._stop.is_set()
            timer = None
            if watch_pipe and quiet > 0 and self.batcher.pending:
                left = last_input + quiet - self.clock()
                if left <= 0:
                    await self._start(self._flush())
                    continue
                timer = self.sleep(left)
            waits: list[Awaitable[Any]] = [reader.wait()]
            if watch_pipe:
                waits.append(self._stop.wait())
            if timer is not None:
                waits.append(timer)
            await first(*waits)
        await self._start(self._flush())
        self._journal_unmatched()
        for name, key in self.job.read.renames:
            if name not in self._mapped_found:
                self.emit(
                    ev.Note(
                        f"--map {name!r}: no input had a column of that name, so none "
                        f"went out as {key!r}"
                    )
                )
        self._input_finished()

    def _journal_unmatched(self) -> None:
        """Say so when the journal recorded batches and none of this run's matched."""
        known = self._journal_known
        counts = self.ledger.counts
        if known and not counts.resumed and counts.batches and not self.stopping:
            self.emit(
                ev.Note(
                    f"none of this run's batches is among the {known:,} the journal "
                    "records: the input, its data, --map or the campaign's variables "
                    "changed since, so every batch goes out again (leads the campaign "
                    "already has are counted skipped)"
                )
            )

    def _input_finished(self) -> None:
        """Every input was read: say how many batches there are (again only if a stop
        formed more after that)."""
        batches = self.ledger.counts.batches
        if batches != self._batches_said:
            self._batches_said = batches
            self.emit(ev.InputFinished(batches))

    def _variables_unfilled(self, used: ColumnsUsed) -> None:
        """One warning naming each campaign variable no column of a table provides."""
        if self.campaign is None:
            return
        sent = {key for _, key in used.data}
        missing = [(key, shown) for key, shown in self.campaign.variables if key not in sent]
        if not missing:
            return
        named = ", ".join(
            printable(key) if key == shown else f"{printable(key)} ({cut(shown)!r})"
            for key, shown in missing[:MOST_NAMED]
        )
        if len(missing) > MOST_NAMED:
            named += f" and {len(missing) - MOST_NAMED:,} more"
        self.say_once(
            f"unfilled {named}",
            f"{used.source}: no column provides the campaign variable"
            f"{'s' if len(missing) > 1 else ''} {named}: personalisation with "
            f"{'them' if len(missing) > 1 else 'it'} would be empty "
            f"(name a column for {'each' if len(missing) > 1 else 'it'} with --map HEADER=KEY)",
        )

    def _flush(self) -> list[Batch]:
        batch = self.batcher.flush()
        return [] if batch is None else self._register([batch])

    def _take_chunk(self, records: Chunk) -> list[Batch]:
        """Count, de-duplicate and batch one chunk; return the batches it completed.

        Synchronous on purpose: a chunk is accounted for whole or not at all.
        """
        rejections: list[ev.Rejection] = []
        kinds: Counter[str] = Counter()
        full: list[Batch] = []
        read = 0
        leads: list[Lead] = []
        dedup, batcher = self.deduper, self.batcher
        kept_before, dropped_before = dedup.kept, dedup.dropped

        def take_leads() -> None:
            if not leads:
                return
            unique = dedup.unique(leads)
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
            elif isinstance(record, Notice):
                self.emit(ev.Note(f"{record.source}:{record.line}: {record.text}"))
            elif isinstance(record, ColumnsUsed):
                self.emit(ev.ColumnsRead(record.source, record.identifiers, record.data))
                self._mapped_found.update(record.mapped)
                self._variables_unfilled(record)
            else:
                read += 1
                if isinstance(record, ev.Rejection):
                    rejections.append(record)
                else:
                    leads.append(record)
        take_leads()
        duplicates = dedup.dropped - dropped_before
        unique = dedup.kept - kept_before
        self.ledger.took(read, len(rejections), duplicates, unique)
        self.emit(
            ev.RecordsRead(
                read,
                len(rejections),
                duplicates,
                tuple(rejections),
                records[0].source if records else "",  # one input per chunk
                tuple((str(kind), n) for kind, n in kinds.items()),
                unique,
                self.reader.position,
            )
        )
        if rejections:
            self.reports.rejected(rejections)
        return self._register(full)

    def _register(self, batches: list[Batch]) -> list[Batch]:
        """Batches were formed: open them in the ledger (count them, in a dry run)."""
        for batch in batches:
            if self.job.dry_run:
                self.ledger.planned(batch)
            else:
                self.ledger.opened(batch)
        return batches

    async def _start(self, batches: list[Batch]) -> None:
        """Start a sender for each batch as a slot frees up (nothing, in a dry run)."""
        if self.job.dry_run:
            return
        for batch in batches:
            if self._resume(batch):
                continue
            if self._stop.is_set():
                self.ledger.stopped(batch, self.cause or "the run was stopped")
                continue
            got, _ = await self._until_stop(self._slots.acquire())
            if not got:
                self.ledger.stopped(batch, self.cause or "the run was stopped")
                continue
            assert self._group is not None
            sender = self._group.create_task(self._send(batch))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
            self._track(sender)

    def _resume(self, batch: Batch) -> bool:
        """End the batch as resumed when the journal has it."""
        if self.journal is None:
            return False
        known_failed = self.journal.failed_of(batch.digest(self.job.campaign))
        if known_failed is None:
            return False
        self.ledger.resumed(batch)
        self._keep_if_failed(batch, known_failed)
        return True

    # -- sending ----------------------------------------------------------------

    async def _send(self, batch: Batch) -> None:
        try:
            await self.deliver(batch, "upload")
        finally:
            self._slots.release()

    def _keep_if_failed(self, batch: Batch, failed: int) -> None:
        if failed and self.job.explain_failures is not None:
            self.failed_batches.append((batch, failed))

    async def deliver(self, batch: Batch, phase: str) -> Delivery:
        """Send `batch` in one request, retrying transient failures.

        For the upload phase, the ledger follows the batch and records how it
        ended (a stop leaves it to the ledger's `stopped`, which knows where it was).
        """
        assert self.client is not None
        client, job = self.client, self.job
        upload = phase == "upload"
        ledger = self.ledger

        def post() -> Awaitable[Answer]:
            if upload:
                ledger.waiting(batch, Waiting.IN_FLIGHT)
            return client.post_leads(job.campaign, batch.payload(), job.timeout_s, self.clock())

        def retrying(answer: Answer) -> None:
            if upload:
                ledger.waiting(batch, Waiting.RETRY, answer.message)

        answer, attempt = await self._attempts(post, batch.seq, len(batch), phase, retrying)
        if answer is None:  # a stop came first
            if upload:
                ledger.stopped(batch, self.cause or "the run was stopped")
            return Delivery(False, None, attempt)
        if answer.outcome is Outcome.OK:
            self.limit.success()
            if upload:
                ledger.delivered(batch, answer, attempt)
                self._keep_if_failed(batch, answer.failed)
                if self.journal is not None:
                    digest = batch.digest(job.campaign)
                    self.journal.record(digest, batch.seq, len(batch), answer)
            return Delivery(True, answer, attempt)
        if answer.outcome is Outcome.REFUSED:
            if upload:
                ledger.undelivered(batch, f"refused by the API: {answer.message}", attempt)
            self._refuse(answer)
            return Delivery(False, answer, attempt)
        if answer.outcome is Outcome.TOO_LARGE and len(batch) > 1:
            if upload:
                await self._in_halves(batch, answer)
            return Delivery(False, answer, attempt)
        if answer.outcome is Outcome.TOO_LARGE and answer.status is not None:
            answer = dataclasses.replace(answer, outcome=Outcome.REJECTED)
        if answer.outcome is Outcome.REJECTED:
            if upload:
                ledger.undelivered(batch, f"rejected by the server: {answer.message}", attempt)
            return Delivery(False, answer, attempt)
        if upload:
            tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
            ledger.undelivered(batch, f"gave up after {tries}: {answer.message}", attempt)
        return Delivery(False, answer, attempt)

    async def _attempts(
        self,
        call: Callable[[], Awaitable[Answer]],
        seq: int,
        size: int,
        phase: str,
        on_retry: Callable[[Answer], None] | None = None,
        *,
        most: int | None = None,
    ) -> tuple[Answer | None, int]:
        """Attempts of one request, each paced and holding a concurrency slot, until
        an answer that is not retried or the last attempt: (that answer, requests
        sent); (None, requests sent) when a stop came first.

        A transient failure is retried after a backoff: a 429 holds every sender
        for its Retry-After, and a 429 or 503 halves the concurrency. `most` caps
        the attempts below --max-attempts."""
        last = self.retry.max_attempts
        if most is not None:
            last = min(last, most)
        attempt = sent = 0
        while not self._stop.is_set():
            attempt += 1
            answer = await self._attempt(call, seq, size, attempt, phase)
            if answer is None:  # a stop came before the request went out
                break
            sent += 1
            # A connection cut while one lead alone was sent cannot be halved: retried.
            alone = answer.outcome is Outcome.TOO_LARGE and answer.status is None and size <= 1
            if answer.outcome is not Outcome.RETRY and not alone:
                return answer, sent
            if answer.status in (429, 503):
                self.limit.overload()
            if answer.status == 429:
                # Retry-After is the floor, but an absurd one must not hold the run for days.
                hold = self._capped(answer.retry_after or 1.0, "Retry-After")
                self.pacer.block(hold, f"rate limit: {answer.message}")
            if attempt >= last:
                return answer, sent
            wait = self.retry.wait(attempt, answer.retry_after, self.rng)
            if on_retry is not None:
                on_retry(answer)
            self.emit(ev.RetryScheduled(seq, attempt + 1, answer.message, wait, phase))
            slept, _ = await self._until_stop(self.sleep(wait))
            if not slept:
                break
        return None, sent

    async def _in_halves(self, batch: Batch, answer: Answer) -> None:
        """The server would not take `batch` whole: send it as two halves, each ending
        on its own (and split again as needed, down to one lead)."""
        halves = self.batcher.split(batch)
        self.ledger.split(batch, halves, answer.message)
        self.too_large += 1
        if answer.sent_bytes:
            self.smallest_too_large = min(
                self.smallest_too_large or answer.sent_bytes, answer.sent_bytes
            )
        self.say_once(
            "split",
            f"batch {batch.seq} ({len(batch):,} leads) was too large for the server "
            f"({answer.message}): sending it in halves (see --max-request-bytes)",
        )
        for half in halves:
            if not self._resume(half):
                await self.deliver(half, "upload")

    def say_once(self, topic: str, text: str) -> None:
        """A warning line, the first time only: a log must not fill with repeats."""
        if topic not in self._said:
            self._said.add(topic)
            self.emit(ev.Note(text))

    def _capped(self, wait_s: float, what: str) -> float:
        """A wait the server asked for, no longer than the policy allows (said once)."""
        longest = self.retry.max_wait_s
        if wait_s <= longest:
            return wait_s
        self.say_once(
            f"cap-{what}",
            f"the server asked to wait {wait_s:,.0f} s ({what}); waiting "
            f"{longest / 60:g} minutes at most",
        )
        return longest

    def _observe(self, answer: Answer, start_seq: int) -> None:
        """Pace by the answer's rate-limit headers, a reset too far away capped; the
        first answer opens the concurrency as far as its headers allow."""
        if answer.status is None:  # a connection that failed shows nothing either way
            return
        rate = answer.rate
        if rate is not None and rate.reset is not None:
            self.limit.opened(rate.remaining)
            wait = rate.reset - self.clock()
            if wait > self.retry.max_wait_s:
                capped = self._capped(wait, "X-RateLimit-Reset")
                rate = dataclasses.replace(rate, reset=self.clock() + capped)
        else:
            self.limit.opened(None)
        self.pacer.observe(rate, start_seq)

    async def _attempt(
        self, call: Callable[[], Awaitable[Answer]], seq: int, size: int, attempt: int, phase: str
    ) -> Answer | None:
        """One request, holding a concurrency slot; None when a stop came before it went out."""
        got, _ = await self._until_stop(self.limit.acquire())
        if not got:
            return None
        try:
            turned, start_seq = await self._until_stop(self.pacer.wait_turn())
            if not turned or start_seq is None:
                return None
            request = call()
            if self.limit.opening and self._patience is None:
                loop = asyncio.get_running_loop()
                self._patience = loop.call_later(OPENING_PATIENCE_S, self.limit.opened, None)
            self.emit(ev.RequestStarted(seq, size, attempt, phase))
            status: int | None = None
            try:
                answer = await request
                status = answer.status
                self._observe(answer, start_seq)
                return answer
            finally:
                self.emit(ev.RequestEnded(seq, status, phase))
        finally:
            self.limit.release()


async def _awaited(work: Awaitable[None]) -> None:
    await work


def _leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception of a (possibly nested) group that is not a cancellation."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _leaf(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
