"""Turn a user's MODEL argument into an ``nn.Module``: the one place every command resolves models.

Accepted forms, tried in this order:

- a file path: ``.safetensors`` artifact (weights + recipe), or a ``.pt``/``.pth``
  file (refused unless it is a full pickled model *and* ``allow_pickle`` is set);
  an exported ``.onnx`` / OpenVINO ``.xml`` file is a :class:`~ghostcli.loaded.DeployedModel`
  (:func:`resolve_model_or_deployed`, for the commands that run exported models: profile, check);
- ``timm:NAME`` (needs the ``timm`` extra);
- ``torchvision:NAME``;
- ``pkg.module:factory`` (a callable returning an ``nn.Module``);
- a zoo name (``ghostnet_100``, ``resnet56`` ...), then a torchvision name: classification (``resnet50``),
  segmentation (``deeplabv3_resnet50``) or detection (``fasterrcnn_resnet50_fpn``, ``keypointrcnn_resnet50_fpn``).

Nothing is downloaded: pretrained weights come from a local file (``weights=``).

Messages name settings in backquotes (`` `num_classes` ``), which the CLI shows as the running
command's option. The hints ``--trust-factory``, ``--allow-pickle`` and ``--weights`` stay literal:
every command resolves models here, and some of them (``build``, ``check``, ``ghostify``) lack those
options, so a backquoted name would be shown to their users as `` `allow_pickle` ``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections import OrderedDict
from functools import cache
from pathlib import Path
from typing import Any

from torch import nn

from ghostcli.artifacts import CorruptRecipe, Recipe, read_artifact, read_state_dict
from ghostcli.errors import ArtifactError, GhostcliError, ModelNotFoundError, UsageError, one_line
from ghostcli.layers.seed import seeded_init
from ghostcli.loaded import DeployedModel, LoadedModel
from ghostcli.units import format_input_size
from ghostcli.usercode import call_user_code

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
DEPLOYED_SUFFIXES = (".onnx", ".xml")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SPECIAL_SIZES = {"inception_v3": (3, 299, 299)}


#: torchvision.models submodules whose models resolve by name besides the classification ones (detection holds the
#: keypoint and instance-segmentation models too); built with ``weights=None, weights_backbone=None``
TORCHVISION_TASKS = ("segmentation", "detection")


@cache
def _torchvision_tasks() -> dict[str, str]:
    """name -> task ("classification", "segmentation", "detection") of every model torchvision can build."""
    import torchvision

    tasks = {n: "classification" for n in torchvision.models.list_models(module=torchvision.models)}
    for task in TORCHVISION_TASKS:
        tasks.update({n: task for n in torchvision.models.list_models(module=getattr(torchvision.models, task))})
    return tasks


def torchvision_names() -> list[str]:
    """Model names torchvision can build: classification, semantic segmentation and detection (keypoint and
    instance segmentation included)."""
    return sorted(_torchvision_tasks())


def torchvision_task(name: str) -> str | None:
    """What a torchvision model does: "classification", "segmentation", "detection", or None (not a model)."""
    return _torchvision_tasks().get(name)


def _timm_create(name: str, options: dict[str, Any]) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise GhostcliError("timm models need the timm extra: pip install 'ghostcli[timm]'") from None
    if name not in timm.list_models():
        from ghostcli.models.registry import suggest

        raise ModelNotFoundError(f"unknown timm model {name!r}{suggest(name, timm.list_models())}")
    return timm.create_model(name, pretrained=False, **options)


def _factory_create(target: str, options: dict[str, Any]) -> nn.Module:
    """Import ``pkg.mod`` (from the installed packages only) and call its factory; any failure is one line."""
    mod_name, fn_name = target.rsplit(":", 1)
    if importlib.util.find_spec(mod_name.partition(".")[0]) is None:
        raise ModelNotFoundError(f"cannot import {mod_name!r} for factory {target!r}: no such module")
    module = call_user_code(f"importing {mod_name!r}", lambda: importlib.import_module(mod_name),
                            error=ModelNotFoundError)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ModelNotFoundError(f"{mod_name!r} has no callable {fn_name!r}")
    model = call_user_code(f"factory {target!r}", lambda: fn(**options))
    if not isinstance(model, nn.Module):
        raise ModelNotFoundError(f"factory {target!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


@seeded_init()
def build_source(source: str, options: dict[str, Any], *, trust_factory: bool = True,
                 bad_option: type[GhostcliError] = UsageError) -> nn.Module:
    """Build a model from a canonical source string (``zoo:``, ``torchvision:``, ``timm:``, ``factory:``).

    ``trust_factory=False`` refuses ``factory:`` sources (they import and run code); an option the
    builder does not take raises ``bad_option``. The random weights come from a fixed seed
    (:func:`~ghostcli.layers.seed.seeded_init`): a model built without weights is the same on every run.
    """
    kind, _, name = source.partition(":")
    if kind == "factory" and not trust_factory:
        raise ArtifactError(f"the file asks to run the factory {name!r}, which imports and runs code; "
                            "pass --trust-factory if you trust it (its module must already be installed)")
    try:
        if kind == "zoo":
            from ghostcli.models import build_model

            return build_model(name, **options)
        if kind == "torchvision":
            import torchvision

            task = torchvision_task(name)
            if task is None:
                from ghostcli.models.registry import suggest

                raise ModelNotFoundError(f"unknown torchvision model {name!r}{suggest(name, torchvision_names())}")
            no_download: dict[str, Any] = {"weights": None}
            if task != "classification":  # their backbones default to downloading ImageNet weights
                no_download["weights_backbone"] = None
            return torchvision.models.get_model(name, **no_download, **options)
        if kind == "timm":
            return _timm_create(name, options)
        if kind == "factory":
            return _factory_create(name, options)
    except (TypeError, ValueError) as exc:  # a builder that does not take an option or its value
        raise bad_option(f"{source}: {one_line(exc, 160)}") from None
    raise ArtifactError(f"unknown model source {source!r}")


def rebuild(recipe: Recipe, *, trust_factory: bool = False) -> nn.Module:
    """Build the architecture a recipe describes (random weights); ``factory:`` sources need ``trust_factory``."""
    try:
        model = build_source(recipe.source, dict(recipe.options), trust_factory=trust_factory,
                             bad_option=CorruptRecipe)
    except (CorruptRecipe, UsageError) as exc:  # an option the builder does not take
        raise CorruptRecipe(f"corrupt ghostcli recipe: {exc}") from None
    if recipe.ghostify is not None:
        from ghostcli.convert import ghostify
        from ghostcli.ghostify_options import GhostifyOptions

        # allow_empty: what was saved was accepted (``ghostify --allow-empty`` may have replaced nothing)
        model, _ = ghostify(model, GhostifyOptions.from_dict(recipe.ghostify), input_size=tuple(recipe.input_size),
                            inherit_weights=False, count_macs=False, allow_empty=True)
    return model


def canonical_source(spec: str) -> str:
    """Map a user's MODEL name to a canonical source string, or raise with suggestions."""
    from ghostcli.models import zoo_names

    if spec.startswith(("timm:", "torchvision:", "zoo:")):
        return spec
    if spec.startswith("factory:"):
        return spec
    if _FACTORY.match(spec):
        return f"factory:{spec}"
    if spec in zoo_names():
        return f"zoo:{spec}"
    names = torchvision_names()
    if spec in names:
        return f"torchvision:{spec}"
    from ghostcli.models.registry import suggest

    raise ModelNotFoundError(
        f"unknown model {spec!r}{suggest(spec, zoo_names() + names)}; see 'ghostcli list'"
    )


def default_input_size(source: str, model: nn.Module, options: dict[str, Any]) -> tuple[int, int, int]:
    """The input size a source's model expects by default (C, H, W)."""
    kind, _, name = source.partition(":")
    size: tuple[int, int, int] = (3, 224, 224)
    if kind == "zoo":
        from ghostcli.models import get_model_spec

        size = get_model_spec(name).input_size
    elif kind == "torchvision":
        size = _SPECIAL_SIZES.get(name, size)
        task = torchvision_task(name)
        if task == "segmentation":
            size = (3, 520, 520)  # the resize of torchvision's segmentation weights' transforms
        elif task == "detection":  # in eval mode the model resizes every image to its transform's last min_size
            side = getattr(getattr(model, "transform", None), "min_size", None)
            if isinstance(side, (tuple, list)) and side and isinstance(side[-1], int):
                size = (3, side[-1], side[-1])
    elif kind == "timm":
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if "input_size" in cfg:
            size = tuple(int(v) for v in cfg["input_size"])  # type: ignore[assignment]
    if "in_chans" in options:
        size = (int(options["in_chans"]), size[1], size[2])
    return size


def sniff(path: Path) -> str:
    """What a model file really is, from its first bytes (for messages; never trusted for loading)."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {one_line(exc)}") from None
    if head.startswith(b"PK\x03\x04"):
        return "torch"  # torch.save's zip container
    if head[:1] == b"\x80":
        return "pickle"
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= path.stat().st_size:
        return "safetensors"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "JSON"
    if stripped[:1] == b"<":
        return "XML (an OpenVINO IR?)"
    if head[:1] == b"\x08":
        return "ONNX"
    return "unknown"


def _not_torch(p: Path, kind: str) -> ArtifactError:
    hint = {"safetensors": "; name it .safetensors"}.get(kind, "")
    what = f"a {kind} file" if kind != "unknown" else "not a PyTorch file (truncated or corrupt?)"
    return ArtifactError(f"{p} is {what}, not a PyTorch checkpoint{hint}")


def _read_weights(p: Path) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a ``.pt``-like file (``weights_only``: never unpickles code)."""
    import pickle

    import torch

    if p.is_dir():
        raise ArtifactError(f"{p} is a directory, not a weights file")
    if not p.is_file():
        raise ArtifactError(f"no such weights file: {p}")
    kind = sniff(p)
    if p.suffix == ".safetensors" or kind == "safetensors":
        state: Any = read_state_dict(p)
    elif kind not in ("torch", "pickle"):
        raise _not_torch(p, kind)
    else:
        try:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ArtifactError(f"{p} holds pickled Python objects, not only tensors: it is not a plain state "
                                "dict (a full pickled model is a MODEL argument, with --allow-pickle)") from None
        except Exception as exc:
            raise ArtifactError(f"{p} could not be read as weights (truncated or corrupt?): "
                                f"{one_line(exc, 160)}") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ArtifactError(f"{p} does not hold a state dict (found {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ArtifactError(f"{p} is not a state dict: key {str(bad[0])[:60]!r} is not a name -> tensor entry")
    return state


def _some_keys(keys: list[str], what: str, shown: int = 3) -> str:
    """``"2 missing keys (a, b)"``; at most ``shown`` names, then how many more."""
    if not keys:
        return f"no {what} keys"
    more = f", ... {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)} {what} key{'s' if len(keys) > 1 else ''} ({', '.join(keys[:shown])}{more})"


def apply_state_dict(model: nn.Module, state: dict[str, Any], origin: str | Path) -> None:
    """Load ``state`` into ``model`` strictly, with one clear error for missing, unexpected or mis-shaped keys.

    Shared tensors that safetensors stored once are filled in, and the module version metadata of
    ``model``'s own state dict is used where the file has none (torchvision's MNASNet reads it).
    """
    target = model.state_dict(keep_vars=True)
    state = OrderedDict((k.removeprefix("module."), v) for k, v in state.items())
    adapt = getattr(model, "adapt_state_dict", None)  # a zoo model that reads other published layouts
    if callable(adapt):
        state = OrderedDict(adapt(state))
    by_storage = {t.data_ptr(): k for k, t in target.items() if k in state and t.numel()}
    for k, t in target.items():  # tied weights: saved once under one of their names
        if k not in state and t.numel() and t.data_ptr() in by_storage:
            state[k] = state[by_storage[t.data_ptr()]]
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise ArtifactError(f"{origin} does not match the model: {_some_keys(missing, 'missing')}; "
                            f"{_some_keys(unexpected, 'unexpected')}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(target[k].shape):
            raise ArtifactError(f"{origin} does not match the model: shape mismatch at {k} "
                                f"({format_input_size(v.shape)} in the file, "
                                f"{format_input_size(target[k].shape)} in the model)")
    state._metadata = getattr(state, "_metadata", None) or getattr(target, "_metadata", None)  # type: ignore[attr-defined]
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ArtifactError(f"{origin} could not be loaded into the model: {one_line(exc, 160)}") from None


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict from ``.safetensors`` or ``.pt``/``.pth`` (``weights_only``) strictly."""
    p = Path(path)
    apply_state_dict(model, _read_weights(p), p)


def load_artifact(path: str | Path, *, trust_factory: bool = False) -> LoadedModel:
    """Rebuild and load a saved artifact; the result's outputs are bit-identical to the saved model's.

    Only the zoo, torchvision and ``timm:`` sources are built unless ``trust_factory`` allows the
    ``package.module:factory`` the recipe names.
    """
    p = Path(path)
    recipe, state = read_artifact(p)
    model = rebuild(recipe, trust_factory=trust_factory)
    try:
        apply_state_dict(model, state, p)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc} (the architecture its recipe describes)") from None
    model.eval()
    return LoadedModel(model=model, recipe=recipe, input_size=tuple(recipe.input_size), name=p.name, path=p)


def _load_torch_file(p: Path, allow_pickle: bool) -> LoadedModel:
    import pickle

    import torch

    kind = sniff(p)
    if kind not in ("torch", "pickle"):
        raise _not_torch(p, kind)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not allow_pickle:
            raise ArtifactError(
                f"{p} contains a pickled Python object; loading it can run arbitrary code. "
                "Pass --allow-pickle only if you trust its author"
            ) from None
        obj = call_user_code(f"unpickling {p}", lambda: torch.load(str(p), map_location="cpu", weights_only=False),
                             error=ArtifactError)
    except Exception:
        raise ArtifactError(f"{p} is not a readable PyTorch file (truncated or corrupt?)") from None
    if isinstance(obj, nn.Module):
        return LoadedModel(model=obj.eval(), recipe=Recipe(source=f"pickle:{p.name}"),
                           input_size=(3, 224, 224), name=p.name, path=p)
    raise ArtifactError(
        f"{p} is a state dict without an architecture: name the architecture and pass the file with "
        f"--weights (e.g. 'ghostcli profile resnet50 --weights {p.name}')"
    )


def _display_name(spec: str, source: str, options: dict[str, Any]) -> str:
    """``spec``, or the zoo's name for the variant ``options`` make (``ghostnet_050`` + width 1.3: ``ghostnet_130``)."""
    kind, _, name = source.partition(":")
    if kind != "zoo":
        return spec
    from ghostcli.models import get_model_spec

    zoo = get_model_spec(name)
    variant = zoo.display_name(options)
    return spec if variant == zoo.name else variant


def resolve_model(
    spec: str,
    *,
    weights: str | Path | None = None,
    allow_pickle: bool = False,
    trust_factory: bool = False,
    options: dict[str, Any] | None = None,
) -> LoadedModel:
    """Resolve a MODEL argument into a :class:`LoadedModel` in eval mode.

    A ``package.module:factory`` typed as ``spec`` is the caller's explicit choice and is called;
    one named inside an artifact's recipe only with ``trust_factory``. Pickled models need
    ``allow_pickle``.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    spec = spec.strip()
    if not spec:
        raise UsageError("empty MODEL argument")
    p = Path(spec)
    if p.suffix.lower() in DEPLOYED_SUFFIXES:
        kind = "an ONNX model" if p.suffix.lower() == ".onnx" else "an OpenVINO IR"
        raise ArtifactError(f"{p} is {kind} (an exported model): this command needs a PyTorch model (a zoo or "
                            "torchvision name, or a .safetensors artifact); profile, check and evaluate run "
                            "exported models")
    if p.suffix.lower() == ".bin" and p.with_suffix(".xml").is_file():
        raise ArtifactError(f"{p} holds the weights of the OpenVINO IR {p.with_suffix('.xml')}: pass the .xml file")
    if p.suffix.lower() in WEIGHT_SUFFIXES or p.exists():
        if not p.exists():
            raise ArtifactError(f"no such file: {p}")
        if p.is_dir():
            raise ArtifactError(f"{p} is a directory, not a model file")
        if options:
            raise UsageError("builder options (e.g. `num_classes`) do not apply to a saved artifact")
        if p.suffix.lower() == ".safetensors":
            loaded = load_artifact(p, trust_factory=trust_factory)
        else:
            loaded = _load_torch_file(p, allow_pickle)
        if weights is not None:
            load_weights(loaded.model, weights)
            loaded.weights = str(weights)
        return loaded
    source = canonical_source(spec)
    model = build_source(source, options)
    if weights is not None:
        load_weights(model, weights)
    model.eval()
    size = default_input_size(source, model, options)
    recipe = Recipe(source=source, options=options, input_size=list(size))
    return LoadedModel(model=model, recipe=recipe, input_size=size, name=_display_name(spec, source, options),
                       weights=str(weights) if weights is not None else None)


def load_deployed(path: str | Path) -> DeployedModel:
    """Read an exported ``.onnx`` or OpenVINO ``.xml`` (with its ``.bin``) for profile and check; one-line errors.

    Nothing in the file is imported, unpickled or called: OpenVINO's ONNX or IR frontend reads it
    (:func:`ghostcli.runtime.deployed.read_graph`).
    """
    from ghostcli.runtime.deployed import DEPLOYED_SUFFIXES as FORMATS
    from ghostcli.runtime.deployed import input_shape, read_graph

    p = Path(path)
    graph = read_graph(p)
    try:
        shape = input_shape(graph)
    except ArtifactError as exc:
        raise ArtifactError(f"{p}: {exc}") from None
    return DeployedModel(path=p, format=FORMATS[p.suffix.lower()], graph=graph, input_shape=shape, name=p.name)


def resolve_model_or_deployed(
    spec: str,
    *,
    weights: str | Path | None = None,
    allow_pickle: bool = False,
    trust_factory: bool = False,
) -> LoadedModel | DeployedModel:
    """:func:`resolve_model`, or :func:`load_deployed` for an exported ``.onnx`` / ``.xml`` file (profile, check)."""
    p = Path(spec.strip())
    if p.suffix.lower() not in DEPLOYED_SUFFIXES:
        return resolve_model(spec, weights=weights, allow_pickle=allow_pickle, trust_factory=trust_factory)
    if weights is not None:
        raise UsageError(f"--weights applies to PyTorch models: {p.name} is an exported model that holds its "
                         "own weights")
    return load_deployed(p)
