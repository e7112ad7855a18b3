"""The `add` job as a library function: options in, summary and exit status out.

`run_add` validates everything that can be checked before a request (so a
usage or input error sends nothing), wires the engine to the display, the
reports and the journal, handles SIGINT/SIGTERM, and builds the summary. The
`Environment` carries the streams, terminal flags, clocks, sleep and the HTTP
transport, so tests swap any of them.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import gc
import io
import ipaddress
import json
import math
import os
import random
import re
import ssl
import stat
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import httpx

from . import events as ev
from . import stops
from .accounting import Summary, Tally
from .batching import MAX_BATCH, MIN_REQUEST_BYTES
from .client import InboxClient
from .display import Display, JsonlDisplay, SafeDisplay, make_display
from .engine import Companion, Engine
from .errors import (
    Bug,
    ExitStatus,
    InboxLeadsError,
    InputError,
    Interrupted,
    ReportError,
    UsageError,
)
from .explain import Explainer, write_failed
from .files import READ_BY_THE_RUN, FileId, check_output, file_id, path_key
from .inputs import UNREADABLE_ERRORS, Format, OpenInput, ReadOptions, open_inputs
from .job import AddJob, Progress
from .journal import Journal, RunKey, check_journal, input_names
from .ledger import Counts
from .reports import Reports

if TYPE_CHECKING:
    from .lock import RunLock

CAMPAIGN_RE = re.compile(r"[0-9a-z]+")
LOCK_SUFFIX = ".lock"
MAX_ATTEMPTS = 100
# The in-process sandbox is reached through its transport: this host never resolves.
SANDBOX_HOST = "http://sandbox.invalid"


@dataclass
class Environment:
    """The outside world of a run; tests replace any part of it."""

    # A stream closed when the process started is None in `sys`: read and write nothing.
    stdin: IO[bytes] = field(
        default_factory=lambda: sys.stdin.buffer if sys.stdin is not None else io.BytesIO()
    )
    stdout: TextIO = field(default_factory=lambda: sys.stdout or io.StringIO())
    stderr: TextIO = field(default_factory=lambda: sys.stderr or io.StringIO())
    stdin_isatty: bool = field(default_factory=lambda: _isatty(sys.stdin))
    stderr_isatty: bool = field(default_factory=lambda: _isatty(sys.stderr))
    no_color: bool = False
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    transport: httpx.AsyncBaseTransport | None = None
    handle_signals: bool = True
    # Force the exit if an aborting run has not ended within WATCHDOG_S (real processes only).
    watchdog: bool = False


def _isatty(stream: IO[Any] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


@dataclass
class AddResult:
    """What a run ended with: the summary (None when nothing started) and any error."""

    status: ExitStatus
    summary: Summary | None
    error: InboxLeadsError | None = None


def check_base_url(url: str) -> str:
    """Accept https anywhere and plain http only to loopback hosts."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise UsageError(f"--base-url {url!r} is not an http(s) URL")
    try:
        port = parts.port  # raises for a port out of range
    except ValueError:
        port = 0
    if port == 0:
        raise UsageError(f"--base-url {url!r}: the port must be 1-65535")
    if parts.scheme == "http" and not _is_loopback(host):
        raise UsageError(
            f"--base-url {url!r}: plain http is only allowed to loopback hosts "
            "(127.0.0.0/8, ::1, localhost); use https"
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_job(job: AddJob, stdin: IO[bytes] | None = None) -> None:
    """Everything that is a usage error, checked before any input is read: the
    options, then every file the run would write (never one of its inputs)."""
    if not CAMPAIGN_RE.fullmatch(job.campaign):
        raise UsageError(
            f"campaign id {job.campaign!r} is not valid: lowercase letters and digits only"
        )
    if not 1 <= job.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}")
    if job.max_request_bytes < MIN_REQUEST_BYTES:
        raise UsageError(f"--max-request-bytes must be at least {MIN_REQUEST_BYTES}")
    if job.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not 1 <= job.max_attempts <= MAX_ATTEMPTS:
        raise UsageError(f"--max-attempts must be between 1 and {MAX_ATTEMPTS}")
    seconds = [
        ("--timeout", job.timeout_s),
        ("--flush-after", job.flush_after_s),
        ("--log-interval", job.log_interval_s),
        ("--max-time", job.max_time_s),
    ]
    for option, value in seconds:
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{option} must be a positive number of seconds, not {value:g}")
    if job.explain_budget is not None and job.explain_budget < 1:
        raise UsageError("--explain-budget must be at least 1 request")
    if job.explain_budget is not None and job.explain_failures is None:
        raise UsageError("--explain-budget caps --explain-failures, which was not given")
    check_encoding(job.read.encoding)
    check_columns(job.read)
    if job.ca_bundle is not None:
        ca_context(job.ca_bundle)
    check_files(job, stdin)
    if job.token is not None and not job.sandbox:
        check_token(job.token)
    if not job.sandbox and (not job.dry_run or job.looks_up):
        check_base_url(job.base_url)
        if not job.token:
            raise UsageError(
                "no API token: set INBOX_API_TOKEN (or put it in .env), or pass "
                "--token-file; try --sandbox or --dry-run to run without one"
            )


def check_columns(read: ReadOptions) -> None:
    """Column options that contradict each other or the format."""
    if read.data_columns is not None and not read.data_columns:
        raise UsageError("--data-columns names no column (for no data at all, use --no-data)")
    if read.data_columns and read.no_data:
        raise UsageError("--data-columns and --no-data contradict each other: use one")
    tables = (Format.AUTO, Format.CSV, Format.TSV)
    if read.columns and read.fmt not in tables:
        raise UsageError(f"--column names a CSV/TSV column; --format {read.fmt} has none")
    if read.renames and read.fmt not in tables:
        raise UsageError(f"--map names a CSV/TSV column; --format {read.fmt} has none")
    if read.renames and read.no_data:
        raise UsageError("--map and --no-data contradict each other: use one")
    keys = [key for _, key in read.renames]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise UsageError(f"--map sends two columns as {twice[0]!r}: a key takes one column")


def check_encoding(name: str | None) -> None:
    """`--encoding` must name a Python text codec."""
    if name is None:
        return

    try:
        info = codecs.lookup(name)
    except LookupError:
        raise UsageError(
            f"--encoding {name!r}: unknown encoding (try utf-8, cp1252, latin-1, utf-16)"
        ) from None
    if not getattr(info, "_is_text_encoding", True):
        raise UsageError(f"--encoding {name!r}: not a text encoding")
    # Some text codecs cannot read lines at all (idna, punycode, undefined), or not
    # with the error handlers reading uses.
    decoded: set[str | None] = set()
    try:
        sample = "jack\n".encode(name)
    except (UnicodeError, ValueError, LookupError, TypeError):
        sample = b""
    for errors in ("strict", "replace", UNREADABLE_ERRORS):
        try:
            decoded.add(codecs.getincrementaldecoder(name)(errors).decode(sample, True))
        except (UnicodeError, ValueError, LookupError, TypeError):
            decoded.add(None)
    if decoded != {"jack\n"}:
        raise UsageError(f"--encoding {name!r}: cannot read lines of text (try utf-8, cp1252)")


def ca_context(path: Path) -> ssl.SSLContext:
    """The TLS context trusting `--ca-bundle`; a usage error naming the file otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UsageError(f"--ca-bundle {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"--ca-bundle {path}: not a file of certificates")
    try:
        return ssl.create_default_context(cafile=str(path))
    except OSError as exc:  # ssl.SSLError included
        detail = exc.strerror or getattr(exc, "reason", None) or exc
        raise UsageError(
            f"--ca-bundle {path}: cannot be read as PEM certificates ({detail})"
        ) from None


def input_ids(paths: list[str], stdin: IO[bytes] | None) -> dict[FileId, str]:
    """The identity of every input that is a file (stdin's too), by file id."""
    ids: dict[FileId, str] = {}
    for path in paths:
        found: FileId | None = None
        if path != "-":
            found = file_id(path)
        elif stdin is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
                found = file_id(stdin.fileno())
        if found is not None:
            ids.setdefault(found, path)
    return ids


def check_files(job: AddJob, stdin: IO[bytes] | None) -> None:
    """Every file the run writes: a file of its own (no folder, device, pipe, nor an
    input), in an existing folder, and no two options naming the same file. A journal
    that exists must be this run's (checked before anything is written to it)."""
    inputs = input_ids(job.inputs, stdin)
    for read in (*job.also_read, *([job.ca_bundle] if job.ca_bundle else [])):
        found = file_id(read)
        if found is None:
            continue
        if found in inputs and read in job.also_read:
            # The token would be read as a lead: sent, or written to --rejects.
            shown = "stdin" if inputs[found] == "-" else repr(inputs[found])
            raise UsageError(
                f"input {shown}: is {read}, which this run reads for its token or "
                "settings; it is never read as leads: name another file"
            )
        inputs.setdefault(found, f"{READ_BY_THE_RUN}{read}")
    outputs = [
        ("--rejects", job.rejects),
        ("--undelivered", job.undelivered),
        ("--explain-failures", job.explain_failures),
    ]
    in_state_dir: set[Path] = set()
    lock: Path | None = None
    if job.journal is not None and not job.dry_run:
        journal = "the --resume journal" if job.resume else "--journal"
        lock = lock_path(job.journal)
        lock_name = f"the lock of {journal}"
        outputs += [(journal, job.journal), (lock_name, lock)]
        if job.resume:
            in_state_dir = {job.journal, lock}  # the run makes their folder
    named: dict[str | FileId, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        if path is lock and os.path.islink(path):
            raise UsageError(
                f"{option} {path}: is a symbolic link; the lock is a file of the "
                "run's own: remove the link"
            )
        check_output(
            option,
            path,
            folder_may_be_made=path in in_state_dir,
            inputs=inputs,
        )
        # The same file by name (it may not exist yet), or by identity (a hard link).
        # (By name with its case folded where the filesystem ignores case.)
        for where in (path_key(os.path.realpath(path)), file_id(path)):
            if where is None:
                continue
            if where in named:
                raise UsageError(f"{option} and {named[where]} name the same file ({path})")
            named[where] = option
    if job.journal is not None and not job.dry_run:
        check_journal(job.journal, _run_key(job))


def lock_path(journal: Path) -> Path:
    """The file that keeps two runs off one journal: beside it, named after it. A
    symbolic link to the journal leads to the journal's own lock, so two runs that
    name one journal by two paths still exclude each other."""
    real = Path(os.path.realpath(journal))
    return real.parent / (real.name + LOCK_SUFFIX)


def check_token(token: str) -> None:
    """A token must be sendable as an HTTP header value: visible ASCII, no spaces inside.

    The message names the position and the kind of the bad character, never the token.
    """
    for position, char in enumerate(token, start=1):
        if not "!" <= char <= "~":
            import unicodedata

            name = unicodedata.name(char, "") or {
                "Cc": "a control character",
                "Cs": "a stray byte that is not UTF-8",
            }.get(unicodedata.category(char), "an unnamed character")
            raise UsageError(
                "the API token cannot be sent in an HTTP header: the character at position "
                f"{position} (of {len(token)}) is U+{ord(char):04X} {name}; tokens are plain "
                "ASCII without spaces (check for a quote or a space pasted with it)"
            )


def empty_summary(job: AddJob, status: ExitStatus, stop_reason: str | None = None) -> Summary:
    """The summary of a run that ended before anything was read."""
    return Summary(
        campaign=job.campaign,
        counts=Counts(),
        tally=Tally(),
        dry_run=job.dry_run,
        elapsed_s=0.0,
        exit_code=int(status),
        stop_reason=stop_reason,
    )


def print_summary(summary: Summary, env: Environment) -> None:
    """The --json summary as the last line of stdout; a closed stdout loses only this line."""
    try:
        env.stdout.write(json.dumps(summary.to_json()) + "\n")
        env.stdout.flush()
    except (OSError, ValueError):
        _silence(env.stdout)


def run_add(job: AddJob, env: Environment) -> AddResult:
    """Run `inboxleads add` from start to summary."""
    try:
        check_job(job, env.stdin)
        # A fifo is not opened here but by the reader, when it gets to it: opening one
        # waits for its writer, and the reader's waits end with a stop.
        inputs = open_inputs(job.inputs, job.read.fmt, env.stdin, job.read)
    except Exception as exc:  # a bug ends here too, with its summary
        error = exc if isinstance(exc, InboxLeadsError) else _bug(exc, "")
        summary = end_before_start(job, env, error)
        return AddResult(error.exit_status, summary, error)
    thresholds = gc.get_threshold()
    # A large import allocates a million small objects that live until their
    # batch is sent: collecting every 700 allocations spent a quarter of the
    # CPU time rescanning them (measured on 1,000,000 handles).
    gc.set_threshold(50_000, 20, 100)
    try:
        return asyncio.run(_run(job, env, inputs))
    finally:
        gc.set_threshold(*thresholds)


def end_before_start(job: AddJob, env: Environment, error: InboxLeadsError) -> Summary:
    """The summary of a run refused or stopped before it read anything, shown as it
    would be at the end of a run: its `stop_reason` is the refusal, or the stop."""
    stopped = isinstance(error, Interrupted)
    reason = error.stop_reason if isinstance(error, Interrupted) else error.message
    summary = empty_summary(job, error.exit_status, reason)
    if job.json_summary:
        print_summary(summary, env)
    if job.progress == Progress.NONE:
        return summary
    with contextlib.suppress(Exception):
        if job.progress == Progress.JSONL:
            # Its readers wait for the summary event, a refusal's included.
            JsonlDisplay(env.stderr).stop(summary)
        elif stopped:
            # A stop while waiting (for a fifo, the token) reports like any stopped run;
            # a refusal is its one error line.
            display = make_display(
                job.progress,
                stream=env.stderr,
                tally=Tally(),
                is_terminal=env.stderr_isatty,
                no_color=env.no_color,
                quiet=job.quiet,
                campaign=job.campaign,
            )
            display.stop(summary)
    return summary


class _Stops:
    """Hands signals and the deadline to the engine, and remembers the first cause."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.loop = asyncio.get_running_loop()
        self.engine: Engine | None = None
        self.signals: list[int] = []
        self.deadline: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.installed = False

    def start(self, max_time_s: float | None) -> None:
        if self.env.handle_signals:
            self.installed = stops.install()
            stops.attach(self.from_handler)
        if max_time_s is not None:
            # From the start: --max-time also bounds a wait for the lock.
            self._timer = self.loop.call_later(max_time_s, self.on_deadline, max_time_s)

    def end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.env.handle_signals:
            stops.detach()
            if self.installed:
                stops.uninstall()

    def from_handler(self, signum: int) -> None:
        # In the main thread, between two bytecodes of whatever runs: hand over.
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            self.loop.call_soon_threadsafe(self.on_signal, signum)

    def on_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if self.engine is not None:
            self.engine.request_stop(stops.describe(signum))

    def on_deadline(self, seconds: float) -> None:
        if self.engine is not None and self.engine.finished:
            return
        if self.engine is None or not self.engine.stopping:
            self.deadline = stops.deadline_reason(seconds)
            if self.engine is not None:
                self.engine.request_stop(self.deadline)

    def bind(self, engine: Engine) -> None:
        self.engine = engine
        for signum in self.signals:
            engine.request_stop(stops.describe(signum))
        if self.deadline is not None and not self.signals:
            engine.request_stop(self.deadline)

    @property
    def deadline_hit(self) -> bool:
        return self.deadline is not None

    @property
    def given_up(self) -> bool:
        """A signal or the deadline came: nothing new should start."""
        return bool(self.signals) or self.deadline is not None

    @property
    def first_signal(self) -> int | None:
        return self.signals[0] if self.signals else None

    @property
    def cause(self) -> str | None:
        """What stopped a run that never started its engine (a signal, the deadline)."""
        signum = self.first_signal
        return self.deadline if signum is None else stops.describe(signum)


async def _run(job: AddJob, env: Environment, inputs: list[OpenInput]) -> AddResult:
    started = env.monotonic()
    control = _Stops(env)
    control.start(job.max_time_s)
    tally = Tally(sending=not job.dry_run, clock=env.monotonic)
    engine: Engine | None = None
    early_bugs: list[BaseException] = []

    def display_failed(exc: BaseException) -> None:
        # A bug of the display, wherever it was called from (a task, a signal's
        # callback, a timer): the run stops in order, as for any other bug.
        early_bugs.append(exc)
        if engine is not None and not engine.finished:
            engine.fail(exc)

    display = SafeDisplay(
        make_display(
            job.progress,
            stream=env.stderr,
            tally=tally,
            is_terminal=env.stderr_isatty,
            no_color=env.no_color,
            quiet=job.quiet,
            clock=env.clock,
            interval=job.log_interval_s,
            campaign=job.campaign,
        ),
        on_bug=display_failed,
    )

    def emit(event: ev.Event) -> None:
        if isinstance(event, ev.Note):
            display.note(f"warning: {event.text}")
            return
        tally.apply(event)
        display.event(event)

    lock: RunLock | None = None
    journal: Journal | None = None
    error: InboxLeadsError | None = None
    extra: dict[str, Any] = {}
    reports = Reports()
    try:
        reports = Reports(job.rejects, job.undelivered)
        if job.journal is not None and not job.dry_run:
            from .lock import RunLock  # filelock: only for runs that keep a journal

            lock = RunLock(lock_path(job.journal))
            await lock.acquire_async(job.wait_lock, lambda: control.given_up)
            journal = Journal.open(job.journal, _run_key(job))
        # A dry run makes no request but the look-up: without it, no client, no TLS set-up.
        asks = not job.dry_run or job.looks_up
        http_client = _http_client(job, env) if asks else contextlib.nullcontext(None)
        async with http_client as http:
            client = None if http is None else _client(job, http)
            engine = Engine(
                job,
                inputs,
                client,
                emit,
                reports=reports,
                journal=journal,
                clock=env.clock,
                sleep=env.sleep,
                rng=env.rng,
                on_abort=(lambda: _arm_watchdog(control)) if env.watchdog else None,
            )
            tally.bytes_total = engine.reader.total_bytes
            control.bind(engine)
            if early_bugs:
                engine.fail(early_bugs[0])
            display.start()
            ticker: list[Companion] = [lambda: _tick(display)]
            try:
                await engine.run(ticker)
                if job.dry_run:
                    extra = {
                        "max_request_bytes": job.max_request_bytes,
                        "batches_cut_by_size": engine.batcher.cut_by_size,
                        "largest_request_bytes": engine.batcher.largest_measured or None,
                    }
                if job.explain_failures is not None and not job.dry_run:
                    extra = await _explain(job, job.explain_failures, engine, ticker, tally)
            finally:
                engine.end()
    except InboxLeadsError as exc:
        error = exc
    except OSError as exc:
        # A file of the run's own that failed outside the reports (which say so
        # themselves): one line naming it; exit 2 before sending, 1 once some was.
        error = ReportError(f"{exc.filename or 'a file'}: {exc.strerror or exc}")
        if engine is not None:
            engine.error = engine.error or error
    finally:
        control.end()
        if engine is None:
            reports.discard()  # nothing was read: the user's earlier reports stay
        else:
            reports.close()
            for note in reports.notes:
                display.note(f"warning: {note}")
        if engine is None:
            # The engine's reader owns the inputs once it exists; before, nobody does.
            for source in inputs:
                with contextlib.suppress(OSError):
                    source.close()
        if journal is not None:
            journal.close()
        if lock is not None:
            lock.release()
    problems = engine.problems() if engine is not None else []
    bug = engine.bug if engine is not None else (early_bugs[0] if early_bugs else None)
    if bug is not None:
        error = _bug(bug, engine.bug_trace if engine is not None else "")
    elif problems:
        error = Bug("the counts do not add up: " + "; ".join(problems))
    elif engine is not None:
        error = error or engine.refused or engine.error or engine.input_error
        if error is None and engine.cause is None:
            error = _all_rejected(engine.ledger.counts, tally)
    unwritten = reports.problems()
    failure: ReportError | None = None
    if unwritten and engine is not None and not isinstance(error, Bug):
        # A report that could not be written in full (a full disk): said in its own
        # words, and the run's status as for any of the tool's own errors in mid-run.
        failure = ReportError("; ".join(unwritten))
        engine.error = engine.error or failure
        error = error or failure
    others: list[str] = []
    if engine is not None:
        # The error the run ends with is printed by the CLI; every other one (a
        # report or the journal that failed as well) is said here, --quiet or not.
        candidates = (engine.refused, engine.error, engine.input_error, failure)
        others = list(
            dict.fromkeys(e.message for e in candidates if e is not None and e is not error)
        )
        for message in others:
            _say_error(job, env, display, message)
        if others:
            extra = {**extra, "other_errors": others}
    status = _exit_status(engine, error, control)
    counts = engine.ledger.counts if engine is not None else Counts()
    summary = Summary(
        campaign=job.campaign,
        counts=counts,
        tally=tally,
        dry_run=job.dry_run,
        elapsed_s=env.monotonic() - started,
        exit_code=int(status),
        # A run refused before its engine began (the lock held, a journal it cannot
        # open) stopped for that refusal.
        stop_reason=(
            engine.cause
            if engine is not None
            else control.cause or (error.message if error is not None else None)
        ),
        extra=extra,
        undelivered_path=str(job.undelivered) if job.undelivered else None,
    )
    display.stop(summary)
    if early_bugs and not isinstance(error, Bug):
        # The display failed on the summary itself: a bug all the same.
        error = _bug(early_bugs[0], "")
        status = ExitStatus.BUG
        summary.exit_code = int(status)
    if job.json_summary:
        print_summary(summary, env)
    return AddResult(status, summary, error)


def _say_error(job: AddJob, env: Environment, display: Display, message: str) -> None:
    """An error line besides the one the run ends with: through the display, or
    straight to stderr when there is none (--quiet keeps errors)."""
    if job.progress == Progress.NONE:
        with contextlib.suppress(OSError, ValueError):
            env.stderr.write(f"inboxleads: error: {message}\n")
            env.stderr.flush()
    else:
        display.note(f"error: {message}")


def _all_rejected(counts: Counts, tally: Tally) -> InputError | None:
    """A run in which every record read was rejected is an input error (exit 2): a
    column of emails, or handles run together on one line, is not success."""
    if not counts.read or counts.rejected != counts.read:
        return None
    reasons = "; ".join(
        f"{reason} ({count:,}), e.g. {examples[0]}" if examples else reason
        for reason, (count, examples) in sorted(tally.reasons.items(), key=lambda r: -r[1][0])[:3]
    )
    sources = ", ".join(tally.sources) or "input"
    return InputError(
        sources, f"every record read was rejected ({counts.read:,}); nothing was sent: {reasons}"
    )


def _bug(exc: BaseException, trace: str) -> Bug:
    return Bug(f"{type(exc).__name__}: {exc}", trace) if trace else Bug.of(exc)


def _exit_status(
    engine: Engine | None, error: InboxLeadsError | None, control: _Stops
) -> ExitStatus:
    """The exit status of a finished run: a bug first, then what stopped it, then delivery."""
    signum = control.first_signal
    if engine is None and not isinstance(error, Bug):
        # Stopped before the engine began (a signal, or --max-time during a wait for the lock).
        if signum is not None:
            return ExitStatus(stops.exit_status(signum))
        if control.deadline_hit and isinstance(error, Interrupted):
            return ExitStatus.PARTIAL
    if isinstance(error, Bug) or engine is None:
        return error.exit_status if error is not None else ExitStatus.BUG
    if engine.refused is not None:
        return engine.refused.exit_status
    if engine.error is not None:
        # One of the tool's own errors in mid-run (a journal that cannot be
        # written): with nothing delivered yet it is that error, else a partial run.
        return ExitStatus.PARTIAL if engine.ledger.counts.delivered else engine.error.exit_status
    if error is not None:
        return error.exit_status
    if signum is not None:
        return ExitStatus(stops.exit_status(signum))
    if control.deadline_hit:
        return ExitStatus.PARTIAL
    return ExitStatus.PARTIAL if engine.ledger.counts.undelivered else ExitStatus.OK


def _arm_watchdog(control: _Stops) -> None:
    signum = control.first_signal
    status = stops.EXIT_STATUS.get(signum, 130) if signum is not None else ExitStatus.BUG
    if control.deadline_hit:
        status = ExitStatus.PARTIAL
    stops.arm_watchdog(stops.WATCHDOG_S, int(status))


def _silence(stream: TextIO) -> None:
    """Send whatever is left for a closed stdout to /dev/null, so the exit is quiet."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


async def _explain(
    job: AddJob, path: Path, engine: Engine, companions: list[Companion], tally: Tally
) -> dict[str, Any]:
    """The second phase: name the identifiers behind the upload's failed counts."""
    explainer = Explainer(engine, engine.failed_batches, job.explain_budget)
    if not engine.stopping:
        await engine.supervise(explainer.run(), companions)
    # After a stop (before the phase or during it), what is left is listed as not
    # narrowed down; a batch whose upload answer counted every lead failed needs no request.
    explanation = explainer.conclude()
    # As for any report: a file that cannot be written in full keeps its whole rows,
    # and the reports say so (and how many may be missing) once the run is over.
    write_failed(engine.reports, path, explanation)
    return {
        "failed_identified": len(explanation.failed),
        "failed_unconfirmed": explanation.failed_unconfirmed,
        "unconfirmed_identifiers": len(explanation.unconfirmed),
        "unconfirmed_resolved": explanation.unconfirmed_resolved,
        # Requests that went out, as they went (one abandoned in flight included).
        "explain_requests": tally.explain_requests,
    }


def _run_key(job: AddJob) -> RunKey:
    return RunKey(job.campaign, job.batch_size, job.max_request_bytes, input_names(job.inputs))


def _http_client(job: AddJob, env: Environment) -> httpx.AsyncClient:
    transport = env.transport
    if job.sandbox and transport is None:
        from .sandbox import create_app, sandbox_transport

        transport = sandbox_transport(create_app())
    verify: ssl.SSLContext | bool = True
    if job.ca_bundle is not None:
        verify = ca_context(job.ca_bundle)
    elif not _may_use_tls(job):
        # Nothing to verify, so no CA bundle to load (20-35 ms of every start).
        verify = False
    return httpx.AsyncClient(
        transport=transport,
        limits=httpx.Limits(
            max_connections=job.concurrency, max_keepalive_connections=job.concurrency
        ),
        timeout=httpx.Timeout(job.timeout_s),
        follow_redirects=False,
        verify=verify,
    )


def _may_use_tls(job: AddJob) -> bool:
    """Whether a connection of this run can be TLS: an https API, or a proxy from the
    environment (which may itself be https)."""
    if job.sandbox:
        return False
    return urlsplit(job.base_url).scheme != "http" or bool(urllib.request.getproxies())


def _client(job: AddJob, http: httpx.AsyncClient) -> InboxClient:
    if job.sandbox:
        from .sandbox import API_PREFIX, DEFAULT_TOKEN

        return InboxClient(http, SANDBOX_HOST + API_PREFIX, DEFAULT_TOKEN)
    assert job.token is not None
    return InboxClient(http, job.base_url, job.token)


async def _tick(display: Display) -> None:
    """Let the display refresh even while nothing happens (a paused run must not look stuck)."""
    while True:
        await asyncio.sleep(1.0)
        display.tick()
