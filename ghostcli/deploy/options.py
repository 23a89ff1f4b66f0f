"""Option checks for export and quantize, kept free of torch so that a usage error fails fast.

The CLI calls them before it loads a model; ``export_model`` / ``quantize_model`` call them too,
so library users get the same errors.
"""

from __future__ import annotations

from pathlib import Path

from ghostcli.errors import UsageError
from ghostcli.fsutil import check_output

FORMATS = ("onnx", "openvino")
_FORMAT_ALIASES = {"onnx": "onnx", "openvino": "openvino", "ov": "openvino", "ir": "openvino"}
PRESETS = ("performance", "mixed")
DEFAULT_SUBSET_SIZE = 300
DEFAULT_EVAL_SIZE = 300


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
    except Exception:  # private module moved: fall back to the TorchScript exporter's own maximum
        return 20


def check_export_options(fmt: str, output: str | Path, *, batch_size: int | None = None, dynamic_batch: bool = False,
                         opset: int | None = None, simplify: bool = True, fp16: bool = False,
                         force: bool = False) -> tuple[str, Path]:
    """Validate ``export_model``'s options without loading anything; returns ``(format, output path)``.

    ``batch_size=None`` means "not given" (then it cannot clash with ``dynamic_batch``). Raises
    ``UsageError`` for an impossible combination and when an output file exists without ``force``.
    """
    fmt_key = export_format(fmt)
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    if dynamic_batch and batch_size is not None:
        raise UsageError("--batch-size and --dynamic-batch exclude each other")
    if opset is not None and fmt_key != "onnx":
        raise UsageError("--opset applies to --format onnx only")
    if not simplify and fmt_key != "onnx":
        raise UsageError("--no-simplify applies to --format onnx only")
    if fp16 and fmt_key != "openvino":
        raise UsageError("--fp16 (FP16 weight compression) applies to --format openvino only")
    if opset is not None and not 7 <= opset <= max_opset():
        raise UsageError(f"opset must be between 7 and {max_opset()}, got {opset}")
    out = Path(output)
    want = ".onnx" if fmt_key == "onnx" else ".xml"
    if out.suffix.lower() != want:
        raise UsageError(f"the {fmt_key} output must end in {want}, got {out}")
    check_output(out, force)
    if fmt_key == "openvino":
        check_output(out.with_suffix(".bin"), force)
    return fmt_key, out


def check_quantize_options(*, preset: str = "performance", subset_size: int = DEFAULT_SUBSET_SIZE,
                           eval_size: int = DEFAULT_EVAL_SIZE, max_accuracy_drop: float | None = None,
                           output: str | Path | None = None, force: bool = False) -> Path | None:
    """Validate ``quantize_model``'s options without loading anything; returns the output ``.xml`` path.

    Raises ``UsageError`` for an impossible value and when an output file exists without ``force``.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if subset_size < 1:
        raise UsageError(f"--subset-size must be at least 1, got {subset_size}")
    if eval_size < 1:
        raise UsageError(f"--eval-size must be at least 1, got {eval_size}")
    if max_accuracy_drop is not None and not 0 <= max_accuracy_drop < 1:
        raise UsageError(f"--max-accuracy-drop is a fraction in [0, 1), got {max_accuracy_drop}")
    if output is None:
        return None
    out_xml = Path(output)
    if out_xml.suffix.lower() != ".xml":
        raise UsageError(f"the INT8 model is an OpenVINO IR: the output must end in .xml, got {out_xml}")
    check_output(out_xml, force)
    check_output(out_xml.with_suffix(".bin"), force)
    return out_xml
