"""Loading a file never runs code it names: malicious pickles and recipes in every command that loads a model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ghostcli.artifacts import FORMAT, RECIPE_KEY, Recipe, read_recipe, save_artifact
from ghostcli.errors import ArtifactError
from ghostcli.resolve import load_artifact, resolve_model

from bad_input import run_bad


class _Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch {self.marker}",))


def _evil_pickle(folder: Path, marker: Path) -> Path:
    path = folder / "evil.pt"
    torch.save({"model": _Payload(marker)}, path)
    return path


def _evil_recipe(folder: Path, marker: Path, name: str = "evil.safetensors") -> Path:
    path = folder / name
    recipe = {"source": "factory:os:system", "options": {"command": f"touch {marker}"}, "format": FORMAT}
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": FORMAT, RECIPE_KEY: json.dumps(recipe)})
    return path


# every command that loads a model, with EVIL where the file goes; OUT is an output in the folder
COMMANDS = {
    "build": ["build", "resnet20", "--weights", "EVIL"],
    "ghostify": ["ghostify", "EVIL", "-o", "OUT.safetensors"],
    "profile": ["profile", "EVIL", "--no-latency"],
    "check": ["check", "EVIL", "--max-params", "100M", "--no-config"],
    "check --latency-reference": ["check", "resnet20", "--input-size", "3x8x8", "--latency-reference", "EVIL",
                                  "--max-latency-ratio", "9", "--runs", "2", "--warmup", "0", "--no-config"],
    "export": ["export", "EVIL", "-o", "OUT.onnx"],
    "quantize": ["quantize", "EVIL", "--calib-data", "digits", "-o", "OUT.xml"],
    "train": ["train", "EVIL", "--data", "digits", "-o", "OUT.safetensors"],
    "train --teacher": ["train", "resnet20", "--data", "digits", "--input-size", "3x8x8", "--teacher", "EVIL",
                        "-o", "OUT.safetensors"],
    "evaluate": ["evaluate", "EVIL", "--data", "digits"],
}


def _args(template: list[str], evil: Path, folder: Path) -> list[str]:
    return [str(evil) if a == "EVIL" else a.replace("OUT", str(folder / "out")) for a in template]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_malicious_pickle_never_runs(command: str, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = _evil_pickle(tmp_path, marker)
    line = run_bad(_args(COMMANDS[command], evil, tmp_path), tmp_path, code=1, match=str(evil.name))
    assert not marker.exists()
    assert "pickle" in line


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_malicious_recipe_never_runs(command: str, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = _evil_recipe(tmp_path, marker)
    # as --weights only the tensors are read (x does not fit resnet20); elsewhere the recipe is refused
    match = "does not match" if command == "build" else ["os:system", "--trust-factory"]
    run_bad(_args(COMMANDS[command], evil, tmp_path), tmp_path, code=1, match=match)
    assert not marker.exists()


def test_trust_factory_calls_an_installed_factory(tmp_path: Path, runner) -> None:
    from ghostcli.cli.app import app

    loaded = resolve_model("torchvision.models:resnet18", options={"num_classes": 3})
    path = save_artifact(loaded.model, tmp_path / "f.safetensors", loaded.recipe)
    assert read_recipe(path).source == "factory:torchvision.models:resnet18"
    with pytest.raises(ArtifactError, match="--trust-factory"):
        load_artifact(path)
    again = load_artifact(path, trust_factory=True)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded.model(x), again.model(x))
    r = runner.invoke(app, ["profile", str(path), "--no-latency", "--trust-factory", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["models"][0]["params"] == sum(p.numel() for p in loaded.model.parameters())


CRAFTED = {
    "source is a number": {"source": 5},
    "input_size is text": {"source": "zoo:resnet20", "input_size": "abc"},
    "input_size is zero": {"source": "zoo:resnet20", "input_size": [3, 0, 8]},
    "input_size is huge": {"source": "zoo:resnet20", "input_size": [3, 10**9, 8]},
    "unknown builder option": {"source": "zoo:resnet20", "options": {"bogus": 1}},
    "option value is an object": {"source": "zoo:resnet20", "options": {"num_classes": {"a": 1}}},
    "option value is infinite": {"source": "zoo:resnet20", "options": {"width": float("inf")}},
    "unknown top-level key": {"source": "zoo:resnet20", "run": "rm -rf /"},
    "unknown source kind": {"source": "http://example.org/model"},
    "malformed torchvision name": {"source": "torchvision:../../etc"},
    "ghostify options not an object": {"source": "zoo:resnet20", "ghostify": "yes"},
    "ghostify ratio is text": {"source": "zoo:resnet20", "ghostify": {"ratio": "two"}},
    "unknown ghostify option": {"source": "zoo:resnet20", "ghostify": {"ratio": 2, "exec": "x"}},
    "recipe is a list": [1, 2],
    "extra is a string": {"source": "zoo:resnet20", "extra": "x"},
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_recipe_is_a_corrupt_recipe(case: str, tmp_path: Path) -> None:
    path = tmp_path / "crafted.safetensors"
    save_file({"x": torch.zeros(1)}, str(path),
              metadata={"format": FORMAT, RECIPE_KEY: json.dumps(CRAFTED[case])})
    run_bad(["profile", str(path), "--no-latency"], tmp_path, code=1, match="corrupt ghostcli recipe")


def test_a_bad_value_in_a_recipe_is_named_as_the_files_key_not_as_an_option(tmp_path: Path) -> None:
    path = tmp_path / "crafted.safetensors"
    save_file({"x": torch.zeros(1)}, str(path),
              metadata={"format": FORMAT, RECIPE_KEY: json.dumps({"source": "zoo:resnet20",
                                                                  "ghostify": {"dw_kernel": 4}})})
    line = run_bad(["ghostify", str(path)], tmp_path, code=1, match="corrupt ghostcli recipe: ghostify options")
    assert "dw_kernel must be" in line and "--dw-kernel" not in line  # ghostify has --dw-kernel: not what failed


def test_recipe_round_trip_keeps_valid_fields() -> None:
    data = {"source": "zoo:resnet20", "options": {"num_classes": 5, "names": ["a", "b"]}, "input_size": [3, 8, 8],
            "ghostify": {"ratio": 3}, "extra": {"training": {"epochs": 1}}}
    recipe = Recipe.from_dict(data)
    assert recipe.options == {"num_classes": 5, "names": ["a", "b"]}
    assert recipe.ghostify is not None and recipe.ghostify["ratio"] == 3 and recipe.ghostify["dw_kernel"] == 3
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def _module(folder: Path, name: str, source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    (folder / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(name, None)
    return name


USER_CODE = {
    "factory raises": ("def make():\n    raise ValueError('no such variant')\n", "failed: ValueError: no such variant"),
    "module raises at import": ("raise RuntimeError('broken install')\n", "broken install"),
    "module has a syntax error": ("def make(:\n", "SyntaxError"),
    "factory calls exit": ("import sys\ndef make():\n    sys.exit(7)\n", "called exit(7)"),
    "factory returns no module": ("def make():\n    return 42\n", "returned int"),
}


@pytest.mark.parametrize("case", list(USER_CODE))
def test_user_factory_failures_are_one_line(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, match = USER_CODE[case]
    mod = _module(tmp_path, f"userfactory_{abs(hash(case))}", source, monkeypatch)
    run_bad(["profile", f"{mod}:make", "--no-latency"], tmp_path, code=1, match=match)


def test_factory_prints_go_to_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner) -> None:
    from ghostcli.cli.app import app

    mod = _module(tmp_path, "chatty_factory", "from torch import nn\ndef make():\n    print('Loaded pretrained "
                  "weights')\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())\n", monkeypatch)
    r = runner.invoke(app, ["profile", f"{mod}:make", "--no-latency", "--input-size", "3x8x8", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["models"][0]["params"] == 3 * 4 * 9 + 4
    assert "Loaded pretrained weights" in r.stderr


def test_missing_factory_module_is_not_imported_from_a_path(tmp_path: Path) -> None:
    run_bad(["profile", "no_such_pkg_xyz.models:make", "--no-latency"], tmp_path, code=1, match="no such module")
