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
from inboxleads.engine import Engine, EngineConfig
from inboxleads.inputs import Format, open_inputs
from inboxleads.runner import exit_status
from inboxleads.sandbox import (
    API_PREFIX,
    DEFAULT_TOKEN,
    Faults,
    SandboxConfig,
    create_app,
    sandbox_transport,
)

CAMPAIGN = "c0ffee42"


def _leads(path: Path) -> None:
    lines = ["# nightly CRM export"]
    for i in range(24_000):
        lines.append(f"gone_{i:05d}" if i % 997 == 0 else f"@lead_{i:05d}")
    lines += ["not a handle", "https://example.com/x", "@lead_00001", "LEAD_00002"]
    path.write_text("\n".join(lines) + "\n")


async def _run(path: Path, out: Path) -> None:
    import httpx

    app = create_app(SandboxConfig(faults=Faults(latency_s=0.4, error_rate=0.1, seed=4)))
    tally = Tally()
    display = RichDisplay(io.StringIO(), tally, is_terminal=True, no_color=False, campaign=CAMPAIGN)
    record = Console(record=True, width=96, file=io.StringIO(), force_terminal=True)

    def emit(event: ev.Event) -> None:
        tally.apply(event)
        display.event(event)

    inputs = open_inputs([str(path)], Format.AUTO)
    async with httpx.AsyncClient(transport=sandbox_transport(app)) as http:
        client = InboxClient(http, "http://127.0.0.1" + API_PREFIX, DEFAULT_TOKEN)
        config = EngineConfig(campaign=CAMPAIGN, concurrency=4)
        engine = Engine(config, inputs, client, emit, clock=time.time, sleep=asyncio.sleep)
        started = time.monotonic()
        task = asyncio.create_task(engine.run())
        while tally.batches_done < 5 and not task.done():  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.05)
        record.print(display.renderable())
        await task
    status = exit_status(tally, None, None)
    summary = Summary(CAMPAIGN, tally, False, time.monotonic() - started, int(status))
    display.console = record
    display.stop(summary)
    record.save_svg(str(out), title="inboxleads add c0ffee42 leads.txt")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("live-table.svg"))
    path = out.with_name("capture-leads.txt")
    _leads(path)
    try:
        asyncio.run(_run(path, out))
    finally:
        path.unlink()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
