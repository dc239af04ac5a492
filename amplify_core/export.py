"""ONNX export of what runs at control time, and an onnxruntime runner of the composed policy.

Exported graphs (one folder per policy)::

    forward_start.onnx   images (1, V, 3, H, W) uint8, text (1, D) -> logits of code 1, keys, values
    forward_step.onnx    code (1,), position (), keys, values -> logits of the next code, keys, values
    inverse.onnx         images, proprio (1, P) normalised[, codes (1, L)] -> action means (1, chunk, A)
    policy.json          views, image shape, normalisation statistics, text encoder, code length

The caches are stacked over layers, (layers, B, heads, length, head_dim), with a dynamic length axis,
so greedy decoding costs one small graph call per code. :class:`OnnxPolicy` picks TensorRT / CUDA
providers when ``onnxruntime-gpu`` offers them (on the robot) and the CPU provider otherwise.

The three sessions share ONE intra-op thread pool per process. With a pool per session (onnxruntime's
default) the pool of the graph that just ran keeps spinning while the next graph's pool works, so on a
2-core CPU they fight for the cores: one tiny-config policy step took 22-25 ms that way, 9-10 ms with the
shared pool (measured here, same process, same graphs).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import load_model
from .normalization import Normalizer

log = logging.getLogger(__name__)
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class _ForwardStart(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, text):
        logits, caches = self.model.start(self.model.conditioning(images, text))
        return logits, torch.stack([k for k, _ in caches]), torch.stack([v for _, v in caches])


class _ForwardStep(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, code, position, keys, values):
        m = self.model
        x = (m.code_embed(code) + m.code_pos[0, position]).unsqueeze(1)  # position: 0-d int64 tensor
        new_k, new_v = [], []
        for i, block in enumerate(m.blocks):
            x, (k, v) = block(x, cache=(keys[i], values[i]))
            new_k.append(k)
            new_v.append(v)
        return m.head(m.norm(x))[:, -1], torch.stack(new_k), torch.stack(new_v)


class _Inverse(nn.Module):
    def __init__(self, model, use_codes: bool):
        super().__init__()
        self.model, self.use_codes = model, use_codes

    def forward(self, images, proprio, codes=None):
        return self.model(images, proprio, codes if self.use_codes else None)[0]


def _export(module, args, path, input_names, output_names, dynamic_axes=None):
    with warnings.catch_warnings():
        # the input checks of the models are Python branches the tracer reports; they hold for export shapes
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)


@torch.no_grad()
def export_policy(inverse_path, forward_path, out_dir) -> Path:
    """Export the forward (start + step) and inverse models of a policy into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inverse, inv_meta = load_model(inverse_path, "inverse")
    if inverse.config.text_dim:
        raise ValueError(f"{inverse_path}: a task-text-conditioned inverse model (a language-conditioned BC "
                         f"baseline for evaluation) has no ONNX export; export an AMPLIFY or inverse-only policy")
    c, h, w = inv_meta["image_shape"]
    views = inv_meta["views"]
    images = torch.zeros(1, len(views), c, h, w, dtype=torch.uint8)
    proprio = torch.zeros(1, inverse.config.proprio_dim)
    codes = torch.zeros(1, inverse.code_length, dtype=torch.long)
    use_codes = bool(inv_meta.get("use_codes", True))
    meta = {"views": views, "image_shape": [c, h, w], "use_codes": use_codes,
            "proprio_norm": inv_meta["proprio_norm"], "action_norm": inv_meta["action_norm"],
            "chunk": inverse.config.chunk, "code_length": inverse.code_length}
    if use_codes:
        _export(_Inverse(inverse, True), (images, proprio, codes), out / "inverse.onnx",
                ["images", "proprio", "codes"], ["actions"])
        forward, fwd_meta = load_model(forward_path, "forward")
        text = torch.zeros(1, forward.config.text_dim)
        _export(_ForwardStart(forward), (images, text), out / "forward_start.onnx", ["images", "text"],
                ["logits", "keys", "values"], {"keys": {3: "length"}, "values": {3: "length"}})
        _, keys, values = _ForwardStart(forward)(images, text)
        _export(_ForwardStep(forward), (torch.zeros(1, dtype=torch.long), torch.tensor(1), keys, values),
                out / "forward_step.onnx", ["code", "position", "keys", "values"],
                ["logits", "new_keys", "new_values"],
                {"keys": {3: "length"}, "values": {3: "length"}, "new_keys": {3: "length1"},
                 "new_values": {3: "length1"}})
        meta.update(text_encoder=fwd_meta["text_encoder"], t5_path=fwd_meta.get("t5_path"), tasks=fwd_meta.get("tasks"),
                    tokenizer=fwd_meta.get("tokenizer"))
    else:
        _export(_Inverse(inverse, False), (images, proprio), out / "inverse.onnx", ["images", "proprio"], ["actions"])
    (out / "policy.json").write_text(json.dumps(meta, indent=2))
    log.info("exported policy to %s", out)
    return out


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

        def session(name):
            return ort.InferenceSession(str(self.dir / name), options, providers=self.providers)

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
