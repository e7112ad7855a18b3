"""The sections of the benchmark by name, in the order they run."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.context import Context
from benchmarks.sections.cost import bench_cost
from benchmarks.sections.latency import bench_latency
from benchmarks.sections.peers import bench_peers
from benchmarks.sections.polite import bench_polite
from benchmarks.sections.ratelimit import bench_ratelimit
from benchmarks.sections.startup import bench_startup
from benchmarks.sections.wall import bench_wall

RUNNERS: dict[str, Callable[[Context], None]] = {
    "wall": bench_wall,
    "cost": bench_cost,
    "startup": bench_startup,
    "polite": bench_polite,
    "ratelimit": bench_ratelimit,
    "latency": bench_latency,
    "peers": bench_peers,
}
SECTIONS = tuple(RUNNERS)
