"""Shared fixtures: a deterministic torch, CLI runners, the installed entry point; a child's output lines."""

from __future__ import annotations

import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
import torch

pytest_plugins = ["train_fixtures"]  # one_thread, for the train/evaluate tests

torch.manual_seed(0)
# one intra-op thread: on a shared 2-core machine two spinning OpenMP threads per forward made the small
# models of the suite several times slower (tests that need more threads set them themselves)
torch.set_num_threads(1)


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


class StreamLines:
    """A child process's text stream read line by line on a thread, so that waiting for a line has a
    deadline even when the child stalls without writing anything."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None, "the stream must be a pipe"
        self._lines: queue.Queue[str | None] = queue.Queue()  # None: end of the stream
        self._ended = False
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line)
        finally:
            self._lines.put(None)

    def _next(self, timeout: float) -> str | None:
        if self._ended:
            return None
        try:
            line = self._lines.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if line is None:
            self._ended = True
            return None
        self.seen.append(line)
        return line

    def wait_for(self, match: Callable[[str], bool], timeout: float) -> str | None:
        """The next line for which ``match`` holds; None when the stream ends or ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while (line := self._next(deadline - time.monotonic())) is not None:
            if match(line):
                return line
        return None

    def text(self, timeout: float) -> str:
        """Everything read so far and until the stream ends (or ``timeout`` seconds pass)."""
        self.wait_for(lambda line: False, timeout)
        return "".join(self.seen)
