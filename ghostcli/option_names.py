"""Settings named in library messages, shown as the running command's options.

The library names a setting in backquotes by its Python name (`batch_size`, `dw_kernel`,
`model`), so a message reads right to a Python caller; the command line shows it as its own
option (``--batch-size``, ``--dw-kernel``, ``MODEL``). ``ghostcli.cli.app`` registers the running
command with :func:`use_options_of`; its error line and ``render.warn`` pass through
:func:`spell_options`.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Any

_SETTING = re.compile(r"`([a-z][a-z0-9_]*)`")
_SPELLING: ContextVar[dict[str, str]] = ContextVar("ghostcli_option_spelling", default={})


def use_options_of(command: Any) -> None:
    """Make :func:`spell_options` name settings as ``command``'s (a click command's) options and arguments."""
    spelling: dict[str, str] = {}
    for param in getattr(command, "params", ()):
        opts = [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]
        if getattr(param, "param_type_name", "") == "argument":
            shown = (param.metavar or param.name or "").upper().rstrip(".")
            for key in {param.name or "", (param.name or "").rstrip("s"), shown.lower()} - {""}:
                spelling[key] = shown
            continue
        for opt in opts:
            if opt.startswith("--"):
                spelling.setdefault(opt[2:].replace("-", "_"), opt)
        long_opts = [o for o in opts if o.startswith("--")]
        if param.name and long_opts:
            spelling.setdefault(param.name, long_opts[0])
    _SPELLING.set(spelling)


def spell_options(text: str) -> str:
    """``text`` with each backquoted setting the running command has written as its option (``--batch-size``).

    Names the command does not have stay as they are, backquotes included.
    """
    spelling = _SPELLING.get()
    return _SETTING.sub(lambda m: spelling.get(m[1], m[0]), text)
