"""The span of a workflow run, replayed from measured job times on today's DAG and threads (issue #19 point 1).

A cold demo run is ~50 minutes; this answers "what would the span be if jobs ran side by side / took less"
in seconds, without running it. It reads:
  * the DAG of the active profile (every job with ``--forceall``), its jobs' logs, dependencies and threads, from
    Snakemake itself (same Snakefile, config and ``--cores``), so thread changes in the config are seen;
  * a ``demo_rules.csv`` of a finished run (``benchmarks/bench_demo.py``): each job's wall time, found by its log.
    A job the old run did not have takes its rule's median; a rule it never ran, ``--missing`` seconds.

and replays the jobs on ``--cores`` cores: a job starts when its inputs are done and its threads are free, the
ready job with the longest remaining path first (Snakemake's own order differs in detail: compare a replay of the
old DAG with the old run's span before trusting a difference). ``--scale rule=F`` multiplies a rule's times
(a measured speed-up), ``--add rule=S`` adds seconds per job (negative: a measured saving), ``--threads rule=N``
overrides a rule's threads. Wall times measured on a busy machine stay busy-machine times; the replay only moves
them. Prints the span, the time with 0/1/2 jobs running, and the critical path.

    python benchmarks/simulate_demo_span.py --times /work/demo-run/results/bench/demo_rules.csv [--cores 2]
"""

from __future__ import annotations

import argparse
import collections
import heapq
import statistics
import sys
from pathlib import Path

import pandas as pd


def workflow_jobs(cores: int, snakefile: str = "Snakefile") -> list[dict]:
    """Every job of the DAG (``--forceall``): rule, log, threads and the indices of the jobs it waits for."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import DAGSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(resource_settings=ResourceSettings(cores=cores), snakefile=Path(snakefile))
        workflow_api.dag(dag_settings=DAGSettings(forceall=True))
        workflow = workflow_api._workflow
        workflow.dag_settings = DAGSettings(forceall=True)
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        dag = workflow.dag
        jobs = [job for job in dag.jobs if job.rule.name != "all"]
        index = {job: i for i, job in enumerate(jobs)}
        return [{"rule": job.rule.name, "log": str(job.log[0]) if job.log else "", "threads": int(job.threads),
                 "needs": sorted(index[dep] for dep in dag.dependencies[job] if dep in index)} for job in jobs]


def pairs(values: list[str], cast) -> dict:
    out = {}
    for value in values:
        name, _, number = value.partition("=")
        out[name] = cast(number)
    return out


def job_times(jobs: list[dict], measured: pd.DataFrame, scale: dict, add: dict, missing: float) -> list[float]:
    by_log = dict(zip(measured["log"], measured["wall_s"]))
    by_rule = measured.groupby("rule")["wall_s"].apply(list).to_dict()
    times = []
    for job in jobs:
        wall = by_log.get(job["log"])
        if wall is None:
            wall = statistics.median(by_rule[job["rule"]]) if job["rule"] in by_rule else missing
        times.append(max(0.0, wall * scale.get(job["rule"], 1.0) + add.get(job["rule"], 0.0)))
    return times


def replay(jobs: list[dict], times: list[float], cores: int) -> dict:
    """List scheduling: ready jobs by longest remaining path; returns span, busy profile and the critical path."""
    children = collections.defaultdict(list)
    for i, job in enumerate(jobs):
        for dep in job["needs"]:
            children[dep].append(i)
    remaining: dict[int, float] = {}
    order = topological(jobs)
    for i in reversed(order):
        remaining[i] = times[i] + max((remaining[c] for c in children[i]), default=0.0)
    waiting = {i: len(job["needs"]) for i, job in enumerate(jobs)}
    ready = [(-remaining[i], i) for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    now, free, finish = 0.0, cores, {}
    profile = collections.Counter()
    while ready or running:
        started = True
        while started:
            started = False
            for entry in sorted(ready):
                i = entry[1]
                need = min(jobs[i]["threads"], cores)
                if need <= free:
                    ready.remove(entry)
                    heapq.heapify(ready)
                    free -= need
                    heapq.heappush(running, (now + times[i], i))
                    started = True
                    break
        end, i = heapq.heappop(running)
        profile[len(running) + 1] += end - now
        now = end
        finish[i] = end
        free += min(jobs[i]["threads"], cores)
        for c in children[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (-remaining[c], c))
    path, i = [], max((j for j in remaining if not jobs[j]["needs"]), key=lambda j: remaining[j])
    while True:
        path.append(i)
        if not children[i]:
            break
        i = max(children[i], key=lambda c: remaining[c])
    return {"span": now, "profile": dict(profile), "path": path}


def topological(jobs: list[dict]) -> list[int]:
    done, order = set(), []

    def visit(i):
        if i in done:
            return
        done.add(i)
        for dep in jobs[i]["needs"]:
            visit(dep)
        order.append(i)

    for i in range(len(jobs)):
        visit(i)
    return order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", required=True, help="demo_rules.csv of a finished run (bench_demo.py)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--scale", nargs="*", default=[], metavar="RULE=F", help="multiply a rule's job times")
    parser.add_argument("--add", nargs="*", default=[], metavar="RULE=S", help="add seconds to each job of a rule")
    parser.add_argument("--threads", nargs="*", default=[], metavar="RULE=N", help="override a rule's threads")
    parser.add_argument("--missing", type=float, default=5.0, help="seconds of a job of a rule never measured")
    args = parser.parse_args(argv)
    sys.setrecursionlimit(10_000)
    jobs = workflow_jobs(args.cores)
    threads_override = pairs(args.threads, int)
    for job in jobs:
        job["threads"] = threads_override.get(job["rule"], job["threads"])
    measured = pd.read_csv(args.times)
    times = job_times(jobs, measured, pairs(args.scale, float), pairs(args.add, float), args.missing)
    result = replay(jobs, times, args.cores)
    threads = collections.Counter((job["rule"], job["threads"]) for job in jobs if job["threads"] > 1)
    print(f"{len(jobs)} jobs, summed job time {sum(times):.0f} s, replayed span on {args.cores} cores: "
          f"{result['span']:.0f} s")
    print("time with N jobs running: " + ", ".join(f"{n}: {s:.0f} s" for n, s in sorted(result["profile"].items())))
    print("jobs with more than one thread: " + ", ".join(f"{rule} ×{n} ({t} threads)" for (rule, t), n in
                                                          sorted(threads.items())))
    print("critical path: " + " → ".join(f"{jobs[i]['rule']} ({times[i]:.0f} s)" for i in result["path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
