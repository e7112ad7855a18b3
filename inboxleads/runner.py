"""The `add` job as a library function: options in, summary and exit status out.

`run_add` validates everything that can be checked before a request (so a
usage or input error sends nothing), wires the engine to the display, the
reports and the journal, handles SIGINT/SIGTERM, and builds the summary. The
`Environment` carries the streams, terminal flags, clocks, sleep and the HTTP
transport, so tests swap any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import random
import re
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO
from urllib.parse import urlsplit

import httpx

from . import events as ev
from .accounting import Summary, Tally
from .batching import MAX_BATCH
from .client import InboxClient
from .display import Display, make_display
from .engine import Engine, EngineConfig
from .errors import ExitStatus, InboxLeadsError, UsageError
from .explain import Explainer, Explanation, write_failed
from .inputs import OpenInput, ReadOptions, open_inputs
from .journal import Journal, RunKey, RunLock, input_names
from .pacing import RetryPolicy
from .reports import Reports

CAMPAIGN_RE = re.compile(r"[0-9a-z]+")
# The in-process sandbox is reached through its transport: this host never resolves.
SANDBOX_HOST = "http://sandbox.invalid"


@dataclass
class Environment:
    """The outside world of a run; tests replace any part of it."""

    stdin: IO[bytes] = field(default_factory=lambda: sys.stdin.buffer)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin_isatty: bool = field(default_factory=lambda: sys.stdin.isatty())
    stderr_isatty: bool = field(default_factory=lambda: sys.stderr.isatty())
    no_color: bool = False
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    transport: httpx.AsyncBaseTransport | None = None
    handle_signals: bool = True


@dataclass
class AddJob:
    """Every option of `inboxleads add`, already parsed."""

    campaign: str
    inputs: list[str]
    token: str | None = None
    base_url: str = "https://inboxapp.com/api/v1"
    read: ReadOptions = field(default_factory=ReadOptions)
    batch_size: int = MAX_BATCH
    concurrency: int = 4
    timeout_s: float = 300.0
    max_attempts: int = 6
    flush_after_s: float = 5.0
    progress: str = "auto"
    log_interval_s: float = 5.0
    quiet: bool = False
    dry_run: bool = False
    json_summary: bool = False
    sandbox: bool = False
    journal: Path | None = None
    rejects: Path | None = None
    undelivered: Path | None = None
    wait_lock: bool = False
    ca_bundle: Path | None = None
    stop_grace_s: float = 10.0
    explain_failures: Path | None = None
    explain_budget: int | None = None


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


def check_job(job: AddJob) -> None:
    """Everything that is a usage error, checked before any input is read."""
    if not CAMPAIGN_RE.fullmatch(job.campaign):
        raise UsageError(
            f"campaign id {job.campaign!r} is not valid: lowercase letters and digits only"
        )
    if not 1 <= job.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}")
    if job.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if job.max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    if job.timeout_s <= 0:
        raise UsageError("--timeout must be positive")
    if not job.sandbox and not job.dry_run:
        check_base_url(job.base_url)
        if not job.token:
            raise UsageError(
                "no API token: set INBOX_API_TOKEN (or put it in .env), or pass "
                "--token-file; try --sandbox or --dry-run to run without one"
            )


def exit_status(tally: Tally, error: InboxLeadsError | None, signum: int | None) -> ExitStatus:
    """The exit status of a finished run."""
    if error is not None:
        return error.exit_status
    if signum == signal.SIGINT:
        return ExitStatus.SIGINT
    if signum is not None:
        return ExitStatus.SIGTERM
    return ExitStatus.PARTIAL if tally.undelivered else ExitStatus.OK


def run_add(job: AddJob, env: Environment) -> AddResult:
    """Run `inboxleads add` from start to summary."""
    check_job(job)
    inputs = open_inputs(job.inputs, job.read.fmt, env.stdin, job.read)
    thresholds = gc.get_threshold()
    # A large import allocates a million small objects that live until their
    # batch is sent: collecting every 700 allocations spent a quarter of the
    # CPU time rescanning them (measured on 1,000,000 handles).
    gc.set_threshold(50_000, 20, 100)
    try:
        return asyncio.run(_run(job, env, inputs))
    finally:
        gc.set_threshold(*thresholds)
        for item in inputs:
            item.close()


async def _run(job: AddJob, env: Environment, inputs: list[OpenInput]) -> AddResult:
    tally = Tally()
    display = make_display(
        job.progress,
        stream=env.stderr,
        tally=tally,
        is_terminal=env.stderr_isatty,
        no_color=env.no_color,
        quiet=job.quiet,
        clock=env.clock,
        interval=job.log_interval_s,
        campaign=job.campaign,
    )

    def emit(event: ev.Event) -> None:
        tally.apply(event)
        display.event(event)

    lock: RunLock | None = None
    journal: Journal | None = None
    reports = Reports(job.rejects, job.undelivered)
    started = env.monotonic()
    signum: int | None = None
    error: InboxLeadsError | None = None
    extra: dict[str, Any] = {}
    try:
        if job.journal is not None and not job.dry_run:
            lock = RunLock(job.journal.with_name(job.journal.name + ".lock"))
            lock.acquire(wait=job.wait_lock)
            journal = Journal.open(job.journal, _run_key(job))
        # A dry run makes no request: no client, no TLS set-up.
        http_client = contextlib.nullcontext(None) if job.dry_run else _http_client(job, env)
        async with http_client as http:
            client = None if http is None else _client(job, http)
            engine = Engine(
                _engine_config(job),
                inputs,
                client,
                emit,
                reports=reports,
                journal=journal,
                clock=env.clock,
                sleep=env.sleep,
                rng=env.rng,
            )
            signals: list[int] = []
            _install_signals(engine, signals, env)
            display.start()
            ticker = asyncio.create_task(_tick(display))
            try:
                await engine.run()
                if job.explain_failures is not None and not job.dry_run:
                    extra = await _explain(job, job.explain_failures, engine)
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
                _remove_signals(env)
            signum = signals[0] if signals else None
            error = engine.refused or engine.input_error
    except InboxLeadsError as exc:
        error = exc
    finally:
        reports.close()
        if journal is not None:
            journal.close()
        if lock is not None:
            lock.release()
    status = exit_status(tally, error, signum)
    summary = Summary(
        campaign=job.campaign,
        tally=tally,
        dry_run=job.dry_run,
        elapsed_s=env.monotonic() - started,
        exit_code=int(status),
        extra=extra,
    )
    display.stop(summary)
    if job.json_summary:
        env.stdout.write(json.dumps(summary.to_json()) + "\n")
        env.stdout.flush()
    return AddResult(status, summary, error)


async def _explain(job: AddJob, path: Path, engine: Engine) -> dict[str, Any]:
    """The second phase: name the identifiers behind the upload's failed counts."""
    explanation = Explanation()
    if not engine.stopping:
        explanation = await Explainer(engine, job.explain_budget).run(engine.failed_batches)
    write_failed(path, explanation)
    return {
        "failed_identified": len(explanation.identified),
        "failed_unexplained": explanation.unexplained_leads,
        "explain_requests": explanation.requests,
    }


def _run_key(job: AddJob) -> RunKey:
    names = input_names(job.inputs)
    read = f"{job.read.fmt.value}/{job.read.read_as.value}/{job.read.column}/" + (
        "no-data" if job.read.no_data else ",".join(job.read.data_columns or ())
    )
    return RunKey(job.campaign, names, job.batch_size, read)


def _engine_config(job: AddJob) -> EngineConfig:
    return EngineConfig(
        campaign=job.campaign,
        read=job.read,
        batch_size=job.batch_size,
        concurrency=job.concurrency,
        timeout_s=job.timeout_s,
        retry=RetryPolicy(max_attempts=job.max_attempts),
        flush_after_s=job.flush_after_s,
        stop_grace_s=job.stop_grace_s,
        dry_run=job.dry_run,
        keep_failed_batches=job.explain_failures is not None,
    )


def _http_client(job: AddJob, env: Environment) -> httpx.AsyncClient:
    transport = env.transport
    if job.sandbox and transport is None:
        from .sandbox import create_app, sandbox_transport

        transport = sandbox_transport(create_app())
    verify: ssl.SSLContext | bool = True
    if job.ca_bundle is not None:
        verify = ssl.create_default_context(cafile=str(job.ca_bundle))
    return httpx.AsyncClient(
        transport=transport,
        limits=httpx.Limits(
            max_connections=job.concurrency, max_keepalive_connections=job.concurrency
        ),
        timeout=httpx.Timeout(job.timeout_s),
        follow_redirects=False,
        verify=verify,
    )


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


def _install_signals(engine: Engine, seen: list[int], env: Environment) -> None:
    if not env.handle_signals:
        return
    loop = asyncio.get_running_loop()
    names = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
    for signum, name in names.items():

        def handler(signum: int = signum, name: str = name) -> None:
            seen.append(signum)
            engine.request_stop(name)

        loop.add_signal_handler(signum, handler)


def _remove_signals(env: Environment) -> None:
    if not env.handle_signals:
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
