"""CLI: ``diffact usage-report`` — wall time and peak memory per kind of job, from a run's logs."""

from __future__ import annotations


def register(subparsers) -> None:
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
