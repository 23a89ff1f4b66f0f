"""The zoo. Importing this package registers every family."""

from ghostcli.models import cifar, g_ghost_regnet, ghost_cifar, ghost_resnet, ghostnet, ghostnet_v2, ghostnet_v3  # noqa: F401  (registration side effects)
from ghostcli.models.registry import (
                                      ModelSpec,
                                      build_model,
                                      get_model_spec,
                                      list_models,
                                      name_matches,
                                      register_model,
                                      zoo_names,
)

__all__ = ["ModelSpec", "build_model", "get_model_spec", "list_models", "name_matches", "register_model", "zoo_names"]
