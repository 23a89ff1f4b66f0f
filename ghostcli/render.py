"""Rendering helpers: rich tables on stdout, JSON for machines, progress on stderr.

Only ``ghostcli.cli`` and this module print. Progress bars go to stderr and are
silent when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ghostcli.option_names import spell_options
from ghostcli.progress import Progress as ProgressFn
from ghostcli.progress import no_progress
from ghostcli.schema import envelope

# Tables piped to a file or CI log get a wide page instead of rich's 80-column fallback.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
stdout = Console(soft_wrap=False, width=_WIDTH)
stderr = Console(stderr=True)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, paths and numpy scalars -> plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _spelled(obj: Any) -> Any:
    """Every string inside plain JSON data passed through :func:`spell_options`."""
    if isinstance(obj, str):
        return spell_options(obj)
    if isinstance(obj, dict):
        return {k: _spelled(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_spelled(v) for v in obj]
    return obj


def print_json(kind: str, obj: Any) -> None:
    """Write ``obj`` (a dict or dataclass) as indented JSON to stdout inside the ``kind`` envelope.

    The envelope (``schema_version``, ``kind`` first) is docs/output.md's contract for every command; settings
    that library messages name in backquotes are spelled as the command's options (:func:`spell_options`).
    """
    sys.stdout.write(json.dumps(envelope(kind, _spelled(to_jsonable(obj))), indent=2) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          numeric: Sequence[int] = ()) -> Table:
    """A rich table; columns whose index is in ``numeric`` are right-aligned."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, col in enumerate(columns):
        t.add_column(col, justify="right" if i in numeric else "left", no_wrap=i == 0)
    for row in rows:  # cells may hold rich markup; settings named in backquotes read as the command's options
        t.add_row(*(spell_options(str(v)) for v in row))
    return t


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def progress(transient: bool = True) -> Progress:
    """A progress bar on stderr, disabled when stderr is not a terminal."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=stderr,
        transient=transient,
        disable=not stderr.is_terminal,
    )


@contextlib.contextmanager
def progress_bar(transient: bool = True, enabled: bool = True) -> Iterator[ProgressFn]:
    """A :class:`ghostcli.progress.Progress` drawn as rich bars on stderr: one bar per description.

    A new description starts a new bar; with ``transient`` the bars vanish when the block ends.
    """
    bars = progress(transient=transient)
    tasks: dict[str, TaskID] = {}

    def report(description: str, done: int, total: int, info: str = "") -> None:
        if description not in tasks:
            tasks[description] = bars.add_task(description, total=total or None, completed=done, info=info)
        else:
            bars.update(tasks[description], completed=done, total=total or None, info=info)

    if not enabled:
        yield no_progress
        return
    with bars:
        yield report


def warn(message: str) -> None:
    """A warning line on stderr (settings named as the running command's options: :func:`spell_options`)."""
    stderr.print(f"[yellow]Warning:[/] {escape(spell_options(message))}", highlight=False)


def info(message: str) -> None:
    """An informational line on stderr."""
    stderr.print(message, highlight=False)

