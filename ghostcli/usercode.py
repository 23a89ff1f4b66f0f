"""Run code that is not ghostcli's (a user's factory, a model's forward) without letting it break the CLI.

While it runs, whatever it prints goes to stderr (stdout carries only ghostcli's own
output, so ``--json`` stays parseable), and any exception it raises, ``SystemExit``
included, becomes one :class:`~ghostcli.errors.GhostcliError` line that says what failed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

from ghostcli.errors import GhostcliError, one_line

T = TypeVar("T")


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send prints to stderr for the duration (stdout is reserved for ghostcli's own output)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def call_user_code(
    what: str,
    fn: Callable[[], T],
    *,
    error: type[GhostcliError] = GhostcliError,
) -> T:
    """Call ``fn()`` with stdout redirected; turn any failure into ``error(f"{what} failed: ...")``.

    ``what`` names the code for the message (``"factory 'pkg.mod:make'"``). A
    :class:`GhostcliError` raised inside passes through unchanged; ``KeyboardInterrupt``
    is never swallowed.
    """
    try:
        with stdout_to_stderr():
            return fn()
    except GhostcliError:
        raise
    except SystemExit as exc:
        raise error(f"{what} called exit({exc.code!r})") from None
    except Exception as exc:
        raise error(f"{what} failed: {type(exc).__name__}: {one_line(exc, 160)}") from None
