"""Per-rule wall time and peak memory of a workflow run, so the next slow rule is visible (issue #19 point 5).

Reads what a finished run left behind, nothing is re-run unless ``--run`` is given:
  * Snakemake's job records (``.snakemake/metadata/``: one JSON per output file with the job's rule, log, start
    and end time; a job with several outputs appears once per output and is counted once), for the wall time of
    every job as Snakemake saw it (imports, model loads and notebook kernels included);
  * the ``usage:`` line ``diffact`` writes last into each job's log (:mod:`diffact.usage`) for its peak RSS (the
    larger of the command and its reaped children: notebook kernels, mmseg workers). A job whose log has no such
    line (a rule that does not call ``diffact``) gets an empty peak.

Writes ``results/bench/demo_rules.csv`` (one row per job) and ``results/bench/demo_rules_by_rule.csv`` (jobs, summed
and largest wall time, largest peak RSS per rule, slowest first) and prints the slowest rules:

    python benchmarks/bench_demo.py [--run] [--cores 2] [--top 10] [--out results/bench]

``--run`` first runs the whole workflow of the active profile (``snakemake --cores N``) in this folder; for a cold
measurement start from a fresh clone (``make reproduce`` does the same). Records of earlier runs of the same outputs
are replaced by Snakemake, so the table always describes the latest job of each output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from diffact.usage import USAGE_LINE

JOB_COLUMNS = ["rule", "log", "start", "wall_s", "peak_rss_mb", "outputs"]


def job_records(metadata_dir: str | Path) -> list[dict]:
    """One record per finished job: its rule, first log file, start time and wall seconds, from Snakemake's
    per-output metadata (outputs of one job share rule, start and end time)."""
    jobs: dict[tuple, dict] = {}
    for path in sorted(Path(metadata_dir).glob("*")):
        try:
            record = json.loads(path.read_text())
        except (ValueError, OSError):
            continue  # a record being written, or not Snakemake's
        if record.get("incomplete") or record.get("starttime") is None or record.get("endtime") is None:
            continue
        logs = record.get("log") or []
        # A job's outputs carry its log (unique per job: every rule names one with its wildcards); their times agree
        # to the millisecond, not to the last digit, so they cannot be the key on their own.
        key = (record["rule"], tuple(logs)) if logs else (record["rule"], round(record["starttime"], 1))
        job = jobs.setdefault(key, {"rule": record["rule"], "log": logs[0] if logs else "",
                                    "start": record["starttime"], "end": record["endtime"], "outputs": 0})
        job["start"], job["end"] = min(job["start"], record["starttime"]), max(job["end"], record["endtime"])
        job["outputs"] += 1
    for job in jobs.values():
        job["wall_s"] = job.pop("end") - job["start"]
    return sorted(jobs.values(), key=lambda job: job["start"])


def peak_rss_mb(log: str | Path) -> float | None:
    """The peak RSS (MB) of the last ``diffact`` usage line of a job log, or None."""
    path = Path(log)
    if not log or not path.is_file():
        return None
    found = USAGE_LINE.findall(path.read_text(errors="replace"))
    if not found:
        return None
    _command, _wall, rss, child, _code = found[-1]
    return max(float(rss), float(child))


def job_table(workdir: str | Path = ".") -> pd.DataFrame:
    workdir = Path(workdir)
    rows = [{**job, "peak_rss_mb": peak_rss_mb(workdir / job["log"]) if job["log"] else None}
            for job in job_records(workdir / ".snakemake" / "metadata")]
    table = pd.DataFrame(rows, columns=JOB_COLUMNS)
    table["wall_s"] = table["wall_s"].round(1)
    return table


def rule_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, summed and largest wall seconds, largest peak RSS (MB); slowest (summed) first."""
    if jobs.empty:
        return pd.DataFrame(columns=["rule", "jobs", "wall_s", "max_wall_s", "peak_rss_mb"])
    grouped = jobs.groupby("rule").agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"),
                                       max_wall_s=("wall_s", "max"), peak_rss_mb=("peak_rss_mb", "max"))
    grouped = grouped.reset_index().sort_values(["wall_s", "rule"], ascending=[False, True], kind="mergesort")
    grouped["wall_s"] = grouped["wall_s"].round(1)
    return grouped.reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="run the whole workflow first (snakemake --cores N)")
    parser.add_argument("--cores", default="2", help="with --run: snakemake --cores (default 2)")
    parser.add_argument("--workdir", default=".", help="the workflow's folder (default: here)")
    parser.add_argument("--out", default="results/bench", help="folder of demo_rules.csv (default results/bench)")
    parser.add_argument("--top", type=int, default=10, help="slowest rules printed (default 10)")
    args = parser.parse_args(argv)
    if args.run:
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", args.cores], cwd=args.workdir, check=True)
    jobs = job_table(args.workdir)
    if jobs.empty:
        print(f"no finished Snakemake jobs under {Path(args.workdir) / '.snakemake' / 'metadata'}", file=sys.stderr)
        return 1
    from diffact.utils.io import write_csv

    out = Path(args.out)
    write_csv(out / "demo_rules.csv", jobs)
    rules = rule_table(jobs)
    write_csv(out / "demo_rules_by_rule.csv", rules)
    span = (jobs["start"] + jobs["wall_s"]).max() - jobs["start"].min()
    print(f"{len(jobs)} jobs of {len(rules)} rules; summed job time {jobs['wall_s'].sum():.0f} s, "
          f"first start to last end {span:.0f} s")
    print(rules.head(args.top).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
