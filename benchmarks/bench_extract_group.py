"""The demo's feature stores written one ``diffact extract`` job per store against one ``diffact extract-group`` job
per model and layer set (issue #19 point 1), in one run on one machine.

Each mode runs the workflow's own commands (diffact.workflow: ``extract_args`` per store, ``extract_groups`` per
group) one after another in its own work folder, whose ``results/models`` and ``results/data`` are copied from
``--from`` (a finished demo run's results: the demo models and datasets). Prints per mode the jobs and their summed
CPU time (user + system of each child, getrusage; wall times on a shared machine say little), then checks that the
two modes' stores are byte-identical, file by file.

    python benchmarks/bench_extract_group.py --from /path/to/demo/results [--config config/config.yaml]
"""

from __future__ import annotations

import argparse
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from diffact import workflow as wf


def commands(config: dict, mode: str) -> list[list[str]]:
    """The extraction commands of the profile's stores: per store (``store``) or per group (``layer_set``)."""
    config = {**config, "extraction": {**config["extraction"], "group": mode}}
    groups = wf.stores.extract_groups(config)
    grouped = {done for group in groups for done in group.done_files(config)}
    out = [["extract-group", *shlex.split(group.store_args(config))] for group in groups]
    seen = set(grouped)
    for dataset, model, layer_set, _ in wf.stores.requested_stores(config):
        done = wf.store_done(config, dataset, model, layer_set)
        if done not in seen:
            seen.add(done)
            out.append(["extract", *shlex.split(wf.extract_args(config, dataset, model, layer_set)),
                        "--out", str(Path(done).parent), "--check-key"])
    return out


def run_mode(config: dict, mode: str, source: Path, work: Path) -> tuple[int, float, float]:
    """(jobs, CPU seconds, wall seconds) of one mode's commands run in ``work``."""
    results = work / config.get("results", "results")
    results.mkdir(parents=True)
    for part in ("models", "data"):
        shutil.copytree(source / part, results / part, symlinks=True)
    jobs = commands(config, mode)
    cpu = wall = 0.0
    for argv in jobs:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "diffact.cli", *argv], cwd=work, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall += time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return len(jobs), cpu, wall


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", required=True, type=Path,
                        help="a demo run's results folder (its models/ and data/ are copied)")
    parser.add_argument("--config", default="config/config.yaml")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    with tempfile.TemporaryDirectory(prefix="bench_extract_group_") as tmp:
        measured = {}
        for mode in ("store", "layer_set"):
            jobs, cpu, wall = run_mode(config, mode, args.source, Path(tmp) / mode)
            measured[mode] = cpu
            print(f"{mode:9s}: {jobs:3d} jobs, {cpu:7.1f} CPU s ({cpu / jobs:5.1f} per job), {wall:7.1f} s wall")
        print(f"CPU time store / layer_set: {measured['store'] / measured['layer_set']:.2f}x")
        features = [files(Path(tmp) / mode / config.get("results", "results") / "features") for mode in ("store", "layer_set")]
        same = features[0] == features[1]
        print(f"stores byte-identical: {same} ({len(features[0])} files)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
