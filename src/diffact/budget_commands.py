"""``diffact budget``: what a profile's workflow costs (jobs, images, U-Net passes, training iterations, disk and
memory per stage), from its plan and the per-unit costs of ``benchmarks/bench_paper_scale.py``. See
:mod:`diffact.budget`."""

from __future__ import annotations

import json


def register(subparsers) -> None:
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
