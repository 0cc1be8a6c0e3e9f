"""The preload server of a local workflow run (config ``preload``; :mod:`diffact.utils.preload`).

The Snakefile's ``onstart`` starts it and its ``onsuccess``/``onerror`` stop it; jobs find it through
``$DIFFACT_PRELOAD_SOCKET``, which they inherit from snakemake. Only a local run (``workflow.local_exec``) uses it:
a cluster job runs on another machine and would not reach the socket anyway (its ``diffact`` falls back to running
the command itself). ``DIFFACT_PRELOAD=0`` in the environment turns it off for one run.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diffact.utils.preload import SOCKET_ENV

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 180.0  # the imports take ~5 s on a 2-core machine; a loaded one can be much slower

_running: list[subprocess.Popen] = []  # the server this snakemake process started (onstart → onsuccess/onerror)


def wanted(config: dict, local: bool) -> bool:
    return bool(config.get("preload")) and local and os.environ.get("DIFFACT_PRELOAD", "1") != "0"


def start(config: dict, local: bool, log_file: str | Path) -> subprocess.Popen | None:
    """Start the server when the profile wants it (and export its socket to the jobs); None when it does not, or
    when the server did not come up (a warning; the jobs then run their commands in their own processes)."""
    if not wanted(config, local):
        return None
    socket_path = os.path.join(tempfile.mkdtemp(prefix="diffact-preload-"), "socket")  # AF_UNIX: ≤ 107 bytes
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [shutil.which("diffact") or os.path.join(os.path.dirname(sys.executable), "diffact"),
               "--log", str(log_file), "preload-server", "--socket", socket_path]
    with open(os.devnull, "rb") as devnull, open(log_file.with_suffix(".out"), "w") as out:
        server = subprocess.Popen(command, stdin=devnull, stdout=out, stderr=subprocess.STDOUT)
    if not wait_until_listening(server, socket_path):
        log.warning("the preload server did not start (see %s); jobs import their libraries themselves", log_file)
        stop(server)
        shutil.rmtree(os.path.dirname(socket_path), ignore_errors=True)  # stop() knows only an exported socket
        return None
    os.environ[SOCKET_ENV] = socket_path
    _running.append(server)
    return server


def wait_until_listening(server: subprocess.Popen, socket_path: str, timeout_s: float = STARTUP_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(socket_path)
                return True  # the server sees a connection that sends nothing and closes: it ignores it
            except OSError:
                time.sleep(0.1)
    return False


def stop(server: subprocess.Popen | None = None) -> None:
    """Stop ``server`` (default: the one :func:`start` started; it terminates any command still running in it)
    and forget its socket."""
    if server is None and _running:
        server = _running.pop()
    socket_path = os.environ.pop(SOCKET_ENV, None)
    if server is not None and server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if socket_path:
        shutil.rmtree(os.path.dirname(socket_path), ignore_errors=True)
