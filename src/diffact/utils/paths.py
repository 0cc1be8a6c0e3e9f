"""Joining paths that come from configs and dataset files onto their root, without letting them escape it.

A dataset annotation names its images (SPair ``src_imname``, a layout file's pair names); a config names
layer sets, models and datasets that become folders under ``results/``. Those names are data, so a name
such as ``../../home/me/.ssh/id_rsa`` or ``/etc/passwd`` must be refused, not followed: a typo'd or hostile
file must not make diffact read or overwrite files outside the folder it was pointed at.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from diffact.utils.errors import DataError, DiffactError


def unsafe_part_reason(part: str) -> str | None:
    """Why ``part`` cannot be joined below a root (absolute, climbs with '..', empty, NUL byte), or None."""
    if not part:
        return "is empty"
    if "\x00" in part:
        return "contains a NUL byte"
    # Both spellings: a Windows-made annotation file may hold 'C:\\data\\x.jpg' or '..\\x.jpg'.
    posix, windows = PurePosixPath(part), PureWindowsPath(part)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return "is an absolute path"
    if ".." in posix.parts or ".." in windows.parts:
        return "climbs out with '..'"
    return None


def checked_join(root: str | os.PathLike, *parts: str | os.PathLike, what: str = "path",
                 error: type[DiffactError] = DataError) -> Path:
    """``root / parts...``, raising ``error`` (naming ``what`` and the offending part) when a part is
    absolute or contains '..', so the result always lies lexically inside ``root``.

    The check is lexical on purpose: symlinks inside a dataset root (e.g. JPEGImages/ on another disk)
    stay allowed, as they were put there by whoever owns the root.
    """
    for part in parts:
        text = os.fspath(part)
        reason = unsafe_part_reason(text)
        if reason:
            raise error(f"{what} {text!r} {reason}; it must be a relative path inside {root}")
    return Path(root).joinpath(*map(os.fspath, parts))
