"""The ``ghostcli`` Typer application: registers one module per command and maps errors to exit codes."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

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


def _hide_flag_types() -> None:
    """Typer 0.29 prints ``<bool>`` beside on/off flags, which reads as if they took a value: print nothing."""
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_ghostcli", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.is_flag else original(self, ctx)

    display_type_rich._ghostcli = True  # type: ignore[attr-defined]
    setattr(TyperOption, "display_type_rich", display_type_rich)  # replaced on purpose (see docstring)


_hide_flag_types()

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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="ghostcli")
    except GhostcliError as exc:  # raised outside a command (should not happen)
        if debug_enabled():
            raise
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
