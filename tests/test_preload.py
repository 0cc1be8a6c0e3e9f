"""The preload server (diffact.utils.preload, config `preload`): a command run through it is the command run in its
own process (same bytes, exit status, streams, working directory), its client's death stops it, and the server
goes away with the process that started it."""

from __future__ import annotations

import contextlib
import filecmp
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_for

from diffact.utils import preload
from diffact.workflow import preload as wf_preload

DIFFACT = str(Path(sys.executable).with_name("diffact"))


@pytest.fixture
def server(preload_server):
    """The demo's preload server (conftest), by its socket path."""
    return preload_server[0]


def run(args, cwd, socket_path=None):
    """Run `diffact args` in a subprocess (through the server when given); returns it and its CPU seconds."""
    env = {k: v for k, v in os.environ.items() if k != preload.SOCKET_ENV}
    if socket_path:
        env[preload.SOCKET_ENV] = socket_path
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([DIFFACT, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_an_extraction_through_the_server_writes_the_bytes_it_writes_alone(server, tiny_pipeline_dirs, image_folder,
                                                                            tmp_path):
    args = ["extract", "--model", tiny_pipeline_dirs["sd15"], "--family", "sd15", "--layers", "practical",
            "--dataset-kind", "folder", "--dataset-root", image_folder, "--out", "store", "--image-size", "32",
            "--prompt", "a photo", "--torch-threads", "1"]
    (tmp_path / "alone").mkdir()
    (tmp_path / "served").mkdir()
    alone, alone_cpu = run(args, tmp_path / "alone")
    served, served_cpu = run(args, tmp_path / "served", server)  # --out is relative: the child works in cwd
    assert alone.returncode == 0 and served.returncode == 0, (alone.stderr, served.stderr)
    files = sorted(p.relative_to(tmp_path / "alone") for p in (tmp_path / "alone").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(tmp_path / "served")
                                     for p in (tmp_path / "served").rglob("*") if p.is_file())
    for name in files:
        assert filecmp.cmp(tmp_path / "alone" / name, tmp_path / "served" / name, shallow=False), name
    # the work happened in the server's child: the client imported neither torch nor diffusers
    assert served_cpu < 1.0 < alone_cpu, (served_cpu, alone_cpu)


def test_exit_status_and_streams_are_the_commands(server, tmp_path):
    bad, _ = run(["no-such-command"], tmp_path, server)
    assert bad.returncode == 2 and "invalid choice: 'no-such-command'" in bad.stderr and bad.stdout == ""
    version, _ = run(["--version"], tmp_path, server)
    assert version.returncode == 0 and version.stdout.startswith("diffact ")
    missing, _ = run(["layers", "--model", "no/such/model", "--family", "sd15"], tmp_path, server)
    alone, _ = run(["layers", "--model", "no/such/model", "--family", "sd15"], tmp_path)
    assert missing.returncode == alone.returncode != 0
    assert missing.stderr.splitlines()[-1] == alone.stderr.splitlines()[-1]


def test_without_a_server_the_command_runs_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.delenv(preload.SOCKET_ENV, raising=False)
    assert preload.run_remote(["--version"]) is None
    assert preload.run_remote(["--version"], str(tmp_path / "nothing-listens")) is None
    done, _ = run(["--version"], tmp_path, str(tmp_path / "nothing-listens"))
    assert done.returncode == 0 and done.stdout.startswith("diffact ")


def _record_pid_then(pid_file: str, seconds: float):
    def run_command(argv):
        Path(pid_file).write_text(str(os.getpid()))
        time.sleep(seconds)
        return 0
    return run_command


def _serve(socket_path: str, pid_file: str, seconds: float, request_timeout_s: float):
    preload.serve(socket_path, run=_record_pid_then(pid_file, seconds), request_timeout_s=request_timeout_s)


@contextlib.contextmanager
def forked_server(tmp_path, seconds: float, request_timeout_s: float = 10.0):
    """A server (no preloading) whose commands write their pid to the yielded file and sleep ``seconds``;
    yields (socket path, pid file, a client command line for a subprocess)."""
    socket_path, pid_file = str(tmp_path / "s"), tmp_path / "child.pid"
    server = multiprocessing.get_context("fork").Process(
        target=_serve, args=(socket_path, str(pid_file), seconds, request_timeout_s))
    server.start()
    client = [sys.executable, "-c",
              f"import sys; from diffact.utils.preload import run_remote; sys.exit(run_remote(['x'], {socket_path!r}))"]
    try:
        assert wait_for(lambda: os.path.exists(socket_path))
        yield socket_path, pid_file, client
    finally:
        server.terminate()
        server.join(10)


def test_a_killed_client_stops_its_command(tmp_path):
    with forked_server(tmp_path, seconds=120) as (socket_path, pid_file, command):
        client = subprocess.Popen(command)
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text())
        child = int(pid_file.read_text())
        client.send_signal(signal.SIGKILL)
        client.wait()
        assert wait_for(lambda: not _running(child), timeout_s=10), "the command outlived its client"
    assert not os.path.exists(socket_path)


def test_a_connection_that_sends_nothing_does_not_stall_the_others(tmp_path):
    import socket

    with forked_server(tmp_path, seconds=0, request_timeout_s=0.5) as (socket_path, pid_file, command):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.connect(socket_path)  # and never sends its request
            client = subprocess.run(command, timeout=30)
            assert client.returncode == 0 and pid_file.exists()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_server_stops_when_the_process_that_started_it_ends(tmp_path):
    socket_path = str(tmp_path / "s")
    starter = (f"import subprocess, time; subprocess.Popen([{DIFFACT!r}, 'preload-server', '--socket', {socket_path!r}, "
               "'--modules', 'json']); time.sleep(1)")
    subprocess.run([sys.executable, "-c", starter], check=True, timeout=60)
    assert wait_for(lambda: not os.path.exists(socket_path), timeout_s=30), "the server outlived snakemake"


def test_the_workflow_starts_it_for_local_runs_of_profiles_that_ask(tmp_path, monkeypatch):
    import yaml

    monkeypatch.delenv(preload.SOCKET_ENV, raising=False)
    demo = yaml.safe_load(Path("config/config.yaml").read_text())
    paper = yaml.safe_load(Path("config/paper.yaml").read_text())
    assert wf_preload.wanted(demo, local=True) and not wf_preload.wanted(demo, local=False)
    assert not wf_preload.wanted(paper, local=True)
    monkeypatch.setenv("DIFFACT_PRELOAD", "0")
    assert not wf_preload.wanted(demo, local=True)
    monkeypatch.delenv("DIFFACT_PRELOAD")

    server = wf_preload.start(demo, True, tmp_path / "logs" / "preload.log")
    try:
        socket_path = os.environ[preload.SOCKET_ENV]
        assert preload.run_remote(["--version"]) == 0
    finally:
        wf_preload.stop()
    assert server.poll() is not None and preload.SOCKET_ENV not in os.environ
    assert not os.path.exists(os.path.dirname(socket_path))
    assert "listening on" in (tmp_path / "logs" / "preload.log").read_text()
    snakefile = Path("Snakefile").read_text()
    assert "wf.preload.start(config, workflow.local_exec" in snakefile and snakefile.count("wf.preload.stop()") == 2


def test_a_server_that_does_not_come_up_leaves_no_socket_folder(tmp_path, monkeypatch):
    import glob
    import tempfile

    monkeypatch.delenv(preload.SOCKET_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where start() makes its socket folder
    monkeypatch.setattr(wf_preload, "wait_until_listening", lambda *args, **kwargs: False)
    demo = {"preload": True}
    assert wf_preload.start(demo, True, tmp_path / "logs" / "preload.log") is None
    assert preload.SOCKET_ENV not in os.environ and not glob.glob(str(tmp_path / "diffact-preload-*"))


SERVER_REPORTING_THREADS = """
import sys, threadpoolctl, torch
from pathlib import Path
from diffact.utils import preload

def report(argv):
    blas = [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    Path(argv[0]).write_text(f"{torch.get_num_threads()} {blas}")
    return 0

preload.serve(sys.argv[1], run=report)
"""


def test_a_served_command_gets_the_thread_pools_its_environment_asks_for(tmp_path):
    """Snakemake sets OMP_NUM_THREADS & co. per job; the libraries read them once, when the server loaded them."""
    socket_path, report = str(tmp_path / "s"), tmp_path / "threads.txt"
    server_env = {**os.environ, "OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}
    server = subprocess.Popen([sys.executable, "-c", SERVER_REPORTING_THREADS, socket_path], env=server_env)
    client = [sys.executable, "-c", "import sys; from diffact.utils.preload import run_remote; "
              f"sys.exit(run_remote([{str(report)!r}], {socket_path!r}))"]
    try:
        assert wait_for(lambda: os.path.exists(socket_path), timeout_s=60)
        job_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        assert subprocess.run(client, env=job_env, timeout=60).returncode == 0
        # (on one core the libraries cap the server's 3 at 1 and this cannot fail; on more it did: 2 or 3 each)
        assert report.read_text() == "1 [1]"
    finally:
        server.terminate()
        server.wait(timeout=30)
