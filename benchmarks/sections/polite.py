"""polite: 429 answers when many requests in flight meet a tight rate limit."""

from __future__ import annotations

import math

from benchmarks.context import Context, Row, answers_by_status, campaign_span, run_ours
from benchmarks.server import Sandbox

POLITE_LIMIT = 4  # requests per 1 s window
POLITE_HANDLES = 4000
POLITE_BATCH = 100
POLITE_CONCURRENCY = 16
POLITE_MAX_429 = 5


def bench_polite(ctx: Context) -> None:
    """429 answers when 16 requests in flight meet a limit of 4 per 1 s window."""
    path = ctx.handles_file(POLITE_HANDLES, prefix="polite")
    options = ("--rate-limit", str(POLITE_LIMIT), "--rate-window", "1")
    campaign = ctx.campaign("polite")
    with Sandbox(*options) as server:
        run, summary = run_ours(
            ctx,
            server,
            path,
            campaign,
            *("--batch-size", str(POLITE_BATCH), "--concurrency", str(POLITE_CONCURRENCY)),
        )
        state = server.state()
    answers = answers_by_status(state)
    refused = answers.get(429, 0)
    delivered = int(summary["delivered"])
    complete = delivered == POLITE_HANDLES
    ok = answers.get(200, 0)
    # At 4 a window, `ok` requests need ceil(ok / 4) windows: the last starts one earlier.
    ideal = (math.ceil(ok / POLITE_LIMIT) - 1) * 1.0
    detail = {
        "limit": POLITE_LIMIT,
        "window_s": 1.0,
        "handles": POLITE_HANDLES,
        "batch_size": POLITE_BATCH,
        "concurrency": POLITE_CONCURRENCY,
        "by_status": state["by_status"],
        "lookups": state.get("lookups", {}),
        "answers_429": refused,
        "delivered": delivered,
        "client_wall_s": round(run.wall_s, 3),
        "server_span_s": round(campaign_span(state, campaign), 3),
        "ideal_span_s": ideal,
        "max_in_flight": state.get("max_in_flight"),
    }
    label = f"{POLITE_LIMIT}/1s, c={POLITE_CONCURRENCY}, {POLITE_HANDLES // POLITE_BATCH} batches"
    ctx.add(
        Row(
            "polite",
            f"429 answers ({label})",
            refused,
            "n",
            f"<= {POLITE_MAX_429}",
            refused <= POLITE_MAX_429 and complete,
            f"of {sum(answers.values())} answers, look-up included; the peer has no retries "
            "and is not run here",
            detail,
        )
    )
    ctx.add(
        Row(
            "polite",
            "  wall time",
            run.wall_s,
            "s",
            note=f"informational: {delivered:,} of {POLITE_HANDLES:,} delivered; server span "
            f"{detail['server_span_s']:.2f} s, ideal {ideal:.0f} s for {ok} requests at "
            f"{POLITE_LIMIT}/s",
            detail=detail,
        )
    )
