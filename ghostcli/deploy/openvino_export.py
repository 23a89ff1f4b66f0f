"""Saving OpenVINO IR atomically (conversion and compilation live in :mod:`ghostcli.runtime.openvino`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ghostcli.errors import ExportError, UsageError, one_line
from ghostcli.fsutil import atomic_dir, check_output


def save_ir(ov_model: Any, xml_path: str | Path, *, fp16: bool = False, force: bool = False,
            verify: Callable[[Path], None] | None = None) -> Path:
    """Save ``ov_model`` as ``xml_path`` + its ``.bin`` atomically; returns the .xml path.

    Weights are compressed to FP16 only when ``fp16`` is set. Both files are written into
    a temporary directory and moved beside ``xml_path`` on success; ``verify`` (optional)
    is called with the temporary .xml first and may raise to abort: nothing is left behind.
    """
    import openvino as ov

    xml = Path(xml_path)
    if xml.suffix.lower() != ".xml":
        raise UsageError(f"an OpenVINO IR path must end in .xml, got {xml}")
    check_output(xml, force)
    check_output(xml.with_suffix(".bin"), force)
    with atomic_dir(xml) as tmp:
        tmp_xml = tmp / xml.name
        try:
            ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=bool(fp16))
        except Exception as exc:
            raise ExportError(f"could not write the OpenVINO IR: {one_line(exc, 300)}") from exc
        if verify is not None:
            verify(tmp_xml)
    return xml
