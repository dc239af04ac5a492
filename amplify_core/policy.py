"""The composed AMPLIFY policy pi(o, q, g) = f_inv(o, q, f(o, g)) (paper Sec. 3, Eq. 1).

:class:`AmplifyPolicy` loads the forward and inverse checkpoints (plus the tokenizer for decoding codes
into tracks, for pictures), checks every observation against what the models were trained on (views,
image size, proprio size, finite values), caches task embeddings, and returns action chunks in robot
units. ``act`` adds ACT temporal ensembling for closed-loop control at the control rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_model
from .ensembling import TemporalEnsembler
from .normalization import Normalizer
from .text import TextEmbeddingCache


class ObservationError(ValueError):
    """An observation does not match what the policy was trained on."""


class AmplifyPolicy:
    def __init__(self, inverse_path: str | Path, forward_path: str | Path | None = None,
                 tokenizer_path: str | Path | None = None, device: str | None = None,
                 text_cache: str | Path | None = None, ensemble_m: float = 0.01):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.inverse, self.inv_meta = load_model(inverse_path, "inverse", self.device)
        self.uses_codes = bool(self.inv_meta.get("use_codes", True))
        self.forward = self.fwd_meta = None
        if self.uses_codes:
            if forward_path is None:
                raise CheckpointError(f"{inverse_path} uses motion codes: a forward checkpoint is needed")
            self.forward, self.fwd_meta = load_model(forward_path, "forward", self.device)
            if self.fwd_meta["views"] != self.inv_meta["views"]:
                raise CheckpointError(f"forward views {self.fwd_meta['views']} differ from inverse views "
                                      f"{self.inv_meta['views']}")
            if self.forward.codebook_size != self.inverse.codebook_size:
                raise CheckpointError("forward and inverse models were trained with different tokenizers")
        self.tokenizer = load_model(tokenizer_path, "tokenizer", self.device)[0] if tokenizer_path else None
        self.views = list(self.inv_meta["views"])
        self.image_shape = tuple(self.inv_meta["image_shape"])  # (3, H, W)
        self.proprio_norm = Normalizer.from_dict(self.inv_meta["proprio_norm"])
        self.action_norm = Normalizer.from_dict(self.inv_meta["action_norm"])
        self.uses_text = bool(self.inverse.config.text_dim)  # a language-conditioned BC baseline
        self.text = None
        if self.forward is not None or self.uses_text:
            meta = self.fwd_meta if self.forward is not None else self.inv_meta
            self.text = TextEmbeddingCache(text_cache, meta["text_encoder"], meta.get("t5_path"))
        self.ensemble_m = ensemble_m
        self.ensembler = self.new_ensembler()
        self.last_codes: torch.Tensor | None = None

    # -- observation checks -------------------------------------------------------------------------
    def images_tensor(self, images: dict[str, np.ndarray]) -> torch.Tensor:
        """{view: uint8 (H, W, 3)} -> (1, V, 3, H, W) on the device, after checking every view."""
        missing = [v for v in self.views if v not in images]
        if missing:
            raise ObservationError(f"missing camera views {missing}; the policy needs {self.views}")
        arrays = []
        for v in self.views:
            img = np.asarray(images[v])
            expected = (self.image_shape[1], self.image_shape[2], 3)
            if img.dtype != np.uint8 or img.shape != expected:
                raise ObservationError(f"view {v!r}: expected uint8 image {expected} (as in training), got "
                                       f"{img.dtype} {img.shape}")
            arrays.append(img.transpose(2, 0, 1))
        return torch.from_numpy(np.stack(arrays)[None]).to(self.device)

    def proprio_tensor(self, proprio) -> torch.Tensor:
        q = np.asarray(proprio, np.float32)
        if q.shape != (self.proprio_norm.dim,) or not np.all(np.isfinite(q)):
            raise ObservationError(f"proprioception must be {self.proprio_norm.dim} finite numbers, got {q}")
        return torch.from_numpy(self.proprio_norm.normalize(q)[None]).to(self.device)

    # -- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_chunk(self, images: dict[str, np.ndarray], proprio, task: str | None = None) -> np.ndarray:
        """The action chunk (chunk, action_dim) in robot units for one observation."""
        return self.predict_chunks([images], [proprio], [task])[0]

    @torch.no_grad()
    def predict_chunks(self, images: list[dict[str, np.ndarray]], proprio: list, tasks: list[str | None]) -> np.ndarray:
        """Chunks (B, chunk, action_dim) for B observations in one batched pass (evaluation of many episodes)."""
        image_t = torch.cat([self.images_tensor(im) for im in images])
        proprio_t = torch.cat([self.proprio_tensor(q) for q in proprio])
        codes = text = None
        if self.uses_codes or self.uses_text:
            if not all(tasks):
                raise ObservationError("this policy is conditioned on a task instruction; got none")
            text = torch.from_numpy(self.text(list(tasks))).to(self.device)
        if self.uses_codes:
            codes = self.forward.generate(image_t, text)
            self.last_codes = codes
        mean, _ = self.inverse(image_t, proprio_t, codes, text if self.uses_text else None)
        return self.action_norm.unnormalize(mean.cpu().numpy())

    def new_ensembler(self) -> TemporalEnsembler:
        """ACT temporal ensembling of this policy's chunks (one per episode being run)."""
        return TemporalEnsembler(self.inverse.config.chunk, self.ensemble_m, rotation_dims=3)

    def reset(self) -> None:
        self.ensembler.reset()

    def act(self, images: dict[str, np.ndarray], proprio, task: str | None = None) -> np.ndarray:
        """One control step: predict a chunk, ensemble it with the earlier ones, return this step's action."""
        return self.ensembler.step(self.predict_chunk(images, proprio, task)).astype(np.float32)

    @torch.no_grad()
    def predicted_tracks(self, view: str) -> np.ndarray:
        """Tracks (T, N, 2) normalised of the last predicted codes, decoded by the tokenizer (for pictures)."""
        if self.tokenizer is None or self.last_codes is None:
            raise ValueError("predicted tracks need a tokenizer checkpoint and a prediction first")
        return self.tokenizer.codes_to_tracks(self.last_codes[0])[self.tokenizer.config.views.index(view)]
