"""Loading a node's model without ever crashing the node: a failure is kept as the reason to publish nothing."""

from __future__ import annotations

import os
from typing import Callable

from amplify_ros.parameters import float_param, int_param, text_param

# Parameters of the model and the node's status, shared by the forward and the inverse node.
MODEL_PARAMETERS = {
    "checkpoint": ("", text_param("PyTorch checkpoint (.pt); used when onnx_dir is empty")),
    "onnx_dir": ("", text_param("folder of an ONNX export (amplify-export-onnx); preferred when set")),
    "device": ("cpu", text_param("torch device for a PyTorch checkpoint (cpu, cuda, cuda:0)")),
    "num_threads": (1, int_param("torch / onnxruntime intra-op threads (1 leaves cores to the other nodes)",
                                 1, 64)),
    "status_rate": (1.0, float_param("rate of /amplify/status in Hz", 0.1, 50.0)),
}


def set_threads(n: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(n)  # for libraries that read it later (onnxruntime default pools)


class LoadedModel:
    """One stage of a trained policy, from an ONNX export (preferred when set) or a PyTorch checkpoint. Only the
    checkpoint imports torch: the ONNX path runs on a computer without it."""

    def __init__(self, kind: str, checkpoint: str, onnx_dir: str, device: str, threads: int):
        self.onnx, self.model, self.device = None, None, device
        if onnx_dir:
            from amplify_core.onnx_policy import OnnxPolicy

            self.onnx = OnnxPolicy(onnx_dir, threads=threads, parts=(kind,))  # only this node's graphs
            self.meta, self.source = self.onnx.meta, onnx_dir
        elif checkpoint:
            import torch

            from amplify_core.checkpoint import load_model

            torch.set_num_threads(threads)

            self.model, self.meta = load_model(checkpoint, kind, device)
            self.source = checkpoint
        else:
            raise ValueError(f"set parameter checkpoint (a {kind} .pt) or onnx_dir (an ONNX export)")
        self.views = list(self.meta["views"])
        self.image_shape = tuple(self.meta["image_shape"])  # (3, H, W)


def load_or_explain(node, kind: str, make: Callable[[], object], views: list[str]):
    """``(model, None)``, or ``(None, error text)`` after logging it: the node stays up and publishes nothing
    (no crash loop under a launch file), and the status topic keeps saying why."""
    try:
        model = make()
        if model.views != list(views):
            raise ValueError(f"parameter views {list(views)} differ from the checkpoint's views {model.views}")
    except Exception as exc:  # any load failure, whatever the library raises
        error = f"{type(exc).__name__}: {exc}"
        node.get_logger().error(f"{kind} model not loaded, publishing nothing: {error}")
        return None, error
    node.get_logger().info(f"{kind} model loaded from {model.source}")
    return model, None
