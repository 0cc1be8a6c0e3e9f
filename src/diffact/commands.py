"""CLI of what a workflow run costs:

* ``diffact budget``       — what a profile's workflow costs (jobs, images, U-Net passes, training iterations,
  disk and memory per stage), from its plan and the per-unit costs of ``benchmarks/bench_paper_scale.py``
  (see :mod:`diffact.budget`);
* ``diffact usage-report`` — wall time and peak memory per kind of job, from a run's logs (see :mod:`diffact.usage`);
* ``diffact preload-server`` — the fork server a local workflow run starts (config ``preload``): the heavy imports
  once, each job's ``diffact`` command in a child of it (see :mod:`diffact.utils.preload`).
"""

from __future__ import annotations

import json
import time


def register(subparsers) -> None:
    _register_budget(subparsers)
    _register_usage_report(subparsers)
    _register_preload_server(subparsers)


def _register_preload_server(subparsers) -> None:
    p = subparsers.add_parser("preload-server", help="import torch/diffusers/mmseg once and run each job's diffact "
                                                     "command in a fork (a local workflow run starts it: config preload)")
    p.add_argument("--socket", required=True, metavar="PATH", help="the UNIX socket jobs connect to "
                   "(they find it in $DIFFACT_PRELOAD_SOCKET)")
    p.add_argument("--modules", help="comma-separated modules to import (default: diffact.utils.preload.PRELOAD_MODULES)")
    p.set_defaults(func=handle_preload_server)


def handle_preload_server(args) -> int:
    import logging

    from diffact import cli
    from diffact.utils import preload
    from diffact.viz.commands import skip_unused_iri_grammar

    skip_unused_iri_grammar()  # the notebook runner's imports are preloaded too, and it skips that grammar
    started = time.perf_counter()
    missing = preload.preload(args.modules.split(",") if args.modules else preload.PRELOAD_MODULES)
    logging.getLogger("diffact.preload").info(
        "preloaded in %.1f s%s; listening on %s", time.perf_counter() - started,
        f" (not installed: {', '.join(missing)})" if missing else "", args.socket)
    preload.serve(args.socket, run=cli.main)
    return 0


def _register_budget(subparsers) -> None:
    from diffact.budget import DEFAULT_BENCH

    p = subparsers.add_parser("budget", help="what a profile costs: jobs, U-Net passes, training, disk, memory per stage")
    p.add_argument("--config", required=True, help="profile, e.g. config/paper.yaml")
    p.add_argument("--bench", default=DEFAULT_BENCH,
                   help=f"per-unit costs from benchmarks/bench_paper_scale.py (default {DEFAULT_BENCH}); models it "
                        "does not hold are reported as not measured")
    p.add_argument("--no-bench", action="store_true", help="no benchmark file: shapes and counts only")
    p.add_argument("--sizes", help="published dataset sizes (default: the package's data/reference/dataset_sizes.yaml)")
    p.add_argument("--json", action="store_true", help="print the budget as JSON instead of tables")
    p.add_argument("--out", help="also write the JSON budget here")
    p.set_defaults(func=run_budget)


def run_budget(args) -> int:
    from diffact.budget import compute_budget, format_budget, load_bench, load_config, load_reference_sizes
    from diffact.utils.io import write_json

    config = load_config(args.config)
    bench = None if args.no_bench else load_bench(args.bench)
    budget = compute_budget(config, bench=bench, sizes=load_reference_sizes(args.sizes), config_path=args.config,
                            bench_path=None if args.no_bench else args.bench)
    if args.out:
        write_json(args.out, budget, sort_keys=False)
    print(json.dumps(budget, indent=2) if args.json else format_budget(budget), end="" if not args.json else "\n")
    return 0


def _register_usage_report(subparsers) -> None:
    parser = subparsers.add_parser("usage-report", help="jobs, wall time and peak RSS per log folder of a workflow run")
    parser.add_argument("--logs", required=True, metavar="DIR", help="the run's logs folder (e.g. results/rehearsal/logs)")
    parser.add_argument("--csv", metavar="FILE", help="also write the per-job rows as CSV")
    parser.set_defaults(func=handle_usage_report)


def handle_usage_report(args) -> int:
    from pathlib import Path

    from diffact.usage import markdown, read_usage, summarize
    from diffact.utils.errors import ConfigError

    if not Path(args.logs).is_dir():
        raise ConfigError(f"--logs {args.logs}: no such folder (expected a run's logs, e.g. results/rehearsal/logs)")
    rows = read_usage(args.logs)
    print(markdown(summarize(rows)), end="")
    if args.csv:
        import pandas as pd

        from diffact.utils.io import write_csv

        write_csv(args.csv, pd.DataFrame([row.__dict__ for row in rows]))
    return 0
