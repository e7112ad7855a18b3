"""The campaign look-up, the mapping of columns to its variables, and progress,
below the command line: the client through httpx transports, the engine's
look-up through `run_add` with a transport that records every request, the
columns and the tally as plain functions.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from inboxleads import columns as cols
from inboxleads import engine
from inboxleads import events as ev
from inboxleads.accounting import Tally
from inboxleads.answers import Outcome
from inboxleads.client import InboxClient
from inboxleads.display import PlainDisplay, RichDisplay
from inboxleads.errors import ExitStatus
from inboxleads.inputs import ReadOptions
from inboxleads.job import AddJob
from inboxleads.runner import AddResult, run_add

from .conftest import SECRET, FakeTime, quiet_env, write_lines

VARIABLES = (("company-name", "Company name"), ("city", "City"), ("first-line", "First line"))
CAMPAIGN = {
    "id": "spring1",
    "name": "Spring outreach",
    "description": None,
    "status": "active",
    "targetsCount": 0,
    "customVariables": {
        key: {"displayName": shown, "description": None} for key, shown in VARIABLES
    },
    "steps": [{"unknown": True}],
}


# -- the mapping of columns ------------------------------------------------------


def sent_as(header: list[str], **options: Any) -> dict[str, str]:
    layout = cols.layout(header, variables=VARIABLES, **options)
    return {layout.keys[i]: key for i, key in layout.data if i not in {0}}


def test_a_header_equal_to_a_key_or_a_display_name_is_sent_under_the_key() -> None:
    header = ["twitter", "Company Name", "CITY", "note", "first_line"]
    assert sent_as(header) == {
        "Company Name": "company-name",
        "CITY": "city",
        "note": "note",
        "first_line": "first-line",
    }


def test_map_beats_the_automatic_mapping_and_names_a_column_the_user_chose() -> None:
    header = ["twitter", "Company name", "note"]
    mapped = sent_as(header, renames=(("note", "first-line"), ("Company name", "org")))
    assert mapped == {"Company name": "org", "note": "first-line"}


def test_map_of_a_column_one_header_lacks_leaves_that_header_as_it_is() -> None:
    layout = cols.layout(["twitter", "Company name"], renames=(("Firm", "company-name"),))
    assert layout.mapped == () and dict(layout.data)[1] == "Company name"
    layout = cols.layout(["twitter", "firm"], renames=(("Firm", "company-name"),))
    assert layout.mapped == ("Firm",) and dict(layout.data)[1] == "company-name"


def test_map_names_a_data_column_that_is_sent() -> None:
    header = ["name", "twitter_username", "twitter_id", "note"]
    with pytest.raises(cols.HeaderError, match="'twitter_id' holds the identifier"):
        cols.layout(header, renames=(("twitter_id", "first-line"),))
    with pytest.raises(cols.HeaderError, match="'note' is not sent"):
        cols.layout(header, data_columns=("name",), renames=(("note", "first-line"),))


def test_map_of_a_repeated_name_maps_the_first_column_of_it() -> None:
    layout = cols.layout(["handle", "name", "name"], renames=(("name", "first-line"),))
    assert [key for _, key in layout.data if _ > 0] == ["first-line", "name_2"]
    assert not layout.warnings[1:], layout.warnings


def test_identifier_columns_keep_their_names() -> None:
    # A variable named like an identifier column does not rename it.
    layout = cols.layout(["twitter", "x_id", "note"], variables=(("twitter", "Twitter"),))
    assert dict(layout.data)[0] == "twitter" and dict(layout.data)[1] == "x_id"


def test_two_columns_never_go_out_under_one_key() -> None:
    header = ["twitter", "Company name", "company-name"]
    layout = cols.layout(header, variables=VARIABLES)
    assert dict(layout.data)[2] == "company-name"  # the column of that very name keeps it
    assert dict(layout.data)[1] == "Company name"
    assert any("'Company name' is not sent as 'company-name'" in w for w in layout.warnings)


def test_without_variables_every_column_keeps_its_name() -> None:
    layout = cols.layout(["twitter", "Company name", "city"])
    assert [key for _, key in layout.data] == ["twitter", "Company name", "city"]


# -- the client's look-up ----------------------------------------------------------


def look_up(handler: Any) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = InboxClient(http, "https://api.test/api/v1", SECRET)
            return await client.get_campaign("spring1", 5.0, 0.0)

    import asyncio

    return asyncio.run(go())


def test_the_look_up_reads_name_status_and_variables_and_ignores_unknown_fields() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=CAMPAIGN, headers={"X-RateLimit-Remaining": "7"})

    answer = look_up(handler)
    assert answer.outcome is Outcome.OK
    assert answer.campaign.name == "Spring outreach" and answer.campaign.status == "active"
    assert answer.campaign.variables == VARIABLES
    assert answer.rate.remaining == 7
    (request,) = seen
    assert request.method == "GET" and str(request.url).endswith("/api/v1/campaigns/spring1")
    assert request.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b"<html>maintenance</html>", Outcome.RETRY),
        (200, b"[1, 2]", Outcome.RETRY),
        (401, b'{"error": {"code": "UNAUTHORIZED", "message": "invalid token"}}', Outcome.REFUSED),
        (404, b'{"error": {"code": "CAMPAIGN_NOT_FOUND"}}', Outcome.REFUSED),
        (503, b"", Outcome.RETRY),
    ],
)
def test_look_up_answers_that_are_not_a_campaign(
    status: int, body: bytes, outcome: Outcome
) -> None:
    answer = look_up(lambda request: httpx.Response(status, content=body))
    assert answer.outcome is outcome and answer.campaign is None


# -- the engine's look-up, through run_add -------------------------------------------


class Recorder:
    """A transport that answers the look-up as told and takes every batch."""

    def __init__(self, lookup: list[httpx.Response]) -> None:
        self.lookup = lookup
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if request.method == "GET":
            return self.lookup.pop(0) if len(self.lookup) > 1 else self.lookup[0]
        body = json.loads(request.content)
        self.bodies.append(body)
        n = sum(len(body.get(k, ())) for k in ("usernames", "platformIds", "leads"))
        return httpx.Response(200, json={"added": n, "skipped": 0, "failed": 0})


def run(
    tmp_path: Path,
    recorder: Recorder | httpx.AsyncBaseTransport,
    lines: list[str],
    name: str = "a.csv",
    **opts: Any,
) -> tuple[AddResult, list[dict[str, Any]]]:
    fake = FakeTime()
    err = io.StringIO()
    job = AddJob(
        campaign="spring1",
        inputs=[str(write_lines(tmp_path / name, lines))],
        token=SECRET,
        base_url="https://api.test/api/v1",
        progress="jsonl",
        **opts,
    )
    transport = httpx.MockTransport(recorder) if isinstance(recorder, Recorder) else recorder
    env = quiet_env(fake, stderr=err, transport=transport)
    result = run_add(job, env)
    return result, [json.loads(line) for line in err.getvalue().splitlines()]


CSV = ["twitter,Company name,City,note", "@jack,Block,San Francisco,hi", "@paulg,YC,,"]


def test_the_campaign_is_looked_up_first_and_its_variables_name_the_data(tmp_path: Path) -> None:
    recorder = Recorder([httpx.Response(200, json=CAMPAIGN)])
    result, events = run(tmp_path, recorder, CSV)
    assert result.status == ExitStatus.OK
    assert recorder.requests[0] == ("GET", "/api/v1/campaigns/spring1")
    assert [m for m, _ in recorder.requests] == ["GET", "POST"]
    leads = recorder.bodies[0]["leads"]
    assert leads[0]["data"] == {"company-name": "Block", "city": "San Francisco", "note": "hi"}
    assert leads[1]["data"] == {"company-name": "YC"}
    summary = result.summary.to_json() if result.summary else {}
    assert summary["campaign_name"] == "Spring outreach"
    assert summary["campaign_status"] == "active"
    assert summary["columns"]["data"] == {
        "Company name": "company-name",
        "City": "city",
        "note": "note",
    }
    assert summary["requests"] == 2 and summary["lookup_requests"] == 1
    (campaign,) = [e for e in events if e["event"] == "campaign"]
    assert campaign["name"] == "Spring outreach" and campaign["variables"]["city"] == "City"
    notes = [e["text"] for e in events if e["event"] == "note"]
    assert len(notes) == 1, notes
    assert (
        notes[0].startswith("warning: ") and "a.csv: no column provides the campaign " in notes[0]
    )
    assert "variable first-line ('First line'): personalisation with it would be empty" in notes[0]


def test_401_on_the_look_up_refuses_the_run_before_anything_is_read(tmp_path: Path) -> None:
    refused = httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "no"}})
    recorder = Recorder([refused])
    result, _ = run(tmp_path, recorder, ["@jack", "@paulg"], name="a.txt")
    assert result.status == ExitStatus.REFUSED
    assert recorder.requests == [("GET", "/api/v1/campaigns/spring1")]
    assert result.summary is not None and result.summary.to_json()["delivered"] == 0


@pytest.mark.parametrize("status", [403, 404, 400, 500])
def test_other_look_up_failures_warn_once_and_the_upload_goes_on(
    tmp_path: Path, status: int
) -> None:
    recorder = Recorder([httpx.Response(status, json={"error": {"code": "X", "message": "m"}})])
    result, events = run(tmp_path, recorder, ["@jack", "@paulg"], name="a.txt", max_attempts=3)
    assert result.status == ExitStatus.OK
    gets = [r for r in recorder.requests if r[0] == "GET"]
    assert len(gets) == (3 if status == 500 else 1)  # a 5xx is retried as uploads are
    assert recorder.requests[-1][0] == "POST"
    notes = [e["text"] for e in events if e["event"] == "note"]
    assert len(notes) == 1 and notes[0].startswith("warning: campaign look-up failed")
    summary = result.summary.to_json() if result.summary else {}
    assert "campaign_name" not in summary and summary["delivered"] == 2


def test_no_check_skips_the_look_up(tmp_path: Path) -> None:
    recorder = Recorder([httpx.Response(200, json=CAMPAIGN)])
    result, _ = run(tmp_path, recorder, CSV, no_check=True)
    assert result.status == ExitStatus.OK
    assert [m for m, _ in recorder.requests] == ["POST"]
    assert recorder.bodies[0]["leads"][0]["data"]["Company name"] == "Block"


def test_a_dry_run_looks_up_with_a_token_and_never_fails_for_it(tmp_path: Path) -> None:
    refused = httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "no"}})
    recorder = Recorder([refused])
    result, events = run(tmp_path, recorder, CSV, dry_run=True)
    assert result.status == ExitStatus.OK
    assert recorder.requests == [("GET", "/api/v1/campaigns/spring1")]
    assert any("campaign look-up failed" in e.get("text", "") for e in events)

    recorder = Recorder([httpx.Response(200, json=CAMPAIGN)])
    result, _ = run(tmp_path, recorder, CSV, dry_run=True)
    summary = result.summary.to_json() if result.summary else {}
    assert summary["campaign_name"] == "Spring outreach"
    assert summary["columns"]["data"]["Company name"] == "company-name"


def test_a_completed_campaign_is_warned_about(tmp_path: Path) -> None:
    recorder = Recorder([httpx.Response(200, json={**CAMPAIGN, "status": "completed"})])
    result, events = run(tmp_path, recorder, ["@jack"], name="a.txt")
    assert result.status == ExitStatus.OK
    notes = [e["text"] for e in events if e["event"] == "note"]
    assert any("is completed" in n for n in notes)


def test_map_of_a_column_an_input_lacks_is_an_input_error(tmp_path: Path) -> None:
    recorder = Recorder([httpx.Response(200, json=CAMPAIGN)])
    read = ReadOptions(renames=(("Firm", "company-name"),))
    result, _ = run(tmp_path, recorder, CSV, read=read)
    assert result.status == ExitStatus.USAGE
    assert result.error is not None
    assert result.error.message.startswith("--map 'Firm': no input has a column of that name")
    assert recorder.requests == []  # the headers are checked before anything is sent


# -- progress ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_weighs_bytes_read_by_batches_ended_and_never_goes_back() -> None:
    clock = Clock()
    tally = Tally(clock=clock)
    tally.bytes_total = 1000
    assert tally.fraction() == 0.0 and tally.eta() is None
    seen = []
    for batch in range(4):
        tally.apply(
            ev.RecordsRead(read=10, rejected=0, duplicates=0, unique=10, position=(batch + 1) * 250)
        )
        tally.apply(ev.BatchQueued(batch, 10))
        seen.append(tally.fraction())
        clock.now += 2.0
        tally.apply(ev.BatchDelivered(batch, 10, 10, 0, 0, 1))
        seen.append(tally.fraction())
    tally.apply(ev.InputFinished(4))
    seen.append(tally.fraction())
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 1.0
    assert seen[1] == pytest.approx(0.25)
    assert tally.eta() == 0.0


def ten_batches_read() -> tuple[Clock, Tally]:
    """A file read whole (1,000 bytes), cut into ten batches of one, none ended yet."""
    clock = Clock()
    tally = Tally(clock=clock)
    tally.bytes_total = 1000
    tally.apply(ev.RecordsRead(read=10, rejected=0, duplicates=0, unique=10, position=1000))
    for seq in range(10):
        tally.apply(ev.BatchQueued(seq, 1))
    return clock, tally


def test_batches_found_in_the_journal_do_not_speed_up_the_eta() -> None:
    clock, tally = ten_batches_read()
    for seq in range(5):  # half of it resumed at once
        tally.apply(ev.BatchResumed(seq, 1))
    clock.now += 1.0
    for seq in range(5, 7):
        clock.now += 5.0
        tally.apply(ev.BatchDelivered(seq, 1, 1, 0, 0, 1))
    # Two batches in 11 s since the resumed ones: three more take 16.5 s.
    assert tally.eta() == pytest.approx(16.5)


def test_eta_comes_from_the_recent_rate() -> None:
    clock, tally = ten_batches_read()
    for seq in range(5):
        clock.now += 3.0
        tally.apply(ev.BatchDelivered(seq, 1, 1, 0, 0, 1))
    # Half done in 15 s: another 15 s to go.
    assert tally.eta() == pytest.approx(15.0)


def test_progress_is_unknown_on_a_pipe() -> None:
    tally = Tally()
    tally.apply(ev.RecordsRead(read=10, rejected=0, duplicates=0, unique=10, position=500))
    assert tally.fraction() is None and tally.eta() is None


def test_the_displays_head_with_the_campaign_and_show_the_bar() -> None:
    clock = Clock()
    tally = Tally(clock=clock)
    tally.bytes_total = 100
    tally.apply(ev.Campaign("spring1", "Spring outreach", "active", VARIABLES))
    tally.apply(ev.RecordsRead(read=4, rejected=0, duplicates=0, unique=4, position=100))
    for seq in range(4):
        tally.apply(ev.BatchQueued(seq, 1))
    tally.apply(ev.BatchDelivered(0, 1, 1, 0, 0, 1))
    out = io.StringIO()
    rich = RichDisplay(
        out, tally, is_terminal=False, no_color=True, clock=clock, campaign="spring1"
    )
    rich.console.width = 100
    rich.console.print(rich.renderable())
    text = out.getvalue()
    assert 'Adding leads to campaign spring1 "Spring outreach" (active)' in text
    assert "25%" in text and "ETA" in text
    out = io.StringIO()
    plain = PlainDisplay(out, tally, clock=clock)
    plain.event(ev.Campaign("spring1", "Spring outreach", "active", VARIABLES))
    assert out.getvalue() == 'campaign: spring1 "Spring outreach" (active)\n'


def test_what_the_server_names_reaches_no_terminal_raw(tmp_path: Path) -> None:
    odd = {
        **CAMPAIGN,
        "name": "Spring\x1b[31m\nred",
        "status": "completed\x1b]0;x\x07",
        "customVariables": {"k\x1b[2J": {"displayName": "Shown\x1b[2J"}},
    }
    recorder = Recorder([httpx.Response(200, json=odd)])
    fake = FakeTime()
    err = io.StringIO()
    job = AddJob(
        campaign="spring1",
        inputs=[str(write_lines(tmp_path / "a.csv", CSV))],
        token=SECRET,
        base_url="https://api.test/api/v1",
        progress="plain",
    )
    result = run_add(job, quiet_env(fake, stderr=err, transport=httpx.MockTransport(recorder)))
    assert result.status == ExitStatus.OK
    text = err.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert 'campaign: spring1 "Spring\\u001b[31m\\nred"' in text or "Spring\\x1b" in text
    assert "no column provides" in text and "('completed\\x1b]0;x\\x07')" in text

    refused = httpx.Response(401, content=b'{"error": "no\x1b[2J entry"}')
    result, _ = run(tmp_path, Recorder([refused]), ["@jack"], name="b.txt")
    assert result.error is not None and "\x1b" not in result.error.message


@pytest.mark.parametrize(("options", "attempts"), [({}, 3), ({"max_attempts": 2}, 2)])
def test_a_failing_look_up_is_tried_3_times_at_most(
    tmp_path: Path, options: dict[str, Any], attempts: int
) -> None:
    # The input is read after the look-up: with --max-attempts 6 and --timeout 300, a
    # look-up that hangs used to hold a run for half an hour before its first batch.
    recorder = Recorder([httpx.Response(503, json={"message": "down"})])
    result, _ = run(tmp_path, recorder, CSV, **options)
    assert result.status == ExitStatus.OK
    assert [m for m, _ in recorder.requests].count("GET") == attempts
    assert recorder.requests[-1][0] == "POST"


class HangingLookUp(httpx.AsyncBaseTransport):
    """A look-up that never answers; uploads are taken."""

    def __init__(self) -> None:
        self.gets = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.gets += 1
            await asyncio.Event().wait()
        body = json.loads(await request.aread())
        n = sum(len(body.get(k, ())) for k in ("usernames", "platformIds", "leads"))
        return httpx.Response(200, json={"added": n, "skipped": 0, "failed": 0})


@pytest.mark.parametrize(("timeout_s", "waited"), [(300.0, "0.05 s"), (0.02, "0.02 s")])
def test_each_look_up_attempt_waits_the_shorter_of_its_cap_and_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout_s: float, waited: str
) -> None:
    monkeypatch.setattr(engine, "LOOKUP_TIMEOUT_S", 0.05)  # 10 s in a real run
    transport = HangingLookUp()
    result, events = run(tmp_path, transport, CSV, timeout_s=timeout_s)
    assert result.status == ExitStatus.OK
    assert transport.gets == 3
    retries = [e["reason"] for e in events if e["event"] == "retry_scheduled"]
    assert retries == [f"no answer within {waited}"] * 2  # then the third, and the upload
