"""docs/output.md's contract: every --json output starts with schema_version and kind; errors are JSON too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ghostcli.cli.app import COMMAND_MODULES, app
from ghostcli.schema import ERROR_KIND, SCHEMA_VERSION, envelope, error_envelope

from bad_input import run_bad


def _json(args: list[str]) -> dict:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (args, res.stderr)
    data = json.loads(res.stdout)
    assert list(data)[:2] == ["schema_version", "kind"] and data["schema_version"] == SCHEMA_VERSION, data
    return data


def test_envelope_puts_version_and_kind_first_and_keeps_a_payloads_own() -> None:
    assert list(envelope("export", {"a": 1, "output": "m.onnx"})) == ["schema_version", "kind", "a", "output"]
    assert envelope("export", {"a": 1})["kind"] == "ghostcli.export"
    own = envelope("check", {"kind": "ghostcli.baseline", "schema_version": "1.3", "x": 2})
    assert own == {"schema_version": "1.3", "kind": "ghostcli.baseline", "x": 2}
    assert error_envelope("boom", 3) == {"schema_version": SCHEMA_VERSION, "kind": ERROR_KIND, "message": "boom",
                                         "exit_code": 3}


def test_every_command_that_prints_json_names_its_kind(tmp_path: Path) -> None:
    """Each command's --json is enveloped with kind ghostcli.<command> (quantize/train/evaluate are covered in
    their own suites; here the cheap ones run end to end)."""
    art = tmp_path / "g.safetensors"
    kinds = {
        "list": _json(["list", "resnet2*", "--json"]),
        "build": _json(["build", "resnet20", "--json"]),
        "ghostify": _json(["ghostify", "resnet20", "-o", str(art), "--json"]),
        "profile": _json(["profile", str(art), "--no-latency", "--json"]),
        "check": _json(["check", "resnet20", "--max-params", "1M", "--no-config", "--json"]),
        "export": _json(["export", str(art), "-o", str(tmp_path / "g.onnx"), "--json"]),
    }
    assert {k: v["kind"] for k, v in kinds.items()} == {k: f"ghostcli.{k}" for k in kinds}
    assert "resnet20" in [z["name"] for z in kinds["list"]["zoo"]]
    assert kinds["ghostify"]["output"] == str(art) and kinds["profile"]["models"][0]["params"] > 0
    assert kinds["export"]["format"] == "onnx"


def test_every_command_module_declares_a_json_kind() -> None:
    """A new command that prints JSON must go through render.print_json with its own kind."""
    root = Path(__file__).resolve().parents[1] / "ghostcli" / "cli"
    for module in COMMAND_MODULES:
        name = module.rsplit(".", 1)[-1]
        text = (root / f"{name}.py").read_text()
        if "--json" in text or "JsonOpt" in text:
            assert f'render.print_json("{name.removesuffix("_cmd")}"' in text, module


@pytest.mark.parametrize(("args", "code", "match"), [
    (["profile", "nosuch", "--json"], 1, "unknown model 'nosuch'"),
    (["export", "resnet20", "--format", "zz", "--json"], 2, "unknown export format"),
    (["ghostify", "resnet20", "--ratio", "1", "--json"], 2, "ratio"),
    (["build", "resnet20", "--width", "-1", "--json"], 2, "width"),
    (["profile", "resnet20", "--runs", "abc", "--json"], 2, "Invalid value for '--runs'"),  # typer's own parsing
    (["check", "resnet20", "--bogus", "--json"], 2, "No such option: --bogus"),
])
def test_errors_under_json_are_one_stderr_line_and_an_error_object(tmp_path: Path, args: list[str], code: int,
                                                                   match: str) -> None:
    run_bad(args, tmp_path, code=code, match=match)  # run_bad checks the JSON object when --json is given


def test_usage_errors_are_one_line_without_json(tmp_path: Path) -> None:
    line = run_bad(["profile", "resnet20", "--bogus"], tmp_path, code=2, match="No such option: --bogus")
    assert line.endswith("(see 'ghostcli profile --help')")


def test_error_json_from_the_console_script(ghostcli_exe: str, tmp_path: Path) -> None:
    proc = subprocess.run([ghostcli_exe, "profile", "nosuch", "--json"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == error_envelope("unknown model 'nosuch'; see 'ghostcli list'", 1)
    assert proc.stderr.strip().splitlines() == ["Error: unknown model 'nosuch'; see 'ghostcli list'"]


def test_a_json_flag_after_double_dash_is_not_json_mode(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["profile", "nosuch", "--", "--json"])
    assert res.exit_code != 0 and res.stdout.strip() == ""
