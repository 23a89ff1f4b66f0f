"""Environment information printed beside every measurement."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from ghostcli import __version__
from ghostcli.analysis.report import Environment


def package_version(name: str) -> str | None:
    """Installed version of ``name`` without importing it, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


_ISA = (  # /proc/cpuinfo flag -> the name users know, in the order printed
    ("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"), ("avx_vnni", "AVX-VNNI"),
    ("avx512_bf16", "AVX512-BF16"), ("amx_tile", "AMX"), ("amx_bf16", "AMX-BF16"), ("amx_int8", "AMX-INT8"),
)


def cpu_isa(flags: set[str] | None = None) -> list[str]:
    """The vector/matrix extensions that decide CNN speed on this CPU (AVX2, AVX-512, VNNI, BF16, AMX)."""
    if flags is None:
        flags = set()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.lower().startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    return [name for flag, name in _ISA if flag in flags]


def isa_text(isa: list[str]) -> str:
    """``AVX2, AVX-512, VNNI; no AMX`` (AMX's absence is said: it decides bf16/INT8 speed)."""
    if not isa:
        return "ISA unknown"
    return ", ".join(isa) + ("" if any(n.startswith("AMX") for n in isa) else "; no AMX")


def describe_cpu() -> str:
    """``AMD EPYC (AVX2, AVX-512, VNNI, AVX512-BF16; no AMX), 2 CPUs``: what a measured number came from."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_name()} ({isa_text(cpu_isa())}), {cpus} CPUs"


def collect_environment(with_cuda: bool = False) -> Environment:
    """Versions, CPU and (when ``with_cuda``) GPU; never initialises CUDA unless asked."""
    import torch

    cuda = gpu = None
    if with_cuda and torch.cuda.is_available():
        cuda = torch.version.cuda
        gpu = torch.cuda.get_device_name(0)
    return Environment(
        ghostcli=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=cpu_name(),
        cpu_count=os.cpu_count(),
        cpu_isa=cpu_isa(),
        torch=torch.__version__,
        torchvision=package_version("torchvision"),
        fvcore=package_version("fvcore"),
        openvino=package_version("openvino"),
        cuda=cuda,
        gpu=gpu,
    )
