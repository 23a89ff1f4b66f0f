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
        torch=torch.__version__,
        torchvision=package_version("torchvision"),
        fvcore=package_version("fvcore"),
        openvino=package_version("openvino"),
        cuda=cuda,
        gpu=gpu,
    )
