"""`ghostcli check`: limits, baselines, config files, exit codes 0/1/2/3."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import get_type_hints

import pytest

from ghostcli.analysis.baseline import read_baseline
from ghostcli.analysis.check import run_check
from ghostcli.analysis.check_config import build_settings, find_config, read_config
from ghostcli.analysis.check_keys import CHECK_KEYS, CheckSettings
from ghostcli.cli.app import app
from ghostcli.cli.check import check_cmd
from ghostcli.cli.check_view import keys_markdown, spell_help
from ghostcli.errors import ArtifactError, UsageError
from ghostcli.option_names import spell_options, use_options_of
from ghostcli.resolve import resolve_model

DOCS = Path(__file__).resolve().parents[1] / "docs"

R20_MACS, R20_PARAMS = 40_931_968, 269_722


def _one_line_error(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    return lines[0]


def test_limits_pass_and_fail(runner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ok = runner.invoke(app, ["check", "resnet20", "--max-macs", "41M", "--max-params", "270k", "--no-config"])
    assert ok.exit_code == 0, ok.output
    assert "pass" in ok.stdout and "FAIL" not in ok.stdout and "40.93 MMac" in ok.stdout
    bad = runner.invoke(app, ["check", "resnet20", "--max-macs", "40.9M", "--max-params", "0.27M", "--json"])
    assert bad.exit_code == 3
    data = json.loads(bad.stdout)
    assert data["kind"] == "ghostcli.check" and data["passed"] is False
    verdicts = {r["name"]: (r["measured"], r["limit"], r["passed"]) for r in data["results"]}
    assert verdicts == {"macs": (R20_MACS, 40.9e6, False), "params": (R20_PARAMS, 270e3, True)}
    assert "1 of 2 limits exceeded: macs 40.93 MMac > 40.90 MMac" in _one_line_error(bad)


@pytest.mark.parametrize(("args", "text"), [
    (["--max-macs", "lots"], "--max-macs: cannot read 'lots'"),
    (["--max-params", "15Q"], "--max-params"),
    (["--max-params", "-5M"], "--max-params"),
    (["--max-macs", "1G", "--tolerance", "two%"], "--tolerance"),
    (["--max-latency-ratio", "1.2"], "needs --latency-reference"),
    ([], "nothing to check"),
    (["--max-macs", "1G", "--update-baseline"], "--update-baseline needs --baseline"),
])
def test_usage_errors_exit_2(runner, tmp_path: Path, monkeypatch, args: list[str], text: str) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["check", "resnet20", *args])
    assert res.exit_code == 2, res.output
    assert text in _one_line_error(res)


def test_human_sizes_parse() -> None:
    s = build_settings({"max-macs": "2.5G", "max-params": "15M", "max-weights": "500k", "tolerance": "2%"}, {}, None)
    assert (s.max_macs, s.max_params, s.max_weights, s.tolerance) == (2.5e9, 15e6, 500e3, 0.02)
    s = build_settings({"max-params": "15M"}, {"max-params": 1000, "max-macs": "1e9", "runs": 7}, None)
    assert (s.max_params, s.max_macs, s.runs) == (15e6, 1e9, 7) and s.sources["max-params"] == "`max_params`"
    assert s.sources["max-macs"] == "config"


def test_baseline_round_trip(runner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "base.json"
    res = runner.invoke(app, ["check", "resnet20", "--baseline", str(base), "--update-baseline"])
    assert res.exit_code == 0, res.output
    data = json.loads(base.read_text())
    assert (data["kind"], data["schema_version"], data["macs"], data["params"]) == (
        "ghostcli.baseline", "1.0", R20_MACS, R20_PARAMS)
    assert data["environment"]["torch"]
    same = runner.invoke(app, ["check", "resnet20", "--baseline", str(base)])
    assert same.exit_code == 0, same.output
    grown = runner.invoke(app, ["check", "resnet56", "--baseline", str(base), "--tolerance", "2%"])
    assert grown.exit_code == 3
    assert "2 of 2 limits exceeded" in _one_line_error(grown)
    # a profile --json file is accepted as a baseline too
    prof = runner.invoke(app, ["profile", "resnet56", "--no-latency", "--json"])
    (tmp_path / "p.json").write_text(prof.stdout)
    assert read_baseline(tmp_path / "p.json", "resnet56").macs == 126_554_752
    assert runner.invoke(app, ["check", "resnet56", "--baseline", "p.json"]).exit_code == 0


def test_bad_baselines_exit_1(runner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["check", "resnet20", "--baseline", "missing.json"])
    assert res.exit_code == 1 and "does not exist" in _one_line_error(res)
    Path("other.json").write_text('{"macs": 1, "params": 2}')
    res = runner.invoke(app, ["check", "resnet20", "--baseline", "other.json"])
    assert res.exit_code == 1 and "not a ghostcli baseline" in _one_line_error(res)
    Path("text.json").write_text("macs=1\n")
    res = runner.invoke(app, ["check", "resnet20", "--baseline", "text.json"])
    assert res.exit_code == 1 and "is not JSON" in _one_line_error(res)
    Path("v9.json").write_text('{"kind": "ghostcli.baseline", "schema_version": "9.0", "name": "x", "macs": 1, "params": 1}')
    with pytest.raises(ArtifactError, match="schema version"):
        read_baseline(Path("v9.json"))
    res = runner.invoke(app, ["check", "no_such_model_xyz", "--max-macs", "1G"])
    assert res.exit_code == 1 and "unknown model" in _one_line_error(res)


def test_config_files(runner, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "src"
    sub.mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.ghostcli.check]\nmodel = "resnet20"\nmax-macs = "40M"\nmax_params = 300000\n')
    monkeypatch.chdir(sub)
    assert find_config() == tmp_path / "pyproject.toml"
    res = runner.invoke(app, ["check", "--json"])
    assert res.exit_code == 3, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["results"]}
    assert rows["macs"]["limit"] == 40e6 and rows["macs"]["source"] == "pyproject.toml"
    assert rows["params"]["limit"] == 300e3 and rows["params"]["passed"]
    # the command line wins over the config file
    assert runner.invoke(app, ["check", "--max-macs", "41M"]).exit_code == 0
    # ghostcli.toml is preferred and relative baseline paths are relative to it
    (tmp_path / "ghostcli.toml").write_text('model = "resnet20"\n[check]\nbaseline = "ci/base.json"\n')
    (tmp_path / "ci").mkdir()
    assert runner.invoke(app, ["check", "--update-baseline"]).exit_code == 0
    assert json.loads((tmp_path / "ci" / "base.json").read_text())["macs"] == R20_MACS
    (tmp_path / "ghostcli.toml").write_text('max-macs = "1G"\nmax-flops = "2G"\n')
    res = runner.invoke(app, ["check", "resnet20"])
    assert res.exit_code == 2 and "unknown key 'max-flops'" in _one_line_error(res)
    (tmp_path / "ghostcli.toml").write_text('max-macs = \n')
    with pytest.raises(UsageError, match="not valid TOML"):
        read_config(tmp_path / "ghostcli.toml")


def test_latency_ratio_against_reference_in_same_run(tmp_path: Path) -> None:
    base = tmp_path / "b.json"
    s = build_settings({"model": "resnet20", "latency-reference": "resnet56", "max-latency-ratio": "100",
                        "baseline": str(base), "runs": 3, "warmup": 1, "input-size": "3x16x16"}, {}, None)
    rep = run_check(s, update_baseline=True, load=resolve_model)
    ratio = rep.measured["latency_ratio"]
    assert rep.passed and 0 < ratio < 100 and rep.results[0].name == "latency_ratio"
    recorded = json.loads(base.read_text())
    assert recorded["latency_reference"] == "resnet56" and recorded["latency_ratio"] == pytest.approx(ratio)
    s = build_settings({"model": "resnet20", "latency-reference": "resnet56", "max-latency-ratio": "0.001",
                        "baseline": str(base), "latency-tolerance": "1000%", "runs": 3, "warmup": 1,
                        "input-size": "3x16x16"}, {}, None)
    rep = run_check(s, load=resolve_model)
    names = {(r.name, r.source.startswith("baseline")): r.passed for r in rep.results}
    assert names[("latency_ratio", False)] is False and rep.passed is False
    assert names[("latency_ratio", True)] is True  # compared with the recorded ratio, 10x slack


def test_timed_check_reports_conditions_and_channels_last(runner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ghostcli.toml").write_text('model = "resnet20"\nchannels-last = true\nthreads = 1\n')
    res = runner.invoke(app, ["check", "--latency-reference", "resnet56", "--max-latency-ratio", "100", "--runs", "3",
                              "--warmup", "1", "--input-size", "3x16x16", "--json"])
    assert res.exit_code == 0, res.output
    c = json.loads(res.stdout)["conditions"]
    assert c["memory_format"] == "channels_last" and c["threads"] == 1 and c["runs"] == 3 and c["device"] == "cpu"
    res = runner.invoke(app, ["check", "--max-latency-ms", "1e9", "--no-channels-last", "--runs", "2",
                              "--input-size", "3x16x16"])
    assert res.exit_code == 0, res.output
    assert "Conditions: device: cpu" in res.stdout and "memory format: NCHW" in res.stdout
    untimed = runner.invoke(app, ["check", "--max-macs", "1G", "--json"])
    assert untimed.exit_code == 0 and json.loads(untimed.stdout)["conditions"] is None
    (tmp_path / "ghostcli.toml").write_text('model = "resnet20"\nchannels-last = "yes"\nmax-macs = "1G"\n')
    bad = runner.invoke(app, ["check"])
    assert bad.exit_code == 2 and "channels-last must be true or false" in _one_line_error(bad)


def test_subprocess_exit_codes(ghostcli_exe: str, tmp_path: Path) -> None:
    over = subprocess.run([ghostcli_exe, "check", "resnet20", "--max-params", "100k", "--no-config"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert over.returncode == 3 and "FAIL" in over.stdout
    assert over.stderr.strip() == "Error: 1 of 1 limits exceeded: params 269.72 k > 100.00 k"


# ---------------------------------------------------------------- one table of keys

CLI_ONLY = {"update_baseline", "config", "no_config", "trust_factory", "json_out"}


def _check_command():
    import typer.main

    return typer.main.get_command(app).commands["check"]  # type: ignore[attr-defined]


def test_table_settings_and_options_agree() -> None:
    """Adding a key to the table, CheckSettings or the CLI alone fails here."""
    assert [k.field for k in CHECK_KEYS.values()] == [f.name for f in fields(CheckSettings)][:-2]
    assert [f.name for f in fields(CheckSettings)][-2:] == ["config_path", "sources"]
    params = inspect.signature(check_cmd).parameters
    assert set(params) - CLI_ONLY == {k.field for k in CHECK_KEYS.values()}
    hints = get_type_hints(check_cmd, include_extras=True)
    use_options_of(_check_command())  # what the error handler does for `ghostcli check`
    for key in CHECK_KEYS.values():
        info = hints[key.field].__metadata__[0]
        assert info.help == spell_help(key.help) == spell_options(key.help), key.key
        assert "`" not in info.help, key.key
        first = info.metavar if key.key == "model" else info.default  # typer keeps the first declaration there
        flag = spell_options(f"`{key.field}`")  # a message naming the field shows the key's own option
        assert first.split("/")[0] == flag == ("MODEL" if key.key == "model" else f"--{key.key}"), key.key
    assert all(k.limit is None or k.unit in ("MAC", "params", "bytes", "ms", "x") for k in CHECK_KEYS.values())


def test_docs_list_every_key() -> None:
    """docs/ci.md holds the generated key table, and its examples use only known keys."""
    text = (DOCS / "ci.md").read_text()
    block = text.split("<!-- check-keys -->")[1].strip()
    assert block == keys_markdown(), "regenerate the table in docs/ci.md with ghostcli.cli.check_view.keys_markdown()"
    assert set(re.findall(r"^\| `([a-z-]+)` \|", block, flags=re.M)) == set(CHECK_KEYS)
    for example in re.findall(r"```toml\n(.*?)```", text, flags=re.S):
        section = tomllib.loads(example)["tool"]["ghostcli"]["check"]
        assert set(section) <= set(CHECK_KEYS)


def test_library_messages_name_settings_not_options() -> None:
    """Library messages name settings by field in backquotes (ghostcli.option_names); config keys stay as written."""
    with pytest.raises(UsageError) as err:
        build_settings({"max-latency-ratio": "1.2"}, {}, None)
    assert str(err.value) == "`max_latency_ratio` needs `latency_reference` MODEL (timed in the same run)"
    with pytest.raises(UsageError, match="^`max_macs`: cannot read 'lots'"):
        build_settings({"max_macs": "lots"}, {}, None)
    with pytest.raises(UsageError, match="^ghostcli.toml max-macs: cannot read 'lots'"):
        build_settings({}, {"max-macs": "lots"}, Path("ghostcli.toml"))
    with pytest.raises(UsageError, match="unknown key 'max-flops'"):
        build_settings({"max-flops": "1G"}, {}, None)
    with pytest.raises(UsageError) as err:
        run_check(build_settings({"model": "resnet20", "max-macs": "1G"}, {}, None), load=resolve_model,
                  update_baseline=True)
    assert str(err.value) == "`update_baseline` needs `baseline` FILE"
    with pytest.raises(UsageError, match="^no `model` given"):
        run_check(build_settings({"max-macs": "1G"}, {}, None), load=resolve_model)
    with pytest.raises(ArtifactError) as err2:
        read_baseline(Path("no-such-baseline.json"))
    assert str(err2.value).endswith("(create it with `update_baseline`)")
    assert "--" not in str(err2.value)


@pytest.mark.parametrize(("given", "args", "field", "flag"), [
    ({"max-weights": "0"}, ["--max-weights", "0"], "max_weights", "--max-weights"),
    ({"max-latency-ms": "1", "latency-tolerance": "5%"}, ["--max-latency-ms", "1", "--latency-tolerance", "5%"],
     "latency_tolerance", "--latency-tolerance"),
])
def test_a_library_error_names_the_field_and_the_cli_the_flag(runner, tmp_path: Path, monkeypatch, given, args,
                                                              field: str, flag: str) -> None:
    """The same error: the library message has `field`, the command line shows --flag there (and nothing else changes)."""
    with pytest.raises(UsageError) as err:
        build_settings(given, {}, None)
    library = str(err.value)
    assert library.startswith(f"`{field}`") and "--" not in library
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["check", "resnet20", *args, "--no-config"])
    assert res.exit_code == 2
    assert _one_line_error(res) == "Error: " + library.replace(f"`{field}`", flag).replace("`baseline`", "--baseline")


def test_special_terms_read_as_the_command_on_the_command_line(runner, tmp_path: Path, monkeypatch) -> None:
    """Messages that quote a whole command spell each setting in it: MODEL, --baseline FILE, --update-baseline."""
    monkeypatch.chdir(tmp_path)
    Path("other.json").write_text('{"macs": 1, "params": 2}')
    with pytest.raises(ArtifactError) as err:
        read_baseline(Path("other.json"))
    assert str(err.value).endswith("write one with 'ghostcli check `model` `baseline` FILE `update_baseline`'")
    res = runner.invoke(app, ["check", "resnet20", "--baseline", "other.json", "--no-config"])
    assert _one_line_error(res).endswith("write one with 'ghostcli check MODEL --baseline FILE --update-baseline'")
    Path("text.json").write_text("macs=1\n")
    res = runner.invoke(app, ["check", "resnet20", "--baseline", "text.json", "--no-config"])
    assert _one_line_error(res) == ("Error: baseline text.json is not JSON "
                                    "(expected a file written by 'ghostcli check --update-baseline')")


def test_baseline_records_and_compares_input_size(runner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["check", "resnet20", "--baseline", "b.json", "--update-baseline", "--no-config"])
    assert res.exit_code == 0, res.output
    assert json.loads(Path("b.json").read_text())["input_size"] == [3, 32, 32]
    assert read_baseline(Path("b.json")).input_size == [3, 32, 32]
    res = runner.invoke(app, ["check", "resnet20", "--baseline", "b.json", "--input-size", "3x16x16", "--no-config"])
    assert res.exit_code == 1
    assert _one_line_error(res) == (
        "Error: baseline b.json was recorded at input size 3x32x32, this check measures 3x16x16: "
        "pass --input-size 3x32x32 or re-create the baseline with --update-baseline")
    ok = runner.invoke(app, ["check", "resnet20", "--baseline", "b.json", "--input-size", "3x32x32", "--no-config"])
    assert ok.exit_code == 0, ok.output
