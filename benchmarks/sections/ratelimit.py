"""ratelimit: goodput under a limit of 20 requests/s, and the share of 429 answers."""

from __future__ import annotations

from benchmarks.context import Context, Row, answers_by_status, campaign_span, run_ours
from benchmarks.server import Sandbox

RATE = 20  # requests per second, whichever window expresses it
RATE_BATCH = 10
GOODPUT_PRIMARY = 0.97
SHARE_429_PRIMARY = 1.0  # percent
GOODPUT_SECONDARY = 0.90


def bench_ratelimit(ctx: Context) -> None:
    """Goodput under 20 requests/s, in batches of 10."""
    # Seconds of requests at the limit, per variant: (primary, secondary).
    seconds = (8, 5) if ctx.quick else (20, 15)
    # Primary: a per-minute sliding window, as the real API counts. Shorter than the
    # window, it measures how evenly the client paces; the 1 s window tests 429
    # avoidance over many windows, with a reset header of 1 s resolution.
    variants = [
        (RATE * 60, 60.0, "primary", seconds[0], GOODPUT_PRIMARY),
        (RATE, 1.0, "secondary", seconds[1], GOODPUT_SECONDARY),
    ]
    for limit, window, role, duration, goodput_target in variants:
        uploads = RATE * duration
        path = ctx.handles_file(uploads * RATE_BATCH, prefix=f"r{limit}")
        options = ("--rate-limit", str(limit), "--rate-window", f"{window:g}")
        campaign = ctx.campaign("rate")
        with Sandbox(*options) as server:
            run, summary = run_ours(ctx, server, path, campaign, "--batch-size", str(RATE_BATCH))
            state = server.state()
        answers = answers_by_status(state)
        total = sum(answers.values()) + sum(state.get("faults", {}).values())
        # The look-up uses a slot of the budget like an upload: its 200 counts as goodput
        # and the span starts at its arrival.
        ok = answers.get(200, 0)
        span = campaign_span(state, campaign)
        goodput = ok / span / RATE
        share_429 = 100.0 * answers.get(429, 0) / total if total else 0.0
        delivered = summary["delivered"] == uploads * RATE_BATCH
        label = f"{limit}/{window:g}s"
        detail = {
            "limit": limit,
            "window_s": window,
            "requests": total,
            "by_status": state["by_status"],
            "lookups": state.get("lookups", {}),
            "server_span_s": round(span, 3),
            "client_wall_s": round(run.wall_s, 3),
            "all_delivered": delivered,
        }
        ctx.add(
            Row(
                "ratelimit",
                f"goodput / 20 req/s ({label}, {role})",
                goodput,
                "",
                f">= {goodput_target:.2f}",
                goodput >= goodput_target and delivered,
                f"{ok} x 200 (look-up included) in {span:.1f} s from the look-up's arrival "
                "to the last answer; the peer has no pacing and is not run"
                + ("" if delivered else "; NOT ALL DELIVERED"),
                detail,
            )
        )
        primary = role == "primary"
        ctx.add(
            Row(
                "ratelimit",
                f"429 share ({label}, {role})",
                share_429,
                "%",
                f"<= {SHARE_429_PRIMARY:g} %" if primary else "",
                share_429 <= SHARE_429_PRIMARY if primary else None,
                f"{answers.get(429, 0)} of {total} answers"
                + ("" if primary else "; informational"),
                detail,
            )
        )
