"""The notebooks' Jupyter kernel (kernelspec ``diffact``): an IPython kernel that starts in a fork of the workflow's
preload server when one runs (:mod:`diffact.utils.preload`), in its own process otherwise.

A notebook job's kernel used to be a fresh ``python -m ipykernel_launcher`` that imported ipykernel, zmq,
matplotlib, pandas and seaborn anew: ~2.5 of the ~4.5 CPU s of a demo notebook job. The kernelspec's argv runs
``python -m diffact.viz.kernel -f {connection_file}``; this module asks the server (``$DIFFACT_PRELOAD_SOCKET``,
which the runner's environment passes down) to run ``diffact kernel -f ...`` in a child that has those imported
already, and starts the kernel itself when there is no server (``make lab``, a job with ``DIFFACT_PRELOAD=0``).

What the fork must redo so the kernel is the one a fresh process would be:

* matplotlib reads ``MPLBACKEND`` when it is imported, and ipykernel sets it (to the inline backend) only while the
  kernel starts: a matplotlib the server imported earlier gets the backend the fresh kernel would have read.
* ``sys.path[0]`` is the server's launcher folder, not the kernel's: dropped, as a kernel of its own drops its own.
* pandas chooses ``display.max_columns`` at import, by whether it runs in a Jupyter kernel: the fork chooses again.
* ipykernel takes its parent's pid (``JPY_PARENT_PID``) at *import*, and its poller watches ``os.getppid()``, which
  in a fork is the server, not the runner that launched the kernel: the fork watches the runner's pid itself and
  exits when the runner is gone. jupyter_client's shutdown goes over zmq as usual; its kill reaches the client
  process, whose death makes the server terminate the forked kernel; its interrupt is a control message
  (kernelspec ``interrupt_mode: message``), which ipykernel turns into a SIGINT to itself.

Not redone: what a preloaded module did once at import in the server stays there, such as tqdm.auto's
"IProgress not found" warning (in the server's log, no longer in fig02_architecture's executed notebook) and its
choice of the terminal progress bar; the figures and tables are byte-identical (benchmarks/bench_notebook_kernel.py).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time

KERNEL = "diffact"
PARENT_POLL_S = 1.0


def kernelspec(python: str | None = None) -> dict:
    """The ``kernel.json`` of the ``diffact`` kernel, run by ``python`` (default: this interpreter)."""
    return {
        "argv": [python or sys.executable, "-m", "diffact.viz.kernel", "-f", "{connection_file}"],
        "display_name": "diffact (.venv)",
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"debugger": True},
    }


def install_kernelspec(prefix: str | None = None, user: bool = False) -> str:
    """Install the ``diffact`` kernelspec (into ``prefix``, default this environment's ``sys.prefix``; or the
    user's Jupyter folder); returns the folder it went to."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "kernel.json"), "w") as fh:
            json.dump(kernelspec(), fh, indent=1)
            fh.write("\n")
        return KernelSpecManager().install_kernel_spec(tmp, KERNEL, user=user, prefix=None if user else
                                                       (prefix or sys.prefix), replace=True)


def run_kernel(connection_file: str) -> int:
    """Run the IPython kernel of ``connection_file`` in this process until it shuts down."""
    from ipykernel.kernelapp import IPKernelApp

    runner_pid = int(os.environ.get("JPY_PARENT_PID") or 0)
    forked = bool(runner_pid) and os.getppid() != runner_pid  # a child of the preload server, not of the runner
    if forked and sys.path:
        # the server's launcher (the `diffact` script) put its folder first, as `python -m` puts the working
        # directory first in a kernel of its own, which __main__ removes: sys.path is then the same in both
        del sys.path[0]
    preloaded = {name for name in ("matplotlib", "pandas") if name in sys.modules}
    # parent_handle's default was read from the environment when ipykernel was imported (maybe by the server)
    app = IPKernelApp.instance(connection_file=connection_file, parent_handle=runner_pid)
    app.initialize([])
    if "matplotlib" in preloaded:
        _reread_backend()
    if "pandas" in preloaded:
        _recheck_pandas_console(app.shell)
    if forked:  # ipykernel's poller would watch the server; this one watches the runner
        app.poller = None
        _exit_with(runner_pid)
    app.start()
    return 0


def _reread_backend() -> None:
    """Give a matplotlib imported before the kernel started the backend it would have read at import now
    (``MPLBACKEND``, which the kernel has just set to the inline backend unless the environment names one)."""
    import matplotlib

    backend = os.environ.get("MPLBACKEND")
    if backend:
        matplotlib.rcParams["backend"] = backend


def _recheck_pandas_console(shell) -> None:
    """Give a pandas imported before the kernel started the column limit it would have chosen at import now:
    pandas sets ``display.max_columns`` once, to 0 (fit the terminal) outside a Jupyter kernel and 20 inside one
    (pandas.core.config_init), so a DataFrame a notebook shows is cut the same as in a fresh kernel."""
    import pandas
    from pandas.core.config_init import is_terminal

    with shell.builtin_trap:  # get_ipython, which pandas looks for, is a builtin only while the shell runs code
        pandas.set_option("display.max_columns", 0 if is_terminal() else 20)


def _exit_with(pid: int) -> None:
    """Exit this process (as ipykernel's parent poller does) once process ``pid`` no longer exists."""

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except OSError:  # gone (or its pid now another user's process)
                os._exit(1)
            time.sleep(PARENT_POLL_S)

    threading.Thread(target=watch, name="diffact-kernel-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """``python -m diffact.viz.kernel -f CONNECTION_FILE``: the kernelspec's command."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m diffact.viz.kernel", description=main.__doc__)
    parser.add_argument("-f", dest="connection_file", required=True, help="the kernel's connection file")
    args = parser.parse_args(argv)
    from diffact.utils.preload import run_remote

    remote = run_remote(["kernel", "-f", args.connection_file])
    if remote is not None:
        return remote
    return run_kernel(args.connection_file)


if __name__ == "__main__":
    # as ipykernel_launcher: the working directory leaves sys.path while the kernel imports, and the shell puts it
    # back (InteractiveShellApp.init_path)
    if sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.exit(main())
