"""The ``ghostcli`` Typer application: registers one module per command and maps errors to exit codes."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from ghostcli import __version__
from ghostcli.errors import GhostcliError
from ghostcli.option_names import spell_options, use_options_of

# One module per command; each exposes ``register(app)``.
COMMAND_MODULES = (
    "ghostcli.cli.list_cmd",
    "ghostcli.cli.build",
    "ghostcli.cli.ghostify",
    "ghostcli.cli.profile",
    "ghostcli.cli.check",
    "ghostcli.cli.export",
    "ghostcli.cli.quantize",
    "ghostcli.cli.train",
    "ghostcli.cli.evaluate",
)


def debug_enabled() -> bool:
    """True when ``GHOSTCLI_DEBUG`` asks for tracebacks."""
    return os.environ.get("GHOSTCLI_DEBUG", "") not in ("", "0", "false", "no")


class _ErrorMappingGroup(TyperGroup):
    """Turns library errors into ``Error: ...`` on stderr plus the right exit code."""

    def list_commands(self, ctx: Any) -> list[str]:  # keep registration order
        return list(self.commands)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _format_help(self, ctx, formatter, super().format_help)

    def invoke(self, ctx: Any) -> Any:
        args = [*ctx._protected_args, *ctx.args]
        json_mode = "--json" in args[: args.index("--") if "--" in args else len(args)]
        if args and (command := self.get_command(ctx, args[0])) is not None:
            use_options_of(command)
        try:
            return super().invoke(ctx)
        except GhostcliError as exc:
            if debug_enabled():
                raise
            _fail(str(exc), exc.exit_code, json_mode)
        except Exception as exc:
            if not _is_usage_error(exc):
                raise
            # typer/click option parsing: one line and exit 2 instead of a boxed panel
            sub = getattr(getattr(exc, "ctx", None), "command_path", "ghostcli")
            _fail(f"{exc.format_message()} (see '{sub} --help')", exc.exit_code, json_mode)  # type: ignore[attr-defined]
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a write (fsutil.Terminated)
            if debug_enabled():
                raise
            from ghostcli.fsutil import Terminated

            terminated = isinstance(exc, Terminated)
            _fail("Terminated." if terminated else "Interrupted.", 143 if terminated else 130, json_mode, prefix="")


def _is_usage_error(exc: BaseException) -> bool:
    """Click's ``UsageError`` (typer >= 0.29 vendors its own click, so match by class name)."""
    names = {c.__name__ for c in type(exc).__mro__}
    return "UsageError" in names and "NoArgsIsHelpError" not in names and hasattr(exc, "format_message")


def _fail(message: str, exit_code: int, json_mode: bool, prefix: str = "Error: ") -> NoReturn:
    """One line on stderr; under ``--json`` also the error object on stdout (docs/output.md)."""
    message = spell_options(message)
    if json_mode:
        from ghostcli import render
        from ghostcli.schema import error_envelope

        render.print_json("error", error_envelope(message, exit_code))
    typer.echo(prefix + message, err=True)
    raise typer.Exit(exit_code)


# ---------------------------------------------------------------- help pages
#
# The help texts are plain text: no rich markup ([tool.ghostcli] stays as written), one paragraph per
# blank-line-separated block, reflowed to the terminal (a line that starts with whitespace keeps its own
# line), and an ``Examples:`` block whose lines are printed whole, after the options, so that each one
# can be copied and pasted even when it is wider than the terminal.

EXAMPLES_HEADING = "Examples:"


def split_examples(text: str) -> tuple[str, list[str]]:
    """``text`` without its ``Examples:`` block, and the block's example lines (stripped, blank lines dropped)."""
    lines = inspect.cleandoc(text).splitlines()
    for i, line in enumerate(lines):
        if line.strip() == EXAMPLES_HEADING:
            return "\n".join(lines[:i]).rstrip(), [e.strip() for e in lines[i + 1:] if e.strip()]
    return "\n".join(lines), []


def reflow(text: str) -> str:
    """Each paragraph (blocks between blank lines) on one line, so the terminal width decides where it breaks.

    A line that starts with whitespace (an indented list or command) keeps a line of its own.
    """
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", inspect.cleandoc(text)):
        lines: list[str] = []
        for line in block.splitlines():
            if lines and line.strip() and not line[0].isspace() and not lines[-1][0].isspace():
                lines[-1] += " " + line.strip()
            elif line.strip():
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(p for p in paragraphs if p)


def _rich_help(command: Any) -> bool:
    """True when typer draws ``command``'s help with rich (which reads markup), False for click's plain help."""
    from typer.core import HAS_RICH

    return bool(HAS_RICH) and getattr(command, "rich_markup_mode", None) == "rich"


@contextmanager
def _help_for_display(command: Any, prose: str) -> Iterator[None]:
    """While the page is drawn: ``command``'s help is ``prose``, reflowed, and every help text is plain (escaped).

    The attributes are restored afterwards: ``command.help`` keeps the text as written (with its examples).
    """
    escape: Callable[[str], str] = str
    if _rich_help(command):
        from rich.markup import escape

    saved: list[tuple[Any, str, Any]] = []

    def put(obj: Any, attr: str, value: Any) -> None:
        saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    put(command, "help", escape(reflow(prose)))
    for param in command.params:
        if getattr(param, "help", None):
            put(param, "help", escape(reflow(param.help)))
    for sub in getattr(command, "commands", {}).values():  # a group's command list shows each first paragraph
        if sub.short_help is None and sub.help:
            put(sub, "short_help", escape(reflow(split_examples(sub.help)[0]).split("\n\n")[0]))
    try:
        yield
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


def _print_examples(command: Any, examples: list[str], formatter: Any) -> None:
    """The examples, one line each, never wrapped (rich's soft wrap leaves long lines to the terminal)."""
    if not examples:
        return
    if not _rich_help(command):
        formatter.write("\n" + EXAMPLES_HEADING + "\n" + "".join(f"  {e}\n" for e in examples))
        return
    from rich.text import Text
    from typer import rich_utils

    console = rich_utils._get_rich_console()  # typer's own: the same width, theme and option colours
    console.print()
    console.print(Text(" " + EXAMPLES_HEADING, style=rich_utils.STYLE_HELPTEXT), soft_wrap=True)
    for example in examples:
        console.print(rich_utils.highlighter(Text("   " + example)), soft_wrap=True)


def _format_help(command: Any, ctx: Any, formatter: Any, draw: Any) -> None:
    """Draw ``command``'s page with ``draw`` (typer's format_help), then its examples."""
    prose, examples = split_examples(command.help or "")
    with _help_for_display(command, prose):
        draw(ctx, formatter)
    _print_examples(command, examples, formatter)


class _HelpCommand(TyperCommand):
    """Every command's class: its help page as described above."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _format_help(self, ctx, formatter, super().format_help)


def _usage_pieces(self: Any, ctx: Any) -> list[str]:
    """An argument in the usage line as click writes it: ``NAME``, ``[NAME]``, ``NAME...`` (typer 0.29: ``{NAME}``)."""
    name = self.display_name_raw
    many = self.nargs != 1 or name.endswith("...")
    name = name.removesuffix("...")
    return [(name if self.required else f"[{name}]") + ("..." if many else "")]


_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "path": "PATH"}


def _patch_help_display() -> None:
    """Help shows no Python type names: typer 0.29 prints ``<int>``, ``<list[str]>``, ``<path>`` beside options and
    arguments, ``<bool>`` beside on/off flags (which reads as if they took a value) and ``{NAME}`` in the usage line.

    Flags show nothing, options their metavar (``CxHxW``, ``FILE``, ``N``; for one without, a word for its type),
    arguments their upper-case name, in the usage line too.
    """
    from typer.core import TyperArgument, TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_ghostcli", False):
        return

    def option_type(self: Any, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        if self.metavar is not None:
            return str(self.metavar)
        shown = str(original(self, ctx) or "")
        base = re.sub(r"^<(?:list\[)?(\w+).*$", r"\1", shown)  # <int range> -> int, <list[str]> -> str
        return _METAVARS.get(base, base.upper() or None)

    option_type._ghostcli = True  # type: ignore[attr-defined]
    # replaced on purpose (see the docstring)
    setattr(TyperOption, "display_type_rich", option_type)
    setattr(TyperArgument, "display_type_rich", lambda self, ctx: None)  # the name column says it
    setattr(TyperArgument, "display_name_raw", property(lambda self: self.metavar or (self.name or "").upper()))
    setattr(TyperArgument, "get_usage_pieces", _usage_pieces)


_patch_help_display()

app = typer.Typer(
    name="ghostcli",
    cls=_ErrorMappingGroup,
    help=(
        "Make CNNs cheaper with GhostNet's Ghost module, and measure what that bought.\n\n"
        "MACs are multiply-accumulates (the GhostNet paper's 'FLOPs'); JSON 'flops' = 2 x MACs.\n\n"
        "Examples:\n\n"
        "  ghostcli ghostify resnet50 -o ghost_resnet50.safetensors\n\n"
        "  ghostcli profile resnet50 ghost_resnet50.safetensors\n\n"
        "  ghostcli build ghostnet_100 -o ghostnet_100.safetensors"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ghostcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """ghostcli root."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)
for _info in app.registered_commands:  # every command draws its help page as _format_help says
    if _info.cls in (None, TyperCommand):
        _info.cls = _HelpCommand


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="ghostcli")
    except GhostcliError as exc:  # raised outside a command (should not happen)
        if debug_enabled():
            raise
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
