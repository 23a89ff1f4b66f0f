"""Running a model only as far as one unit needs, from cached inputs of the modules that enclose it.

Capturing a unit's input (or the original's output at the same place) by running the whole model from the images
costs, summed over the units, about ``depth x model``: quadratic in the depth (a ResNet-50 has 53 units). A
:class:`Prefix` instead caches, once for every calibration image, the input of each module that encloses the
unit being calibrated (a ResNet's stage, then its block) and runs only the innermost one as far as the unit: about
one pass of the model over all units together.

A module qualifies when every forward pass calls it exactly once with one tensor and nothing else (checked on one
image), so that ``module(cached_input)`` is exactly what the model computes there. A cached input stays valid
while the units are calibrated in forward order inside the module: nothing that runs before the module changes
any more. The caches are :class:`~ghostcli.calibrate.fit.Cache` objects (float32, bfloat16 above their limit);
a module whose input does not fit its limit even as bfloat16 is not cached (the next outer one serves).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ghostcli.calibrate.fit import Cache, capture


def _qualified(model: nn.Module, names: set[str], example: torch.Tensor) -> set[str]:
    """Those of ``names`` that one forward pass calls exactly once with exactly one tensor argument, less those that
    get the very tensor their nearest such enclosing module gets (a Sequential's first block, a shortcut): the
    enclosing module's cache serves them at no cost, so caching theirs would only double the memory."""
    named = dict(model.named_modules())
    calls: dict[str, list[int]] = {}
    inputs: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str) -> Any:
        def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            entry = calls.setdefault(name, [0, 1])
            entry[0] += 1
            if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor):
                entry[1] = 0
            else:
                inputs[name] = args[0]
        return pre

    for name in names:
        if name in named:
            handles.append(named[name].register_forward_pre_hook(hook(name), with_kwargs=True))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    once = {name for name, (count, single) in calls.items() if count == 1 and single}
    kept = set()
    for name in once:
        outer = [a for a in ancestors(name) if a in once]
        if not outer or inputs[outer[-1]] is not inputs[name]:
            kept.add(name)
    return kept


def ancestors(name: str) -> list[str]:
    """The proper enclosing module names of ``name``, outermost first (``a.b.c`` -> ``a``, ``a.b``)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class Prefix:
    """Captures at named modules of ``model`` on ``images``, from the cached inputs of enclosing modules.

    ``targets`` are the module names captures will be asked at; ``limit_mb`` bounds each cached input (float32,
    else bfloat16, else not cached). Captures must come in the forward order of the calibration (see the module
    docstring); asking at a module outside the cached ones drops them.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, batch_size: int, targets: list[str],
                 limit_mb: float) -> None:
        self.model = model
        self.images = images
        self.batch_size = batch_size
        self.limit_mb = limit_mb
        wanted = {a for t in targets for a in ancestors(t)}
        self.modules = dict(model.named_modules())
        self.enclosing = _qualified(model, wanted, images[:1]) if len(images) and wanted else set()
        self.stack: list[tuple[str, Cache]] = []
        self.too_big: set[str] = set()

    @property
    def mb(self) -> float:
        """Memory of the cached inputs now held."""
        return sum(c.mb for _, c in self.stack)

    def capture(self, name: str, cache: Cache, *, output: bool = False, perm: torch.Tensor | None = None) -> None:
        """Fill ``cache`` with the input (or ``output``) of module ``name`` for every image (``perm``: channels)."""
        outer = [a for a in ancestors(name) if a in self.enclosing and a not in self.too_big]
        while self.stack and self.stack[-1][0] not in outer:
            self.stack.pop()
        for a in outer:
            if any(a == held for held, _ in self.stack):
                continue
            cached = Cache(self.limit_mb, drop=True)
            self._run(self.modules[a], cached)
            if cached.filled < len(self.images):  # not even bfloat16 fits: the next outer module serves
                self.too_big.add(a)
                continue
            self.stack.append((a, cached))
        self._run(self.modules[name], cache, output=output, perm=perm)

    def _run(self, module: nn.Module, cache: Cache, *, output: bool = False, perm: torch.Tensor | None = None) -> None:
        if self.stack:
            held, source = self.stack[-1]
            assert source.data is not None
            capture(self.modules[held], module, source.data, self.batch_size, cache, output=output, perm=perm)
        else:
            capture(self.model, module, self.images, self.batch_size, cache, output=output, perm=perm)
