"""Per-dimension normalisation of actions and proprioception, with statistics saved in checkpoints."""

from __future__ import annotations

import numpy as np
import torch


class Normalizer:
    """x -> (x - mean) / std per dimension; ``std`` is floored so constant dimensions stay finite."""

    def __init__(self, mean, std, min_std: float = 1e-3):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.maximum(np.asarray(std, np.float32), min_std)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} must be equal 1-D shapes")

    @classmethod
    def fit(cls, data: np.ndarray) -> "Normalizer":
        data = np.asarray(data, np.float64).reshape(-1, np.shape(data)[-1])
        if not np.all(np.isfinite(data)):
            raise ValueError("cannot fit normalisation statistics on NaN or infinite values")
        return cls(data.mean(0), data.std(0))

    @property
    def dim(self) -> int:
        return len(self.mean)

    def _check(self, x) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} values in the last axis, got shape {tuple(x.shape)}")

    def normalize(self, x):
        self._check(x)
        if isinstance(x, torch.Tensor):
            return (x - torch.as_tensor(self.mean, device=x.device)) / torch.as_tensor(self.std, device=x.device)
        return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)

    def unnormalize(self, x):
        self._check(x)
        if isinstance(x, torch.Tensor):
            return x * torch.as_tensor(self.std, device=x.device) + torch.as_tensor(self.mean, device=x.device)
        return (np.asarray(x, np.float32) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalizer":
        return cls(data["mean"], data["std"])
