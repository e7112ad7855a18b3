"""The progress displays: what each mode writes for a run's events."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections import Counter

import pytest
from rich.console import Console

from inboxleads import events as ev
from inboxleads.accounting import Summary, Tally
from inboxleads.display import (
    Display,
    JsonlDisplay,
    NullDisplay,
    PlainDisplay,
    RichDisplay,
    make_display,
)
from inboxleads.events import Rejection
from inboxleads.ledger import Counts


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


REJECTION = Rejection(source="leads.txt", line=3, text="not a handle!", reason="not an identifier")

# A small run: 12 records read, 1 rejected, 2 duplicates, 9 unique in 3 batches.
RUN: list[ev.Event] = [
    ev.RecordsRead(read=12, rejected=1, duplicates=2, rejections=(REJECTION,), unique=9),
    ev.BatchQueued(seq=1, size=4),
    ev.RequestStarted(seq=1, size=4, attempt=1),
    ev.RequestEnded(seq=1, status=200),
    ev.BatchDelivered(seq=1, size=4, added=3, skipped=1, failed=0, attempts=1),
    ev.BatchQueued(seq=2, size=4),
    ev.RequestStarted(seq=2, size=4, attempt=1),
    ev.RequestEnded(seq=2, status=429),
    ev.RetryScheduled(seq=2, attempt=1, reason="429", wait_s=2.0),
    ev.RequestStarted(seq=2, size=4, attempt=2),
    ev.RequestEnded(seq=2, status=200),
    ev.BatchDelivered(seq=2, size=4, added=2, skipped=0, failed=2, attempts=2),
    ev.BatchQueued(seq=3, size=1),
    ev.InputFinished(batches=3),
    ev.RequestStarted(seq=3, size=1, attempt=1),
]


def feed(display: Display, tally: Tally, events: list[ev.Event]) -> None:
    """What the runner does: the tally first, then the display."""
    for event in events:
        tally.apply(event)
        display.event(event)


def finish(tally: Tally, *, delivered: bool = True) -> None:
    """End RUN's last batch, delivered or not."""
    last: list[ev.Event] = [ev.RequestEnded(seq=3, status=200 if delivered else None)]
    if delivered:
        last.append(ev.BatchDelivered(seq=3, size=1, added=1, skipped=0, failed=0, attempts=1))
    else:
        last.append(ev.BatchUndelivered(seq=3, size=1, reason="timeout", attempts=5))
    for event in last:
        tally.apply(event)


def summary(tally: Tally, *, dry_run: bool = False, exit_code: int = 0) -> Summary:
    """The summary a display is given: the run's counts (here those RUN implies)."""
    counts = Counts(
        read=12,
        rejected=1,
        duplicates=2,
        unique=9,
        batches=3,
        delivered=0 if dry_run else tally.delivered,
        undelivered=0 if dry_run else tally.undelivered,
        added=tally.added,
        skipped=tally.skipped,
        failed=tally.failed,
        undelivered_reasons=Counter({"timeout": tally.undelivered} if tally.undelivered else {}),
    )
    return Summary(
        campaign="abc123",
        counts=counts,
        tally=tally,
        dry_run=dry_run,
        elapsed_s=4.25,
        exit_code=exit_code,
    )


def plain(
    tally: Tally, clock: FakeClock, interval: float = 5.0
) -> tuple[PlainDisplay, io.StringIO]:
    out = io.StringIO()
    display = make_display(
        "plain",
        stream=out,
        tally=tally,
        is_terminal=False,
        no_color=False,
        quiet=False,
        clock=clock,
        interval=interval,
    )
    assert isinstance(display, PlainDisplay)
    return display, out


def rich_display(
    tally: Tally, clock: FakeClock, *, no_color: bool = False
) -> tuple[RichDisplay, io.StringIO]:
    out = io.StringIO()
    display = make_display(
        "rich",
        stream=out,
        tally=tally,
        is_terminal=True,
        no_color=no_color,
        quiet=False,
        clock=clock,
        campaign="abc123",
    )
    assert isinstance(display, RichDisplay)
    return display, out


def render(display: RichDisplay) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(display.renderable())
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


COLOUR_PARAMS = {str(n) for n in [*range(30, 50), *range(90, 98), *range(100, 108)]}


def colour_codes(text: str) -> list[str]:
    """SGR parameters that set a foreground or background colour."""
    params = [p for seq in re.findall(r"\x1b\[([0-9;]*)m", text) for p in seq.split(";")]
    return [p for p in params if p in COLOUR_PARAMS]


# --- choosing a display ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "is_terminal", "quiet", "expected"),
    [
        ("auto", True, False, RichDisplay),
        ("auto", False, False, PlainDisplay),
        ("rich", False, False, RichDisplay),
        ("plain", True, False, PlainDisplay),
        ("jsonl", True, False, JsonlDisplay),
        ("none", True, False, NullDisplay),
        ("rich", True, True, NullDisplay),
        ("jsonl", False, True, NullDisplay),
    ],
)
def test_make_display_picks_the_display_for_mode_terminal_and_quiet(
    mode: str, is_terminal: bool, quiet: bool, expected: type
) -> None:
    display = make_display(
        mode,
        stream=io.StringIO(),
        tally=Tally(),
        is_terminal=is_terminal,
        no_color=False,
        quiet=quiet,
    )
    assert isinstance(display, expected)


def test_make_display_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="fancy"):
        make_display(
            "fancy",
            stream=io.StringIO(),
            tally=Tally(),
            is_terminal=True,
            no_color=False,
            quiet=False,
        )


def test_importing_display_does_not_import_rich_live_or_table() -> None:
    code = "import sys, inboxleads.display\n"
    code += "print(sorted({'rich.live', 'rich.table'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("mode", ["rich", "plain", "jsonl", "none"])
def test_quiet_writes_nothing_at_all_not_even_notes(mode: str) -> None:
    out = io.StringIO()
    tally = Tally()
    display = make_display(
        mode, stream=out, tally=tally, is_terminal=True, no_color=False, quiet=True
    )
    display.start()
    feed(display, tally, RUN)
    display.note("retrying batch 2")
    display.tick()
    display.stop(summary(tally))
    assert out.getvalue() == ""


# --- plain ---------------------------------------------------------------------------


def test_plain_writes_no_escape_codes_or_carriage_returns() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock, interval=1.0)
    display.start()
    for event in RUN:
        clock.now += 0.7
        feed(display, tally, [event])
        display.tick()
    feed(display, tally, [ev.RatePaused(wait_s=3.0, reason="429", resume_at=clock.now + 3)])
    display.note("retrying batch 2")
    finish(tally)
    display.stop(summary(tally))
    text = out.getvalue()
    assert "progress:" in text
    assert "\x1b" not in text
    assert "\r" not in text


def test_plain_prints_at_most_one_progress_line_per_interval() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock, interval=5.0)
    display.start()
    queued = [ev.BatchQueued(seq=n, size=1) for n in range(100)]
    for event in queued:
        clock.now += 0.01  # 100 events within one second
        feed(display, tally, [event])
    assert out.getvalue().count("progress:") <= 1

    clock.now += 5.0
    display.tick()
    assert out.getvalue().count("progress:") == 1
    display.tick()  # no time passed: no second line
    assert out.getvalue().count("progress:") == 1


def test_plain_progress_line_shows_counts_and_unknown_total() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock, interval=5.0)
    display.start()
    feed(display, tally, RUN[:5])
    clock.now += 5.0
    display.tick()
    line = out.getvalue().splitlines()[-1]
    assert line == (
        "progress: batches 1/? sent 4 added 3 skipped 1 failed 0 rejected 1 duplicates 2"
        " in-flight 0 retries 0 rate 0.8/s elapsed 0:05 pct ? eta ?"
    )
    feed(display, tally, RUN[5:])
    clock.now += 5.0
    display.tick()
    assert "batches 2/3 sent 13 added 5" in out.getvalue().splitlines()[-1]


def test_plain_progress_line_in_the_explain_phase_says_what_is_confirmed() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock, interval=5.0)
    display.start()
    explain: list[ev.Event] = [ev.PhaseStarted(name="explain")]
    explain += [ev.RequestStarted(seq=1, size=10, attempt=1, phase="explain")]
    explain += [ev.ExplainProgress(requests=1, identified=4, unconfirmed=500)]
    feed(display, tally, explain)
    clock.now += 5.0
    display.tick()
    line = out.getvalue().splitlines()[-1]
    assert line.endswith(" explain-requests 1 confirmed 4 unconfirmed 500"), line


def test_plain_prints_a_pause_line_at_once_and_only_once_per_pause() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock, interval=60.0)
    display.start()
    pause = ev.RatePaused(wait_s=12.0, reason="429", resume_at=clock.now + 12)
    feed(display, tally, [pause, pause])  # two requests hit the limit together
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(r"rate limit: pausing 12\.0 s, until \d\d:\d\d:\d\d \(429\)", line)

    clock.now += 13
    feed(display, tally, [ev.RatePaused(wait_s=2.0, reason="", resume_at=clock.now + 2)])
    assert re.fullmatch(
        r"rate limit: pausing 2\.0 s, until \d\d:\d\d:\d\d", out.getvalue().splitlines()[-1]
    )


def test_plain_announces_stopping_and_prints_notes() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock, interval=60.0)
    display.start()
    feed(display, tally, RUN)  # leaves one request in flight
    display.note("retrying batch 2 in 2.0 s")
    feed(display, tally, [ev.Stopping(reason="interrupted")])
    assert out.getvalue().splitlines() == [
        "retrying batch 2 in 2.0 s",
        "stopping (interrupted): finishing 1 in-flight request",
    ]
    feed(display, tally, [ev.Stopping(reason="interrupted again", abandon=True)])
    assert out.getvalue().splitlines()[-1] == (
        "stopping (interrupted again): abandoning in-flight requests"
    )


def test_plain_summary_is_key_value_lines_and_a_verdict() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock)
    feed(display, tally, RUN)
    finish(tally, delivered=False)
    display.stop(summary(tally, exit_code=1))
    lines = out.getvalue().splitlines()
    for expected in ["read: 12", "rejected: 1", "unique: 9", "requests: 4", "retries: 1"]:
        assert expected in lines
    assert "undelivered: 1" in lines
    assert "elapsed: 4.2 s" in lines or "elapsed: 4.3 s" in lines
    assert lines[-1] == "1 identifier NOT delivered: use --undelivered FILE to list them"


@pytest.mark.parametrize(
    ("found", "line"),
    [
        (
            {
                "failed_identified": 1,
                "failed_unconfirmed": 1,
                "unconfirmed_identifiers": 31,
                "unconfirmed_resolved": 30,
            },
            "explained failures: 1 confirmed and named, 1 not confirmed (31 identifiers "
            "listed as unconfirmed, 30 of them in the campaign now), 12 extra requests",
        ),
        (
            {
                "failed_identified": 0,
                "failed_unconfirmed": 3,
                "unconfirmed_identifiers": 500,
                "unconfirmed_resolved": 0,
            },
            "explained failures: 0 confirmed and named, 3 not confirmed (500 identifiers "
            "listed as unconfirmed, none of them known to be in the campaign), "
            "12 extra requests",
        ),
        (
            {"failed_identified": 7, "failed_unconfirmed": 0, "unconfirmed_identifiers": 0},
            "explained failures: 7 confirmed and named, 12 extra requests",
        ),
    ],
    ids=["disagreement", "not-narrowed-down", "all-confirmed"],
)
def test_plain_summary_says_what_the_explanation_confirmed(
    found: dict[str, int], line: str
) -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock)
    feed(display, tally, RUN)
    finish(tally)
    done = summary(tally)
    done.extra = {**found, "explain_requests": 12}
    display.stop(done)
    assert line in out.getvalue().splitlines()


def test_stop_without_a_summary_prints_nothing() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = plain(tally, clock)
    display.stop(None)
    assert out.getvalue() == ""


# --- jsonl ---------------------------------------------------------------------------


def test_jsonl_writes_one_json_object_per_event_and_a_final_summary() -> None:
    out, tally = io.StringIO(), Tally()
    display = JsonlDisplay(out, wall=lambda: 1_700_000_000.5)
    display.start()
    feed(display, tally, RUN)
    display.tick()
    display.note("retrying")
    finish(tally)
    display.stop(summary(tally))
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["event"] for o in objects] == [
        "rejected",
        "records_read",
        "batch_queued",
        "batch_delivered",
        "batch_queued",
        "retry_scheduled",
        "batch_delivered",
        "batch_queued",
        "input_finished",
        "note",
        "summary",
    ]
    assert objects[0] == {
        "event": "rejected",
        "source": "leads.txt",
        "line": 3,
        "text": "not a handle!",
        "reason": "not an identifier",
        "ts": 1_700_000_000.5,
    }
    assert objects[3] == {
        "event": "batch_delivered",
        "seq": 1,
        "size": 4,
        "added": 3,
        "skipped": 1,
        "failed": 0,
        "attempts": 1,
        "ts": 1_700_000_000.5,
    }
    final = objects[-1]
    assert final["unique"] == 9
    assert final["delivered"] == 9
    assert final["exit_code"] == 0


def test_jsonl_skips_records_read_with_nothing_read() -> None:
    out, tally = io.StringIO(), Tally()
    display = make_display(
        "jsonl", stream=out, tally=tally, is_terminal=False, no_color=False, quiet=False
    )
    feed(display, tally, [ev.RecordsRead(read=0, rejected=0, duplicates=0)])
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert "records_read" not in events


# --- rich ----------------------------------------------------------------------------


def test_rich_table_shows_the_counts_and_a_question_mark_for_an_unknown_total() -> None:
    clock, tally = FakeClock(), Tally()
    display, _ = rich_display(tally, clock)
    feed(display, tally, RUN[:12])
    clock.now += 4
    text = render(display)
    assert "2 / ?" in text
    for label, value in [("Identifiers sent", "12"), ("Added", "5"), ("Failed", "2")]:
        assert re.search(rf"{label}[\s│]+{value}\b", text), (label, text)
    assert re.search(r"Rejected[\s│]+1\b", text)
    assert re.search(r"Duplicates[\s│]+2\b", text)
    assert re.search(r"Retries[\s│]+1\b", text)
    assert re.search(r"Rate[\s│]+3\.0/s", text)
    assert re.search(r"Elapsed[\s│]+0:04", text)
    assert "sending…" in text

    feed(display, tally, RUN[12:])
    text = render(display)
    assert "2 / 3" in text
    assert re.search(r"In flight[\s│]+1\b", text)


def test_rich_status_line_shows_pause_stopping_and_explain() -> None:
    clock, tally = FakeClock(), Tally()
    display, _ = rich_display(tally, clock)
    feed(display, tally, [ev.RatePaused(wait_s=12.0, reason="429", resume_at=clock.now + 12)])
    assert re.search(r"rate limit: paused, resuming in 12 s \(at \d\d:\d\d:\d\d\)", render(display))

    clock.now += 13  # the pause is over
    assert "sending…" in render(display)

    explain: list[ev.Event] = [ev.PhaseStarted(name="explain")]
    for seq in range(3):
        explain.append(ev.RequestStarted(seq=seq, size=10, attempt=1, phase="explain"))
        explain.append(ev.RequestEnded(seq=seq, status=200, phase="explain"))
    feed(display, tally, [*explain, ev.ExplainProgress(requests=3, identified=40)])
    assert "explaining failures: 3 requests, 40 confirmed\n" in render(display)
    feed(display, tally, [ev.ExplainProgress(requests=3, identified=40, unconfirmed=500)])
    assert "explaining failures: 3 requests, 40 confirmed, 500 unconfirmed" in render(display)

    feed(display, tally, [ev.Stopping(reason="interrupted")])
    assert "stopping (interrupted): finishing 0 in-flight requests" in render(display)


@pytest.mark.parametrize(
    ("exit_code", "dry_run", "delivered", "expected"),
    [
        (0, False, True, "All 9 unique identifiers delivered."),
        (1, False, False, "1 identifier NOT delivered: use --undelivered FILE to list them"),
        (0, True, False, "dry run: nothing sent (9 unique identifiers in 3 batches)"),
    ],
)
def test_rich_final_summary_has_the_table_and_the_verdict(
    exit_code: int, dry_run: bool, delivered: bool, expected: str
) -> None:
    clock, tally = FakeClock(), Tally()
    display, out = rich_display(tally, clock)
    if dry_run:
        for event in RUN:
            if isinstance(event, ev.RecordsRead | ev.BatchQueued | ev.InputFinished):
                tally.apply(event)
    else:
        feed(display, tally, RUN)
        finish(tally, delivered=delivered)
    display.stop(summary(tally, dry_run=dry_run, exit_code=exit_code))
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert expected in text
    assert re.search(r"unique\s*│\s*9\b", text)
    assert re.search(r"elapsed\s*│\s*4\.\d s", text)


def test_rich_live_view_runs_and_is_replaced_by_the_summary() -> None:
    clock, tally = FakeClock(), Tally()
    display, out = rich_display(tally, clock)
    display.start()
    feed(display, tally, RUN)
    display.note("retrying [batch 2]")
    display.tick()
    finish(tally)
    display.stop(summary(tally))
    text = out.getvalue()
    assert "retrying [batch 2]" in text
    assert "All 9 unique identifiers delivered." in text


def test_no_color_gives_no_colour_codes_in_the_final_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    outputs = {}
    for no_color in (False, True):
        clock, tally = FakeClock(), Tally()
        display, out = rich_display(tally, clock, no_color=no_color)
        feed(display, tally, RUN)
        finish(tally, delivered=False)
        display.stop(summary(tally, exit_code=1))
        outputs[no_color] = out.getvalue()
    assert colour_codes(outputs[False])  # the check below can see colour
    assert colour_codes(outputs[True]) == []
    assert "NOT delivered" in outputs[True]


def test_rich_on_a_non_terminal_writes_no_escape_codes() -> None:
    out, tally = io.StringIO(), Tally()
    display = make_display(
        "rich", stream=out, tally=tally, is_terminal=False, no_color=False, quiet=False
    )
    display.start()
    feed(display, tally, RUN)
    finish(tally)
    display.stop(summary(tally))
    assert "\x1b" not in out.getvalue()
    assert "All 9 unique identifiers delivered." in out.getvalue()
