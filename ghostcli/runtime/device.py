"""PyTorch devices: a device name (``cpu``, ``cuda``, ``cuda:N``, ``auto``) -> a ``torch.device``."""

from __future__ import annotations

import torch

from ghostcli.errors import DeviceError, UsageError


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` -> a torch device; CUDA asked for but absent is an error.

    ``auto`` is CUDA when available, else the CPU. Under a distributed launch pass the process's
    ``local_rank``: CUDA then means ``cuda:<local_rank>``. Errors name the setting as ```device```
    (a CLI shows its option instead).
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"`device` {name} was asked for but CUDA is not available "
                              "(no NVIDIA GPU visible, or a CPU-only PyTorch build)")
        if local_rank is not None:
            return torch.device("cuda", local_rank)
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"`device` {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return dev
    raise UsageError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
