"""Motion tokenizer (paper Sec. 3.2): keypoint velocities -> discrete FSQ codes -> local-window logits.

* Encoder: the velocities of ALL views at one time step form one token (V x N x 2 numbers); a causal
  transformer runs over the T-1 steps, so the code of step k only sees motion up to k.
* Quantiser: Finite Scalar Quantization (``vector_quantize_pytorch.FSQ``), levels [8, 8, 6, 5] -> 1920
  codes; one code per step, so a 16-step track becomes 15 codes.
* Decoder: one learned query per (view, point) cross-attends to the quantised codes and outputs, for
  every step, logits over the 225 classes of the 15x15 local window (``amplify_core.tracks``).
* Loss: cross-entropy against the labels, weighted per view, on the steps the tracker saw the point (a lost point's
  later "labels" are its frozen last position, and steps past the end of a video were never observed).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import FSQ

from .configs import TokenizerConfig
from .tracks import LABEL_IMAGE_SIZE, class_to_velocity, grid_points, labels_to_tracks, normalize
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
        if c.point_queries == "learned":  # one free vector per grid point (the authors' form)
            self.point_queries = nn.Parameter(torch.randn(n, c.hidden) * 0.02)
        else:  # a function of the point's image position: neighbouring points share what they learn
            side = int(round(n ** 0.5))
            xy = torch.from_numpy(normalize(grid_points(side, side, side), side, side).copy())  # (N, 2) in [-1, 1]
            freqs = torch.pi * 2.0 ** torch.arange(4, dtype=torch.float32)
            angles = xy[:, :, None] * freqs  # (N, 2, 4)
            self.register_buffer("point_features", torch.cat([xy, angles.sin().flatten(1), angles.cos().flatten(1)], 1),
                                 persistent=False)
            self.point_mlp = nn.Sequential(nn.Linear(self.point_features.shape[1], c.hidden), nn.GELU(),
                                           nn.Linear(c.hidden, c.hidden))
        self.view_embed = nn.Parameter(torch.randn(v, c.hidden) * 0.02)
        self.decoder = nn.ModuleList(
            Block(c.hidden, c.heads, c.dropout, self_attention=False, cross_attention=True)
            for _ in range(c.decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(c.hidden)
        if c.step_head:  # logits of (point, step) from the point's decoded vector joined with that step's code
            self.step_proj = nn.Linear(c.hidden, c.hidden)
            self.head = nn.Sequential(nn.GELU(), nn.Linear(c.hidden, c.num_classes))
        else:  # one linear map from the point's decoded vector to the logits of every step
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
        all_points = self.point_queries if c.point_queries == "learned" else self.point_mlp(self.point_features)
        point_queries = all_points if points is None else all_points[points]
        v, n = len(c.views), len(point_queries)
        queries = (self.view_embed[:, None, :] + point_queries[None]).reshape(1, v * n, -1)
        x = queries.expand(b, -1, -1)
        for block in self.decoder:
            x, _ = block(x, context=memory)
        if c.step_head:
            joined = self.decoder_norm(x)[:, :, None, :] + self.step_proj(memory)[:, None, :, :]  # (B, V*N, T-1, H)
            logits = self.head(joined).view(b, v, n, c.code_length, c.num_classes)
        else:
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
    def codes_to_tracks(self, codes, mode: str = "expected") -> np.ndarray:
        """Code sequences (T-1,) or (B, T-1) -> the tracks they describe, normalised ((B,) V, T, N, 2), from the grid
        points; what the forward model "imagines" the scene will do.

        ``mode``: ``expected`` moves each point by the expected displacement of its softmax over the window (sub-pixel
        and robust where the decoder hesitates between "no motion" and a move); ``argmax`` by the most likely class.
        """
        if mode not in ("expected", "argmax"):
            raise ValueError(f"mode must be 'expected' or 'argmax', got {mode!r}")
        array = np.asarray(codes)
        single = array.ndim == 1
        codes = torch.as_tensor(array, device=self.view_embed.device).reshape(-1, self.config.code_length)
        logits = self.decode_codes(codes)  # (B, V, T-1, N, classes)
        side = int(round(self.config.num_points ** 0.5))
        grid = normalize(grid_points(LABEL_IMAGE_SIZE, LABEL_IMAGE_SIZE, side), LABEL_IMAGE_SIZE, LABEL_IMAGE_SIZE)
        shape = logits.shape[:2] + grid.shape  # (B, V, N, 2)
        if mode == "argmax":
            out = labels_to_tracks(np.broadcast_to(grid, shape), logits.argmax(-1).cpu().numpy())
        else:
            steps = torch.softmax(logits.float(), dim=-1) @ self._class_velocities(logits.device)  # (B, V, T-1, N, 2)
            start = torch.as_tensor(np.broadcast_to(grid, shape).copy(), device=logits.device)[:, :, None]
            out = torch.cat([start, start + torch.cumsum(steps, dim=2)], dim=2).cpu().numpy()
        return out[0] if single else out

    def _class_velocities(self, device) -> torch.Tensor:
        """(classes, 2): the normalised displacement of every local-window class."""
        return torch.as_tensor(class_to_velocity(np.arange(self.config.num_classes)), device=device)

    def forward(self, velocities: torch.Tensor, labels: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        """(logits, codes); with ``labels`` (and optionally their ``mask``), the training loss instead (so DDP wraps
        the whole step)."""
        if labels is not None:
            return self.training_loss(velocities, labels, mask)
        latents, codes = self.encode(velocities)
        return self.decode(latents), codes

    def training_loss(self, velocities: torch.Tensor, labels: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of a batch; while training, on ``config.train_points`` random grid points per step.

        The 225-way logits of every (view, step, point) dominate the cost (B x 3 x 15 x 400 x 225 numbers);
        an unbiased random subset of points keeps a CPU step fast, and evaluation decodes all points.
        """
        latents, _ = self.encode(velocities)
        k = self.config.train_points
        if self.training and k and k < self.config.num_points:
            points = self._sample_points(velocities, k)
            return self.loss(self.decode(latents, points), labels[..., points],
                             None if mask is None else mask[..., points])
        return self.loss(self.decode(latents), labels, mask)

    def _sample_points(self, velocities: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` grid points for this batch's loss: uniformly, or with ``moving_point_bias`` > 0 in favour of the
        points that move in this batch (weight 1 + bias x the fraction of (sample, view) in which the point moves
        more than a label pixel over the window). Most of a grid is static table, which the decoder learns early."""
        n, bias = self.config.num_points, self.config.moving_point_bias
        if not bias:
            return torch.randperm(n, device=velocities.device)[:k]
        travel = velocities.sum(dim=2).norm(dim=-1) * (LABEL_IMAGE_SIZE / 2)  # (B, V, N) net pixels moved
        weight = 1.0 + bias * (travel > 1.0).float().mean(dim=(0, 1))
        return torch.multinomial(weight, k, replacement=False)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """View-weighted cross-entropy; labels (B, V, T-1, N) int. ``mask`` (same shape, bool): only these labels
        count (the steps where the tracker saw the point, ``amplify_core.tracks.label_mask``)."""
        ce = F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten().long(), reduction="none").view(labels.shape)
        if mask is None:
            per_view = ce.mean(dim=(0, 2, 3))
        else:
            weight = mask.to(ce.dtype)
            per_view = (ce * weight).sum(dim=(0, 2, 3)) / weight.sum(dim=(0, 2, 3)).clamp(min=1.0)
        return (per_view * self.view_weights).sum()
