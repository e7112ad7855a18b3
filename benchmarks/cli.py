"""The command line: options, the run of the sections, the results."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

from benchmarks.context import Context, Row, client_command
from benchmarks.launcher import ROOT, cleanup_children, compile_package, terminate_on_signals
from benchmarks.report import efficiency_svg, loadavg, machine, table
from benchmarks.sections import RUNNERS, SECTIONS
from benchmarks.sections.latency import CONCURRENCIES, LATENCY_S

DEFAULT_SVG = ROOT / "docs" / "benchmark-efficiency.svg"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        # The same name however it was started (`python -m benchmarks` would show
        # `__main__.py`).
        prog="run.py",
        description="Benchmark inboxleads against the sandbox server on loopback.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100,000 handles for wall, latency and peers (cost keeps 1,000,000), shorter runs",
    )
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"sections to run, of: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the results as JSON to PATH (or stdout, and the table to stderr)",
    )
    parser.add_argument(
        "--svg",
        metavar="PATH",
        help=f"write the efficiency plot here (default with 1,000,000 handles: {DEFAULT_SVG})",
    )
    parser.add_argument(
        "--handles",
        type=int,
        help="identifiers per run of cost, latency and peers (default 1,000,000; "
        "100,000 for latency and peers with --quick)",
    )
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    args.sections = [name for name in SECTIONS if name in names]
    return args


@contextlib.contextmanager
def stdout_to_stderr(active: bool) -> Iterator[None]:
    """Progress and the table go to stderr when stdout carries the JSON."""
    if not active:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    terminate_on_signals()
    handles = args.handles or (100_000 if args.quick else 1_000_000)
    # A million even with --quick: from 100,000, start-up and noise would swamp the ratio.
    cost_handles = args.handles or 1_000_000
    started = time.monotonic()
    failures: list[str] = []
    json_to_stdout = args.json == "-"
    with (
        stdout_to_stderr(json_to_stdout),
        tempfile.TemporaryDirectory(prefix="inboxleads-bench-") as work,
    ):
        ctx = Context(args.quick, Path(work), handles, cost_handles, client_command())
        compile_package()
        info = machine()
        print(
            f"inboxleads benchmarks ({'quick' if args.quick else 'full'}, {handles:,} handles) "
            f"on {info['nproc']} x {info['cpu_model']}, Python {info['python']}",
            flush=True,
        )
        if info["loadavg_at_start"][0] > 0.5:
            print(
                f"note: load average {info['loadavg_at_start'][0]} before starting: other "
                "processes are using the CPU, and wall-time ratios will suffer",
                flush=True,
            )
        interrupted: int | None = None
        try:
            for name in args.sections:
                section_start = time.monotonic()
                print(f"[{name}]", flush=True)
                try:
                    RUNNERS[name](ctx)
                except (RuntimeError, OSError, KeyError, ValueError) as exc:
                    failures.append(f"{name}: {exc}")
                    ctx.add(Row(name, "FAILED", None, "", met=False, note=str(exc)[:300]))
                print(f"  ({time.monotonic() - section_start:.1f} s)", flush=True)
        except KeyboardInterrupt:
            interrupted = 130
        except SystemExit as exc:  # SIGTERM or SIGHUP, see terminate_on_signals
            interrupted = exc.code if isinstance(exc.code, int) else 1
        finally:
            cleanup_children()
        if interrupted is not None:
            failures.append("interrupted")
            print("\ninterrupted: servers stopped; results so far:", flush=True)
        elapsed = time.monotonic() - started
        print()
        print(table(ctx.rows))
        print(f"\ntotal {elapsed:.1f} s")
        svg_path = Path(args.svg) if args.svg else None
        if svg_path is None and handles == 1_000_000 and "latency" in args.sections:
            svg_path = DEFAULT_SVG
        if svg_path is not None and len(ctx.latency_points) == len(CONCURRENCIES):
            title = f"Latency-bound efficiency: {handles:,} handles, {LATENCY_S:g} s per request"
            svg_path.parent.mkdir(parents=True, exist_ok=True)
            svg_path.write_text(efficiency_svg(ctx.latency_points, title), encoding="utf-8")
            print(f"plot written to {svg_path}")
    result = {
        "machine": info,
        "quick": args.quick,
        "handles": handles,
        "cost_handles": cost_handles,
        "sections": args.sections,
        "elapsed_s": round(elapsed, 1),
        "loadavg_at_end": loadavg(),
        "rows": [asdict(row) for row in ctx.rows],
        "failures": failures,
    }
    if args.json:
        text = json.dumps(result, indent=2)
        if json_to_stdout:
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    if interrupted is not None:
        return interrupted
    return 1 if failures else 0


def command_line() -> NoReturn:
    """`main` with its exit status, for `benchmarks/run.py` and `python -m benchmarks`."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before main's own handler is in place, or after it
        cleanup_children()
        sys.exit(130)
