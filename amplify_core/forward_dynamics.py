"""Forward dynamics (paper Sec. 3.3): the actionless motion prior f(o_t, g) -> motion codes.

An autoregressive transformer over the sequence

    [image tokens of every view | text token | SOS | c_1 ... c_{L-1}]  ->  predicts c_1 ... c_L

with a block-causal mask: the conditioning tokens see each other (not the codes); each code position sees
the whole conditioning and the codes before it. It trains with cross-entropy on codes of the frozen
tokenizer, on ANY video with a task text (human or robot).

Decoding is greedy (argmax, as the authors) or sampled. With ``use_cache=True`` the conditioning and SOS
are run once and every further code costs one token through the network (keys/values of earlier tokens
are kept per layer); ``use_cache=False`` re-runs the whole sequence for every code, as the authors' code
does. Both give identical codes (tested); the benchmark prints the speed difference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import ForwardConfig
from .transformer import KV, Block
from .vision import MultiViewEncoder


class ForwardDynamics(nn.Module):
    def __init__(self, config: ForwardConfig, num_views: int, codebook_size: int, code_length: int):
        super().__init__()
        self.config = c = config
        self.num_views, self.codebook_size, self.code_length = num_views, codebook_size, code_length
        self.vision = MultiViewEncoder(c.vision, num_views, c.hidden)
        self.text_proj = nn.Linear(c.text_dim, c.hidden)
        self.text_type = nn.Parameter(torch.randn(1, 1, c.hidden) * 0.02)
        self.sos_code = codebook_size  # the SOS token is one extra row of the code embedding
        self.code_embed = nn.Embedding(codebook_size + 1, c.hidden)
        self.code_pos = nn.Parameter(torch.randn(1, code_length, c.hidden) * 0.02)
        self.blocks = nn.ModuleList(Block(c.hidden, c.heads, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, codebook_size)

    # -- pieces -------------------------------------------------------------------------------------
    def conditioning(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, V, 3, H, W) and text embeddings (B, text_dim) -> tokens (B, P, hidden)."""
        if text.ndim != 2 or text.shape[1] != self.config.text_dim:
            raise ValueError(f"text embeddings must be (B, {self.config.text_dim}), got {tuple(text.shape)}")
        if not torch.isfinite(text).all():
            raise ValueError("text embeddings contain NaN or infinite values")
        image_tokens = self.vision(images)
        text_token = self.text_proj(text.float()).unsqueeze(1) + self.text_type
        return torch.cat([image_tokens, text_token], dim=1)

    def _code_tokens(self, codes: torch.Tensor, start: int) -> torch.Tensor:
        """Embeddings of (B, n) code ids placed at code positions start .. start+n-1."""
        n = codes.shape[1]
        return self.code_embed(codes) + self.code_pos[:, start:start + n]

    @staticmethod
    def block_causal_mask(prefix: int, codes: int, device=None) -> torch.Tensor:
        """bool (P+C, P+C), True = may attend: prefix <-> prefix, codes -> prefix and earlier codes."""
        n = prefix + codes
        mask = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        mask[:prefix, :prefix] = True
        return mask

    def _run(self, x: torch.Tensor, mask: torch.Tensor | None, caches: list[KV] | None):
        new = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, mask=mask, cache=None if caches is None else caches[i])
            new.append(kv)
        return self.head(self.norm(x)), new

    def _sos(self, batch: int, device) -> torch.Tensor:
        return torch.full((batch, 1), self.sos_code, dtype=torch.long, device=device)

    # -- training ----------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, text: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (B, L, codebook) for targets ``codes`` (B, L)."""
        if codes.ndim != 2 or codes.shape[1] != self.code_length:
            raise ValueError(f"codes must be (B, {self.code_length}), got {tuple(codes.shape)}")
        cond = self.conditioning(images, text)
        inputs = torch.cat([self._sos(len(codes), codes.device), codes[:, :-1].long()], dim=1)
        x = torch.cat([cond, self._code_tokens(inputs, 0)], dim=1)
        mask = self.block_causal_mask(cond.shape[1], self.code_length, x.device)
        logits, _ = self._run(x, mask, None)
        return logits[:, cond.shape[1]:]

    @staticmethod
    def loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1).float(), codes.flatten().long())

    # -- decoding ----------------------------------------------------------------------------------
    def start(self, cond: torch.Tensor) -> tuple[torch.Tensor, list[KV]]:
        """Run conditioning + SOS; returns the logits of the first code and the per-layer caches."""
        x = torch.cat([cond, self._code_tokens(self._sos(len(cond), cond.device), 0)], dim=1)
        mask = self.block_causal_mask(cond.shape[1], 1, x.device)
        logits, caches = self._run(x, mask, [None] * len(self.blocks))
        return logits[:, -1], caches

    def step(self, code: torch.Tensor, position: int, caches: list[KV]) -> tuple[torch.Tensor, list[KV]]:
        """Feed code (B,) at code position ``position`` (1-based after SOS); returns next logits, caches."""
        x = self._code_tokens(code.view(-1, 1).long(), position)
        logits, caches = self._run(x, None, caches)  # the newest token may see everything before it
        return logits[:, -1], caches

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        if temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, text: torch.Tensor, use_cache: bool = True,
                 temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes (B, L): greedy with ``temperature=0``, else sampled from softmax(logits / temperature)."""
        return self.decode(self.conditioning(images, text), use_cache, temperature, generator)

    @torch.no_grad()
    def decode(self, cond: torch.Tensor, use_cache: bool = True, temperature: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes (B, L) from conditioning tokens (B, P, hidden) (see :meth:`conditioning`)."""
        if use_cache:
            logits, caches = self.start(cond)
            codes = [self._pick(logits, temperature, generator)]
            for k in range(1, self.code_length):
                logits, caches = self.step(codes[-1], k, caches)
                codes.append(self._pick(logits, temperature, generator))
            return torch.stack(codes, dim=1)
        codes = torch.empty(len(cond), 0, dtype=torch.long, device=cond.device)
        for k in range(self.code_length):
            inputs = torch.cat([self._sos(len(cond), cond.device), codes], dim=1)
            x = torch.cat([cond, self._code_tokens(inputs, 0)], dim=1)
            logits, _ = self._run(x, self.block_causal_mask(cond.shape[1], k + 1, x.device), None)
            codes = torch.cat([codes, self._pick(logits[:, -1], temperature, generator)[:, None]], dim=1)
        return codes
