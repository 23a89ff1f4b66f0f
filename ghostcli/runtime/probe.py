"""Running a model once: :func:`run_once` (the output, or one error naming the failing layer) and
:func:`probe_forward` (also every layer's output shape and the peak memory).

CPU peak memory is measured at the tensor level: a ``TorchDispatchMode`` sees every
tensor an operator returns, counts the bytes of each new storage and subtracts them when
the storage is freed (``weakref.finalize``). The peak of that running sum is the
activation memory of one forward; weights and the input are added separately. It
excludes allocator slack, oneDNN scratch buffers and Python objects, so it is a lower
bound on what the process needs, and it does not depend on other processes (unlike RSS).
CUDA uses the caching allocator's own peak (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ghostcli.errors import GhostcliError, one_line
from ghostcli.units import format_input_size

CPU_METHOD = "tensor-level: peak bytes of tensor storages alive during one forward, tracked per operator"
CUDA_METHOD = "torch.cuda.max_memory_allocated during one forward (caching-allocator peak)"


class ForwardError(GhostcliError):
    """The model raised during a forward pass on the requested input."""


class _StorageTracker(TorchDispatchMode):
    """Running sum of bytes held by storages created during the forward."""

    def __init__(self, known: set[int]) -> None:
        super().__init__()
        self.known = known
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int, nbytes: int) -> None:
        if self.live.pop(key, None) is not None:
            self.current -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self.known or key in self.live or key == 0:
                continue
            nbytes = storage.nbytes()
            self.live[key] = nbytes
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._free, key, nbytes)
        return out


@dataclass
class LayerRecord:
    """What one module produced in the probe pass."""

    type: str
    output_shape: list[int] | None
    output_numel: int


@dataclass
class ProbeResult:
    """Result of :func:`probe_forward`."""

    layers: dict[str, LayerRecord] = field(default_factory=dict)
    activations_peak_bytes: int | None = None


def _shapes(obj: Any) -> list[list[int]]:
    return [list(t.shape) for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def _fmt_shape(shape: list[int]) -> str:
    return format_input_size(shape) or "scalar"


class _CallStack:
    """Forward pre/post hooks on every module of ``model``: the modules running now, innermost last.

    ``on_output(name, module, output)`` (optional) sees every module's output.
    """

    def __init__(self, model: nn.Module,
                 on_output: Callable[[str, nn.Module, Any], None] | None = None) -> None:
        self.model = model
        self.on_output = on_output
        self.stack: list[tuple[str, nn.Module, list[list[int]]]] = []
        self.names = {id(m): n for n, m in model.named_modules()}
        self.handles: list[Any] = []

    def __enter__(self) -> _CallStack:
        def pre(mod: nn.Module, args: Any) -> None:
            self.stack.append((self.names.get(id(mod), "?"), mod, _shapes(args)))

        def post(mod: nn.Module, args: Any, out: Any) -> None:
            if self.stack:
                self.stack.pop()
            if self.on_output is not None:
                self.on_output(self.names.get(id(mod), "?"), mod, out)

        for mod in self.model.modules():
            self.handles.append(mod.register_forward_pre_hook(pre))
            self.handles.append(mod.register_forward_hook(post))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def error(self, what: str, example: torch.Tensor, exc: BaseException) -> ForwardError:
        """The one-line :class:`ForwardError` for ``exc``, naming the innermost module that was running."""
        msg = one_line(exc, 220, first_line=True)
        where = ""
        if self.stack:
            name, mod, in_shapes = self.stack[-1]
            shapes = ", ".join(_fmt_shape(s) for s in in_shapes) or "no tensors"
            where = f" at layer '{name or '(root)'}' ({type(mod).__name__}, input {shapes})"
        return ForwardError(f"{what} fails on input {_fmt_shape(list(example.shape))}{where}: "
                            f"{type(exc).__name__}: {msg}")


def run_once(model: nn.Module, example: torch.Tensor, what: str = "the model") -> Any:
    """Run ``model(example)`` once in eval mode without autograd and return its output.

    Every module's training flag is restored afterwards. When the forward raises, a
    :class:`ForwardError` names the failing layer: ``"<what> fails on input 1x3x8x8 at
    layer 'conv1' (Conv2d, input 1x3x8x8): RuntimeError: ..."`` (ghostcli errors pass through).
    """
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with _CallStack(model) as calls, torch.no_grad():
            try:
                return model(example)
            except GhostcliError:
                raise
            except Exception as exc:
                raise calls.error(what, example, exc) from None
    finally:
        for m, t in training.items():
            m.training = t


def probe_forward(model: nn.Module, example: torch.Tensor, *, model_name: str = "model",
                  track_memory: bool = True) -> ProbeResult:
    """Run one forward with hooks; on failure raise :class:`ForwardError` naming the layer and shapes."""
    result = ProbeResult()

    def record(name: str, mod: nn.Module, out: Any) -> None:
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        result.layers[name] = LayerRecord(
            type=type(mod).__name__,
            output_shape=list(outs[0].shape) if len(outs) == 1 else None,
            output_numel=sum(t.numel() for t in outs),
        )

    known = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), example]}
    tracker = _StorageTracker(known) if track_memory and example.device.type == "cpu" else None
    with _CallStack(model, on_output=record) as calls:
        try:
            with torch.inference_mode():
                if tracker is not None:
                    with tracker:
                        out = model(example)
                    del out
                else:
                    model(example)
        except GhostcliError:
            raise
        except Exception as exc:
            raise calls.error(model_name, example, exc) from None
    if tracker is not None:
        result.activations_peak_bytes = int(tracker.peak)
    return result


def cuda_forward_peak(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(allocator peak during one forward, peak minus what was allocated before) on CUDA, in bytes."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.inference_mode():
        out = model(example)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del out
    return int(peak), int(peak - before)
