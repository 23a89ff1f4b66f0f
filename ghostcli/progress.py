"""The one progress interface engines report long work through.

An engine takes ``progress: Progress = no_progress`` and calls
``progress(description, done, total, info)`` as work advances: ``description`` names the
task ("timing batch 8", "epoch 2/10", "calibrating"), ``done`` of ``total`` steps are finished
(``total`` 0 when unknown) and ``info`` is an optional short status ("loss 0.41 ..."). The CLI
draws it as a rich bar on stderr (``render.progress_bar``); the library default draws nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """``progress(description, done, total, info="")``."""

    def __call__(self, description: str, done: int, total: int, info: str = "") -> None: ...


def no_progress(description: str, done: int, total: int, info: str = "") -> None:
    """The library default: report nothing."""
