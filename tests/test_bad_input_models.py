"""Bad model files and names: one clean line, the right exit code, nothing written or changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ghostcli.artifacts import FORMAT, RECIPE_KEY, save_artifact
from ghostcli.resolve import resolve_model

from bad_input import run_bad


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder of broken and mismatched model files beside one good artifact."""
    r20 = resolve_model("resnet20")
    state = r20.model.state_dict()
    save_artifact(r20.model, tmp_path / "good.safetensors", r20.recipe)
    save_file({**state, "fc.weight": torch.zeros(5, 64)}, str(tmp_path / "shape.safetensors"))
    torch.save({**state, "fc.weight": torch.zeros(5, 64)}, tmp_path / "shape.pt")
    torch.save({1: torch.zeros(1)}, tmp_path / "intkeys.pt")
    torch.save({k: v for k, v in state.items() if k != "fc.bias"}, tmp_path / "missing.pt")
    torch.save(state, tmp_path / "state.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    (tmp_path / "config.pt").write_text(json.dumps({"lr": 0.1}))
    shutil.copy(tmp_path / "good.safetensors", tmp_path / "renamed.pt")
    (tmp_path / "model.xml").write_text("<?xml version='1.0'?><net name='x'></net>")
    (tmp_path / "empty.pt").write_bytes(b"")
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "header.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    save_file(state, str(tmp_path / "norecipe.safetensors"))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "notjson.safetensors"),
              metadata={"format": FORMAT, RECIPE_KEY: "{not json"})
    save_file({"x": torch.zeros(1)}, str(tmp_path / "future.safetensors"),
              metadata={RECIPE_KEY: json.dumps({"source": "zoo:resnet20", "format": "ghostcli-artifact/9"})})
    (tmp_path / "adir").mkdir()
    return tmp_path


CASES = [
    # (args, exit code, what the message must say)
    (["build", "resnet20", "--weights", "shape.safetensors"], 1, "shape mismatch at fc.weight (5x64 in the file"),
    (["ghostify", "resnet20", "--weights", "shape.pt"], 1, "shape mismatch at fc.weight"),
    (["evaluate", "resnet20", "--weights", "shape.pt", "--data", "digits"], 1, "shape mismatch at fc.weight"),
    (["profile", "resnet20", "--weights", "intkeys.pt", "--no-latency"], 1, "key '1' is not a name -> tensor"),
    (["profile", "resnet20", "--weights", "missing.pt", "--no-latency"], 1, "1 missing key (fc.bias); no unexpected keys"),
    (["profile", "resnet20", "--weights", "list.pt", "--no-latency"], 1, "does not hold a state dict (found list)"),
    (["profile", "resnet20", "--weights", "config.pt", "--no-latency"], 1, "is a JSON file"),
    (["profile", "resnet20", "--weights", "adir", "--no-latency"], 1, "is a directory"),
    (["profile", "resnet20", "--weights", "nowhere.pt", "--no-latency"], 1, "no such weights file"),
    (["profile", "resnet20", "--weights", "truncated.safetensors", "--no-latency"], 1, "could not be read"),
    (["profile", "config.pt", "--no-latency"], 1, "is a JSON file, not a PyTorch checkpoint"),
    (["profile", "renamed.pt", "--no-latency"], 1, "is a safetensors file, not a PyTorch checkpoint; name it"),
    (["profile", "model.xml", "--no-latency"], 1, "has no weights file beside it"),
    (["profile", "empty.pt", "--no-latency"], 1, "not a PyTorch file"),
    (["profile", "state.pt", "--no-latency"], 1, "state dict without an architecture"),
    (["profile", "adir", "--no-latency"], 1, "is a directory, not a model file"),
    (["profile", "nowhere.safetensors", "--no-latency"], 1, "no such file"),
    (["profile", "truncated.safetensors", "--no-latency"], 1, "not a readable safetensors file"),
    (["profile", "header.safetensors", "--no-latency"], 1, "not a readable safetensors file"),
    (["profile", "norecipe.safetensors", "--no-latency"], 1, "no ghostcli recipe"),
    (["profile", "notjson.safetensors", "--no-latency"], 1, "corrupt ghostcli recipe (not JSON)"),
    (["profile", "future.safetensors", "--no-latency"], 1, "unsupported artifact format 'ghostcli-artifact/9'"),
    (["profile", "resnet5", "--no-latency"], 1, "did you mean"),
    (["profile", "timm:resnet_bogus", "--no-latency"], 1, "unknown timm model"),
    (["profile", "torchvision:resnet_bogus", "--no-latency"], 1, "unknown torchvision model"),
    (["build", "ghostnet_1000"], 1, "did you mean"),
    (["build", "resnet20", "-o", "r20.pt"], 2, ".safetensors"),
    (["build", "resnet20", "-o", "good.safetensors"], 1, "already exists"),
    (["ghostify", "good.safetensors", "--weights", "state.pt", "-o", "good.safetensors"], 1, "already exists"),
    (["ghostify", "resnet20", "-o", "g.onnx"], 2, ".safetensors"),
    (["profile", "good.safetensors", "--weights", "shape.pt", "--no-latency"], 1, "shape mismatch"),
]


@pytest.mark.parametrize(("args", "code", "match"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_model_input(args: list[str], code: int, match: str, files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files)
    line = run_bad(args, files, code=code, match=match)
    if "--allow-pickle" in line:  # only ever suggested for a real pickle
        assert "pickled" in line


def test_a_json_file_is_never_steered_to_allow_pickle(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files)
    for name in ("config.pt", "renamed.pt", "model.xml", "empty.pt"):
        line = run_bad(["profile", name, "--no-latency"], files, code=1, match=name)
        assert "allow-pickle" not in line


def test_ghostified_torchvision_model_pickles(tmp_path: Path) -> None:
    import torchvision

    from ghostcli.convert import ghostify

    model, _ = ghostify(torchvision.models.resnet18(num_classes=4), input_size=(3, 32, 32))
    torch.save(model, tmp_path / "m.pt")
    again = torch.load(tmp_path / "m.pt", weights_only=False)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(model.eval()(x), again.eval()(x))
