"""`make lab`: JupyterLab serves notebooks/*.py as notebooks, saves them back unchanged, runs kernels in the repo.

The server is started with the command `make -n lab` prints (scripts/lab.sh with config/jupyter/), headless, on a
free port with a token, with its config, data and runtime folders in a temporary folder (nothing is written to ~).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
START_TIMEOUT = 120  # s; JupyterLab takes ~5 s on an idle 2-core machine, much longer beside a workflow run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_command(lab_args: list[str]) -> list[str]:
    """The `make lab` recipe for this interpreter's venv (make -n: printed, not run, so no install either)."""
    out = subprocess.run(["make", "-n", "-s", "lab", f"VENV={sys.prefix}", "LAB_ARGS=" + " ".join(lab_args)],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    recipe = out.strip().splitlines()[-1]
    assert "scripts/lab.sh" in recipe, recipe
    return shlex.split(recipe)


def _first_code_cell(text: str) -> tuple[str, str]:
    """(marker line, source) of the first code cell of a percent-format script, read without jupytext."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("# %%")]
    for k, i in enumerate(starts):
        if "[markdown]" not in lines[i]:
            end = starts[k + 1] if k + 1 < len(starts) else len(lines)
            return lines[i], "\n".join(lines[i + 1:end]).strip("\n")
    raise AssertionError("no code cell")


class Lab:
    def __init__(self, port: int, token: str):
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
            return json.loads(payload) if payload else None


@pytest.fixture
def lab(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")]:
        env[var] = str(tmp_path / sub)
    command = _lab_command(["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"])
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Lab(port, token)
    server.runtime_dir = tmp_path / "runtime"
    server.log = log_path
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{log_path.read_text()}")
            try:
                server.call("GET", "/api/status", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in {START_TIMEOUT} s:\n{log_path.read_text()}")
                time.sleep(0.5)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: the server shuts its kernels down and exits
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session (start_new_session): server and kernels
                proc.wait(timeout=30)


@pytest.mark.slow
def test_lab_serves_notebooks_as_notebooks(lab, tmp_path):
    assert NOTEBOOKS
    scratch = ROOT / "results" / f"test_lab_{secrets.token_hex(4)}"  # results/ is git-ignored
    scratch.mkdir(parents=True)
    try:
        for path in NOTEBOOKS:
            text = path.read_text()
            rel = path.relative_to(ROOT).as_posix()
            model = lab.call("GET", f"/api/contents/{rel}?type=notebook&content=1")
            assert model["type"] == "notebook", (rel, model["type"])
            nb = model["content"]
            assert nb["metadata"]["kernelspec"]["name"] == "diffact", rel
            assert nb["cells"], rel
            code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
            marker, source = _first_code_cell(text)
            assert code[0]["source"] == source, rel
            if 'tags=["parameters"]' in marker:
                assert code[0]["metadata"]["tags"] == ["parameters"], rel

            # A save from JupyterLab writes the same text back (config: no text_representation in the header).
            saved = f"{scratch.relative_to(ROOT).as_posix()}/{path.name}"
            lab.call("PUT", f"/api/contents/{saved}", {"type": "notebook", "format": "json", "content": nb})
            assert (ROOT / saved).read_text() == text, f"{rel}: saving from JupyterLab changed the file"
    finally:
        for file in scratch.iterdir():
            file.unlink()
        scratch.rmdir()

    # A kernel started for a notebooks/*.py runs in the repository, as papermill does in the workflow, so the
    # notebook's relative paths (results/..., paper_figures/...) resolve.
    from jupyter_client import BlockingKernelClient

    rel = NOTEBOOKS[0].relative_to(ROOT).as_posix()
    session = lab.call("POST", "/api/sessions", {"path": rel, "name": NOTEBOOKS[0].name, "type": "notebook",
                                                  "kernel": {"name": "diffact"}}, timeout=120)
    try:
        client = BlockingKernelClient(connection_file=str(lab.runtime_dir / f"kernel-{session['kernel']['id']}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            reply = client.execute_interactive("import os", user_expressions={"cwd": "os.getcwd()"}, timeout=60)
        finally:
            client.stop_channels()
        cwd = reply["content"]["user_expressions"]["cwd"]["data"]["text/plain"]
        assert os.path.realpath(re.sub(r"^'|'$", "", cwd)) == os.path.realpath(ROOT)
    finally:
        lab.call("DELETE", f"/api/sessions/{session['id']}", timeout=60)
