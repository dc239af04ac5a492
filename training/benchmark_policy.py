"""amplify-benchmark-policy: latency of one full policy step (3 views, 128x128) three ways, side by side.

For each config (tiny, paper) with freshly initialised weights (latency does not depend on training):
  * PyTorch, no cache: every code re-runs the whole sequence (as the authors' code decodes),
  * PyTorch, KV cache: conditioning once, then one token per code,
  * onnxruntime: the exported graphs (forward start + step with cache, inverse).
A step = vision encoders + greedy decoding of 15 codes + the inverse model; the task embedding is cached
per instruction and not part of a step. "decode x" also times the 15-code decoding alone (no cache vs
cache, conditioning tokens given), the part the cache changes. Ratios are measured in the same run, so a
noisy machine hurts all variants alike. Targets: KV cache >= 5x faster than no cache (paper config), onnxruntime >= 1.5x faster
than eager, tiny step <= 25 ms.

Example::

    amplify-benchmark-policy                          # tiny and paper, 20 / 3 repeats
    amplify-benchmark-policy --configs tiny --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from amplify_core.checkpoint import save_checkpoint
from amplify_core.configs import load_config
from amplify_core.export import OnnxPolicy, export_policy
from amplify_core.forward_dynamics import ForwardDynamics
from amplify_core.inverse_dynamics import InverseDynamics
from amplify_core.normalization import Normalizer


def build_parser():
    p = argparse.ArgumentParser(prog="amplify-benchmark-policy", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny", "paper"], help="presets or YAML files (default tiny paper)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed steps per variant (default 20 for tiny, 3 for paper); the median is reported")
    p.add_argument("--image-size", type=int, default=128, help="camera image side (default 128)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch and onnxruntime (default: all)")
    return p


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1000.0


@torch.no_grad()
def bench(name: str, repeats: int | None, size: int, threads: int) -> dict:
    cfg = load_config(name)
    views = cfg.tokenizer.views
    torch.manual_seed(0)
    fwd = ForwardDynamics(cfg.forward, len(views), cfg.tokenizer.codebook_size, cfg.tokenizer.code_length).eval()
    inv = InverseDynamics(cfg.inverse, len(views), cfg.tokenizer.codebook_size, cfg.tokenizer.code_length).eval()
    images = torch.randint(0, 256, (1, len(views), 3, size, size), dtype=torch.uint8)
    text = torch.randn(1, cfg.forward.text_dim)
    proprio = torch.zeros(1, cfg.inverse.proprio_dim)
    repeats = repeats or (20 if cfg.forward.hidden <= 256 else 3)

    def step(use_cache):
        codes = fwd.generate(images, text, use_cache=use_cache)
        return inv(images, proprio, codes)[0]

    result = {"config": name, "params_M": sum(p.numel() for m in (fwd, inv) for p in m.parameters()) / 1e6}
    result["no_cache_ms"] = timed(lambda: step(False), repeats)
    result["cache_ms"] = timed(lambda: step(True), repeats)
    # the decoding alone (conditioning tokens given): what the cache changes, without the encoders around it
    cond = fwd.conditioning(images, text)
    result["decode_no_cache_ms"] = timed(lambda: fwd.decode(cond, use_cache=False), repeats)
    result["decode_cache_ms"] = timed(lambda: fwd.decode(cond, use_cache=True), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        norm = Normalizer(np.zeros(cfg.inverse.action_dim), np.ones(cfg.inverse.action_dim)).to_dict()
        meta = {"views": views, "image_shape": [3, size, size]}
        save_checkpoint(tmp / "f.pt", fwd, {**meta, "text_encoder": "minilm"})
        save_checkpoint(tmp / "i.pt", inv, {**meta, "proprio_norm": norm, "action_norm": norm, "use_codes": True})
        export_policy(tmp / "i.pt", tmp / "f.pt", tmp / "onnx")
        runner = OnnxPolicy(tmp / "onnx", threads=threads)
        np_images, np_text = images.numpy(), text.numpy()
        result["onnx_ms"] = timed(lambda: runner.predict_chunk(np_images, np.zeros(cfg.inverse.proprio_dim), np_text),
                                  repeats)
    result["repeats"] = repeats
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    print(f"one policy step, 3 views {args.image_size}x{args.image_size}, {threads} CPU thread(s), "
          f"device cpu, median of N steps")
    print(f"{'config':8} {'params':>8} {'no cache':>10} {'KV cache':>10} {'onnxrt':>10} "
          f"{'cache x':>8} {'onnx x':>7} {'decode x':>9}  N")
    for name in args.configs:
        r = bench(name, args.repeats, args.image_size, threads)
        print(f"{r['config']:8} {r['params_M']:7.1f}M {r['no_cache_ms']:8.1f}ms {r['cache_ms']:8.1f}ms "
              f"{r['onnx_ms']:8.1f}ms {r['no_cache_ms'] / r['cache_ms']:7.2f}x "
              f"{r['cache_ms'] / r['onnx_ms']:6.2f}x {r['decode_no_cache_ms'] / r['decode_cache_ms']:8.2f}x  "
              f"{r['repeats']}", flush=True)
    print("cache x and onnx x: whole steps; decode x: the 15-code decoding alone (conditioning tokens given)")
    print("targets: KV cache >= 5x over no cache (paper); onnxruntime >= 1.5x over eager (KV cache); "
          "tiny step <= 25 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
