"""Ghost building blocks: plain ``nn.Module`` classes."""

from ghostcli.layers.g_ghost import ChannelSlice, GGhostStage
from ghostcli.layers.ghost import GhostBottleneck, GhostModule, SqueezeExcite, make_divisible
from ghostcli.layers.ghost_v2 import GhostBottleneckV2, GhostModuleV2
from ghostcli.layers.ghost_v3 import GhostBottleneckV3, GhostModuleV3, has_training_branches, reparameterize

__all__ = ["ChannelSlice", "GGhostStage", "GhostModule", "GhostBottleneck", "GhostModuleV2", "GhostBottleneckV2",
           "GhostModuleV3", "GhostBottleneckV3", "SqueezeExcite", "has_training_branches", "make_divisible",
           "reparameterize"]
