"""Motion tokenizer (paper Sec. 3.2): keypoint velocities -> discrete FSQ codes -> local-window logits.

* Encoder: the velocities of ALL views at one time step form one token (V x N x 2 numbers); a causal
  transformer runs over the T-1 steps, so the code of step k only sees motion up to k.
* Quantiser: Finite Scalar Quantization (``vector_quantize_pytorch.FSQ``), levels [8, 8, 6, 5] -> 1920
  codes; one code per step, so a 16-step track becomes 15 codes.
* Decoder: one learned query per (view, point) cross-attends to the quantised codes and outputs, for
  every step, logits over the 225 classes of the 15x15 local window (``amplify_core.tracks``).
* Loss: cross-entropy against the labels, weighted per view.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import FSQ

from .configs import TokenizerConfig
from .tracks import LABEL_IMAGE_SIZE, grid_points, labels_to_tracks, normalize
from .transformer import Block, causal_mask


class MotionTokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = c = config
        v, n, steps = len(c.views), c.num_points, c.code_length
        self.embed = nn.Linear(v * n * 2, c.hidden)
        self.step_pos = nn.Parameter(torch.randn(steps, c.hidden) * 0.02)
        self.encoder = nn.ModuleList(Block(c.hidden, c.heads, c.dropout) for _ in range(c.layers))
        self.encoder_norm = nn.LayerNorm(c.hidden)
        self.to_latent = nn.Linear(c.hidden, len(c.fsq_levels))
        self.fsq = FSQ(levels=list(c.fsq_levels))
        self.from_latent = nn.Linear(len(c.fsq_levels), c.hidden)
        self.code_pos = nn.Parameter(torch.randn(steps, c.hidden) * 0.02)
        self.point_queries = nn.Parameter(torch.randn(n, c.hidden) * 0.02)
        self.view_embed = nn.Parameter(torch.randn(v, c.hidden) * 0.02)
        self.decoder = nn.ModuleList(
            Block(c.hidden, c.heads, c.dropout, self_attention=False, cross_attention=True)
            for _ in range(c.decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, steps * c.num_classes)
        weights = c.view_weights or [1.0] * v
        self.register_buffer("view_weights", torch.tensor(weights, dtype=torch.float32) / sum(weights))

    def _check(self, velocities: torch.Tensor) -> None:
        c = self.config
        expected = (len(c.views), c.code_length, c.num_points, 2)
        if velocities.ndim != 5 or tuple(velocities.shape[1:]) != expected:
            raise ValueError(f"tokenizer expects velocities (B, views={expected[0]}, steps={expected[1]}, "
                             f"points={expected[2]}, 2) for views {c.views}, got {tuple(velocities.shape)}")
        if not torch.isfinite(velocities).all():
            raise ValueError("tokenizer input velocities contain NaN or infinite values")

    def encode(self, velocities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities (B, V, T-1, N, 2), normalised units -> (quantised latents (B, T-1, d), codes (B, T-1))."""
        self._check(velocities)
        b, v, steps = velocities.shape[:3]
        # scale: normalised velocities are ~1e-2; multiply so a 1 px step at 128 px is ~1
        x = (velocities * 64.0).permute(0, 2, 1, 3, 4).reshape(b, steps, -1)
        x = self.embed(x) + self.step_pos
        mask = causal_mask(steps, x.device)
        for block in self.encoder:
            x, _ = block(x, mask=mask)
        latents, codes = self.fsq(self.to_latent(self.encoder_norm(x)))
        return latents, codes.long()

    def codes_to_latents(self, codes: torch.Tensor) -> torch.Tensor:
        return self.fsq.indices_to_codes(codes)

    def decode(self, latents: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        """Quantised latents (B, T-1, d) -> logits (B, V, T-1, N, classes).

        ``points`` (K,) restricts the output to those grid points (N -> K). Each point query attends
        only to the codes, never to other points, so a subset gives exactly the same logits.
        """
        c = self.config
        b = latents.shape[0]
        memory = self.from_latent(latents) + self.code_pos
        point_queries = self.point_queries if points is None else self.point_queries[points]
        v, n = len(c.views), len(point_queries)
        queries = (self.view_embed[:, None, :] + point_queries[None]).reshape(1, v * n, -1)
        x = queries.expand(b, -1, -1)
        for block in self.decoder:
            x, _ = block(x, context=memory)
        logits = self.head(self.decoder_norm(x)).view(b, v, n, c.code_length, c.num_classes)
        return logits.permute(0, 1, 3, 2, 4)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T-1) -> logits (B, V, T-1, N, classes)."""
        codes = codes.long()
        if codes.min() < 0 or codes.max() >= self.config.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.config.codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return self.decode(self.codes_to_latents(codes))

    @torch.no_grad()
    def codes_to_tracks(self, codes) -> np.ndarray:
        """One code sequence (T-1,) -> the tracks it describes, normalised (V, T, N, 2), from the grid points
        (the most likely class per step); what the forward model "imagines" the scene will do."""
        codes = torch.as_tensor(np.asarray(codes), device=self.point_queries.device).reshape(1, -1)
        labels = self.decode_codes(codes).argmax(-1)[0].cpu().numpy()  # (V, T-1, N)
        side = int(round(self.config.num_points ** 0.5))
        grid = normalize(grid_points(LABEL_IMAGE_SIZE, LABEL_IMAGE_SIZE, side), LABEL_IMAGE_SIZE, LABEL_IMAGE_SIZE)
        return labels_to_tracks(np.broadcast_to(grid, (labels.shape[0],) + grid.shape), labels)

    def forward(self, velocities: torch.Tensor, labels: torch.Tensor | None = None):
        """(logits, codes); with ``labels``, the training loss instead (so DDP wraps the whole step)."""
        if labels is not None:
            return self.training_loss(velocities, labels)
        latents, codes = self.encode(velocities)
        return self.decode(latents), codes

    def training_loss(self, velocities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of a batch; while training, on ``config.train_points`` random grid points per step.

        The 225-way logits of every (view, step, point) dominate the cost (B x 3 x 15 x 400 x 225 numbers);
        an unbiased random subset of points keeps a CPU step fast, and evaluation decodes all points.
        """
        latents, _ = self.encode(velocities)
        k = self.config.train_points
        if self.training and k and k < self.config.num_points:
            points = torch.randperm(self.config.num_points, device=velocities.device)[:k]
            return self.loss(self.decode(latents, points), labels[..., points])
        return self.loss(self.decode(latents), labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """View-weighted cross-entropy; labels (B, V, T-1, N) int."""
        ce = F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten().long(), reduction="none")
        per_view = ce.view(labels.shape).mean(dim=(0, 2, 3))
        return (per_view * self.view_weights).sum()
