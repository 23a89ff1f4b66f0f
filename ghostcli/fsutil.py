"""Output paths: the up-front check, and atomic writes that leave nothing behind when they fail.

``check_output`` only validates (name, ``force``, a writable folder); it runs before the work starts.
``atomic_path`` / ``atomic_dir`` create missing parent folders, write to a temporary file or folder
beside the output and rename it into place; on any failure, SIGTERM included, the temporary
file and the folders they created are removed again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from ghostcli.errors import GhostcliError, OutputExistsError, UsageError

# Errors from inside a write that mean "this output cannot be written here" (not a bug of the writer).
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                           errno.ENAMETOOLONG})
# mkstemp/mkdtemp names are ".<name>." + 8 random characters (+ ".tmp"): the output's name must leave room.
_TMP_NAME_EXTRA = 14


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while an output was being written (raised so that the clean-up runs)."""


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as printable text: bytes that are not UTF-8 are shown as ``\\xff``."""
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a byte
        return os.fspath(path).encode("utf-8", "backslashreplace").decode("ascii")


def check_name(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; ``UsageError`` when its name is not valid UTF-8 (it could not be read back)."""
    p = Path(path)
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"output path '{display_path(p)}' is not valid UTF-8 (it could not be read back): "
                         "choose a name made of text") from None
    return p


def _lexists(p: Path) -> bool:
    try:
        os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _existing_ancestor(folder: Path) -> tuple[Path, list[Path]]:
    """The nearest folder above (or equal to) ``folder`` that exists, and the missing ones below it, top first."""
    missing: list[Path] = []
    d = folder
    while not _lexists(d) and d != d.parent:
        missing.append(d)
        d = d.parent
    return d, missing[::-1]


def _parent(p: Path) -> Path:
    return p.parent if str(p.parent) else Path(".")


def cannot_write(path: str | os.PathLike[str], exc: OSError) -> GhostcliError:
    """The one-line error for an OS refusal: ``cannot write PATH: read-only file system``."""
    reason = (exc.strerror or type(exc).__name__).lower()
    return GhostcliError(f"cannot write {display_path(path)}: {reason}")


def _check_writable(p: Path) -> None:
    """Refuse ``p`` up front when its folder is not a folder or cannot be written (by this user)."""
    anchor, missing = _existing_ancestor(_parent(p))
    if not stat.S_ISDIR(os.stat(anchor).st_mode):
        raise UsageError(f"cannot write {display_path(p)}: {display_path(anchor)} is a file, not a folder")
    with contextlib.suppress(OSError, ValueError):
        name_max = os.pathconf(anchor, "PC_NAME_MAX")
        too_long = [q for q in missing if len(os.fsencode(q.name)) > name_max]
        if len(os.fsencode(p.name)) + _TMP_NAME_EXTRA > name_max:
            too_long.append(p)
        if too_long:
            raise UsageError(f"cannot write {display_path(p)}: file name too long (this file system allows "
                             f"{name_max} bytes per name, {name_max - _TMP_NAME_EXTRA} for an output file)")
    effective = os.access in os.supports_effective_ids
    if os.access(anchor, os.W_OK | os.X_OK, effective_ids=effective):
        return
    code = errno.EACCES
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(anchor).f_flag & os.ST_RDONLY:
            code = errno.EROFS
    raise cannot_write(p, OSError(code, os.strerror(code)))


def check_output(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Validate an output path before any work; returns it as a Path.

    Refuses (one-line errors): a name that is not UTF-8, a directory, an existing file without
    ``force``, a parent that is a file, and a folder this user cannot write (read-only file system,
    permission denied). Missing parent folders are fine: the atomic writers create them.
    """
    p = check_name(path)
    try:
        if p.is_dir():
            raise UsageError(f"{display_path(p)} is a directory, expected a file path")
        if _lexists(p) and not force:
            raise OutputExistsError(f"{display_path(p)} already exists (use `force` to replace it)")
        _check_writable(p)
    except PermissionError as exc:  # a folder on the way that this user may not even look into
        raise cannot_write(p, exc) from None
    return p


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise Terminated("terminated (SIGTERM)")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the duration, so ``finally`` blocks remove temporary files.

    Only in the main thread and only when SIGTERM has its default action (a handler someone else
    installed, such as train's clean stop, is left alone); the previous handler comes back after.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _parents_made(dest: Path) -> Iterator[None]:
    """Create ``dest``'s missing parent folders; remove the ones created here when the body fails."""
    _, missing = _existing_ancestor(_parent(dest))
    created: list[Path] = []

    def undo() -> None:
        for d in reversed(created):
            with contextlib.suppress(OSError):  # not empty: someone else wrote there meanwhile
                os.rmdir(d)

    try:
        for d in missing:
            try:
                os.mkdir(d)
            except FileExistsError:  # made by someone else meanwhile: not ours to remove
                continue
            created.append(d)
    except OSError as exc:
        undo()
        raise cannot_write(dest, exc) from None
    try:
        yield
    except BaseException:
        undo()
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _write_errors(dest: Path) -> Iterator[None]:
    """Turn the OS refusing a write (full disk, read-only, permissions) into one ``cannot write`` line."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        raise cannot_write(dest, exc) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Missing parent folders are created. On any exception (SIGTERM too) the temporary file and
    the folders created here are removed and ``path`` is untouched. The file gets the usual
    permissions (``0666 & ~umask``), not the 0600 of ``mkstemp`` (or of the writer).
    """
    dest = check_name(path)
    with sigterm_raises(), _write_errors(dest), _parents_made(dest):
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=_parent(dest))
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_umask())  # after the writer: some (safetensors) recreate the file
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
    ``path`` (each move is an atomic rename) with the permissions ``0666 & ~umask``; on failure
    (SIGTERM too) nothing is left, not even the parent folders created here.
    """
    dest = check_name(path)
    with sigterm_raises(), _write_errors(dest), _parents_made(dest):
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=_parent(dest)))
        try:
            yield tmp_dir
            mode = 0o666 & ~_umask()
            for f in sorted(tmp_dir.iterdir()):
                os.chmod(f, mode)
                os.replace(f, _parent(dest) / f.name)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
