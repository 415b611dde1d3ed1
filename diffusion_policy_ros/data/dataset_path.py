"""Where the recorder may write: a dataset name always resolves to a folder inside the root.

A dataset name comes from a parameter (and could come from a request); it must never let a
client write elsewhere on the robot computer ("../../etc", absolute paths, symlinks out).
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class DatasetPathError(ValueError):
    """A dataset location that is outside the root, unwritable, or out of space."""


def resolve_dataset_path(root: str, name: str) -> str:
    """root + name -> absolute path, guaranteed (after following symlinks) to stay under root."""
    if not _NAME.match(name or "") or name in (".", ".."):
        raise DatasetPathError(
            f"dataset name {name!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(no path separators), starting with a letter or digit")
    root_real = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root_real, name))
    if os.path.commonpath([root_real, path]) != root_real or path == root_real:
        raise DatasetPathError(f"dataset {name!r} resolves to {path}, outside the dataset root {root_real}")
    return path


def ensure_writable_dir(path: str) -> None:
    """Create `path` if needed and prove we can write there (clear error otherwise)."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as e:
        raise DatasetPathError(f"dataset folder {path} is not writable: {describe_os_error(e)}") from e


def check_free_space(path: str, needed_bytes: int, margin: float = 1.2) -> None:
    """Refuse up front when the episode cannot fit, rather than failing half-way through."""
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    free = shutil.disk_usage(probe).free
    if free < needed_bytes * margin:
        raise DatasetPathError(
            f"not enough disk space under {path}: episode needs about {needed_bytes / 1e6:.1f} MB, "
            f"{free / 1e6:.1f} MB free; free some space and save again (the episode is kept in memory)")


def describe_os_error(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "disk full (no space left on device)"
    if e.errno == errno.EFBIG:
        return "file too large for the file system or the process's file-size limit (no space for it)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "read-only file system"
    return e.strerror or str(e)
