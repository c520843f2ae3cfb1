"""Model registry; importing this package registers every built-in model."""

from cxr.models import cnn, efficientnet_lite, monai_nets  # noqa: F401  (registration side effect)
from cxr.models.registry import (
    INPUT_NORMS,
    available_models,
    count_parameters,
    create_model,
    model_spec,
    register_model,
)

__all__ = ["INPUT_NORMS", "available_models", "count_parameters", "create_model", "model_spec", "register_model"]
