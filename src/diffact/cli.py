"""The ``diffact`` command line. Snakemake rules call it; so can users.

Each package's sub-commands live in its ``commands`` module (listed in :data:`COMMAND_MODULES`), which defines
``register(subparsers)``: it adds its parsers and sets ``func`` to a handler taking the parsed args.
Handlers import heavy libraries lazily so ``diffact --help`` stays quick.
"""

from __future__ import annotations

import os

# Idle OpenMP threads must sleep, not spin: with 2 torch threads on a busy 2-core machine spinning made
# a demo U-Net training step 3× slower (10.5 s vs 3.3 s, same numerics). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import diffact
from diffact.utils.args import positive_int
from diffact.utils.errors import DiffactError
from diffact.utils.logs import setup_logging
from diffact.utils.threads import torch_threads


# Every command module, in the order of the workflow (and of `diffact --help`): grep here to find a command's home.
COMMAND_MODULES = (
    "diffact.data.commands",  # make-demo-*, make-paper-fixtures, check-data, check-spair, seg-check, ...
    "diffact.models.commands",  # build-demo-model, demo-heldout-loss, make-standin-models
    "diffact.extract.commands",  # layers, extract, extract-merge
    "diffact.analysis.commands",  # the properties (§4-5.1): noise-share, property-maps, qualitative-filter, ...
    "diffact.tasks.correspondence.commands",  # pck-screen, practical-set, corr-train, corr-evaluate, corr-table1
    "diffact.tasks.segmentation.commands",  # seg-train, seg-baseline
    "diffact.tasks.scarce.commands",  # scarce, scarce-screen, scarce-compare
    "diffact.viz.commands",  # notebook, figures-index
    "diffact.commands",  # what a run costs: budget, usage-report
)


THREADS_HELP = ("torch CPU threads of this command (default %(default)s; None = torch's default, all cores). Results are "
                "bit-identical only for the same count; on a busy machine 1-2 are fastest for small networks")


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """The one ``--threads`` every command takes after its name (rules pass ``--threads {threads}``). A command
    that pins its own count for reproducible bits declares it with ``parser.set_defaults(threads=N)``."""
    parser.add_argument("--threads", type=positive_int, metavar="N", help=THREADS_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffact", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"diffact {diffact.__version__}")
    parser.add_argument("--log", metavar="FILE", help="also write the log to FILE (rules pass results/logs/...)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for command in subparsers.choices.values():
        add_threads_option(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] != ["preload-server"]:
        # a workflow run's preload server (config `preload`) runs the command in a child that has the heavy
        # libraries imported already; the same command, arguments, streams and exit status (diffact.utils.preload)
        from diffact.utils.preload import run_remote

        remote = run_remote(sys.argv[1:])
        if remote is not None:
            return remote
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.log, verbose=args.verbose)
    started = time.perf_counter()
    code = 1
    try:
        with torch_threads(args.threads):
            code = int(args.func(args) or 0)
    except DiffactError as err:
        logging.getLogger("diffact").error("%s", err)
        print(f"diffact {args.command}: error: {err}", file=sys.stderr)
        code = 2
    finally:
        log_usage(args.log, args.command, time.perf_counter() - started, code)
    return code


def log_usage(log_file: str | None, command: str, wall_s: float, code: int) -> None:
    """One line per command with its wall time and peak memory, the last line of every job's log file (not on
    stderr, which stays the one error line of a failure; nothing without ``--log``); the
    rehearsal's per-stage times and the budget's measured peaks are read back from these lines
    (:func:`diffact.usage.read_usage`). Children (notebook kernels, mmseg workers) count once reaped."""
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if not log_file:
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(log_file, "a") as out:
        out.write(f"{stamp} INFO diffact.usage: usage: command={command} wall_s={wall_s:.1f} "
                  f"peak_rss_mb={self_kb / 1024:.0f} children_peak_rss_mb={children_kb / 1024:.0f} exit={code}\n")


if __name__ == "__main__":
    sys.exit(main())
