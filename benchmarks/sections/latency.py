"""latency: efficiency at each concurrency against a server answering in 0.1 s."""

from __future__ import annotations

import math

from benchmarks.context import Context, Row, leads_span, run_ours
from benchmarks.server import Sandbox

CONCURRENCIES = (1, 4, 8, 16)
LATENCY_S = 0.1


def bench_latency(ctx: Context) -> None:
    """Efficiency against a 0.1 s server at each concurrency, a fresh server each
    (informational)."""
    path = ctx.handles_file(ctx.handles)
    for concurrency in CONCURRENCIES:
        with Sandbox("--latency", str(LATENCY_S)) as server:
            campaign = ctx.campaign(f"lat{concurrency}")
            run, summary = run_ours(ctx, server, path, campaign, "--concurrency", str(concurrency))
            state = server.state()
        batches = int(summary["batches"])
        ideal = math.ceil(batches / concurrency) * LATENCY_S
        span = leads_span(state)
        efficiency = ideal / span
        delivered = summary["delivered"] == ctx.handles and state["by_status"] == {"200": batches}
        detail = {
            "concurrency": concurrency,
            "handles": ctx.handles,
            "batches": batches,
            "ideal_s": round(ideal, 3),
            "server_span_s": round(span, 3),
            "client_wall_s": round(run.wall_s, 3),
            "client_cpu_s": round(run.cpu_s, 3),
            "server_cpu_s": round(server.cpu_s, 3),
            "max_in_flight": state.get("max_in_flight"),
            "all_delivered": delivered,
        }
        ctx.latency_points.append(
            {"concurrency": concurrency, "efficiency": efficiency, "wall": ideal / run.wall_s}
        )
        ctx.add(
            Row(
                "latency",
                f"efficiency, concurrency {concurrency}",
                efficiency,
                "",
                note=f"informational: ideal {ideal:.1f} s / span {span:.2f} s; "
                f"client wall {run.wall_s:.2f} s" + ("" if delivered else "; NOT ALL DELIVERED"),
                detail=detail,
            )
        )
