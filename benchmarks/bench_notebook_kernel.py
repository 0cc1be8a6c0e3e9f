"""CPU of the demo's notebook jobs with the `diffact` kernel (a fork of the preload server) against ipykernel's own
launcher (a fresh kernel process: the kernelspec `make install` wrote before), both through one preload server.

    python benchmarks/bench_notebook_kernel.py --run /work/demo-cold2 [--limit 6]

``--run`` is a finished demo run (its results/ are read, never written): the notebook commands are the ones
`snakemake -n -p --forceall` prints there, each run in a scratch folder per kernel (results/ linked, outputs
written there), the two kernels alternating job by job. A job's CPU is user + sys of every process it ran: the
client's waited children and the server's reaped forks (/proc/<server>/stat). Prints each job, the sums, their
ratio, and whether every figure and table file is byte-identical between the two kernels.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diffact.utils.preload import SOCKET_ENV
from diffact.viz import kernel

DIFFACT = str(Path(sys.executable).with_name("diffact"))
TICK = os.sysconf("SC_CLK_TCK")


def notebook_commands(run: Path) -> list[str]:
    out = subprocess.run(["snakemake", "-n", "-p", "--forceall"], cwd=run, capture_output=True, text=True,
                         check=True).stdout
    return [line.removeprefix("Shell command: ") for line in out.splitlines()
            if line.startswith("Shell command: diffact") and " notebook " in line]


def kernelspec_folder(root: Path, argv_tail: list[str]) -> str:
    """A Jupyter data folder whose `diffact` kernelspec runs ``python argv_tail``."""
    folder = root / "kernels" / kernel.KERNEL
    folder.mkdir(parents=True)
    spec = {**kernel.kernelspec(), "argv": [sys.executable, *argv_tail, "-f", "{connection_file}"]}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return str(root)


def scratch(run: Path, root: Path) -> Path:
    (root / "results").mkdir(parents=True)
    for entry in (run / "results").iterdir():
        if entry.name not in ("notebooks", "logs"):
            (root / "results" / entry.name).symlink_to(entry)
    (root / "notebooks").symlink_to(run / "notebooks")
    return root


def reaped_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a finished demo run (read only)")
    parser.add_argument("--limit", type=int, default=None, help="the first N notebook jobs only")
    args = parser.parse_args()
    commands = notebook_commands(args.run.resolve())[: args.limit]
    with tempfile.TemporaryDirectory(prefix="bench-nbkernel-") as tmp:
        tmp = Path(tmp)
        kernels = {"ipykernel": kernelspec_folder(tmp / "spec-ipykernel", ["-m", "ipykernel_launcher"]),
                   "diffact": kernelspec_folder(tmp / "spec-diffact", ["-m", "diffact.viz.kernel"])}
        roots = {name: scratch(args.run.resolve(), tmp / name) for name in kernels}
        socket_path = str(tmp / "socket")
        env = {k: v for k, v in os.environ.items() if k not in (SOCKET_ENV, "JUPYTER_PATH")}
        server = subprocess.Popen([DIFFACT, "preload-server", "--socket", socket_path], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(socket_path):
                time.sleep(0.1)
            totals = {name: 0.0 for name in kernels}
            for i, command in enumerate(commands):
                for name in (list(kernels) if i % 2 == 0 else list(kernels)[::-1]):
                    job_env = {**env, SOCKET_ENV: socket_path, "JUPYTER_PATH": kernels[name]}
                    before = children_cpu() + reaped_cpu(server.pid)
                    done = subprocess.run(shlex.split(command), cwd=roots[name], env=job_env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    cpu = children_cpu() + reaped_cpu(server.pid) - before
                    totals[name] += cpu
                    print(f"{name:9s} rc={done.returncode} {cpu:6.2f} CPU s  {shlex.split(command)[4]}", flush=True)
        finally:
            server.terminate()
            server.wait()
        print("sums: " + ", ".join(f"{name} {cpu:.2f} CPU s" for name, cpu in totals.items())
              + f" over {len(commands)} notebook jobs; diffact/ipykernel = {totals['diffact'] / totals['ipykernel']:.2f}")
        first, second = (roots[name] / "paper_figures" for name in kernels)
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        same = [f for f in files if (second / f).is_file() and filecmp.cmp(first / f, second / f, shallow=False)]
        print(f"figure and table files byte-identical between the kernels: {len(same)} of {len(files)}")
        shutil.rmtree(tmp / "ipykernel", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
