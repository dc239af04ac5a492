"""Per-dimension normalisation of actions and proprioception, with statistics saved in checkpoints.

A dimension that barely moves in the training data (a wrist joint the demos never turn, a rotation component that
is the same in every demo) must not be scaled by its own tiny spread: a closed-loop deviation of a few hundredths
of a radian would then become tens of standard deviations, an input the network has never seen, and the arm runs
away (measured: a wrist joint with std 0.001 rad went 0.04 -> 2.9 -> 10.7 -> 30.6 -> 80 in five steps). Such a
dimension (std below ``min_std``) is only centred (scale 1), the convention of Diffusion Policy's normaliser.
"""

from __future__ import annotations

import sys

import numpy as np


MIN_STD = 1e-2  # below this spread (robot units: m, rad, gripper 0..1) a dimension is centred, not scaled


def _torch_tensor(x):
    """torch, when ``x`` is a torch tensor, else None (without importing torch: the ONNX runtime path has none)."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else None


class Normalizer:
    """x -> (x - mean) / std per dimension; a dimension whose std is below ``min_std`` keeps scale 1."""

    def __init__(self, mean, std, min_std: float = MIN_STD):
        self.mean = np.asarray(mean, np.float32)
        std = np.asarray(std, np.float32)
        self.std = np.where(std < min_std, np.float32(1.0), std).astype(np.float32)
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
        if (torch := _torch_tensor(x)) is not None:
            return (x - torch.as_tensor(self.mean, device=x.device)) / torch.as_tensor(self.std, device=x.device)
        return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)

    def unnormalize(self, x):
        self._check(x)
        if (torch := _torch_tensor(x)) is not None:
            return x * torch.as_tensor(self.std, device=x.device) + torch.as_tensor(self.mean, device=x.device)
        return (np.asarray(x, np.float32) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalizer":
        # the stored std is the one the model was trained with (already floored): use it as it is
        return cls(data["mean"], data["std"], min_std=1e-12)
