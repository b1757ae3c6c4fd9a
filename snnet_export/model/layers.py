"""The stitching layer module shared by every family (ViT and staged SN-Nets)."""
from __future__ import annotations

import torch
from torch import nn


class StitchingLayer(nn.Module):
    """A linear map with bias on every token (``linear``) or a 1x1 conv on feature maps."""

    def __init__(self, in_features: int, out_features: int, kind: str = "linear") -> None:
        super().__init__()
        self.kind = kind
        self.transform: nn.Linear | nn.Conv2d
        if kind == "linear":
            self.transform = nn.Linear(in_features, out_features)
        else:
            self.transform = nn.Conv2d(in_features, out_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)

    @torch.no_grad()
    def set_weights(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Copy a ``[out, in]`` weight and ``[out]`` bias into the layer."""
        w = self.transform.weight
        self.transform.weight.copy_(weight.reshape(w.shape).to(w.dtype))
        assert self.transform.bias is not None  # both kinds are built with a bias
        self.transform.bias.copy_(bias.to(w.dtype))
