"""`ghostcli ghostify` through CliRunner and the installed entry point."""

from __future__ import annotations

import json
import subprocess

import torch

from ghostcli.cli.app import app

from conftest import randomize_bn


def test_json_report_and_saved_artifact_rebuilds(runner, tmp_path):
    from ghostcli.artifacts import read_recipe
    from ghostcli.resolve import load_artifact

    out = tmp_path / "g.safetensors"
    res = runner.invoke(app, ["ghostify", "resnet20", "--ratio", "4", "--exclude", "layer3", "-o", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["source"] == "zoo:resnet20" and data["output"] == str(out)
    assert data["options"] == {"ratio": 4, "dw_kernel": 3, "include": [], "exclude": ["layer3"], "min_channels": 0,
                               "min_fan_in": 0, "keep_stem": True, "layer_ratios": {}, "stages": [],
                               "cheap_ratio": 0.5, "module": "v1"}
    assert data["input_size"] == [3, 32, 32] and data["macs_counter"] == "fvcore"
    assert data["replaced"] == 12 and data["kept"] == 7  # stem + 6 convs of layer3
    assert data["macs_before"] == 40_551_040 and data["flops_after"] == 2 * data["macs_after"]
    assert data["macs_ratio"] < 0.6 and data["params_after"] < data["params_before"]
    row = data["rows"][1]
    assert set(row) == {"name", "type", "kernel", "in_channels", "out_channels", "stride", "groups", "action",
                        "reason", "bn", "params_before", "params_after", "macs_before", "macs_after"}
    assert (row["name"], row["action"], row["bn"]) == ("layer1.0.conv1", "ghost", "layer1.0.bn1")
    assert read_recipe(out).ghostify == data["options"]
    loaded = load_artifact(out)
    assert sum(p.numel() for p in loaded.model.parameters()) == data["params_after"]
    assert loaded.model(torch.randn(1, 3, 32, 32)).shape == (1, 10)

    res = runner.invoke(app, ["ghostify", "resnet20", "-o", str(out)])
    assert res.exit_code == 1 and "already exists" in res.output
    res = runner.invoke(app, ["ghostify", str(out)])
    assert res.exit_code == 1 and "already ghostified" in res.output


def test_weights_are_inherited(runner, tmp_path):
    from ghostcli.models import build_model
    from ghostcli.resolve import load_artifact

    src = randomize_bn(build_model("resnet20"), seed=7)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "g.safetensors"
    res = runner.invoke(app, ["ghostify", "resnet20", "--weights", str(tmp_path / "w.pt"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "inherited 162 tensors" in res.stdout
    g = load_artifact(out).model
    torch.testing.assert_close(g.fc.weight, src.fc.weight)
    torch.testing.assert_close(g.conv1.weight, src.conv1.weight)  # the stem is kept
    torch.testing.assert_close(g.layer2[0].conv1.primary_conv[0].weight, src.layer2[0].conv1.weight[:16])
    torch.testing.assert_close(g.layer2[0].conv1.cheap_operation[1].bias, src.layer2[0].bn1.bias[16:])


def test_table_output_and_bad_input(runner):
    res = runner.invoke(app, ["ghostify", "resnet20", "--min-channels", "32", "--include", "layer*", "--include",
                              "nomatch"])
    assert res.exit_code == 0, res.output
    assert "12 of 19 convs replaced" in res.stdout
    assert "16 output channels < --min-channels 32" in res.stdout
    assert "MACs @ 3x32x32" in res.stdout and "40.55 MMac" in res.stdout
    assert "--include nomatch matches no conv layer" in res.stderr
    res = runner.invoke(app, ["ghostify", "resnet20", "--include", "nomatch"])
    assert res.exit_code == 1 and "nothing to ghostify" in res.stderr
    res = runner.invoke(app, ["ghostify", "resnet20", "--include", "nomatch", "--allow-empty", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["replaced"] == 0
    res = runner.invoke(app, ["ghostify", "ghost_resnet56"])
    assert res.exit_code == 1 and "already ghostified" in res.stderr
    res = runner.invoke(app, ["ghostify", "resnet20", "--ratio", "1"])
    assert res.exit_code == 2 and "--ratio must be an integer >= 2" in res.stderr
    res = runner.invoke(app, ["ghostify", "resnet20", "--input-size", "1x32x32"])
    assert res.exit_code == 1 and "does not run at input size 1x32x32" in res.stderr
    res = runner.invoke(app, ["ghostify", "resnet20", "-o", "x.pt"])
    assert res.exit_code == 2 and ".safetensors" in res.stderr


def test_entry_point_subprocess(ghostcli_exe):
    proc = subprocess.run([ghostcli_exe, "ghostify", "resnet20", "--ratio", "2", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["replaced"] == 18 and data["rows"][0]["reason"] == "stem (reads the input image)"
    assert 0.5 < data["macs_ratio"] < 0.56


def test_library_names_fields_in_backquotes_and_the_cli_shows_its_flags(runner):
    import pytest

    from ghostcli.convert import GhostifyOptions, ghostify
    from ghostcli.errors import UsageError
    from ghostcli.resolve import resolve_model

    with pytest.raises(UsageError, match=r"^`dw_kernel` must be a positive odd integer \(1, 3, 5 \.\.\.\), got 4$"):
        GhostifyOptions(dw_kernel=4)
    with pytest.raises(UsageError, match="^`exclude` patterns must not be empty$"):
        GhostifyOptions(exclude=(" ",))
    res = runner.invoke(app, ["ghostify", "resnet20", "--dw-kernel", "4"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: --dw-kernel must be a positive odd integer (1, 3, 5 ...), got 4"
    res = runner.invoke(app, ["ghostify", "resnet20", "--exclude", " "])
    assert res.exit_code == 2 and res.stderr.strip() == "Error: --exclude patterns must not be empty"

    glob = "layer3.[a-z0-9]*"  # a glob that reads like rich markup: the table shows it as it is
    _, rep = ghostify(resolve_model("resnet20").model, input_size=(3, 32, 32), exclude=[glob], min_channels=32)
    reasons = {r.name: r.reason for r in rep.rows}
    assert reasons["layer3.0.conv1"] == f"excluded by `exclude` {glob}"
    assert reasons["layer1.0.conv1"] == "16 output channels < `min_channels` 32"
    res = runner.invoke(app, ["ghostify", "resnet20", "--exclude", glob, "--min-channels", "32"])
    assert res.exit_code == 0, res.output
    assert f"excluded by --exclude {glob}" in res.stdout and "< --min-channels 32" in res.stdout
    assert "`" not in res.stdout
    res = runner.invoke(app, ["ghostify", "resnet20", "--exclude", glob, "--include", "zz", "--allow-empty", "--json"])
    data = json.loads(res.stdout)
    assert {r["reason"] for r in data["rows"]} == {"not matched by --include"}
    assert "--include zz matches no conv layer" in res.stderr


def test_an_artifact_saved_with_allow_empty_reloads(runner, tmp_path):
    from ghostcli.resolve import load_artifact

    out = tmp_path / "e.safetensors"
    res = runner.invoke(app, ["ghostify", "resnet20", "--include", "nomatch", "--allow-empty", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert load_artifact(out).is_ghostified
    assert runner.invoke(app, ["profile", str(out), "--no-latency", "--json"]).exit_code == 0
