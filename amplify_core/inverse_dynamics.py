"""Inverse dynamics (paper Sec. 3.4): f_inv(o_t, q_t, codes) -> a chunk of T actions.

A transformer decoder: T learned action queries self-attend and cross-attend to a memory made of the
image tokens of every view, one token projected from the proprioception q_t, and the motion-code tokens.
A Gaussian head gives mean and log-std per action; the loss is the discounted negative log-likelihood
-sum_k gamma^k log N(a_{t+k} | mu_k, sigma_k). By default sigma is fixed (``InverseConfig.fixed_std``, as the
authors' code): the loss is then a discounted squared error and every action dimension gets its share of the
gradient; ``fixed_std: null`` learns sigma per output. Actions and proprioception are normalised with dataset
statistics kept in the checkpoint (``amplify_core.normalization``).

It is not conditioned on the task: a "reference follower" that learns from any interaction data.
``use_codes=False`` gives the paper's inverse-only BC baseline: the same network without code tokens.
``text_dim > 0`` adds a task-text token to the memory (with ``use_codes=False``: a language-conditioned BC, the
baseline that knows the task the way AMPLIFY's forward model does).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .configs import InverseConfig
from .transformer import Block
from .vision import MultiViewEncoder


class InverseDynamics(nn.Module):
    def __init__(self, config: InverseConfig, num_views: int, codebook_size: int, code_length: int):
        super().__init__()
        self.config = c = config
        self.num_views, self.codebook_size, self.code_length = num_views, codebook_size, code_length
        self.vision = MultiViewEncoder(c.vision, num_views, c.hidden)
        self.proprio = nn.Linear(c.proprio_dim, c.hidden)
        if c.use_codes:
            self.code_embed = nn.Embedding(codebook_size, c.hidden)
            self.code_pos = nn.Parameter(torch.randn(1, code_length, c.hidden) * 0.02)
        if c.text_dim:
            self.text_proj = nn.Linear(c.text_dim, c.hidden)
        self.queries = nn.Parameter(torch.randn(1, c.chunk, c.hidden) * 0.02)
        self.blocks = nn.ModuleList(
            Block(c.hidden, c.heads, c.dropout, self_attention=True, cross_attention=True) for _ in range(c.layers)
        )
        self.norm = nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, 2 * c.action_dim)
        self.register_buffer("discount", c.gamma ** torch.arange(c.chunk, dtype=torch.float32))

    def forward(self, images: torch.Tensor, proprio: torch.Tensor, codes: torch.Tensor | None = None,
                text: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised proprio (B, P), codes (B, L), text (B, text_dim) -> mean and log-std (B, chunk, action_dim)."""
        c = self.config
        if proprio.ndim != 2 or proprio.shape[1] != c.proprio_dim:
            raise ValueError(f"proprioception must be (B, {c.proprio_dim}), got {tuple(proprio.shape)}")
        if not torch.isfinite(proprio).all():
            raise ValueError("proprioception contains NaN or infinite values")
        memory = [self.vision(images), self.proprio(proprio.float()).unsqueeze(1)]
        if c.use_codes:
            if codes is None or codes.ndim != 2 or codes.shape[1] != self.code_length:
                raise ValueError(f"this inverse model uses motion codes (B, {self.code_length}), got "
                                 f"{None if codes is None else tuple(codes.shape)}")
            memory.append(self.code_embed(codes.long()) + self.code_pos)
        if c.text_dim:
            if text is None or text.shape != (len(proprio), c.text_dim):
                raise ValueError(f"this inverse model is conditioned on the task text (B, {c.text_dim}), got "
                                 f"{None if text is None else tuple(text.shape)}")
            memory.append(self.text_proj(text.float()).unsqueeze(1))
        memory = torch.cat(memory, dim=1)
        x = self.queries.expand(len(proprio), -1, -1)
        for block in self.blocks:
            x, _ = block(x, context=memory)
        mean, log_std = self.head(self.norm(x)).chunk(2, dim=-1)
        if c.fixed_std is not None:  # the head's log-std outputs are not used (the head keeps one shape either way)
            return mean, torch.full_like(mean, math.log(c.fixed_std))
        return mean, log_std.clamp(c.min_log_std, c.max_log_std)

    def loss(self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Discounted Gaussian NLL per sample, averaged over the batch; actions (B, chunk, A) normalised."""
        if actions.shape != mean.shape:
            raise ValueError(f"actions {tuple(actions.shape)} do not match predictions {tuple(mean.shape)}")
        nll = 0.5 * ((actions - mean) / log_std.exp()) ** 2 + log_std + 0.5 * math.log(2 * math.pi)
        return (nll.sum(-1) * self.discount).sum(-1).mean() / self.discount.sum()
