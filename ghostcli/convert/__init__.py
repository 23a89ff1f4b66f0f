"""ghostify: replace a CNN's dense convs with Ghost modules (a converter table users can extend), rebuild residual
stages as G-Ghost stages, and report it."""

from ghostcli.analysis.params import module_params
from ghostcli.convert.ghostify import GHOSTIFY_ATTR, ghostify
from ghostcli.convert.padded_ghost import PaddedGhostModule, SamePad2d
from ghostcli.convert.report import ConvRow, GhostifyReport, StageRow, fvcore_macs
from ghostcli.convert.rules import (
    DEFAULT_CONVERTERS,
    ConvertContext,
    Converter,
    ConverterTable,
    KeepLayer,
    LayerKey,
    class_path,
    convert_conv2d,
    register_converter,
)
from ghostcli.convert.same_padding import SAME_PADDING_CONVERTERS
from ghostcli.convert.stage import eligible_stages, stage_candidates, to_g_ghost_stage
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
    "LayerKey",
    "PaddedGhostModule",
    "SAME_PADDING_CONVERTERS",
    "SamePad2d",
    "StageRow",
    "class_path",
    "convert_conv2d",
    "eligible_stages",
    "fvcore_macs",
    "ghostify",
    "module_params",
    "register_converter",
    "stage_candidates",
    "to_g_ghost_stage",
]
