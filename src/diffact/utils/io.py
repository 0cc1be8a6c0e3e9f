"""Atomic file output: every result is written to a temporary file in the target folder and renamed
into place, so an interrupted run never leaves a half-written file that looks complete."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    The temporary name keeps the target's suffix (libraries such as matplotlib or safetensors pick the
    format from it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it replaces ``target`` only if the block succeeds."""
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike, obj: Any, sort_keys: bool = True) -> None:
    """Write JSON atomically; ``sort_keys=False`` keeps insertion order where order means something."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def write_csv(target: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV atomically (no index; floats as pandas prints them)."""
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)


def save_figure(fig, target: str | os.PathLike, **kwargs) -> None:
    """Save a matplotlib figure atomically; the format follows ``target``'s suffix."""
    with atomic_path(target) as tmp:
        fig.savefig(tmp, **kwargs)
