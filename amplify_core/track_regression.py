"""Direct track regression: the paper's MSE ablation of the forward model (Table 2, "MSE" row).

The same conditioning as :class:`amplify_core.forward_dynamics.ForwardDynamics` (ResNet patch tokens of every
view and the task text token) but no tokenizer and no codes: learned query tokens, one per (view, future step),
attend to the conditioning and a linear head regresses the displacement of every grid point from where it
starts, trained with mean squared error on the tracks. Comparing it with the forward model decoded by the
tokenizer, on the same data and metrics, is what shows whether the discrete latent motion is worth it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .configs import ForwardConfig
from .tracks import LABEL_IMAGE_SIZE, grid_points, normalize
from .transformer import Block
from .vision import MultiViewEncoder


class TrackRegressor(nn.Module):
    def __init__(self, config: ForwardConfig, num_views: int, num_points: int, horizon: int):
        super().__init__()
        self.config = c = config
        self.num_views, self.num_points, self.horizon = num_views, num_points, horizon
        self.vision = MultiViewEncoder(c.vision, num_views, c.hidden)
        self.text_proj = nn.Linear(c.text_dim, c.hidden)
        self.queries = nn.Parameter(torch.randn(1, num_views * (horizon - 1), c.hidden) * 0.02)
        self.blocks = nn.ModuleList(Block(c.hidden, c.heads, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, num_points * 2)
        side = int(round(num_points ** 0.5))
        grid = normalize(grid_points(LABEL_IMAGE_SIZE, LABEL_IMAGE_SIZE, side), LABEL_IMAGE_SIZE, LABEL_IMAGE_SIZE)
        self.register_buffer("grid", torch.from_numpy(np.ascontiguousarray(grid)), persistent=False)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, V, 3, H, W), text (B, text_dim) -> tracks (B, V, T, N, 2), normalised; step 0 is
        the query grid itself."""
        b = images.shape[0]
        cond = torch.cat([self.vision(images), self.text_proj(text.float()).unsqueeze(1)], dim=1)
        x = torch.cat([cond, self.queries.expand(b, -1, -1)], dim=1)
        for block in self.blocks:
            x, _ = block(x)  # no mask: every token sees every other (nothing is generated step by step)
        offsets = self.head(self.norm(x[:, cond.shape[1]:]))
        offsets = offsets.view(b, self.num_views, self.horizon - 1, self.num_points, 2)
        start = self.grid.expand(b, self.num_views, 1, self.num_points, 2)
        return torch.cat([start, start + offsets], dim=2)

    @staticmethod
    def loss(pred: torch.Tensor, tracks: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared error of the future positions (step 0 is given, not predicted); with ``visible`` (B, V, T,
        N) only where the tracker saw the point, as the tokenizer's loss."""
        err = (pred[:, :, 1:] - tracks[:, :, 1:].float()).pow(2).sum(-1)
        if visible is None:
            return err.mean() / 2
        weight = visible[:, :, 1:].to(err.dtype)
        return (err * weight).sum() / weight.sum().clamp(min=1.0) / 2
