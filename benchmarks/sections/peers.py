"""peers: ours against a sequential httpx script and split | xargs curl, on one server."""

from __future__ import annotations

import math
import shutil
import sys

from benchmarks.context import CHUNK, Context, Row, run_ours
from benchmarks.launcher import HERE, Measured, run_measured
from benchmarks.sections.latency import LATENCY_S
from benchmarks.server import Sandbox

PEER_CONCURRENCY = 8


def bench_peers(ctx: Context) -> None:
    """Ours at concurrency 8, the sequential script and split | xargs curl, one server."""
    path = ctx.handles_file(ctx.handles)
    runs: dict[str, Measured] = {}
    campaigns: dict[str, str] = {}
    notes: dict[str, str] = {}
    curl = shutil.which("curl")
    with Sandbox("--latency", str(LATENCY_S)) as server:
        env = server.env()
        campaigns["ours"] = ctx.campaign("peerours")
        runs["ours"], _ = run_ours(
            ctx, server, path, campaigns["ours"], "--concurrency", str(PEER_CONCURRENCY)
        )
        campaigns["sequential"] = ctx.campaign("peerseq")
        runs["sequential"] = run_measured(
            [sys.executable, str(HERE / "peer_sequential.py"), campaigns["sequential"], str(path)],
            env=env,
            cwd=ctx.work,
        )
        if curl is None:
            notes["xargs"] = "skipped: curl is not installed"
        else:
            campaigns["xargs"] = ctx.campaign("peerxargs")
            chunks = ctx.work / "chunks"
            shutil.rmtree(chunks, ignore_errors=True)
            chunks.mkdir()
            runs["xargs"] = run_measured(
                ["sh", str(HERE / "peer_xargs.sh"), campaigns["xargs"], str(path), str(chunks)],
                env=env,
                cwd=ctx.work,
            )
            codes = runs["xargs"].stdout.split()
            bad = [c for c in codes if c != "200"]
            if bad:
                notes["xargs"] = f"{len(bad)} of {len(codes)} requests not 200"
        held = server.state()["campaigns"]
        members = {
            name: held.get(campaign, {}).get("members", 0) for name, campaign in campaigns.items()
        }
    ours = runs["ours"]
    batches = math.ceil(ctx.handles / CHUNK)
    ideal = {
        "ours": math.ceil(batches / PEER_CONCURRENCY) * LATENCY_S,
        "sequential": batches * LATENCY_S,
        "xargs": math.ceil(batches / 8) * LATENCY_S,
    }
    for name in ("sequential", "xargs"):
        peer = runs.get(name)
        label = "sequential httpx script" if name == "sequential" else "split + xargs -P 8 curl"
        if peer is None:
            ctx.add(Row("peers", f"{label}: skipped", None, "", note=notes.get(name, "")))
            continue
        complete = peer.returncode == 0 and members.get(name) == ctx.handles
        note = notes.get(name, "") or ("" if complete else f"exit {peer.returncode}, incomplete")
        detail = {
            "peer": name,
            "peer_wall_s": round(peer.wall_s, 3),
            "peer_cpu_s": round(peer.cpu_s, 3),
            "peer_maxrss_mb": round(peer.maxrss_mb, 1),
            "ours_wall_s": round(ours.wall_s, 3),
            "ours_cpu_s": round(ours.cpu_s, 3),
            "ours_maxrss_mb": round(ours.maxrss_mb, 1),
            "members": members.get(name),
            "complete": complete,
            "peer_ideal_s": round(ideal[name], 3),
            "ours_ideal_s": round(ideal["ours"], 3),
        }
        ctx.add(
            Row(
                "peers",
                f"wall: ours (c=8) / {label}",
                ours.wall_s / peer.wall_s,
                "x",
                note=f"{ours.wall_s:.2f} s vs {peer.wall_s:.2f} s; ideal/wall "
                f"{ideal['ours'] / ours.wall_s:.2f} vs {ideal[name] / peer.wall_s:.2f}"
                + (f"; {note}" if note else ""),
                detail=detail,
            )
        )
        ctx.add(
            Row(
                "peers",
                f"CPU: ours (c=8) / {label}",
                ours.cpu_s / peer.cpu_s,
                "x",
                note=f"{ours.cpu_s:.2f} s vs {peer.cpu_s:.2f} s (user+sys, children included)",
                detail=detail,
            )
        )
    if members.get("ours") != ctx.handles:
        ctx.add(Row("peers", "ours: incomplete", None, "", note=f"members {members.get('ours')}"))
