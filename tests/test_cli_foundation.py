"""`ghostcli --help`, `--version`, `list` and `build` through CliRunner and the installed entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ghostcli import __version__
from ghostcli.cli.app import app
from ghostcli.resolve import resolve_model


def test_version(runner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ghostcli {__version__}"


def test_list(runner) -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("ghostnet_050", "ghostnet_100", "ghostnet_130", "resnet56", "vgg16", "resnet50"):
        assert name in result.output
    data = json.loads(runner.invoke(app, ["list", "ghostnet_", "--json"]).output)
    assert [m["name"] for m in data["zoo"]] == ["ghostnet_050", "ghostnet_100", "ghostnet_130"]
    assert data["zoo"][1]["paper"]["macs"] == 141e6


def test_build_saves_loadable_artifact(runner, tmp_path: Path) -> None:
    out = tmp_path / "g.safetensors"
    result = runner.invoke(app, ["build", "ghostnet_050", "--num-classes", "10", "--input-size", "3x96x96",
                                 "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["output_shape"] == [1, 10] and data["input_size"] == [3, 96, 96]
    assert data["params"] == sum(p.numel() for p in resolve_model("ghostnet_050", options={"num_classes": 10}).model.parameters())
    loaded = resolve_model(str(out))
    assert loaded.input_size == (3, 96, 96) and loaded.model.classifier.out_features == 10
    again = runner.invoke(app, ["build", "ghostnet_050", "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output


def test_build_human_summary(runner) -> None:
    result = runner.invoke(app, ["build", "ghostnet_100"])
    assert result.exit_code == 0
    assert "5.18 M (5,182,508)" in result.output and "1x1000" in result.output


def test_errors_are_one_line(runner) -> None:
    result = runner.invoke(app, ["build", "ghostnet_10"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: unknown model 'ghostnet_10' (did you mean ghostnet_130, ghostnet_100, ghostnetv3_160?); see 'ghostcli list'"
    ]
    assert runner.invoke(app, ["build", "resnet56", "--width", "2"]).exit_code == 2
    assert runner.invoke(app, ["build", "ghostnet_100", "--input-size", "3x2x"]).exit_code == 2
    assert runner.invoke(app, ["build", "ghostnet_100", "--num-classes", "0"]).exit_code == 2
    fails = runner.invoke(app, ["build", "vgg16", "--input-size", "3x16x16"])
    assert fails.exit_code == 1 and "fails on input" in fails.output


def test_debug_shows_traceback(tmp_path: Path, ghostcli_exe: str) -> None:
    env = {**os.environ, "GHOSTCLI_DEBUG": "1"}
    proc = subprocess.run([ghostcli_exe, "build", "nope_model"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_installed_entry_point(ghostcli_exe: str, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    proc = subprocess.run([ghostcli_exe, "build", "resnet20", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "resnet20" in proc.stdout
    proc = subprocess.run([ghostcli_exe, "build", "resnet20", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr
    mod = subprocess.run([sys.executable, "-m", "ghostcli", "--version"], capture_output=True, text=True)
    assert mod.returncode == 0 and __version__ in mod.stdout


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from ghostcli.cli.app import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "print('torch' in sys.modules, 'torchvision' in sys.modules, 'openvino' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "False"]


def test_every_command_help_does_not_import_torch(ghostcli_exe: str) -> None:
    code = (
        "import json, sys; from typer.testing import CliRunner; from ghostcli.cli.app import app; "
        "names = [c.name for c in app.registered_commands]; "
        "bad = [n for n in names if CliRunner().invoke(app, [n, '--help']).exit_code != 0]; "
        "after_help = 'torch' in sys.modules; import torch; "
        "print(json.dumps([names, bad, after_help, 'torch' in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    names, bad, after_help, after_import = json.loads(proc.stdout)
    # every command's --help ran (all of them, not an empty list) and none imported torch ...
    assert set(names) >= {"list", "build", "ghostify", "profile", "check", "export", "quantize", "train", "evaluate"}
    assert bad == [] and after_help is False
    # ... and the check is not vacuous: in the same interpreter, importing torch shows up in sys.modules
    assert after_import is True


def test_export_and_quantize_usage_errors_fail_before_torch(tmp_path: Path) -> None:
    """Impossible options are refused before any model (or torch) is loaded, with exit 2."""
    cases = [
        ["export", "resnet20", "--format", "tflite"],
        ["export", "resnet20", "--format", "onnx", "--fp16"],
        ["export", "resnet20", "--format", "ov", "--no-simplify"],
        ["export", "resnet20", "--batch-size", "1", "--dynamic-batch"],
        ["quantize", "resnet20", "--preset", "fast"],
        ["quantize", "resnet20", "--subset-size", "0"],
        ["quantize", "resnet20", "--max-accuracy-drop", "150%"],
        ["quantize", "resnet20", "-o", str(tmp_path / "int8.onnx")],
    ]
    code = (
        "import sys, json; from typer.testing import CliRunner; from ghostcli.cli.app import app; "
        f"cases = json.loads({json.dumps(json.dumps(cases))}); "
        "codes = [CliRunner().invoke(app, c).exit_code for c in cases]; "
        "print(codes, 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{[2] * len(cases)} False"
    assert list(tmp_path.iterdir()) == []


def test_help_shows_no_value_type_beside_flags(runner) -> None:
    """On/off flags take no value, so the help must not print a type (``<bool>``) beside them."""
    res = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "<bool>" not in res.output
    # options that take values show what they take (a metavar, no Python type name: tests/test_help_text.py)
    assert "--fp16" in res.output and re.search(r"--opset +N ", res.output)
