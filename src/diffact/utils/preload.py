"""A fork server that pays the heavy imports once for a whole workflow run (issue #19 point 1).

Most demo jobs are a few CPU seconds of work behind ~5.5 CPU s of imports: ``from diffusers import
UNet2DConditionModel`` alone is 5.4 s on the demo machine (``python -X importtime``: diffusers' and transformers'
module trees pull in torch._dynamo, torch.distributed.tensor and scipy), and mmseg's runner adds more. The server
imports those libraries once, then forks a child per request; a child starts with them imported (copy-on-write
pages) and runs the ``diffact`` command line exactly as a fresh process would: same arguments, working directory,
environment and standard streams, same code. A job's ``diffact`` (the client, :func:`run_remote`) only connects to
the server's socket when its environment names one (:data:`SOCKET_ENV`), sends its request with its stdin/stdout/
stderr descriptors, and exits with the child's status; without a server it runs in its own process as before.

Why the bits do not change: importing a library draws no random numbers and sets no state a command depends on,
except the thread pools' sizes, which OpenMP and OpenBLAS read from the environment when loaded (in the server):
the child re-sizes them from the job's environment (:func:`size_thread_pools`), as a fresh process would size them.
The server never runs a torch op, so no OpenMP pool exists before the fork (a forked child re-creates it, which
libgomp cannot do after a pool exists).
The child is the server's only thread's fork: the server is single-threaded (a ``selectors`` loop), since forking a
multi-threaded process can leave another thread's lock held in the child.

A job killed by Snakemake (or whose client dies) closes its connection; the server then terminates the child. The
server exits when the process that started it (snakemake) is gone, terminating any child left.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from typing import Callable, Iterable

SOCKET_ENV = "DIFFACT_PRELOAD_SOCKET"
HEADER = struct.Struct("!Q")  # the request's JSON length; its frame also carries the three stdio descriptors
STATUS = struct.Struct("!i")  # the child's exit code, or 128 + signal (as a shell reports a killed command)

# What diffact's model and segmentation commands import (the libraries' own module trees; a missing one is skipped).
# diffusers and transformers resolve names lazily: the pipelines are imported by name to load their modules.
PRELOAD_MODULES = (
    "torch", "numpy", "pandas", "PIL.Image", "scipy.optimize", "tqdm.auto",
    "transformers", "transformers.models.clip.modeling_clip", "transformers.models.t5.modeling_t5",
    "diffusers", "diffusers.models.unets.unet_2d_condition", "diffusers.models.autoencoders.autoencoder_kl",
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
    "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl",
    "diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3",
    "mmengine.runner", "mmseg.models", "mmseg.datasets",
    # diffact notebook's runner, and its kernel (diffact.viz.kernel): a fork of this server with the libraries the
    # notebooks import. Importing them starts no thread, zmq context or event loop (tests/test_preload.py checks).
    # matplotlib reads MPLBACKEND at import: the kernel sets its backend again. Nothing here may choose a backend
    # (diffact.viz.theme does: matplotlib.use("Agg")), so the notebooks' own imports still do.
    "papermill", "jupytext", "nbclient", "ipykernel.kernelapp", "matplotlib.pyplot", "seaborn", "scipy.stats",
)


def preload(modules: Iterable[str] = PRELOAD_MODULES) -> list[str]:
    """Import ``modules``; returns those that could not be imported (an optional library not installed)."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


# --- client -----------------------------------------------------------------------------------------------------


def run_remote(argv: list[str], socket_path: str | None = None) -> int | None:
    """Run ``diffact argv`` in a child of the server at ``socket_path`` (default: :data:`SOCKET_ENV`) with this
    process's working directory, environment and standard streams; returns its exit status, or None when there is
    no server to ask (no socket named, or nothing listening): the caller then runs the command itself."""
    socket_path = socket_path or os.environ.get(SOCKET_ENV)
    if not socket_path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(socket_path)
    except OSError:
        conn.close()
        return None
    with conn:
        request = json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(conn, [HEADER.pack(len(request))], [0, 1, 2])
        conn.sendall(request)
        reply = _recv_exactly(conn, STATUS.size)
    if len(reply) < STATUS.size:  # the server went away mid-command
        print(f"diffact: the preload server at {socket_path} closed the connection before the command ended",
              file=sys.stderr)
        return 1
    return STATUS.unpack(reply)[0]


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


# --- server -----------------------------------------------------------------------------------------------------


def serve(socket_path: str, run: Callable[[list[str]], int], parent_pid: int | None = None,
          poll_s: float = 0.2, request_timeout_s: float = 10.0) -> None:
    """Listen on ``socket_path`` and run each request's command as ``run(argv)`` in a forked child, until this
    process's parent is no longer ``parent_pid`` (default: the parent it has now, e.g. snakemake) or SIGTERM
    arrives. Call :func:`preload` first. A connection that has not sent its whole request within
    ``request_timeout_s`` is dropped (the server reads requests one at a time: a stalled one must not stall all)."""
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the jobs (children) and snakemake, which stops us
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    children: dict[int, socket.socket] = {}  # child pid → its client's connection
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    try:
        while not stopping and _alive(parent_pid):
            for key, _ in selector.select(timeout=poll_s):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    conn.settimeout(request_timeout_s)
                    pid = _start(conn, listener, children, run)
                    if pid is not None:
                        children[pid] = conn
                        selector.register(conn, selectors.EVENT_READ, pid)
                else:  # a client spoke or hung up: it only waits, so this means it is gone
                    selector.unregister(key.fileobj)
                    _terminate(key.data)
            _reap(children, selector)
    finally:
        for pid in list(children):
            _terminate(pid)
        deadline = time.monotonic() + 5
        while children and time.monotonic() < deadline:
            _reap(children, selector)
            time.sleep(0.05)
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(socket_path)


def _start(conn: socket.socket, listener: socket.socket, children: dict, run: Callable[[list[str]], int]) -> int | None:
    """Read one request from ``conn`` and fork its child; None (connection closed) for a malformed request."""
    try:
        header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        request = json.loads(_recv_exactly(conn, HEADER.unpack(header)[0]))
    except (OSError, ValueError, struct.error):
        conn.close()
        return None
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    conn.settimeout(None)
    pid = os.fork()
    if pid == 0:  # the child never returns
        listener.close()
        for other in children.values():
            other.close()
        conn.close()
        _run_child(request, fds, run)
    for fd in fds:
        os.close(fd)
    return pid


def _run_child(request: dict, fds: list[int], run: Callable[[list[str]], int]) -> None:
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        size_thread_pools(request["env"])
        sys.argv = ["diffact", *request["argv"]]
        code = int(run(list(request["argv"])) or 0)
    except SystemExit as done:  # argparse's --help / usage errors
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 - a fresh process would print the traceback and exit 1
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# Where a fresh process reads each pool's size: torch's intra-op pool (OpenMP), then the BLAS numpy loaded
# (OpenBLAS takes the first of its variables that is set).
TORCH_THREADS_ENV = "OMP_NUM_THREADS"
BLAS_THREADS_ENV = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def size_thread_pools(env: dict[str, str]) -> None:
    """Size the preloaded libraries' thread pools as a fresh process started with ``env`` would size them.

    OpenMP and OpenBLAS read their thread counts from the environment once, when loaded: in the server, with the
    server's environment. Snakemake sets OMP_NUM_THREADS & co. to each job's threads, so without this a served
    1-thread job ran torch (where the command does not pin its threads) and numpy's BLAS on every core: other bits
    than the same command alone, and on a busy machine ~15-20 % more CPU for the same work (a 2-thread
    property-maps job beside another job: 12.7-13.3 vs 10.6-11.3 CPU s on 1 thread). A variable the job's
    environment does not set leaves the pool as the server has it."""
    torch_threads = _positive_int(env.get(TORCH_THREADS_ENV))
    if torch_threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(torch_threads)
    blas_threads = next((n for n in map(_positive_int, map(env.get, BLAS_THREADS_ENV)) if n), None)
    if blas_threads and "numpy" in sys.modules:
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=blas_threads, user_api="blas")


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else 0
    except ValueError:
        return None
    return number if number > 0 else None


def _reap(children: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    """Send each finished child's status to its client and close the connection."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            conn.sendall(STATUS.pack(code if code >= 0 else 128 - code))
        with contextlib.suppress(KeyError):  # unregistered already when its client hung up
            selector.unregister(conn)
        conn.close()


def _terminate(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)


def _alive(parent_pid: int) -> bool:
    """Whether the process that started the server still runs (when it dies, the server is re-parented)."""
    return os.getppid() == parent_pid
