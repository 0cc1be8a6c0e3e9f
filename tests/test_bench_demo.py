"""benchmarks/bench_demo.py: per-rule wall time and peak RSS from Snakemake's job records and diffact's usage lines."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_demo", ROOT / "benchmarks" / "bench_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(work: Path, output: str, rule: str, start: float, end: float, log: str | None, incomplete=False):
    meta = work / ".snakemake" / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    name = base64.b64encode(output.encode()).decode()
    (meta / name).write_text(json.dumps({"rule": rule, "log": [log] if log else [], "starttime": start,
                                         "endtime": end, "incomplete": incomplete}))


def _usage(work: Path, log: str, rss: int, child: int) -> None:
    path = work / log
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("2026-12-07 07:00:00,000 INFO diffact: working\n"
                    f"2026-12-07 07:00:01 INFO diffact.usage: usage: command=extract wall_s=3.0 peak_rss_mb={rss} "
                    f"children_peak_rss_mb={child} exit=0\n")


def test_jobs_are_counted_once_and_rules_ranked_by_summed_wall_time(tmp_path, capsys):
    bench = _bench()
    # one extract job with two outputs (counted once), a second extract job, a notebook job without a usage line,
    # and an unfinished job (left out)
    _record(tmp_path, "results/a/store/complete.json", "extract", 100.0, 160.0, "results/logs/a.log")
    _record(tmp_path, "results/a/store/meta.json", "extract", 100.0, 160.0004, "results/logs/a.log")  # same job
    _record(tmp_path, "results/b/store/complete.json", "extract", 170.0, 190.5, "results/logs/b.log")
    _record(tmp_path, "paper_figures/fig.png", "fig03_properties", 200.0, 270.0, "results/logs/fig.log")
    _record(tmp_path, "results/c.csv", "pck_screen", 300.0, 301.0, None, incomplete=True)
    _usage(tmp_path, "results/logs/a.log", rss=900, child=1200)
    _usage(tmp_path, "results/logs/b.log", rss=700, child=0)
    (tmp_path / "results/logs/fig.log").write_text("papermill output\n")

    jobs = bench.job_table(tmp_path)
    assert list(jobs["rule"]) == ["extract", "extract", "fig03_properties"]
    assert list(jobs["outputs"]) == [2, 1, 1]
    assert list(jobs["wall_s"]) == [60.0, 20.5, 70.0]  # rounded to 0.1 s
    assert jobs["peak_rss_mb"].tolist()[:2] == [1200.0, 700.0] and pd.isna(jobs["peak_rss_mb"].iloc[2])

    rules = bench.rule_table(jobs)
    assert list(rules["rule"]) == ["extract", "fig03_properties"]  # 80.5 s summed before 70 s
    assert rules.iloc[0][["jobs", "wall_s", "max_wall_s", "peak_rss_mb"]].tolist() == [2, 80.5, 60.0, 1200.0]

    assert bench.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "bench")]) == 0
    written = pd.read_csv(tmp_path / "bench" / "demo_rules.csv")
    assert len(written) == 3 and (tmp_path / "bench" / "demo_rules_by_rule.csv").is_file()
    assert "3 jobs of 2 rules" in capsys.readouterr().out


def test_no_finished_run_is_one_line_and_exit_1(tmp_path, capsys):
    assert _bench().main(["--workdir", str(tmp_path), "--out", str(tmp_path / "bench")]) == 1
    assert "no finished Snakemake jobs" in capsys.readouterr().err
