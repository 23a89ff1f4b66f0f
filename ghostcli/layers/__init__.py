"""Ghost building blocks: plain ``nn.Module`` classes."""

from ghostcli.layers.g_ghost import ChannelSlice, GGhostStage
from ghostcli.layers.ghost import GhostBottleneck, GhostModule, SqueezeExcite, make_divisible

__all__ = ["ChannelSlice", "GGhostStage", "GhostModule", "GhostBottleneck", "SqueezeExcite", "make_divisible"]
