"""ACT temporal ensembling of overlapping action chunks (paper Sec. 3.4; Zhao et al., 2023).

At every control step a new chunk of T actions is predicted. The action executed at step t combines
every stored chunk that covers t: the chunk predicted at step s contributes its action t - s with weight
w_i = exp(-m * i), where i = 0 is the OLDEST contributing chunk, and the weights are normalised. With a
small m (0.01, the authors' value) the average is nearly uniform; a larger m trusts old chunks more.

Rotation vectors (axis-angle) cannot be averaged component-wise near +-pi, so the dimensions named in
``rotation_dims`` are combined with the weighted rotation mean instead.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy.spatial.transform import Rotation


class TemporalEnsembler:
    """Keeps the chunks that still cover the future and returns the ensembled action for a step.

    Args:
        chunk_size: T, actions per chunk.
        m: weight decay; w_i = exp(-m * i) with i = 0 the oldest chunk. Must be >= 0.
        rotation_dims: start index of a 3-vector rotation (axis-angle) inside each action, or None.
    """

    def __init__(self, chunk_size: int, m: float = 0.01, rotation_dims: int | None = None):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if not np.isfinite(m) or m < 0:
            raise ValueError(f"m must be a finite number >= 0, got {m}")
        self.chunk_size = chunk_size
        self.m = m
        self.rotation_dims = rotation_dims
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (start step, chunk), oldest first
        self._next_step = 0

    def reset(self) -> None:
        self._chunks.clear()
        self._next_step = 0

    def add(self, chunk: np.ndarray, start_step: int) -> None:
        """Store a chunk whose first action is meant for ``start_step``."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or len(chunk) != self.chunk_size:
            raise ValueError(f"chunk must have shape ({self.chunk_size}, D), got {chunk.shape}")
        if not np.all(np.isfinite(chunk)):
            raise ValueError("chunk contains NaN or infinite values")
        if self._chunks and chunk.shape[1] != self._chunks[0][1].shape[1]:
            raise ValueError(f"chunk has {chunk.shape[1]} action dims, earlier chunks {self._chunks[0][1].shape[1]}")
        if self._chunks and start_step < self._chunks[-1][0]:
            raise ValueError(f"chunks must arrive in time order: start {start_step} < {self._chunks[-1][0]}")
        self._chunks.append((int(start_step), chunk))

    def covering(self, step: int) -> list[np.ndarray]:
        """Actions for ``step`` from every stored chunk that covers it, oldest first."""
        return [c[step - s] for s, c in self._chunks if s <= step < s + self.chunk_size]

    def action(self, step: int) -> np.ndarray | None:
        """The ensembled action for ``step`` (None if no chunk covers it); forgets chunks that ended."""
        while self._chunks and self._chunks[0][0] + self.chunk_size <= step:
            self._chunks.popleft()
        actions = self.covering(step)
        if not actions:
            return None
        weights = np.exp(-self.m * np.arange(len(actions)))
        weights /= weights.sum()
        stacked = np.stack(actions)
        out = weights @ stacked
        if self.rotation_dims is not None:
            r = slice(self.rotation_dims, self.rotation_dims + 3)
            out[r] = Rotation.from_rotvec(stacked[:, r]).mean(weights=weights).as_rotvec()
        return out

    def step(self, chunk: np.ndarray | None) -> np.ndarray | None:
        """Synchronous use: add this step's chunk (if any), return this step's action, advance one step."""
        if chunk is not None:
            self.add(chunk, self._next_step)
        out = self.action(self._next_step)
        self._next_step += 1
        return out
