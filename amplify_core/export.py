"""ONNX export of what runs at control time (the runner on onnxruntime: amplify_core/onnx_policy.py).

Exported graphs (one folder per policy)::

    forward_start.onnx   images (1, V, 3, H, W) uint8, text (1, D) -> logits of code 1, keys, values
    forward_step.onnx    code (1,), position (), keys, values -> logits of the next code, keys, values
    inverse.onnx         images, proprio (1, P) normalised[, codes (1, L)] -> action means (1, chunk, A)
    policy.json          views, image shape, normalisation statistics, text encoder, code length, and the
                         sha256 of every graph (``files``): a folder that mixes exports is refused at load

An export is all or nothing: everything is written into a hidden sibling folder and checked (``verify``) before
its files replace those of a previous export in ``out_dir``; a failure before that leaves the previous export as it
was, and policy.json (replaced last) refuses any graph it did not write.

The caches are stacked over layers, (layers, B, heads, length, head_dim), with a dynamic length axis,
so greedy decoding costs one small graph call per code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import load_model
from .onnx_policy import file_sha256

log = logging.getLogger(__name__)
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


EXPORT_FILES = ("forward_start.onnx", "forward_step.onnx", "inverse.onnx")


def export_policy(inverse_path, forward_path, out_dir, verify: Callable[[Path], None] | None = None) -> Path:
    """Export the forward (start + step) and inverse models of a policy into ``out_dir``, atomically.

    ``verify(folder)`` runs on the complete export before it replaces ``out_dir``; it raises to refuse it."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _write_policy(inverse_path, forward_path, staging)
        if verify is not None:
            verify(staging)
        # swap file by file (the folder may hold other files of the user's), policy.json last: until it is
        # replaced, its checksums refuse the new graphs, so even a crash in here leaves no folder that loads mixed
        out.mkdir(exist_ok=True)
        for name in EXPORT_FILES:
            if not (staging / name).exists():
                (out / name).unlink(missing_ok=True)  # e.g. forward graphs of an earlier AMPLIFY export
        for name in sorted(p.name for p in staging.iterdir()):
            if name != "policy.json":
                os.replace(staging / name, out / name)
        os.replace(staging / "policy.json", out / "policy.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported policy to %s", out)
    return out


@torch.no_grad()
def _write_policy(inverse_path, forward_path, out: Path) -> None:
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
    meta["files"] = {p.name: file_sha256(p) for p in sorted(out.glob("*.onnx"))}
    (out / "policy.json").write_text(json.dumps(meta, indent=2))
