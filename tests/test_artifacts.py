"""Artifacts and model resolution: safe, atomic, strict, bit-exact."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from ghostcli.artifacts import Recipe, read_recipe, save_artifact
from ghostcli.errors import ArtifactError, GhostcliError, ModelNotFoundError, OutputExistsError, UsageError
from ghostcli.resolve import load_artifact, resolve_model

from conftest import randomize_bn


@pytest.fixture
def saved(tmp_path: Path):
    loaded = resolve_model("ghostnet_050", options={"num_classes": 10})
    randomize_bn(loaded.model)
    path = save_artifact(loaded.model, tmp_path / "g.safetensors", loaded.recipe)
    return loaded, path


def test_round_trip_is_bit_exact(saved) -> None:
    loaded, path = saved
    again = load_artifact(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), again.model(x))
    assert again.recipe.source == "zoo:ghostnet_050"
    assert again.recipe.options == {"num_classes": 10}
    assert tuple(again.input_size) == (3, 224, 224)
    assert not again.model.training


def test_recipe_is_in_metadata(saved) -> None:
    _, path = saved
    recipe = read_recipe(path)
    assert recipe.format == "ghostcli-artifact/1" and recipe.ghostcli_version
    assert resolve_model(str(path)).name == "g.safetensors"


def test_existing_output_needs_force(saved) -> None:
    loaded, path = saved
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="use `force` to replace it"):
        save_artifact(loaded.model, path, loaded.recipe)
    assert path.read_bytes() == before
    save_artifact(loaded.model, path, loaded.recipe, force=True)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import safetensors.torch

    loaded = resolve_model("resnet20")

    def boom(*a, **k):
        Path(a[1]).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_model", boom)
    with pytest.raises(OSError):
        save_artifact(loaded.model, tmp_path / "m.safetensors", loaded.recipe)
    assert list(tmp_path.iterdir()) == []


def test_truncated_file(saved, tmp_path: Path) -> None:
    _, path = saved
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        load_artifact(bad)


def test_garbage_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x00\x01 not a model at all" * 10)
    with pytest.raises(ArtifactError):
        resolve_model(str(bad))


def test_missing_file() -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        resolve_model("does/not/exist.safetensors")


def test_mismatched_recipe(saved, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    _, path = saved
    meta = {"ghostcli_recipe": json.dumps(Recipe(source="zoo:ghostnet_100").to_dict())}
    other = tmp_path / "other.safetensors"
    save_file(load_file(str(path)), str(other), metadata=meta)
    with pytest.raises(ArtifactError, match="does not match"):
        load_artifact(other)


def test_weights_without_recipe(saved, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    _, path = saved
    plain = tmp_path / "plain.safetensors"
    save_file(load_file(str(path)), str(plain))
    with pytest.raises(ArtifactError, match="pass the file with `weights`"):
        resolve_model(str(plain))
    # ...and the same file loads as --weights for the named architecture
    again = resolve_model("ghostnet_050", weights=plain, options={"num_classes": 10})
    assert torch.equal(again.model.classifier.weight, load_file(str(path))["classifier.weight"])


def test_pt_state_dict_loads_with_weights_only(tmp_path: Path) -> None:
    src = resolve_model("resnet20")
    pt = tmp_path / "r.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.model.state_dict().items()}}, pt)
    again = resolve_model("resnet20", weights=pt)
    assert torch.equal(again.model.fc.weight, src.model.fc.weight)
    with pytest.raises(ArtifactError, match="state dict without an architecture"):
        resolve_model(str(pt))
    with pytest.raises(ArtifactError, match="does not match"):
        resolve_model("resnet56", weights=pt)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_model_refused_without_opt_in(tmp_path: Path, capsys) -> None:
    pt = tmp_path / "full.pt"
    torch.save(resolve_model("resnet20").model, pt)
    with pytest.raises(ArtifactError, match="arbitrary code"):
        resolve_model(str(pt))
    assert resolve_model(str(pt), allow_pickle=True).model.fc.out_features == 10
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ArtifactError):
        resolve_model(str(evil))
    assert "pwned" not in capsys.readouterr().out


def test_resolve_sources() -> None:
    assert resolve_model("resnet18").recipe.source == "torchvision:resnet18"
    assert resolve_model("torchvision:resnet18", options={"num_classes": 7}).model.fc.out_features == 7
    assert resolve_model("ghostnet_100").recipe.source == "zoo:ghostnet_100"
    assert resolve_model("resnet56").input_size == (3, 32, 32)
    assert resolve_model("torchvision:inception_v3", options={"aux_logits": False, "init_weights": False}).input_size == (3, 299, 299)
    f = resolve_model("ghostcli.models.ghostnet:ghostnet_050", options={"num_classes": 3})
    assert f.recipe.source == "factory:ghostcli.models.ghostnet:ghostnet_050" and f.model.classifier.out_features == 3


def test_resolve_errors() -> None:
    with pytest.raises(ModelNotFoundError, match="did you mean.*resnet50"):
        resolve_model("resnet5")
    with pytest.raises(ModelNotFoundError, match="did you mean"):
        resolve_model("torchvision:resnet500")
    with pytest.raises(ModelNotFoundError, match="cannot import"):
        resolve_model("no_such_pkg.mod:factory")
    with pytest.raises(UsageError):
        resolve_model("")


def test_timm_without_extra_names_the_extra() -> None:
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(GhostcliError, match=r"ghostcli\[timm\]"):
            resolve_model("timm:resnet50")
    else:
        assert resolve_model("timm:resnet18").recipe.source == "timm:resnet18"
