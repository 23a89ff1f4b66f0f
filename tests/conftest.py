"""Shared fixtures: a deterministic torch, CLI runners, the installed entry point."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

torch.manual_seed(0)
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture(scope="session")
def ghostcli_exe() -> str:
    """Path of the installed ``ghostcli`` console script (catches packaging mistakes)."""
    exe = Path(sys.executable).parent / "ghostcli"
    found = str(exe) if exe.exists() else shutil.which("ghostcli")
    if not found:
        pytest.fail("the ghostcli console script is not installed (pip install -e .)")
    return found


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics so that tests of folding/round trips can fail."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model
