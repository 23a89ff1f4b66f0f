"""Options of export and quantize and their checks, kept free of torch so that a usage error fails fast.

This is the option-validation module the CLI calls before it loads a model, and library users get
the same checks (``ExportOptions`` checks itself when made; ``quantize_model`` calls
``check_quantize_options``). Their messages name a setting in backquotes by its Python name
(`` `opset` ``, `` `batch_size` ``; `` `no_simplify` `` for ``simplify`` off), which the command line
shows as its own option (``--opset``; :mod:`ghostcli.option_names`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def check_data_spec(spec: str, what: str) -> None:
    """Refuse a data set that is neither ``digits`` / ``synthetic`` nor an existing folder (``DataError``)."""
    if spec in DATA_SETS:
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


def check_quantize_options(*, preset: str = "performance", subset_size: int = DEFAULT_SUBSET_SIZE,
                           eval_size: int = DEFAULT_EVAL_SIZE, max_accuracy_drop: float | None = None,
                           output: str | Path | None = None, force: bool = False,
                           mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                           channels: int | None = None, runs: int = 50, warmup: int = 5,
                           threads: int | None = None, calib_data: str | None = None,
                           eval_data: str | None = None) -> Path | None:
    """Validate ``quantize_model``'s options without loading anything; returns the output ``.xml`` path.

    ``channels`` (the input's, when known) checks the length of ``mean`` / ``std``. Raises ``UsageError``
    for an impossible value, ``DataError`` for a data folder that does not exist, and the errors of
    :func:`ghostcli.fsutil.check_output` for the output.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if subset_size < 1:
        raise UsageError(f"`subset_size` (calibration images) must be at least 1, got {subset_size}")
    if eval_size < 1:
        raise UsageError(f"`eval_size` must be at least 1, got {eval_size}")
    if max_accuracy_drop is not None and not 0 <= max_accuracy_drop < 1:
        raise UsageError(f"`max_accuracy_drop` is a fraction in [0, 1), got {max_accuracy_drop}")
    check_timing(runs, warmup, threads)
    check_normalization(mean, std, channels)
    out_xml: Path | None = None
    if output is not None:
        out_xml = xml = Path(output)
        if xml.suffix.lower() != ".xml":
            raise UsageError(f"the INT8 model is an OpenVINO IR: the output must end in .xml, got {display_path(xml)}")
        check_output(xml, force)
        check_output(xml.with_suffix(".bin"), force)
    if calib_data is not None:
        check_data_spec(calib_data, "calibration data folder")
    if eval_data is not None:
        check_data_spec(eval_data, "evaluation data folder")
    return out_xml
