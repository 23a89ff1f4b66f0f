"""Options of export and quantize and their checks, kept free of torch so that a usage error fails fast.

This is the option-validation module the CLI calls before it loads a model, and library users get
the same checks (``ExportOptions`` and ``QuantizeOptions`` check themselves when made; only a
``QuantizeOptions`` with ``ignored_types`` imports OpenVINO, to look the types up). Their messages name
a setting in backquotes by its Python name (`` `opset` ``, `` `batch_size` ``; `` `no_simplify` `` for
``simplify`` off), which the command line shows as its own option (``--opset``;
:mod:`ghostcli.option_names`).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghostcli.errors import DataError, UsageError
from ghostcli.fsutil import check_output, display_path
from ghostcli.units import check_timing

FORMATS = ("onnx", "openvino")
_FORMAT_ALIASES = {"onnx": "onnx", "openvino": "openvino", "ov": "openvino", "ir": "openvino"}
PRESETS = ("performance", "mixed")
DEFAULT_SUBSET_SIZE = 300
DEFAULT_EVAL_SIZE = 300
DATA_SETS = ("digits", "synthetic")
# A single protobuf cannot exceed 2 GiB: above this many bytes of weights, ONNX weights go to <name>.onnx.data.
EXTERNAL_DATA_THRESHOLD = 2**31 - 64 * 2**20
# OpenVINO operation types worth naming in a message (every one is checked against the opsets by the tests).
COMMON_OP_TYPES = ("Convolution", "GroupConvolution", "MatMul", "Add", "Multiply", "Interpolate",
                   "ConvolutionBackpropData", "GroupConvolutionBackpropData", "Subtract", "Divide", "Power",
                   "AvgPool", "MaxPool", "ReduceMean", "MVN", "NormalizeL2", "Concat", "Relu", "Clamp",
                   "Sigmoid", "HSwish", "HSigmoid", "Swish", "Gelu", "Softmax", "Mish", "PRelu",
                   "BatchNormInference", "ScaledDotProductAttention", "Reshape", "Transpose", "Gather")


def export_format(fmt: str) -> str:
    """``"onnx"`` or ``"openvino"`` for a format name or alias (``ov``, ``ir``); else ``UsageError``."""
    key = _FORMAT_ALIASES.get(str(fmt).lower())
    if key is None:
        raise UsageError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    return key


def max_opset() -> int:
    """The highest opset ``torch.onnx.export`` accepts in this torch version (imports torch)."""
    try:
        from torch.onnx import _constants

        return int(getattr(_constants, "ONNX_MAX_OPSET", 20))
    except Exception:  # noqa: BLE001 - private module moved: fall back to the TorchScript exporter's own maximum
        return 20


@dataclass(frozen=True)
class ExportOptions:
    """What ``export_model`` writes and how it checks it; checked when made, before any model is loaded.

    ``output`` ends in ``.onnx`` (``format`` ``onnx``) or ``.xml`` (``openvino``/``ov``/``ir``: IR with its
    ``.bin`` beside it) and may exist only with ``force``. ``input_size`` (C, H, W) overrides a loaded
    model's own and is required for a bare ``nn.Module``. ``batch_size`` (default 1) and ``dynamic_batch``
    exclude each other; ``opset`` and ``simplify`` (onnxsim) apply to ONNX, ``fp16`` (FP16 weights) to
    OpenVINO. ``verify`` checks the written model against PyTorch within ``atol`` / ``rtol`` (default
    1e-4 / 1e-3, 1e-2 / 1e-2 with ``fp16``). ``fold_bn`` folds conv -> BN pairs first; ONNX weights
    over ``external_data_threshold`` bytes are written as external data.

    Raises ``UsageError`` for an impossible value or combination and a bad output path; an output
    that exists without ``force`` raises ``OutputExistsError`` (see :func:`ghostcli.fsutil.check_output`).
    """

    output: str | Path
    format: str = "onnx"
    input_size: tuple[int, ...] | None = None
    batch_size: int | None = None
    dynamic_batch: bool = False
    opset: int | None = None
    simplify: bool = True
    fp16: bool = False
    verify: bool = True
    atol: float | None = None
    rtol: float | None = None
    force: bool = False
    fold_bn: bool = True
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize once, here
        set_(self, "format", export_format(self.format))
        set_(self, "output", Path(self.output))
        if self.input_size is not None:
            set_(self, "input_size", tuple(int(v) for v in self.input_size))
        self._check()

    @property
    def path(self) -> Path:
        """``output`` as a :class:`~pathlib.Path`."""
        return Path(self.output)

    def _check(self) -> None:
        fmt, batch_size, opset = self.format, self.batch_size, self.opset
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"`batch_size` must be at least 1, got {batch_size}")
        for name, tol in (("atol", self.atol), ("rtol", self.rtol)):
            if tol is not None and not (math.isfinite(tol) and tol >= 0):
                raise UsageError(f"`{name}` must be a finite number >= 0, got {tol}")
        if self.dynamic_batch and batch_size is not None:
            raise UsageError("`batch_size` and `dynamic_batch` exclude each other")
        if opset is not None and fmt != "onnx":
            raise UsageError("`opset` applies to `format` onnx only")
        if not self.simplify and fmt != "onnx":
            raise UsageError("`no_simplify` applies to `format` onnx only")
        if self.fp16 and fmt != "openvino":
            raise UsageError("`fp16` (FP16 weight compression) applies to `format` openvino only")
        if opset is not None and not 7 <= opset <= max_opset():
            raise UsageError(f"opset must be between 7 and {max_opset()}, got {opset}")
        out = self.path
        want = ".onnx" if fmt == "onnx" else ".xml"
        if out.suffix.lower() != want:
            raise UsageError(f"the {fmt} output must end in {want}, got {display_path(out)}")
        check_output(out, self.force)
        if fmt == "openvino":
            check_output(out.with_suffix(".bin"), self.force)
        if self.input_size is not None and (not self.input_size or any(v <= 0 for v in self.input_size)):
            raise UsageError(f"invalid input size {list(self.input_size)}")


def check_data_spec(spec: str, what: str, *, synthetic_bn: bool = False) -> None:
    """Refuse a data set that is neither ``digits`` / ``synthetic`` (``synthetic-bn`` where allowed) nor an
    existing folder (``DataError``)."""
    if spec in DATA_SETS:
        return
    if synthetic_bn:
        from ghostcli.data import SYNTHETIC_BN  # imports torch: only when it may be needed

        if spec == SYNTHETIC_BN:
            return
    p = Path(spec)
    if not p.is_dir():
        state = "does not exist" if not p.exists() else "is a file, not a folder"
        raise DataError(f"{what} {display_path(p)} {state} (give a folder of images, 'digits' or 'synthetic')")


def check_normalization(mean: Sequence[float] | None, std: Sequence[float] | None,
                        channels: int | None = None) -> None:
    """Refuse a mean/std that is empty, not finite, a std <= 0, or whose length is neither 1 nor ``channels``."""
    for name, values in (("mean", mean), ("std", std)):
        if values is None:
            continue
        if len(values) == 0:
            raise UsageError(f"`{name}` is empty")
        if not all(math.isfinite(v) for v in values):
            raise UsageError(f"`{name}` values must be finite numbers, got {','.join(f'{v:g}' for v in values)}")
        if name == "std" and any(v <= 0 for v in values):
            raise UsageError(f"`std` values must be positive, got {','.join(f'{v:g}' for v in values)}")
        if channels is not None and len(values) not in (1, channels):
            expected = "1 value" if channels == 1 else f"1 or {channels} values (one per input channel)"
            raise UsageError(f"`{name}` needs {expected} for a {channels}-channel input, got {len(values)}")


def check_preset(preset: str) -> None:
    """Refuse an NNCF preset other than ``performance`` / ``mixed`` (``UsageError``)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")


@functools.cache
def _opset_factories() -> tuple[Any, ...]:
    """OpenVINO's node factories, newest opset first (imports openvino)."""
    from openvino.utils.node_factory import NodeFactory

    factories = []
    for version in range(64, 0, -1):
        with contextlib.suppress(Exception):  # an opset this OpenVINO does not have
            factories.append(NodeFactory(f"opset{version}"))
    return tuple(factories)


@functools.cache
def is_op_type(name: str) -> bool:
    """True when ``name`` is an operation type of some OpenVINO opset (``Convolution``; case matters).

    These are the names NNCF's ``IgnoredScope(types=...)`` matches in a converted model. Errs on the side
    of yes: without OpenVINO, or when it refuses a type for another reason than not knowing it.
    """
    try:
        factories = _opset_factories()
    except ImportError:
        return True
    for factory in factories:
        try:
            factory.create(name)
        except Exception as exc:  # noqa: BLE001 - the bindings raise RuntimeError and friends
            if "Couldn't create operation" in str(exc):
                continue
        return True  # made, or known and refused for another reason (Constant)
    return False


def check_op_types(types: Sequence[str], setting: str = "ignored_types") -> None:
    """Refuse a name that is no OpenVINO operation type (``UsageError`` naming ``setting`` and a few real ones)."""
    for name in types:
        if is_op_type(name):
            continue
        lower = {t.lower(): t for t in COMMON_OP_TYPES}
        near = ([lower[name.lower()]] if name.lower() in lower
                else difflib.get_close_matches(name, COMMON_OP_TYPES, n=1, cutoff=0.7))
        hint = f": did you mean {near[0]}?" if near else ""
        raise UsageError(f"unknown OpenVINO operation type {name!r} in `{setting}`{hint} (types are case-sensitive, "
                         f"e.g. {', '.join(COMMON_OP_TYPES[:6])})")


@dataclass(frozen=True)
class QuantizeOptions:
    """How ``quantize_model`` calibrates, checks and times the INT8 model; checked when made, before any model
    is loaded.

    ``calib_data`` / ``eval_data``: ``digits`` | ``synthetic`` | an image folder (evaluation defaults to digits'
    ``val`` split, or for a folder, which has no split, to the calibration images themselves). ``subset_size``
    calibration and at most ``eval_size`` evaluation images; ``preset`` ``performance`` or ``mixed``. With
    labelled evaluation images, ``max_accuracy_drop`` (absolute, in [0, 1), e.g. 0.01) switches to NNCF's
    accuracy-controlled quantization. ``input_size`` (C, H, W) overrides a loaded model's own and is required
    for a bare ``nn.Module``; ``mean`` / ``std`` (1 or C values) replace ImageNet's normalization. The INT8 IR
    is written to ``output`` (``.xml`` + ``.bin``), which may exist only with ``force``. ``threads``, ``runs``
    and ``warmup`` set the timing; ``ignored_types`` are OpenVINO operation types NNCF must leave in floating
    point (``GroupConvolution``; see :func:`is_op_type`).

    Raises ``UsageError`` for an impossible value, ``DataError`` for a data folder that does not exist, and
    the errors of :func:`ghostcli.fsutil.check_output` for the output.
    """

    calib_data: str = "digits"
    subset_size: int = DEFAULT_SUBSET_SIZE
    preset: str = "performance"
    eval_data: str | None = None
    eval_size: int = DEFAULT_EVAL_SIZE
    max_accuracy_drop: float | None = None
    input_size: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    output: str | Path | None = None
    force: bool = False
    threads: int | None = None
    runs: int = 50
    warmup: int = 5
    ignored_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize once, here
        if self.output is not None:
            set_(self, "output", Path(self.output))
        if self.input_size is not None:
            set_(self, "input_size", tuple(int(v) for v in self.input_size))
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None:
                set_(self, name, tuple(float(v) for v in values))
        types = self.ignored_types
        set_(self, "ignored_types", (types,) if isinstance(types, str) else tuple(str(t) for t in types))
        self._check()

    @property
    def path(self) -> Path | None:
        """``output`` as a :class:`~pathlib.Path` (``None`` when nothing is written)."""
        return None if self.output is None else Path(self.output)

    def _check(self) -> None:
        check_preset(self.preset)
        if self.subset_size < 1:
            raise UsageError(f"`subset_size` (calibration images) must be at least 1, got {self.subset_size}")
        if self.eval_size < 1:
            raise UsageError(f"`eval_size` must be at least 1, got {self.eval_size}")
        drop = self.max_accuracy_drop
        if drop is not None and not 0 <= drop < 1:
            raise UsageError(f"`max_accuracy_drop` is a fraction in [0, 1), got {drop}")
        check_timing(self.runs, self.warmup, self.threads)
        size = self.input_size
        if size is not None and (len(size) != 3 or any(v <= 0 for v in size)):
            raise UsageError(f"`input_size` must be C x H x W of positive sizes, got {list(size)}")
        check_normalization(self.mean, self.std, size[0] if size else None)
        xml = self.path
        if xml is not None:
            if xml.suffix.lower() != ".xml":
                raise UsageError(f"the INT8 model is an OpenVINO IR: the output must end in .xml, got {display_path(xml)}")
            check_output(xml, self.force)
            check_output(xml.with_suffix(".bin"), self.force)
        check_data_spec(self.calib_data, "calibration data folder", synthetic_bn=True)
        if self.eval_data is not None:
            check_data_spec(self.eval_data, "evaluation data folder")
        check_op_types(self.ignored_types)
