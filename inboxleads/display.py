"""The progress display: what a user sees on stderr while a run goes on.

The runner folds every event into a `Tally` first (`tally.apply(event)`) and
then hands the same event to a `Display`, so a display only renders counts it
is given and never counts anything itself. `make_display` picks one of four:
rich (live, terminals), plain (lines for logs), JSONL (programs), null (quiet).

rich is imported inside the functions that need it: `--help` imports this
module and should not pay for rich's live and table machinery.

Times: `clock` is the runner's monotonic clock, and `RatePaused.resume_at` /
`Tally.paused_until` are read on that same clock. Wall-clock times (the JSONL
`ts`, the "resuming at 03:04:05" hint) come from `wall`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from . import events as ev
from .accounting import Summary, Tally
from .errors import cut, printable
from .job import Progress

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

Clock = Callable[[], float]

# The contract's summary keys, in the order the displays list them.
SUMMARY_KEYS = ["read", "rejected", "duplicates", "unique", "batches", "requests", "retries"]
SUMMARY_KEYS += ["added", "skipped", "failed", "delivered", "undelivered", "resumed"]
# The counts of a JSONL `progress` event (beside `fraction` and `eta_s`).
PROGRESS_KEYS = ["read", "rejected", "duplicates", "unique", "batches_done", "batches_total"]
PROGRESS_KEYS += ["sent", "added", "skipped", "failed", "delivered", "undelivered", "resumed"]
PROGRESS_KEYS += ["in_flight", "retries"]


class Display(Protocol):
    """What the runner calls; every method is cheap enough to call per event.

    `start` begins the view; `event` reacts to one event after the tally has
    applied it; `tick` comes about once a second so time-based output moves
    without events; `note` shows a warning or information line; `stop` ends
    the live view and shows the final summary (None: shows nothing).
    """

    def start(self) -> None: ...
    def event(self, event: ev.Event) -> None: ...
    def tick(self) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self, summary: Summary | None) -> None: ...


def make_display(
    mode: str,
    *,
    stream: TextIO,
    tally: Tally,
    is_terminal: bool,
    no_color: bool,
    quiet: bool,
    clock: Clock = time.monotonic,
    interval: float = 5.0,
    campaign: str = "",
) -> Display:
    """The display for a `--progress` mode; `quiet` overrides every mode."""
    mode = Progress(mode)  # a ValueError names a mode that is not one
    if quiet or mode == Progress.NONE:
        return NullDisplay()
    if mode == Progress.AUTO:
        mode = Progress.RICH if is_terminal else Progress.PLAIN
    if mode == Progress.RICH:
        return RichDisplay(
            stream,
            tally,
            is_terminal=is_terminal,
            no_color=no_color,
            clock=clock,
            campaign=campaign,
        )
    if mode == Progress.PLAIN:
        return PlainDisplay(stream, tally, clock=clock, interval=interval)
    return JsonlDisplay(stream, tally, clock=clock, interval=interval)


def format_elapsed(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from one hour on."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _rate(tally: Tally, elapsed: float, sep: str = "") -> str:
    """Identifiers sent per second; a decimal while slow, so a trickle does not read 0/s."""
    rate = tally.sent / elapsed if elapsed > 0 else 0.0
    return f"{rate:{sep}.1f}/s" if rate < 10 else f"{rate:{sep}.0f}/s"


def progress_fields(tally: Tally) -> tuple[str, str]:
    """How far the run has come and the time left, as shown: `42%` and `1:23`
    (`?` for what is not known, as on a pipe)."""
    fraction, eta = tally.fraction(), tally.eta()
    pct = "?" if fraction is None else f"{math.floor(fraction * 100):d}%"
    return pct, "?" if eta is None else format_elapsed(math.ceil(eta))


def campaign_text(campaign: str, tally: Tally) -> str:
    """The campaign as a display heads it: its id, and its name and status once known."""
    found = tally.campaign
    if found is None:
        return campaign
    # What the server says is quoted: no control character reaches a terminal or a log.
    name = f" {_quoted(cut(found.name))}" if found.name else ""
    status = f" ({printable(found.status)})" if found.status else ""
    return f"{campaign}{name}{status}"


def _plural(count: int, word: str, plural: str = "") -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {plural or word + 's'}"


def _stopping_text(tally: Tally) -> str:
    if tally.abandoning:
        return f"stopping ({tally.stopping}): abandoning in-flight requests"
    return (
        f"stopping ({tally.stopping}): finishing "
        f"{_plural(max(tally.in_flight, 0), 'in-flight request')}"
    )


def summary_rows(summary: Summary) -> list[tuple[str, int | str]]:
    """The final summary as (key, value) pairs, in the order both displays show them."""
    data = summary.to_json()
    rows: list[tuple[str, int | str]] = [(key, int(data[key])) for key in SUMMARY_KEYS]
    elapsed = summary.elapsed_s
    rows.append(("elapsed", f"{elapsed:.1f} s" if elapsed < 60 else format_elapsed(elapsed)))
    return rows


def details(summary: Summary) -> list[str]:
    """Lines after the summary: the dry-run report, the failure explanation."""
    t = summary.tally
    lines: list[str] = undelivered_lines(summary)
    if summary.dry_run:
        for source, c in t.sources.items():
            lines.append(
                f"{source}: {c['read']:,} read, {c['unique']:,} unique, "
                f"{c['duplicates']:,} duplicates, {c['rejected']:,} rejected"
            )
        for source, read in t.columns.items():
            lines.append(f"{source}: {columns_line(read)}")
        if t.kinds:
            lines.append("kinds: " + ", ".join(f"{k} {n:,}" for k, n in t.kinds.items()))
        if summary.extra.get("batches_cut_by_size"):
            extra = summary.extra
            lines.append(
                f"request size: {extra['batches_cut_by_size']:,} batches cut at "
                f"--max-request-bytes {extra['max_request_bytes']:,} (largest body "
                f"{extra['largest_request_bytes'] or 0:,} bytes)"
            )
        for reason, info in t.report()["rejections"].items():
            lines.append(f"rejected {info['count']:,}x: {reason}")
            lines.extend(f"    e.g. {example}" for example in info["examples"])
    extra = summary.extra
    if "failed_identified" in extra:
        parts = [f"{extra['failed_identified']:,} confirmed and named"]
        if extra["failed_unconfirmed"] or extra["unconfirmed_identifiers"]:
            listed = _plural(extra["unconfirmed_identifiers"], "identifier")
            if extra["unconfirmed_identifiers"]:
                resolved = extra.get("unconfirmed_resolved", 0)
                listed += (
                    f" listed as unconfirmed, {resolved:,} of them in the campaign now"
                    if resolved
                    else " listed as unconfirmed, none of them known to be in the campaign"
                )
            else:
                listed += " listed as unconfirmed"
            parts.append(f"{extra['failed_unconfirmed']:,} not confirmed ({listed})")
        parts.append(_plural(extra["explain_requests"], "extra request"))
        lines.append("explained failures: " + ", ".join(parts))
    return lines


def columns_line(read: ev.ColumnsRead) -> str:
    """Which columns of a table input were read, and how, in one line."""
    first, *rest = read.identifiers
    text = f"identifier column {first!r}"
    if rest:
        text += " (else " + ", ".join(repr(n) for n in rest) + ")"
    if read.data:
        shown = [repr(n) if n == k else f"{n!r} as {k!r}" for n, k in read.data]
        text += "; data " + ", ".join(shown)
    else:
        text += "; no data columns"
    return text


def verdict(summary: Summary) -> tuple[str, bool]:
    """The one-line outcome of a run, and whether it is good news."""
    if summary.dry_run:
        c = summary.counts
        return (
            f"dry run: nothing sent ({_plural(c.unique, 'unique identifier')} "
            f"in {_plural(c.batches, 'batch', 'batches')})",
            True,
        )
    c = summary.counts
    stopped = f" (stopped: {summary.stop_reason})" if summary.stop_reason else ""
    if c.undelivered:
        where = (
            f"listed in {summary.undelivered_path}"
            if summary.undelivered_path
            else "use --undelivered FILE to list them"
        )
        return f"{_plural(c.undelivered, 'identifier')} NOT delivered{stopped}: {where}", False
    if summary.exit_code != 0:
        return f"run ended with exit code {summary.exit_code}{stopped}", False
    if c.unique == 0:
        return "No identifiers to send.", True
    text = f"All {_plural(c.unique, 'unique identifier')} delivered"
    if c.resumed:
        text += f" ({c.resumed:,} by an earlier run)"
    return text + ".", True


def undelivered_lines(summary: Summary) -> list[str]:
    """Why identifiers were not delivered: one line per reason, most first."""
    return [
        f"{count:,} undelivered: {reason}"
        for reason, count in summary.counts.undelivered_reasons.most_common()
    ]


class NullDisplay:
    """Shows nothing, notes included: `--quiet` and `--progress none` (the CLI prints errors)."""

    def start(self) -> None: ...
    def event(self, event: ev.Event) -> None: ...
    def tick(self) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self, summary: Summary | None) -> None: ...


class PlainDisplay:
    """Plain lines for logs and pipes: no ANSI codes, no carriage returns, no redraws."""

    def __init__(
        self,
        stream: TextIO,
        tally: Tally,
        *,
        clock: Clock = time.monotonic,
        interval: float = 5.0,
        wall: Clock = time.time,
    ) -> None:
        self._stream = stream
        self._tally = tally
        self._clock = clock
        self._wall = wall
        self._interval = interval
        self._started = clock()
        self._last_line = self._started
        # The pause already announced: several requests hitting the limit at
        # once would otherwise print the same pause once each.
        self._announced_pause: float | None = None
        self._announced_stop = ""

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def start(self) -> None:
        """Start the elapsed clock and the interval between progress lines."""
        self._started = self._last_line = self._clock()

    def progress_line(self) -> str:
        """The current counts as one greppable line (no thousands separators)."""
        t = self._tally
        elapsed = self._clock() - self._started
        total = "?" if t.batches_total is None else str(t.batches_total)
        pct, eta = progress_fields(t)
        line = (
            f"progress: batches {t.batches_done}/{total} sent {t.sent} added {t.added}"
            f" skipped {t.skipped} failed {t.failed} rejected {t.rejected}"
            f" duplicates {t.duplicates} in-flight {t.in_flight} retries {t.retries}"
            f" rate {_rate(t, elapsed)} elapsed {format_elapsed(elapsed)} pct {pct} eta {eta}"
        )
        if t.phase == "explain":
            line += (
                f" explain-requests {t.explain_requests} confirmed {t.explain_identified}"
                f" unconfirmed {t.explain_unconfirmed}"
            )
        return line

    def _maybe_progress(self) -> None:
        now = self._clock()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self._write(self.progress_line())

    def event(self, event: ev.Event) -> None:
        """Announce pauses, stops and phases at once; otherwise a line per interval."""
        if isinstance(event, ev.RatePaused):
            previous = self._announced_pause
            # A new pause, or one pushed at least a second further, is news.
            if previous is None or self._clock() >= previous or event.resume_at >= previous + 1:
                self._announced_pause = event.resume_at
                reason = event.reason.removeprefix("rate limit: ")
                reason = f" ({reason})" if reason else ""
                lifts = _clock_time(self._wall() + event.wait_s)
                self._write(f"rate limit: pausing {event.wait_s:.1f} s, until {lifts}{reason}")
        elif isinstance(event, ev.Campaign):
            self._write(f"campaign: {campaign_text(event.campaign, self._tally)}")
        elif isinstance(event, ev.Stopping):
            if event.reason != self._announced_stop:
                self._announced_stop = event.reason
                self._write(_stopping_text(self._tally))
        elif isinstance(event, ev.PhaseStarted) and event.name != "upload":
            self._write(f"phase: {event.name}")
        self._maybe_progress()

    def tick(self) -> None:
        """A progress line when the interval has passed, even without events."""
        self._maybe_progress()

    def note(self, text: str) -> None:
        """Print the note as its own line."""
        self._write(text)

    def stop(self, summary: Summary | None) -> None:
        """Print the summary as `key: value` lines and the verdict."""
        if summary is None:
            return
        if summary.campaign:
            self._write(f"campaign: {campaign_text(summary.campaign, summary.tally)}")
        for key, value in summary_rows(summary):
            self._write(f"{key}: {value}")
        for line in details(summary):
            self._write(line)
        self._write(verdict(summary)[0])


def _quoted(text: str) -> str:
    """`text` in double quotes, with every character that is not printable escaped
    (control characters, and format characters such as a right-to-left override)."""
    quoted = json.dumps(text, ensure_ascii=False)
    if quoted.isprintable():
        return quoted
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in quoted)


def _clock_time(wall: float) -> str:
    """A wall-clock time of day, as a hint of when something happens."""
    return time.strftime("%H:%M:%S", time.localtime(wall))


def event_name(event: ev.Event) -> str:
    """The snake_case name of an event class: `BatchDelivered` -> `batch_delivered`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()


class JsonlDisplay:
    """One JSON object per line per event, flushed at once, for other programs; a
    `progress` event with the counts so far at most every `interval` seconds."""

    def __init__(
        self,
        stream: TextIO,
        tally: Tally | None = None,
        *,
        wall: Clock = time.time,
        clock: Clock = time.monotonic,
        interval: float = 5.0,
    ) -> None:
        self._stream = stream
        self._tally = tally
        self._wall = wall
        self._clock = clock
        self._interval = interval
        self._last_progress: float | None = None

    def _emit(self, name: str, fields: dict[str, Any]) -> None:
        obj = {"event": name, **fields, "ts": self._wall()}
        self._stream.write(json.dumps(obj) + "\n")
        self._stream.flush()

    def start(self) -> None:
        """The first `progress` event: nothing done yet."""
        self._progress(force=True)

    def event(self, event: ev.Event) -> None:
        """Emit the event's fields; rejections one by one; requests not at all."""
        # Per-request start/end lines would outnumber everything else many
        # times over and say nothing the batch events do not.
        if isinstance(event, ev.RequestStarted | ev.RequestEnded):
            self._progress()
            return
        if isinstance(event, ev.RecordsRead):
            for rejection in event.rejections:
                self._emit("rejected", dataclasses.asdict(rejection))
            if event.read > 0:
                counts = {"read": event.read, "rejected": event.rejected}
                self._emit("records_read", {**counts, "duplicates": event.duplicates})
        elif isinstance(event, ev.Campaign):
            fields = {"campaign": event.campaign, "name": event.name, "status": event.status}
            self._emit("campaign", {**fields, "variables": dict(event.variables)})
        else:
            self._emit(event_name(event), dataclasses.asdict(event))
        self._progress()

    def tick(self) -> None:
        """A `progress` event when the interval has passed, even without events."""
        self._progress()

    def _progress(self, force: bool = False) -> None:
        t = self._tally
        if t is None:
            return
        now = self._clock()
        last = self._last_progress
        if not force and last is not None and now - last < self._interval:
            return
        self._last_progress = now
        eta = t.eta()
        fields: dict[str, Any] = {key: getattr(t, key) for key in PROGRESS_KEYS}
        fields["fraction"] = t.fraction()
        fields["eta_s"] = None if eta is None else round(eta, 1)
        self._emit("progress", fields)

    def note(self, text: str) -> None:
        """A note is an event too, so the stream stays pure JSON lines."""
        self._emit("note", {"text": text})

    def stop(self, summary: Summary | None) -> None:
        """The last `progress` event, then the summary object as the last line."""
        if summary is not None:
            self._progress(force=True)
            self._emit("summary", summary.to_json())


class RichDisplay:
    """A live table redrawn in place, replaced by the final summary when the run ends."""

    def __init__(
        self,
        stream: TextIO,
        tally: Tally,
        *,
        is_terminal: bool,
        no_color: bool,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        campaign: str = "",
    ) -> None:
        from rich.console import Console

        # force_terminal both ways: True draws on a terminal rich cannot
        # detect, False keeps escape codes out of files and pipes.
        self.console: Console = Console(
            file=stream, no_color=no_color, force_terminal=is_terminal, highlight=False
        )
        self._tally = tally
        self._clock = clock
        self._wall = wall
        self._campaign = campaign
        self._started = clock()
        self._live: Live | None = None

    def start(self) -> None:
        """Start the live view, refreshed four times a second by rich's own thread."""
        from rich.live import Live

        self._started = self._clock()
        # No stdout/stderr redirection: stdout carries `--json` output and must
        # never be diverted to this stream; notes go through `note()`.
        self._live = Live(
            console=self.console,
            get_renderable=self.renderable,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def status(self) -> tuple[str, str]:
        """The status line under the table, and its style."""
        t = self._tally
        now = self._clock()
        if t.stopping:
            return _stopping_text(t), "bold red"
        if t.paused_until is not None and t.paused_until > now:
            left = t.paused_until - now
            at = _clock_time(self._wall() + left)
            return f"rate limit: paused, resuming in {math.ceil(left)} s (at {at})", "yellow"
        if t.phase == "explain":
            done = f"{_plural(t.explain_requests, 'request')}, {t.explain_identified:,} confirmed"
            if t.explain_unconfirmed:
                done += f", {t.explain_unconfirmed:,} unconfirmed"
            return f"explaining failures: {done}", "cyan"
        return ("sending…" if t.phase == "upload" else f"{t.phase}…"), "dim"

    def renderable(self) -> RenderableType:
        """The live view: the counts table and the status line under it."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        t = self._tally
        elapsed = self._clock() - self._started
        total = "?" if t.batches_total is None else f"{t.batches_total:,}"
        cells = [
            ("Batches", f"{t.batches_done:,} / {total}"),
            ("Identifiers sent", f"{t.sent:,}"),
            ("Added", f"{t.added:,}"),
            ("Skipped", f"{t.skipped:,}"),
            ("Failed", f"{t.failed:,}"),
            ("Rejected", f"{t.rejected:,}"),
            ("Duplicates", f"{t.duplicates:,}"),
            ("In flight", f"{t.in_flight:,}"),
            ("Retries", f"{t.retries:,}"),
            ("Rate", _rate(t, elapsed, ",")),
            ("Elapsed", format_elapsed(elapsed)),
            ("", ""),
        ]
        table = Table(show_header=False, padding=(0, 1))
        for _ in range(2):
            table.add_column(style="bold")
            table.add_column(justify="right")
        # Two pairs per row keeps the view short enough for small terminals.
        for left, right in zip(cells[0::2], cells[1::2], strict=True):
            table.add_row(*left, *right)
        text, style = self.status()
        parts: list[RenderableType] = [table]
        if self._campaign:
            # A line of its own, not the table's title: a long name is not wrapped.
            title = f"Adding leads to campaign {campaign_text(self._campaign, t)}"
            parts.insert(0, Text(title, style="italic", overflow="ellipsis", no_wrap=True))
        fraction = t.fraction()
        if fraction is not None:
            from rich.progress_bar import ProgressBar

            pct, eta = progress_fields(t)
            bar = Table.grid(padding=(0, 1))
            bar.add_row(
                ProgressBar(total=1.0, completed=fraction, width=40),
                Text(f"{pct:>4}  ETA {eta}", style="bold"),
            )
            parts.append(bar)
        return Group(*parts, Text(text, style=style))

    def event(self, event: ev.Event) -> None:
        """Redraw at once for the rare events a user should see without delay."""
        if self._live is not None and isinstance(event, ev.RatePaused | ev.Stopping):
            self._live.refresh()

    def tick(self) -> None:
        """Nothing: rich's refresh thread already redraws the elapsed time."""

    def note(self, text: str) -> None:
        """Print the note above the live view (markup off: notes may hold brackets)."""
        self.console.print(text, style="yellow", markup=False, highlight=False)

    def stop(self, summary: Summary | None) -> None:
        """Remove the live view and print the summary table and verdict."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        if summary is None:
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title="Summary", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        for key, value in summary_rows(summary):
            table.add_row(key, f"{value:,}" if isinstance(value, int) else value)
        text, good = verdict(summary)
        if summary.campaign:
            # A line of its own, not the narrow table's title: a long name is not wrapped.
            campaign = f"Campaign {campaign_text(summary.campaign, summary.tally)}"
            self.console.print(
                campaign, markup=False, highlight=False, no_wrap=True, overflow="ellipsis"
            )
        self.console.print(table)
        for line in details(summary):
            self.console.print(line, markup=False, highlight=False)
        self.console.print(Text(text, style="bold green" if good else "bold red"))


class SafeDisplay:
    """A display that never raises into the run.

    Whatever reads stderr may go away (`2>&1 | head -1`, a log shipper that
    restarts, `2>&-`): a closed or broken stream turns the display off and the
    upload goes on. Any other exception is a bug of the display: it is turned
    off too, and the exception goes to `on_bug` (which stops the run in order)
    rather than up into whichever task, callback or timer emitted the event.
    """

    def __init__(self, display: Display, on_bug: Callable[[BaseException], None]) -> None:
        self.display = display
        self.lost = False
        self._on_bug = on_bug

    def _guard(self, call: Callable[[], None]) -> None:
        if self.lost:
            return
        try:
            call()
        except Exception as exc:
            self.lost = True
            with contextlib.suppress(Exception):
                self.display.stop(None)
            closed = isinstance(exc, ValueError) and "closed file" in str(exc)
            if not (isinstance(exc, OSError) or closed):
                self._on_bug(exc)

    def start(self) -> None:
        self._guard(self.display.start)

    def event(self, event: ev.Event) -> None:
        self._guard(lambda: self.display.event(event))

    def tick(self) -> None:
        self._guard(self.display.tick)

    def note(self, text: str) -> None:
        self._guard(lambda: self.display.note(text))

    def stop(self, summary: Summary | None) -> None:
        self._guard(lambda: self.display.stop(summary))
