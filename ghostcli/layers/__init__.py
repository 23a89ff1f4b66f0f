"""Ghost building blocks: plain ``nn.Module`` classes."""

from ghostcli.layers.ghost import GhostBottleneck, GhostModule, SqueezeExcite, make_divisible

__all__ = ["GhostModule", "GhostBottleneck", "SqueezeExcite", "make_divisible"]
