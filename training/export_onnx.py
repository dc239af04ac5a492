"""amplify-export-onnx: export a trained policy (forward + inverse) to ONNX and check it against PyTorch.

Example::

    amplify-export-onnx --inverse runs/exp1/inverse.pt --forward runs/exp1/forward.pt --out runs/exp1/onnx

The folder then holds forward_start.onnx, forward_step.onnx, inverse.onnx and policy.json; the ROS nodes
run it with onnxruntime (onnxruntime-gpu with CUDA/TensorRT on the robot). After exporting, the command
runs both on one random observation and prints the largest difference (it fails above 1e-4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from amplify_core.checkpoint import CheckpointError, load_model
from amplify_core.export import export_policy
from amplify_core.onnx_policy import OnnxPolicy


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="amplify-export-onnx", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inverse", type=Path, required=True, help="inverse checkpoint (or a --no-codes BC checkpoint)")
    p.add_argument("--forward", type=Path, default=None, help="forward checkpoint (needed when the inverse uses codes)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    args = p.parse_args(argv)
    measured = {}

    def verify(folder: Path) -> None:  # on the complete export, before it replaces --out
        measured["diff"], measured["providers"] = onnx_against_torch(folder, args.inverse, args.forward)
        if measured["diff"] > TOLERANCE:
            raise ExportMismatch(f"max |onnx - torch| = {measured['diff']:.2e} > {TOLERANCE:g}")

    try:
        export_policy(args.inverse, args.forward, args.out, verify)
    except ExportMismatch as exc:
        print(f"amplify-export-onnx: the export does not match PyTorch ({exc}); {args.out} left as it was",
              file=sys.stderr)
        return 1
    except (CheckpointError, ValueError, OSError) as exc:  # a checkpoint that does not load or does not fit
        print(f"amplify-export-onnx: {exc}; {args.out} left as it was", file=sys.stderr)
        return 2
    print(f"exported to {args.out} (providers {measured['providers']}); max |onnx - torch| = {measured['diff']:.2e}")
    return 0


class ExportMismatch(RuntimeError):
    pass


TOLERANCE = 1e-4


def onnx_against_torch(folder: Path, inverse_path: Path, forward_path: Path | None) -> tuple[float, list[str]]:
    """Largest difference between the exported graphs and PyTorch on one random observation."""
    runner = OnnxPolicy(folder)
    inv, meta = load_model(inverse_path, "inverse")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1, len(meta["views"]), *meta["image_shape"]), dtype=torch.uint8, generator=g)
    proprio = np.zeros(inv.config.proprio_dim, np.float32)
    codes = text = None
    with torch.no_grad():
        if runner.meta["use_codes"]:
            fwd, _ = load_model(forward_path, "forward")
            text = torch.randn(1, fwd.config.text_dim, generator=g)
            codes = fwd.generate(images, text)
        mean, _ = inv(images, torch.from_numpy(runner.proprio_norm.normalize(proprio)[None]), codes)
    ref = runner.action_norm.unnormalize(mean[0].numpy())
    got = runner.predict_chunk(images.numpy(), proprio, None if text is None else text.numpy())
    return float(np.abs(got - ref).max()), runner.providers

if __name__ == "__main__":
    sys.exit(main())
