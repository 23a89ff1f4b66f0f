"""Atomic writes and output-path checks shared by every command that saves."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ghostcli.errors import OutputExistsError, UsageError


def check_output(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Return ``path`` as a Path; refuse it when it exists and ``force`` is off."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(f"{p} already exists (use --force to replace it)")
    if p.exists() and p.is_dir():
        raise UsageError(f"{p} is a directory, expected a file path")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise UsageError(f"output directory {parent} does not exist")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path`` whose files move onto ``path``'s folder on success.

    Used for multi-file outputs (OpenVINO ``.xml`` + ``.bin``): the caller writes
    into the temporary directory; on success every file in it is moved next to
    ``path`` (each move is an atomic rename), on failure nothing is left.
    """
    dest = Path(path)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent or "."))
    try:
        yield tmp_dir
        for f in sorted(tmp_dir.iterdir()):
            os.replace(f, dest.parent / f.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
