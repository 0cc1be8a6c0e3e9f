"""Logging setup shared by the CLI and notebooks: stderr plus an optional log file (results/logs/...)."""

from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | None = None, verbose: bool = False) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, handlers=handlers, force=True)
    # Third-party libraries are chatty at INFO.
    for noisy in ("matplotlib", "PIL", "urllib3", "filelock", "numexpr", "papermill"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
