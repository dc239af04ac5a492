"""The exported policy (amplify_core/export.py) on onnxruntime, with numpy and nothing else: what a robot computer
without PyTorch runs (the model nodes with ``onnx_dir``).

:class:`OnnxPolicy` picks TensorRT / CUDA providers when ``onnxruntime-gpu`` offers them (on the robot) and the CPU
provider otherwise. Its sessions share ONE intra-op thread pool per process. With a pool per session (onnxruntime's
default) the pool of the graph that just ran keeps spinning while the next graph's pool works, so on a 2-core CPU
they fight for the cores: one tiny-config policy step took 22-25 ms that way, 9-10 ms with the shared pool
(measured here, same process, same graphs).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from .normalization import Normalizer

log = logging.getLogger(__name__)
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shared_thread_pool_options(threads: int | None):
    """Session options that use the process-wide intra-op pool (created on first use with ``threads``)."""
    import onnxruntime as ort
    from onnxruntime.capi import _pybind_state

    options = ort.SessionOptions()
    try:
        # must precede the first session that uses it; onnxruntime refuses to replace an existing pool
        _pybind_state.set_global_thread_pool_sizes(threads or 0, 1)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail type
        log.debug("onnxruntime's shared thread pool exists already (%s); reusing it", exc)
    options.use_per_session_threads = False
    return options


def providers(available: list[str] | None = None) -> list[str]:
    """Execution providers in order of preference among those onnxruntime offers here."""
    import onnxruntime as ort

    have = available if available is not None else ort.get_available_providers()
    return [p for p in PREFERRED_PROVIDERS if p in have] or list(have)


class OnnxPolicy:
    """The exported policy on onnxruntime: codes by greedy decoding with the cache, then the action chunk."""

    def __init__(self, export_dir, threads: int | None = None, parts: tuple[str, ...] = ("forward", "inverse")):
        """``parts``: the graphs to load; a model node needs only its own (at the paper size the forward graphs
        hold ~500 MB of weights and the inverse graph ~230 MB)."""
        import onnxruntime as ort

        self.dir = Path(export_dir)
        meta_path = self.dir / "policy.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.dir}: no policy.json; export a policy with amplify-export-onnx first")
        self.meta = json.loads(meta_path.read_text())
        options = shared_thread_pool_options(threads)
        self.providers = providers()

        files = self.meta.get("files")
        if files is None:
            log.warning("%s: policy.json lists no graph checksums (an export older than the check); cannot tell "
                        "whether its graphs belong together: export it again", self.dir)

        def session(name):
            path = self.dir / name
            if files is not None:
                if name not in files or not path.is_file():
                    raise ValueError(f"{path}: missing from this export (policy.json lists {sorted(files)})")
                if file_sha256(path) != files[name]:
                    raise ValueError(f"{path}: not the graph this export wrote (its sha256 differs from "
                                     f"{meta_path}): the folder mixes exports; export the policy again")
            return ort.InferenceSession(str(path), options, providers=self.providers)

        unknown = set(parts) - {"forward", "inverse"}
        if unknown:
            raise ValueError(f"OnnxPolicy parts must be 'forward' and/or 'inverse', got {sorted(unknown)}")
        self.inverse = session("inverse.onnx") if "inverse" in parts else None
        forward = "forward" in parts and self.meta["use_codes"]
        self.start = session("forward_start.onnx") if forward else None
        self.step_session = session("forward_step.onnx") if forward else None
        self.proprio_norm = Normalizer.from_dict(self.meta["proprio_norm"])
        self.action_norm = Normalizer.from_dict(self.meta["action_norm"])

    def _need(self, session, part: str) -> None:
        if session is None:
            raise ValueError(f"{self.dir}: the {part} graph{'s were' if part == 'forward' else ' was'} not loaded "
                             f"(OnnxPolicy parts) or the export has none")

    def generate(self, images: np.ndarray, text: np.ndarray) -> np.ndarray:
        self._need(self.start, "forward")
        logits, keys, values = self.start.run(None, {"images": images, "text": text.astype(np.float32)})
        codes = [int(np.argmax(logits[0]))]
        for k in range(1, self.meta["code_length"]):
            logits, keys, values = self.step_session.run(None, {
                "code": np.array([codes[-1]], np.int64), "position": np.array(k, np.int64),
                "keys": keys, "values": values})
            codes.append(int(np.argmax(logits[0])))
        return np.array([codes], np.int64)

    def predict_chunk(self, images: np.ndarray, proprio: np.ndarray, text: np.ndarray | None = None) -> np.ndarray:
        """images uint8 (1, V, 3, H, W), raw proprio (P,), text embedding (1, D) -> chunk in robot units."""
        self._need(self.inverse, "inverse")
        feeds = {"images": images, "proprio": self.proprio_norm.normalize(np.asarray(proprio, np.float32))[None]}
        if self.meta["use_codes"]:
            feeds["codes"] = self.generate(images, text)
        return self.action_norm.unnormalize(self.inverse.run(None, feeds)[0][0])
