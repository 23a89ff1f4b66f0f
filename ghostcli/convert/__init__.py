"""ghostify: replace a CNN's dense convs with Ghost modules (a converter table users can extend) and report it."""

from ghostcli.analysis.params import module_params
from ghostcli.convert.ghostify import GHOSTIFY_ATTR, ghostify
from ghostcli.convert.report import ConvRow, GhostifyReport, fvcore_macs
from ghostcli.convert.rules import (
    DEFAULT_CONVERTERS,
    ConvertContext,
    Converter,
    ConverterTable,
    KeepLayer,
    convert_conv2d,
    register_converter,
)
from ghostcli.ghostify_options import GhostifyOptions

__all__ = [
    "DEFAULT_CONVERTERS",
    "GHOSTIFY_ATTR",
    "ConvRow",
    "ConvertContext",
    "Converter",
    "ConverterTable",
    "GhostifyOptions",
    "GhostifyReport",
    "KeepLayer",
    "convert_conv2d",
    "fvcore_macs",
    "ghostify",
    "module_params",
    "register_converter",
]
