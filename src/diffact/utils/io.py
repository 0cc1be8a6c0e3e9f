"""Atomic file output: every result is written to a temporary file in the target folder and renamed
into place, so an interrupted run never leaves a half-written file that looks complete."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

# Temporary names are ``.<target stem>.<host>-<pid>.<8 random chars>.part<suffix>``: the writer's host (and
# PID namespace) and process id let a later run tell the leftovers of a killed writer (SIGKILL, power loss:
# no cleanup ran) from files that a live job beside it is still writing.
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[a-z0-9_]{8}\.part(\.[^/]*)?$")
_CLEANED: set[Path] = set()  # folders whose leftovers this process has removed (each is listed once)


@functools.lru_cache(maxsize=1)
def _host() -> str:
    """This machine and PID namespace: process ids are only comparable within one (containers on one host
    can share a host name but not their process ids)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
    try:
        namespace = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        namespace = ""
    return f"{host}_{namespace}" if namespace else host


def temp_prefix(name: str) -> str:
    """``mkstemp``/``mkdtemp`` prefix of a temporary file for ``name``; any writer that may be killed should
    use it, so that a later run can recognise and remove what it left."""
    return f".{name}.{_host()}-{os.getpid()}."


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only set it, and
    setting it even for a moment would affect files other threads create meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give results the permissions any other file would get
    (0666/0777 minus the umask), so colleagues sharing a results folder can read them."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _writer_is_dead(host: str, pid: int) -> bool:
    """True only when the writer ran on this host and no process has its id any more (another host's
    files, or a live or reused pid, are left alone)."""
    if host != _host():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the pid exists (another user's process)
        return False
    return False


def remove_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders in ``folder`` whose writer was killed before it could clean
    up (see ``_TEMP_NAME``); returns what was removed. Called before the first write into a folder, so a
    rerun after an interruption leaves the folder exactly as an uninterrupted run would."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        match = _TEMP_NAME.match(entry.name)
        if not match or not _writer_is_dead(match["host"], int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _clean_once(folder: Path) -> None:
    # Once per folder and process: writing N shards into one folder stays O(N), not O(N²).
    key = folder.resolve()
    if key not in _CLEANED:
        remove_stale_parts(folder)
        _CLEANED.add(key)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    The temporary name keeps the target's suffix (libraries such as matplotlib or safetensors pick the
    format from it). Leftover temporary files of killed writers in the folder are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    _clean_once(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.stem), suffix=f".part{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        publish_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_path_in_private_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path`, for writers that make temporary files of their own beside the path they are
    given (safetensors' ``save_file`` writes ``.tmpXXXXXX`` next to it, then renames): the path yielded lies in
    a private ``.part`` folder of ours, so a killed writer leaves only that folder, which the next run removes
    (:func:`remove_stale_parts`), and never an anonymous temporary file the size of the result."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(target.parent)
    folder = Path(tempfile.mkdtemp(prefix=temp_prefix(target.stem), suffix=".part", dir=target.parent))
    try:
        tmp_path = folder / target.name
        yield tmp_path
        publish_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it replaces ``target`` only if the block succeeds.
    Leftover temporary files and folders of killed writers beside it are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), suffix=".part", dir=target.parent))
    try:
        yield tmp
        publish_mode(tmp, directory=True)
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


# A fixed date for the members of an NPZ (numpy stamps each with the time of writing).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def write_npz(target: str | os.PathLike, arrays: dict) -> None:
    """Write ``arrays`` (name → numpy array) as a compressed ``.npz`` atomically and byte for byte the same on every
    run (numpy's own ``savez_compressed`` dates each member). ``numpy.load`` reads it; no pickles."""
    import zipfile

    import numpy as np

    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


# Metadata that would make every rerun's figure differ in bytes: the creation date (PDF, PostScript, SVG).
_UNDATED_METADATA = {".pdf": {"CreationDate": None}, ".ps": {"CreationDate": None}, ".eps": {"CreationDate": None},
                     ".svg": {"Date": None}}


def save_figure(fig, target: str | os.PathLike, **kwargs) -> None:
    """Save a matplotlib figure atomically; the format follows ``target``'s suffix. The file holds no date
    and SVG element ids come from a fixed salt (matplotlib's default is a random one), so the same figure
    gives the same bytes on every run."""
    import matplotlib

    suffix = Path(target).suffix.lower()
    if suffix in _UNDATED_METADATA:
        kwargs["metadata"] = {**_UNDATED_METADATA[suffix], **(kwargs.get("metadata") or {})}
    with atomic_path(target) as tmp, matplotlib.rc_context({"svg.hashsalt": "diffact"}):
        fig.savefig(tmp, **kwargs)
