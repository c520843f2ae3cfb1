"""Several trained models as one module, so that bundles, ONNX export, Grad-CAM and serving treat it like any model.

Each member keeps its own input normalisation and temperature (members are trained apart, each on its own pixel
statistics); the output is the log of the members' mean probability, so softmax of it is that mean.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cxr.models.registry import create_model

ENSEMBLE = "ensemble"  # BundleMeta.model of an ensemble; its members are listed in BundleMeta.extra["members"]


class MeanProbabilityEnsemble(nn.Module):
    def __init__(self, members: list[nn.Module], means: list[float], stds: list[float], temperatures: list[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("means", torch.tensor(means, dtype=torch.float32))
        self.register_buffer("stds", torch.tensor(stds, dtype=torch.float32))
        self.register_buffer("temperatures", torch.tensor(temperatures, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: pixels scaled to [0, 1] (an ensemble bundle has mean 0, std 1)."""
        probs = [
            torch.softmax(member((x - self.means[i]) / self.stds[i]) / self.temperatures[i], dim=1)
            for i, member in enumerate(self.members)
        ]
        return torch.log(torch.stack(probs).mean(0).clamp_min(1e-12))


def ensemble_from_specs(members: list[dict[str, Any]], num_classes: int) -> MeanProbabilityEnsemble:
    """Rebuild an ensemble from `BundleMeta.extra["members"]` (model, mean, std, temperature, input_norm per member)."""
    nets = [create_model(m["model"], num_classes, input_norm=m.get("input_norm", "dataset")) for m in members]
    return MeanProbabilityEnsemble(
        nets, [m["mean"] for m in members], [m["std"] for m in members], [m["temperature"] for m in members]
    )
