"""The notebooks' kernel (diffact.viz.kernel, kernelspec `diffact`): through the preload server a notebook job's
kernel is a fork of the server, and writes the bytes (and shows the outputs) a kernel in its own process does; it
costs the job little CPU; and no kernel outlives its notebook, whether the notebook succeeds, fails or its runner is
killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_for

from diffact.utils import preload
from diffact.viz import kernel

DIFFACT = str(Path(sys.executable).with_name("diffact"))
TICK = os.sysconf("SC_CLK_TCK")

# A notebook that shows what a fresh kernel decides at import (matplotlib's backend from MPLBACKEND, pandas'
# column limit from being in a kernel) and writes a figure, a table and that state.
NOTEBOOK = '''# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: diffact
#     language: python
#     name: diffact
# ---

# %% tags=["parameters"]
out_stem = "out/probe"
fail = False
sleep_s = 0

# %%
import os
import sys
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

wide = pd.DataFrame({f"a rather long column name {i}": np.arange(4) * i for i in range(30)})
wide

# %%
print("to stdout")
print("to stderr", file=sys.stderr)
fig, ax = plt.subplots(figsize=(3, 2))
sns.lineplot(x=np.arange(10), y=np.arange(10) ** 2, ax=ax)
fig.savefig(out_stem + ".png", metadata={"Software": None})
wide.to_csv(out_stem + ".csv")
state = {"backend": matplotlib.get_backend(), "max_columns": pd.get_option("display.max_columns"),
         "repr": repr(wide), "in_job_folder": os.path.exists("probe.py"), "path0": sys.path[0]}
with open(out_stem + ".json", "w") as fh:
    fh.write(repr(state))
time.sleep(sleep_s)
if fail:
    raise RuntimeError("this notebook fails on purpose")
'''


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory):
    """A Jupyter data folder holding the `diffact` kernelspec `make install` writes (the venv's is left alone)."""
    prefix = tmp_path_factory.mktemp("prefix")
    kernel.install_kernelspec(str(prefix))
    spec = json.loads((prefix / "share/jupyter/kernels/diffact/kernel.json").read_text())
    assert spec["argv"][1:] == ["-m", "diffact.viz.kernel", "-f", "{connection_file}"]
    return str(prefix / "share/jupyter")


@pytest.fixture
def server(preload_server):
    """The demo's preload server (conftest): its socket and process."""
    return preload_server


def notebook_job(folder: Path, jupyter_path: str, socket_path: str | None, *params: str,
                 wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    """`diffact notebook` as a rule runs it, in ``folder``, through the server at ``socket_path`` (or alone)."""
    folder.mkdir(exist_ok=True)
    (folder / "out").mkdir(exist_ok=True)
    (folder / "probe.py").write_text(NOTEBOOK)
    env = {k: v for k, v in os.environ.items() if k not in (preload.SOCKET_ENV, "MPLBACKEND", "JPY_PARENT_PID")}
    env["JUPYTER_PATH"] = jupyter_path
    if socket_path:
        env[preload.SOCKET_ENV] = socket_path
    argv = [DIFFACT, "notebook", "probe.py", "--executed", "executed.ipynb", "--outputs", "out/probe.png",
            *[a for p in params for a in ("-p", p)]]
    if not wait:
        return subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def processes_where(read_and_test) -> list[int]:
    """Pids of the live processes whose /proc folder passes ``read_and_test`` (a process that ends while it is
    read is skipped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if read_and_test(entry):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def children_of(pid: int) -> list[int]:
    return processes_where(lambda entry: int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid)


def kernel_clients(socket_path: str) -> list[int]:
    """The `python -m diffact.viz.kernel` processes whose environment names this server's socket."""
    marker = f"{preload.SOCKET_ENV}={socket_path}".encode()
    return processes_where(lambda entry: b"diffact.viz.kernel" in (entry / "cmdline").read_bytes()
                           and marker in (entry / "environ").read_bytes())


def reaped_cpu(pid: int) -> float:
    """CPU seconds (user + sys) of the children process ``pid`` has reaped (/proc/<pid>/stat cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / TICK


def cell_outputs(path: Path) -> list:
    return [cell.get("outputs", []) for cell in json.loads(path.read_text())["cells"]]


def test_a_notebook_through_the_server_writes_and_shows_what_it_does_alone(server, jupyter_path, tmp_path):
    socket_path, _ = server
    alone = notebook_job(tmp_path / "alone", jupyter_path, None)
    served = notebook_job(tmp_path / "served", jupyter_path, socket_path)
    assert alone.returncode == 0 and served.returncode == 0, (alone.stderr, served.stderr)
    for name in ("probe.png", "probe.csv", "probe.json"):
        assert (tmp_path / "alone/out" / name).read_bytes() == (tmp_path / "served/out" / name).read_bytes(), name
    state = (tmp_path / "served/out/probe.json").read_text()
    assert "matplotlib_inline" in state and "'max_columns': 20" in state  # what a fresh kernel chooses
    # the cells' outputs too (the DataFrame as the kernel shows it, the streams), executed notebook by notebook
    assert cell_outputs(tmp_path / "alone/executed.ipynb") == cell_outputs(tmp_path / "served/executed.ipynb")
    streams = [o for outputs in cell_outputs(tmp_path / "served/executed.ipynb") for o in outputs if "name" in o]
    assert [(o["name"], o["text"]) for o in streams] == [("stdout", ["to stdout\n"]), ("stderr", ["to stderr\n"])]


def test_a_notebook_job_through_the_server_costs_little_cpu(server, jupyter_path, tmp_path):
    """CPU of every process of the job: the client's (waited) children and the server's reaped forks. Measured on
    the loaded 2-core machine: 0.59 s with this kernel; 2.33 s with ipykernel's own launcher (kernelspec argv
    `python -m ipykernel_launcher`, what `make install` wrote before), whose fresh process imports ipykernel,
    matplotlib, pandas and seaborn anew."""
    socket_path, process = server
    notebook_job(tmp_path / "warm", jupyter_path, socket_path)  # the server's first fork touches its pages
    before_children = os.times()
    before_server = reaped_cpu(process.pid)
    done = notebook_job(tmp_path / "served", jupyter_path, socket_path)
    after_children = os.times()
    cpu = (after_children.children_user - before_children.children_user
           + after_children.children_system - before_children.children_system
           + reaped_cpu(process.pid) - before_server)
    assert done.returncode == 0, done.stderr
    assert cpu < 1.5, cpu


def test_no_kernel_outlives_its_notebook(server, jupyter_path, tmp_path):
    socket_path, process = server
    ok = notebook_job(tmp_path / "ok", jupyter_path, socket_path)
    failed = notebook_job(tmp_path / "failed", jupyter_path, socket_path, "fail=True")
    assert ok.returncode == 0, ok.stderr
    assert failed.returncode != 0 and "this notebook fails on purpose" in failed.stderr
    assert wait_for(lambda: not children_of(process.pid)), "a forked kernel outlived its notebook"
    assert not kernel_clients(socket_path)


def test_a_killed_runner_takes_its_kernel_along(server, jupyter_path, tmp_path):
    socket_path, process = server
    job = notebook_job(tmp_path / "killed", jupyter_path, socket_path, "sleep_s=120", wait=False)
    try:
        # the runner and its kernel are both forks of the server once the notebook runs
        assert wait_for(lambda: len(children_of(process.pid)) == 2 and (tmp_path / "killed/out/probe.json").exists(),
                        timeout_s=120), job.stderr
        job.send_signal(signal.SIGKILL)  # Snakemake killing the job: the server terminates the runner ...
        job.wait()
        # ... and the kernel, whose runner is gone, exits; so does its client
        assert wait_for(lambda: not children_of(process.pid)), "the kernel outlived its killed runner"
        assert wait_for(lambda: not kernel_clients(socket_path))
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


def test_the_kernelspec_runs_the_kernel_in_its_own_process_without_a_server(jupyter_path, tmp_path):
    done = notebook_job(tmp_path / "alone", jupyter_path, None)
    assert done.returncode == 0, done.stderr
    assert "matplotlib_inline" in (tmp_path / "alone/out/probe.json").read_text()


def test_the_kernel_command_needs_a_connection_file(cli):
    done = cli("kernel")
    assert done.returncode == 2 and "give -f CONNECTION_FILE" in done.stderr


def test_a_forked_kernel_is_interrupted_and_killed_as_jupyter_asks(server, jupyter_path, tmp_path, monkeypatch):
    """jupyter_client's interrupt (a control message: kernelspec interrupt_mode) stops the running cell of the
    forked kernel, which keeps running; its kill (of the process it started, the client) ends the fork too."""
    from jupyter_client.manager import KernelManager

    socket_path, process = server
    monkeypatch.setenv("JUPYTER_PATH", jupyter_path)
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
    env[preload.SOCKET_ENV] = socket_path
    manager = KernelManager(kernel_name=kernel.KERNEL)
    manager.start_kernel(env=env, cwd=str(tmp_path))
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=120)
        assert len(children_of(process.pid)) == 1  # the kernel is the server's fork
        msg_id = client.execute("import time; time.sleep(60)")
        time.sleep(1.0)
        started = time.monotonic()
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        assert time.monotonic() - started < 30
        assert client.execute_interactive("x = 1 + 1", timeout=30)["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)  # a kill, no shutdown request
    assert wait_for(lambda: not children_of(process.pid)), "the forked kernel outlived its kill"


def test_every_make_target_that_runs_notebooks_installs_the_kernelspec(tmp_path):
    """`make test` (CI on a fresh clone: test_lab opens a `diffact` kernel) as well as reproduce, figures and lab.
    make -n on an empty venv folder prints the recipes it would run, installing nothing."""
    root = Path(__file__).resolve().parents[1]
    for target in ("test", "reproduce", "figures", "lab", "install"):
        plan = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=root, check=True,
                              capture_output=True, text=True).stdout
        assert "kernel --install" in plan, f"make {target} does not install the diffact kernelspec"
