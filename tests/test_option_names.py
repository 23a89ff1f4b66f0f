"""Library messages name settings in backquotes; the CLI shows the running command's own options."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ghostcli.cli.app import app
from ghostcli.errors import UsageError
from ghostcli.option_names import spell_options, use_options_of

from bad_input import run_bad


def _command(name: str):
    import typer.main

    group = typer.main.get_command(app)
    return group.commands[name]  # type: ignore[attr-defined]


def test_settings_become_the_commands_options_and_arguments() -> None:
    use_options_of(_command("export"))
    assert spell_options("`batch_size` and `dynamic_batch` exclude each other") == \
        "--batch-size and --dynamic-batch exclude each other"
    assert spell_options("`no_simplify` needs `format` onnx; `model` fails") == \
        "--no-simplify needs --format onnx; MODEL fails"
    assert spell_options("`not_an_option` and `layer1.0` stay") == "`not_an_option` and `layer1.0` stay"
    use_options_of(_command("profile"))
    assert spell_options("`models` and `model` and `batch_size`") == "MODEL and MODEL and --batch-size"
    use_options_of(_command("quantize"))  # an option with two names: both are known
    assert spell_options("`calib_images` `subset_size`") == "--calib-images --subset-size"


def test_an_error_from_the_library_is_shown_with_the_commands_flags(tmp_path: Path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise UsageError("`batch_size` must be at least 1 (or use `no_latency`)")

    monkeypatch.setattr("ghostcli.resolve.resolve_model", fail)
    line = run_bad(["profile", "resnet20", "--json"], tmp_path, code=2, match="--batch-size must be at least 1")
    assert line == "Error: --batch-size must be at least 1 (or use --no-latency)"


def test_json_strings_are_spelled_too(monkeypatch) -> None:
    from ghostcli import render

    use_options_of(_command("ghostify"))
    monkeypatch.setattr(render.sys, "stdout", out := __import__("io").StringIO())
    render.print_json("ghostify", {"rows": [{"reason": "fewer than `min_channels` channels"}], "n": 1})
    assert json.loads(out.getvalue())["rows"][0]["reason"] == "fewer than --min-channels channels"


def test_warnings_are_spelled(capsys) -> None:
    from ghostcli import render

    use_options_of(_command("train"))
    render.warn("`epochs` [sic] is small")
    assert "--epochs [sic] is small" in capsys.readouterr().err  # brackets are not rich markup


def test_cli_runner_invocations_do_not_leak_spelling() -> None:
    CliRunner().invoke(app, ["list", "zz*"])
    assert spell_options("`batch_size`") == "`batch_size`"  # list has no --batch-size
