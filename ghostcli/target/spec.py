"""The runtimes and precisions ``ghostify --target`` measures on (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from ghostcli.errors import DeviceError, UsageError


@dataclass(frozen=True)
class Target:
    """Where the ghostified model will run: a runtime, a precision and a memory layout."""

    name: str
    runtime: str  # "openvino" or "torch"
    precision: str  # "f32", "bf16" or "int8"
    device: str = "cpu"  # torch: "cpu" or "cuda"
    channels_last: bool = False
    description: str = ""


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("openvino-f32", "openvino", "f32", description="OpenVINO CPU plugin, f32 inference precision"),
    Target("openvino-bf16", "openvino", "bf16", description="OpenVINO CPU plugin, bf16 (needs AVX512-BF16 or AMX)"),
    Target("openvino-int8", "openvino", "int8", description="OpenVINO CPU plugin, INT8 IR made by NNCF (`quantize`)"),
    Target("cpu", "torch", "f32", description="PyTorch eager on the CPU, f32, NCHW"),
    Target("cpu-channels-last", "torch", "f32", channels_last=True,
           description="PyTorch eager on the CPU, f32, channels_last"),
    Target("cuda", "torch", "f32", device="cuda", description="PyTorch eager on an NVIDIA GPU, f32"),
)}


def parse_target(name: str) -> Target:
    """The target called ``name``; an unknown name is a UsageError with the choices."""
    import difflib

    key = name.strip().lower()
    if key in TARGETS:
        return TARGETS[key]
    close = difflib.get_close_matches(key, list(TARGETS), n=2, cutoff=0.5)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise UsageError(f"unknown `target` {name!r}{hint}; choose from {', '.join(TARGETS)}")


def check_available(target: Target, isa: list[str] | None = None) -> None:
    """Raise DeviceError when this machine cannot run ``target`` (no GPU, no bf16 on the CPU)."""
    if target.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise DeviceError("`target` cuda needs an NVIDIA GPU, and torch sees none on this machine")
    if target.precision == "bf16":
        from ghostcli.analysis.env import cpu_isa

        have = cpu_isa() if isa is None else isa
        if not any(n in have for n in ("AVX512-BF16", "AMX-BF16")):
            raise DeviceError("`target` openvino-bf16 needs a CPU with AVX512-BF16 or AMX; this one has "
                              f"{', '.join(have) or 'neither'}")


__all__ = ["TARGETS", "Target", "check_available", "parse_target"]
