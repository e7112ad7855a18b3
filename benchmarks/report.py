"""The results for people: the machine they came from, the Markdown table, the SVG plot."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from pathlib import Path
from typing import Any

from benchmarks.context import Row
from benchmarks.sections.latency import CONCURRENCIES


def loadavg() -> list[float]:
    """The load averages over 1, 5 and 15 minutes, to two places."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """What this ran on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": cpus,
        "cpu_model": model or platform.processor() or "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": loadavg(),
    }


def table(rows: list[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| section | measure | value | target | met | notes |",
        "|---|---|---:|---|---|---|",
    ]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.section} | {row.measure.strip()} | {row.shown()} | {row.target} | {met} "
            f"| {row.note} |"
        )
    return "\n".join(lines)


def efficiency_svg(points: list[dict[str, float]], title: str) -> str:
    """Efficiency against concurrency as a small standalone SVG (log2 x axis)."""
    width, height = 640, 420
    left, right, top, bottom = 70, 50, 50, 100
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [math.log2(c) for c in CONCURRENCIES]
    x_min, x_max = min(xs), max(xs)

    def px(concurrency: float) -> float:
        return left + (math.log2(concurrency) - x_min) / (x_max - x_min) * plot_w

    def py(value: float) -> float:
        return top + (1.0 - min(max(value, 0.0), 1.05) / 1.05) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="14">{title}</text>',
    ]
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = py(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:.1f}</text>')
    for concurrency in CONCURRENCIES:
        x = px(concurrency)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{concurrency}</text>'
        )
    parts += [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 38}" text-anchor="middle">'
        "concurrency (requests in flight)</text>",
        f'<text x="18" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + plot_h / 2})">efficiency (ideal / measured)</text>',
    ]
    series = (
        ("efficiency", "#1f5fbf", "server span (first arrival to last answer)"),
        ("wall", "#d2691e", "client process wall time"),
    )
    for index, (key, colour, label) in enumerate(series):
        coords = [(px(p["concurrency"]), py(p[key])) for p in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        dash = "" if index == 0 else ' stroke-dasharray="4 3"'
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        for (x, y), point in zip(coords, points, strict=True):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            if index == 0:
                parts.append(
                    f'<text x="{x + 6:.1f}" y="{y - 8:.1f}" fill="{colour}">{point[key]:.2f}</text>'
                )
        legend_y = top + plot_h + 62 + index * 18
        parts.append(
            f'<line x1="{left + 16}" y1="{legend_y}" x2="{left + 46}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{left + 52}" y="{legend_y + 4}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
