"""amplify-benchmark-policy: latency of one full policy step (3 views, 128x128) three ways, side by side.

For each config (tiny, paper) with seeded random weights (latency does not depend on training):
  * PyTorch, no cache: every code re-runs the whole sequence (as the authors' code decodes),
  * PyTorch, KV cache: conditioning once, then one token per code,
  * onnxruntime: the exported graphs (forward start + step with cache, inverse).
A step = vision encoders + greedy decoding of 15 codes + the inverse model; the task embedding is cached
per instruction and not part of a step. "decode x" times the 15-code decoding alone (no cache vs cache,
conditioning tokens given), the part the cache changes.

Each runtime runs in a worker process of its own, as on the robot (one model node, one runtime). In one
process the idle thread pool of one library keeps spinning while the other works: measured here, the tiny
eager step took 20 ms alone and 83 ms beside onnxruntime's pool. The workers take turns, variant after
variant, round after round, so a noisy machine hurts every variant alike and the ratios come from one run.

The KV-cache step is also broken down (encoders + text, the conditioning pass, one decoding step, the
inverse model), with the ratio the cache would reach if its decoding steps cost nothing: the no-cache step
divided by the parts both variants share. On a CPU each decoding step reads every weight of the forward
transformer for one token, so it is bound by memory bandwidth, not arithmetic; the breakdown also times
reading those weights once (the floor of a decoding step on this machine).

Targets: KV cache >= 5x faster than no cache (paper config), onnxruntime >= 1.5x faster than eager
(KV cache), tiny step <= 25 ms.

Example::

    amplify-benchmark-policy                          # tiny and paper, 3 rounds
    amplify-benchmark-policy --configs tiny --repeats 20 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SWITCH_PAUSE = 0.3  # s between two workers' turns: the last one's pool threads stop spinning and sleep
TORCH_VARIANTS = ("no_cache", "cache", "decode_no_cache", "decode_cache", "conditioning", "start", "decode_step",
                  "inverse", "weight_read")


def build_parser():
    p = argparse.ArgumentParser(prog="amplify-benchmark-policy", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny", "paper"], help="presets or YAML files (default tiny paper)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed steps per variant and round (default 7 for tiny, 1 for paper); the median over "
                        "all rounds is reported")
    p.add_argument("--rounds", type=int, default=3, help="rounds of turns over all variants (default 3)")
    p.add_argument("--image-size", type=int, default=128, help="camera image side (default 128)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of each runtime (default: all cores; the workers run one at a time)")
    p.add_argument("--worker", choices=["torch", "onnx"], help=argparse.SUPPRESS)  # internal: a runtime's process
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    return p


def decoder_weights(fwd) -> list:
    """What one decoding step cannot avoid reading: every weight of the forward transformer and its head."""
    return [p for m in (*fwd.blocks, fwd.norm, fwd.head) for p in m.parameters()]


# -- the models (coordinator) ---------------------------------------------------------------------------------
def export_models(name: str, size: int, out: Path) -> dict:
    """Seeded random forward + inverse checkpoints of ``name`` and their ONNX export in ``out``."""
    import torch

    from amplify_core.checkpoint import save_checkpoint
    from amplify_core.configs import load_config
    from amplify_core.export import export_policy
    from amplify_core.forward_dynamics import ForwardDynamics
    from amplify_core.inverse_dynamics import InverseDynamics
    from amplify_core.normalization import Normalizer

    cfg = load_config(name)
    views = cfg.tokenizer.views
    torch.manual_seed(0)
    fwd = ForwardDynamics(cfg.forward, len(views), cfg.tokenizer.codebook_size, cfg.tokenizer.code_length)
    inv = InverseDynamics(cfg.inverse, len(views), cfg.tokenizer.codebook_size, cfg.tokenizer.code_length)
    norm = Normalizer(np.zeros(cfg.inverse.action_dim), np.ones(cfg.inverse.action_dim)).to_dict()
    meta = {"views": views, "image_shape": [3, size, size]}
    save_checkpoint(out / "forward.pt", fwd, {**meta, "text_encoder": "minilm"})
    save_checkpoint(out / "inverse.pt", inv, {**meta, "proprio_norm": norm, "action_norm": norm, "use_codes": True})
    export_policy(out / "inverse.pt", out / "forward.pt", out / "onnx")
    dims = {"text_dim": cfg.forward.text_dim, "proprio_dim": cfg.inverse.proprio_dim}
    (out / "inputs.json").write_text(json.dumps(dims))
    return {"config": name, "params_M": sum(p.numel() for m in (fwd, inv) for p in m.parameters()) / 1e6,
            "decoder_MB": sum(p.numel() * p.element_size() for p in decoder_weights(fwd)) / 1e6,
            "decoding_steps": cfg.tokenizer.code_length - 1,  # the conditioning pass gives the first code
            "large": cfg.forward.hidden > 256}


# -- a runtime's process (worker) -----------------------------------------------------------------------------
def observation(model_dir: Path):
    """The same seeded images, task embedding and raw proprioception for every variant."""
    meta = json.loads((model_dir / "onnx" / "policy.json").read_text())
    dims = json.loads((model_dir / "inputs.json").read_text())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1, len(meta["views"]), *meta["image_shape"]), dtype=np.uint8)
    return (images, rng.standard_normal((1, dims["text_dim"])).astype(np.float32),
            np.zeros(dims["proprio_dim"], np.float32))


def torch_variants(model_dir: Path, threads: int) -> dict:
    import torch

    from amplify_core.checkpoint import load_model

    torch.set_num_threads(threads)
    fwd, _ = load_model(model_dir / "forward.pt", "forward")
    inv, _ = load_model(model_dir / "inverse.pt", "inverse")
    images, text, proprio = (torch.from_numpy(a) for a in observation(model_dir))
    proprio = proprio[None]
    with torch.no_grad():
        cond = fwd.conditioning(images, text)
        first_logits, caches = fwd.start(cond)
        codes = fwd.decode(cond)
    first = first_logits.argmax(-1)
    weights = decoder_weights(fwd)

    def step(use_cache):
        return inv(images, proprio, fwd.generate(images, text, use_cache=use_cache))[0]

    return {"no_cache": lambda: step(False), "cache": lambda: step(True),
            "decode_no_cache": lambda: fwd.decode(cond, use_cache=False), "decode_cache": lambda: fwd.decode(cond),
            "conditioning": lambda: fwd.conditioning(images, text), "start": lambda: fwd.start(cond),
            "decode_step": lambda: fwd.step(first, 1, caches), "inverse": lambda: inv(images, proprio, codes),
            "weight_read": lambda: [w.sum() for w in weights]}


def onnx_variants(model_dir: Path, threads: int) -> dict:
    from amplify_core.onnx_policy import OnnxPolicy

    runner = OnnxPolicy(model_dir / "onnx", threads=threads)
    images, text, proprio = observation(model_dir)
    return {"onnx": lambda: runner.predict_chunk(images, proprio, text)}


def worker_main(backend: str, model_dir: Path, threads: int) -> int:
    """Answer {"variant", "repeats"} lines on stdin with the step times in ms, one JSON line each."""
    import torch

    variants = (torch_variants if backend == "torch" else onnx_variants)(model_dir, threads)
    warm = set()
    for line in sys.stdin:
        ask = json.loads(line)
        fn = variants[ask["variant"]]
        with torch.no_grad():
            if ask["variant"] not in warm:  # first call: allocations, one-time kernel choices
                fn()
                warm.add(ask["variant"])
            times = []
            for _ in range(ask["repeats"]):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1000.0)
        print(json.dumps(times), flush=True)
    return 0


class Worker:
    def __init__(self, backend: str, model_dir: Path, threads: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "training.benchmark_policy", "--worker", backend, "--model-dir", str(model_dir),
             "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, variant: str, repeats: int) -> list[float]:
        self.proc.stdin.write(json.dumps({"variant": variant, "repeats": repeats}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker for {variant!r} exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


# -- coordinator ----------------------------------------------------------------------------------------------
def bench(name: str, repeats: int | None, rounds: int, size: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        result = export_models(name, size, model_dir)
        repeats = repeats or (1 if result["large"] else 7)
        workers = {"torch": Worker("torch", model_dir, threads), "onnx": Worker("onnx", model_dir, threads)}
        plan = [("torch", v) for v in TORCH_VARIANTS[:2]] + [("onnx", "onnx")] + \
               [("torch", v) for v in TORCH_VARIANTS[2:]]
        times: dict[str, list[float]] = {v: [] for _, v in plan}
        try:
            last = None
            for _ in range(rounds):
                for backend, variant in plan:
                    if backend != last:
                        time.sleep(SWITCH_PAUSE)
                    last = backend
                    times[variant] += workers[backend].run(variant, repeats)
        finally:
            for w in workers.values():
                w.close()
    result.update({f"{v}_ms": statistics.median(t) for v, t in times.items()})
    result["n"] = repeats * rounds
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    threads = args.threads or torch.get_num_threads()
    if args.worker:
        return worker_main(args.worker, args.model_dir, threads)
    print(f"one policy step, 3 views {args.image_size}x{args.image_size}, {threads} CPU thread(s) per runtime, "
          f"device cpu, each runtime in its own process, median of N steps")
    print(f"{'config':8} {'params':>8} {'no cache':>10} {'KV cache':>10} {'onnxrt':>10} "
          f"{'cache x':>8} {'onnx x':>7} {'decode x':>9}  N")
    results = []
    for name in args.configs:
        r = bench(name, args.repeats, args.rounds, args.image_size, threads)
        results.append(r)
        print(f"{r['config']:8} {r['params_M']:7.1f}M {r['no_cache_ms']:8.1f}ms {r['cache_ms']:8.1f}ms "
              f"{r['onnx_ms']:8.1f}ms {r['no_cache_ms'] / r['cache_ms']:7.2f}x "
              f"{r['cache_ms'] / r['onnx_ms']:6.2f}x {r['decode_no_cache_ms'] / r['decode_cache_ms']:8.2f}x  "
              f"{r['n']}", flush=True)
    print("cache x and onnx x: whole steps; decode x: the 15-code decoding alone (conditioning tokens given)")
    print("where a KV-cache step goes (PyTorch):")
    for r in results:
        shared = r["conditioning_ms"] + r["start_ms"] + r["inverse_ms"]
        floor = shared + r["decoding_steps"] * r["weight_read_ms"]
        print(f"  {r['config']:8} encoders+text {r['conditioning_ms']:.1f} ms, "
              f"conditioning pass {r['start_ms']:.1f} ms, "
              f"decoding step {r['decode_step_ms']:.2f} ms (x{r['decoding_steps']}), inverse {r['inverse_ms']:.1f} ms; "
              f"reading the {r['decoder_MB']:.0f} MB of decoder weights once: {r['weight_read_ms']:.2f} ms")
        print(f"  {'':8} cache x if the decoding steps cost nothing: {r['no_cache_ms'] / shared:.2f}x; if each cost "
              f"one read of the weights: {r['no_cache_ms'] / floor:.2f}x")
    print("targets:")
    for r in results:
        verdict = lambda ok: "MET" if ok else "NOT MET"  # noqa: E731
        cache_x, onnx_x = r["no_cache_ms"] / r["cache_ms"], r["cache_ms"] / r["onnx_ms"]
        if r["config"] == "paper":
            print(f"  KV cache >= 5x over no cache (paper): {cache_x:.2f}x {verdict(cache_x >= 5)}")
        if r["config"] == "tiny":
            print(f"  tiny step <= 25 ms: onnxruntime {r['onnx_ms']:.1f} ms {verdict(r['onnx_ms'] <= 25)}, "
                  f"PyTorch KV cache {r['cache_ms']:.1f} ms {verdict(r['cache_ms'] <= 25)}")
        print(f"  onnxruntime >= 1.5x over eager (KV cache), {r['config']}: {onnx_x:.2f}x {verdict(onnx_x >= 1.5)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
