"""The conversion table: layer type -> converter, an object with a default instance.

A converter is a callable ``fn(module, ctx) -> nn.Module`` that returns the replacement for
``module`` or raises :class:`KeepLayer` (:mod:`ghostcli.convert.conv2d` defines both, and the
plain-conv converter :func:`convert_conv2d`).

A table entry is keyed by a class, or by a class's path (``"timm.layers.conv2d_same.Conv2dSame"``:
its module and qualified name), which matches that class without importing its package; a
subclass uses its base's entry only when it does not override ``forward``.
:data:`DEFAULT_CONVERTERS` holds ``nn.Conv2d -> convert_conv2d`` and the shipped converters of
the convs that pad in ``forward`` (:mod:`ghostcli.convert.same_padding`). ``ghostify`` works on a
copy per call (``converters=`` adds entries to that copy or replaces the table), so a call never
changes what another one does; :func:`register_converter` extends the default table (what
``ghostcli`` uses to rebuild saved artifacts).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import overload

from torch import nn

from ghostcli.convert.conv2d import ConvertContext, Converter, KeepLayer, convert_conv2d
from ghostcli.convert.same_padding import SAME_PADDING_CONVERTERS

#: A table key: a layer class, or the path of one (``"package.module.Class"``)
LayerKey = type[nn.Module] | str
_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def class_path(cls: type) -> str:
    """``cls``'s module and qualified name, as a table key names it: ``"timm.layers.conv2d_same.Conv2dSame"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _loaded_class(path: str) -> type | None:
    """The class ``path`` names when its module is already imported (nothing is imported), else None."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is None:
            continue
        obj: object = module
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return obj if isinstance(obj, type) and class_path(obj) == path else None
    return None


class ConverterTable:
    """Layer class (or class path) -> converter. Subclasses of a registered class use its converter only when
    they do not override ``forward``."""

    def __init__(self, entries: Mapping[type[nn.Module], Converter] | Mapping[str, Converter]
                 | Mapping[LayerKey, Converter] | None = None) -> None:
        self._table: dict[LayerKey, Converter] = {}
        for layer_type, fn in (entries or {}).items():
            self.register(layer_type, fn)

    @overload
    def register(self, layer_type: LayerKey, fn: None = None) -> Callable[[Converter], Converter]: ...

    @overload
    def register(self, layer_type: LayerKey, fn: Converter) -> Converter: ...

    def register(self, layer_type: LayerKey,
                 fn: Converter | None = None) -> Callable[[Converter], Converter] | Converter:
        """Set ``fn`` as the converter for ``layer_type`` (replacing any); usable as a decorator.

        ``layer_type`` is an ``nn.Module`` subclass, or its path ``"package.module.Class"`` (see
        :func:`class_path`), which matches the class without importing its package.
        """
        if isinstance(layer_type, str):
            if not _PATH.match(layer_type):
                raise TypeError(f"a converter's class path is 'package.module.Class', got {layer_type!r}")
        elif not isinstance(layer_type, type) or not issubclass(layer_type, nn.Module):
            raise TypeError(f"a converter needs an nn.Module subclass or its path, got {layer_type!r}")

        def deco(f: Converter) -> Converter:
            if not callable(f):
                raise TypeError(f"a converter must be callable, got {type(f).__name__}")
            self._table[layer_type] = f
            return f

        return deco(fn) if fn is not None else deco

    def unregister(self, layer_type: LayerKey) -> None:
        """Remove ``layer_type``'s converter (a KeyError when it has none)."""
        del self._table[layer_type]

    def copy(self) -> ConverterTable:
        """An independent table with the same entries."""
        return ConverterTable(self._table)

    def types(self) -> tuple[type[nn.Module], ...]:
        """The layer classes that have a converter: the registered classes, and those the class paths name whose
        module is already imported (nothing is imported)."""
        found = [k if isinstance(k, type) else _loaded_class(k) for k in self._table]
        return tuple(dict.fromkeys(t for t in found if t is not None and issubclass(t, nn.Module)))

    def _entry(self, cls: type) -> Converter | None:
        return self._table.get(cls) or self._table.get(class_path(cls))

    def __contains__(self, layer_type: object) -> bool:
        return layer_type in self._table

    def __iter__(self) -> Iterator[LayerKey]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def find(self, module: nn.Module) -> tuple[Converter | None, str]:
        """The converter for ``module`` and, when there is none, the reason why."""
        cls = type(module)
        fn = self._entry(cls)
        if fn is not None:
            return fn, ""
        for base in cls.__mro__[1:]:
            fn = self._entry(base)
            if fn is not None:
                same = all(getattr(cls, attr, None) is getattr(base, attr, None) for attr in ("forward", "_conv_forward"))
                if same:
                    return fn, ""
                return None, f"{cls.__name__} overrides {base.__name__}.forward (register a converter for it)"
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            return None, "transposed conv (not replaced)"
        return None, f"no converter for {cls.__name__}"


def converter_table(converters: ConverterTable | Mapping[type[nn.Module], Converter] | Mapping[str, Converter]
                    | Mapping[LayerKey, Converter] | None = None) -> ConverterTable:
    """The table one ghostify call works on: a copy of ``converters`` when it is a table, otherwise a copy
    of :data:`DEFAULT_CONVERTERS` with the ``converters`` entries (classes or class paths) added."""
    if isinstance(converters, ConverterTable):
        return converters.copy()
    table = DEFAULT_CONVERTERS.copy()
    for layer_type, fn in (converters or {}).items():
        table.register(layer_type, fn)
    return table


#: The table ``ghostify`` starts from (a copy per call).
DEFAULT_CONVERTERS = ConverterTable()
DEFAULT_CONVERTERS.register(nn.Conv2d, convert_conv2d)
for _path, _fn in SAME_PADDING_CONVERTERS.items():
    DEFAULT_CONVERTERS.register(_path, _fn)


@overload
def register_converter(layer_type: LayerKey, fn: None = None) -> Callable[[Converter], Converter]: ...


@overload
def register_converter(layer_type: LayerKey, fn: Converter) -> Converter: ...


def register_converter(layer_type: LayerKey,
                       fn: Converter | None = None) -> Callable[[Converter], Converter] | Converter:
    """Register ``fn`` for ``layer_type`` (a class or its path, ``"package.module.Class"``) in
    :data:`DEFAULT_CONVERTERS` (usable as a decorator).

    Every later ``ghostify`` call and artifact rebuild uses it; to convert one model only, pass
    ``converters={layer_type: fn}`` to ``ghostify`` instead.
    """
    return DEFAULT_CONVERTERS.register(layer_type, fn)


__all__ = ["DEFAULT_CONVERTERS", "ConvertContext", "Converter", "ConverterTable", "KeepLayer", "LayerKey",
           "class_path", "convert_conv2d", "converter_table", "register_converter"]
