"""One exception family for every failure a user can cause or meet.

The CLI turns a :class:`GhostcliError` into ``Error: <message>`` on stderr and
exits with :attr:`GhostcliError.exit_code`; ``GHOSTCLI_DEBUG=1`` shows the
traceback instead.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REGRESSION = 3


class GhostcliError(Exception):
    """Base class: a failure with a one-line message and an exit code."""

    exit_code: int = EXIT_ERROR


class UsageError(GhostcliError):
    """An impossible option value or combination (exit 2)."""

    exit_code = EXIT_USAGE


class ModelNotFoundError(GhostcliError):
    """A MODEL argument that names nothing ghostcli can build or load."""


class ArtifactError(GhostcliError):
    """A missing, truncated, corrupt or mismatched model file."""


class OutputExistsError(GhostcliError):
    """An output path that exists while ``--force`` was not given."""


class ConversionError(GhostcliError):
    """ghostify could not convert the model as asked."""


class DeviceError(GhostcliError):
    """A device that was asked for but is not available (e.g. CUDA)."""


class ExportError(GhostcliError):
    """An export or its numerical verification failed."""


class DataError(GhostcliError):
    """A data set that is missing, empty or unusable."""


class RegressionError(GhostcliError):
    """``check`` found a limit exceeded (exit 3)."""

    exit_code = EXIT_REGRESSION


def one_line(exc: BaseException, limit: int = 200, *, first_line: bool = False) -> str:
    """``exc``'s message on one line (whitespace collapsed), cut to ``limit`` characters.

    With ``first_line``, only the first non-empty line of the message (for messages that go on
    with a traceback or a dump after their first line).
    """
    text = str(exc)
    if first_line:
        text = next((ln for ln in text.splitlines() if ln.strip()), "")
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
