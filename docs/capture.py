"""Record the live table of a real run as SVG: `python docs/capture.py [OUT.svg]`.

Runs `add` in-process against the sandbox (with latency, so the run lasts a
few seconds and has failures to show), records one frame of the live table
part-way through and the final summary, and writes them with rich's SVG
export. Nothing here is staged: the counts are the run's own.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from pathlib import Path

from rich.console import Console

from inboxleads import events as ev
from inboxleads.accounting import Summary, Tally
from inboxleads.client import InboxClient
from inboxleads.display import RichDisplay
from inboxleads.engine import Engine
from inboxleads.inputs import Format, open_inputs
from inboxleads.job import AddJob
from inboxleads.sandbox import (
    API_PREFIX,
    DEFAULT_TOKEN,
    Faults,
    SandboxCampaign,
    SandboxConfig,
    create_app,
    sandbox_transport,
)

CAMPAIGN = "c0ffee42"
SHOWN = SandboxCampaign(
    name="Spring outreach",
    status="active",
    variables={"company-name": "Company name", "city": "City"},
)


def _leads(path: Path) -> None:
    lines = ["twitter,Company name,City"]
    for i in range(60_000):
        handle = f"gone_{i:05d}" if i % 997 == 0 else f"@lead_{i:05d}"
        lines.append(f"{handle},Company {i % 300},City {i % 40}")
    lines += ["not a handle,,", "https://example.com/x,,", "@lead_00001,,", "LEAD_00002,,"]
    path.write_text("\n".join(lines) + "\n")


async def _run(path: Path, out: Path) -> None:
    import httpx

    faults = Faults(latency_s=0.4, error_rate=0.05, seed=4)
    app = create_app(SandboxConfig(faults=faults, campaign=SHOWN))
    tally = Tally()
    display = RichDisplay(io.StringIO(), tally, is_terminal=True, no_color=False, campaign=CAMPAIGN)
    record = Console(record=True, width=96, file=io.StringIO(), force_terminal=True)

    def emit(event: ev.Event) -> None:
        if isinstance(event, ev.Note):
            display.note(f"warning: {event.text}")
            return
        tally.apply(event)
        display.event(event)

    inputs = open_inputs([str(path)], Format.AUTO)
    async with httpx.AsyncClient(transport=sandbox_transport(app)) as http:
        client = InboxClient(http, "http://127.0.0.1" + API_PREFIX, DEFAULT_TOKEN)
        job = AddJob(campaign=CAMPAIGN, concurrency=4)
        engine = Engine(job, inputs, client, emit, clock=time.time, sleep=asyncio.sleep)
        tally.bytes_total = engine.reader.total_bytes
        started = time.monotonic()
        task = asyncio.create_task(engine.run())
        # A frame part-way through, once the ETA is known.
        while (tally.batches_done < 8 or tally.eta() is None) and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        record.print(display.renderable())
        await task
        engine.end()
    counts = engine.ledger.counts
    status = 1 if counts.undelivered else 0
    summary = Summary(CAMPAIGN, counts, tally, False, time.monotonic() - started, status)
    display.console = record
    display.stop(summary)
    record.save_svg(str(out), title="inboxleads add c0ffee42 leads.csv")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("live-table.svg"))
    path = out.with_name("capture-leads.csv")
    _leads(path)
    try:
        asyncio.run(_run(path, out))
    finally:
        path.unlink()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
