"""``python -m bench run [--scenario NAME] [--quick]`` and ``python -m bench report``."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._store import DB_PATH, RESULTS_DIR, Figure, Store, latest, rows_of_run
from bench._table import summary as _summary

_log = logging.getLogger("bench")

SCENARIOS = ("throughput", "replicas", "iobound", "memory", "coldstart", "runtime",
             "learning", "modelcall", "concurrency", "request_cpu", "wire", "tracing",
             "sandbox")


def _runner(name: str, quick: bool, delays: list[float] | None,
            sim_failure: str = "tries") -> Callable[[Path], list[Figure]]:
    from bench._concurrency import run_concurrency
    from bench._footprint import run_cold_start, run_memory
    from bench._learning import SIM_DELAY_S, run_learning
    from bench._modelcall import run_modelcall
    from bench._request_cpu import run_request_cpu
    from bench._runtime import run_runtime
    from bench._sandbox import run_sandbox
    from bench._throughput import run_io_bound_scaling, run_scaling, run_throughput
    from bench._tracing import run_tracing
    from bench._wire_bytes import run_wire

    match name:
        case "throughput":
            chosen = delays if delays is not None else ([0.0] if quick else [0.0, 0.2])
            return lambda d: run_throughput(d, quick=quick, delays=chosen)
        case "replicas":
            return lambda d: run_scaling(d, quick=quick, delays=delays or [0.0])
        case "runtime":
            return lambda d: run_runtime(d, quick=quick)
        case "memory":
            return lambda d: run_memory(d, quick=quick)
        case "iobound":
            return lambda d: run_io_bound_scaling(d, quick=quick)
        case "modelcall":
            return lambda d: run_modelcall(d, quick=quick)
        case "wire":
            return lambda d: run_wire(d, quick=quick)
        case "tracing":
            return lambda d: run_tracing(d, quick=quick)
        case "sandbox":
            return lambda d: run_sandbox(d, quick=quick)
        case "concurrency":
            return lambda d: run_concurrency(d, quick=quick)
        case "request_cpu":
            return lambda d: run_request_cpu(d, quick=quick)
        case "learning":
            return lambda d: run_learning(d, quick=quick, delay_s=(delays or [SIM_DELAY_S])[0],
                                          failure=sim_failure)
        case _:
            return lambda d: run_cold_start(d, quick=quick)


def summary(rows: list[dict[str, Any]]) -> str:
    """The targets (``bench._scorecard``), then every scenario's section of ``rows``
    (``bench._table``), then the learning, model-call and concurrency ones."""
    from bench._concurrency import concurrency_table
    from bench._learning_table import learning_table
    from bench._modelcall import modelcall_table
    from bench._request_cpu import request_cpu_table
    from bench._scorecard import scorecard
    from bench._wire_bytes import wire_table

    parts = (scorecard(rows), _summary(rows), learning_table(rows), modelcall_table(rows),
             concurrency_table(rows), request_cpu_table(rows), wire_table(rows))
    return "\n\n".join(part for part in parts if part)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the chosen scenarios, save each one's figures as soon as it ends, print a summary."""
    names = [args.scenario] if args.scenario else list(SCENARIOS)
    delays = [float(x) for x in args.delays.split(",")] if args.delays else None
    store = Store(Path(args.db))
    failed = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        for name in names:
            _log.info("scenario %s (%s)", name, "quick" if args.quick else "full")
            t0 = time.monotonic()
            try:
                figures = _runner(name, args.quick, delays, args.sim_failure)(Path(tmp) / name)
            except Exception:
                _log.exception("scenario %s failed", name)
                failed.append(name)
                continue
            store.save(figures)
            _log.info("scenario %s done in %.0f s: %d figures", name, time.monotonic() - t0,
                      len(figures))
    if not args.scenario:
        store.save([Figure(scenario="run", metric="wall", value=time.monotonic() - started,
                           unit="s", params={"quick": args.quick, "failed": failed})])
    print(f"\nBench run {store.run_id} at commit {store.commit}, "
          f"{time.monotonic() - started:.0f} s, figures in {store.path}\n")
    print(summary(rows_of_run(store.run_id, store.path)))
    if failed:
        print(f"FAILED scenarios: {', '.join(failed)} (see the log above)")
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print the latest figures of every scenario and draw the PNG plots (tables only, with a
    hint, when matplotlib — the ``bench`` extra — is not installed)."""
    rows = latest(Path(args.db))
    if not rows:
        print(f"No figures in {args.db}: run `python -m bench run --quick` first.")
        return 1
    runs = sorted({(r["scenario"], r["run_id"], r["git_commit"]) for r in rows})
    for scenario, run_id, commit in runs:
        print(f"{scenario}: run {run_id}, commit {commit}")
    print()
    print(summary(rows))
    try:
        from bench._plots import draw_all
    except ImportError:
        print("\n(no plots: `uv sync --locked --extra test --extra bench` installs matplotlib "
              "for them)")
        return 0
    for path in draw_all(rows, Path(args.out)):
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--db", default=str(DB_PATH), help=f"DuckDB file (default {DB_PATH})")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="drive load through a real Switchboard")
    run.add_argument("--scenario", choices=SCENARIOS, help="one scenario (default: all)")
    run.add_argument("--quick", action="store_true",
                     help="fewer requests and attempts: all scenarios in about 2 minutes")
    run.add_argument("--delays", help="simulated model latencies in seconds, comma-separated "
                     "(default: 0 with --quick, else 0,0.2 for throughput, 0 for replicas; "
                     "learning takes the first, default 0.05)")
    run.add_argument("--sim-failure", choices=("tries", "stuck"), default="tries",
                     help="learning: how the simulated model fails below a task's tier: tries "
                     "(2 low-confidence turns, then escalation; default) or stuck (escalates "
                     "at once)")
    run.set_defaults(func=cmd_run)
    report = commands.add_parser("report", help="print the latest figures and draw PNGs")
    report.add_argument("--out", default=str(RESULTS_DIR), help="where to write the PNGs")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("nats").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
