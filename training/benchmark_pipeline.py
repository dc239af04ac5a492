"""amplify-benchmark-pipeline: rates and camera-to-command latency of the running ROS 2 model pipeline.

For each camera size, starts the real nodes as separate processes -- fake_cameras_node (3 x 30 Hz, stamp
jitter) -> forward_dynamics_node -> inverse_dynamics_node -- with `tiny` models (config/models/tiny.yaml,
random weights: latency does not depend on training), and this program's own node publishing
/joint_states at 50 Hz and recording /ur5/command. No robot driver is started (its own benchmark is
separate). Prints per size:
  * delivered camera rate (frames/s received by the forward node, mean of the three cameras),
  * synchronised triples/s formed by the forward node,
  * achieved control rate (/ur5/command messages/s received here),
  * camera-to-command latency: receive time of a command minus the camera stamp it was computed from
    (median, p99); the stamp already lags the fake camera's publish time by U(0, 2*jitter).
Targets: control >= 20 Hz (1 % measurement tolerance: >= 19.8 Hz counted over the window), p99 <= 100 ms.

Example::

    amplify-benchmark-pipeline                                   # 128x128 and 640x480, onnxruntime, 15 s each
    amplify-benchmark-pipeline --sizes 640x480 --backend torch --duration 30
    amplify-benchmark-pipeline --load 0 1 --backend onnx torch               # idle and one busy core; both backends
    amplify-benchmark-pipeline --sizes 640x480 --allocator tuned glibc       # the nodes' malloc setting against glibc's
    amplify-benchmark-pipeline --recorder-only --sizes 640x480 --allocator tuned glibc tuned glibc
    amplify-benchmark-pipeline --reliability best_effort --depth 1 --json runs/pipeline_bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from training.ros_processes import ROOT, node_argv, ros_env, start_process, stop_process, use_ros_env_here

HOME_Q = (0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0)  # the fake UR controller's start pose
TASKS = ("put the red block in the bowl", "open the drawer")
TARGET_RATE_HZ, TARGET_P99_MS = 20.0, 100.0
# A 20 Hz timer counted over a finite window reads 19.9x (a tick that falls just outside the window), so the rate
# target gets a 1 % measurement tolerance, printed with the verdict; a real shortfall (19 Hz) still fails.
RATE_TOLERANCE = 0.01
MIN_RATE_HZ = TARGET_RATE_HZ * (1 - RATE_TOLERANCE)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-benchmark-pipeline", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["128x128", "640x480"],
                   help="camera image sizes WIDTHxHEIGHT (default 128x128 640x480)")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per size (default 15)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the first command before measuring")
    p.add_argument("--backend", nargs="+", choices=["onnx", "torch"], default=["onnx"],
                   help="onnx: the models exported with amplify_core.export (deployment); torch: .pt checkpoints; "
                        "both (--backend onnx torch) are measured one after the other in the same run")
    p.add_argument("--load", type=int, nargs="+", default=[0], metavar="N",
                   help="start N background processes that each keep one core busy (a pure-Python spin loop, "
                        "normal priority) while measuring, as a robot computer that is not idle; several values "
                        "(--load 0 1) are measured one after the other in the same run (default 0)")
    p.add_argument("--allocator", nargs="+", choices=["tuned", "glibc"], default=["tuned"],
                   help="tuned: the nodes' own malloc thresholds (amplify_ros/node_runner.keep_message_buffers, what "
                        "every node does); glibc: the allocator's defaults (AMPLIFY_MALLOC_DEFAULTS=1), which map "
                        "fresh zeroed pages for every image; both are measured one after the other (default tuned)")
    p.add_argument("--recorder", action="store_true",
                   help="also run recorder_node beside the pipeline (subscribed to the cameras, not recording), "
                        "and report its CPU share: the image subscriber that loads no model")
    p.add_argument("--recorder-only", action="store_true",
                   help="measure only the CPU share of recorder_node subscribed to the fake cameras (no models, no "
                        "commands), for each --allocator and size: the image subscriber whose allocations nothing "
                        "else warms up")
    p.add_argument("--reliability", choices=["reliable", "best_effort"], default="reliable",
                   help="camera QoS reliability of both model nodes (default reliable, the nodes' default)")
    p.add_argument("--depth", type=int, default=2, help="camera QoS depth of both model nodes (default 2)")
    p.add_argument("--jitter-ms", type=float, default=5.0, help="fake camera stamp jitter (default 5 ms)")
    p.add_argument("--startup-timeout", type=float, default=90.0, help="seconds to wait for the first command")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("--keep-logs", type=Path, default=None, help="write the nodes' logs into this folder")
    return p


def tiny_checkpoints(out_dir: Path, image_size: int = 128, seed: int = 0, tasks=TASKS,
                     task_codes: dict[str, int] | None = None, config: str = "tiny",
                     action_norm: dict | None = None, proprio_norm: dict | None = None) -> dict:
    """Tokenizer + forward + inverse checkpoints of the `tiny` config (or ``config``, e.g. libero_tiny) with random
    weights, and a task-embedding cache pre-filled for ``tasks`` (random unit vectors) so no text encoder is loaded.
    The normalisation defaults suit the workcell (actions near its start pose).

    ``task_codes`` {task: code}: fit the forward model (vision frozen, ~2 s) to predict that code at every
    position for the fake cameras' first frame -- an untrained network's greedy codes hardly depend on the
    task (its attention averages ~50 conditioning tokens), so tests of a task change need this."""
    import torch

    from amplify_core.checkpoint import save_checkpoint
    from amplify_core.configs import load_config
    from amplify_core.forward_dynamics import ForwardDynamics
    from amplify_core.inverse_dynamics import InverseDynamics
    from amplify_core.normalization import Normalizer
    from amplify_core.tokenizer import MotionTokenizer
    from amplify_core.text import TextEmbeddingCache
    from amplify_core.ur5 import default_kinematics

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config)
    cfg.forward.vision.image_size = cfg.inverse.vision.image_size = image_size
    torch.manual_seed(seed)
    views = list(cfg.tokenizer.views)
    fwd = ForwardDynamics(cfg.forward, len(views), 1920, 15)
    inv = InverseDynamics(cfg.inverse, len(views), 1920, 15)
    meta = {"views": views, "image_shape": [3, image_size, image_size]}
    fwd_meta = {**meta, "text_encoder": "minilm", "tasks": sorted(tasks)}
    home = np.asarray(default_kinematics().fk_pose(np.array(HOME_Q)), np.float64)
    # actions near the start pose (std 2 cm / 0.02 rad): random weights then give small, valid moves
    action_norm = action_norm or Normalizer(np.r_[home, 0.5], np.r_[[0.02] * 6, 0.5]).to_dict()
    proprio_norm = proprio_norm or Normalizer(np.r_[HOME_Q, 0.5], np.full(7, 0.5)).to_dict()
    paths = {"forward": out_dir / "forward.pt", "inverse": out_dir / "inverse.pt", "text_cache": out_dir / "text.npz",
             "tokenizer": out_dir / "tokenizer.pt"}
    save_checkpoint(paths["tokenizer"], MotionTokenizer(cfg.tokenizer), {"views": meta["views"]})
    fwd_meta["tokenizer"] = str(paths["tokenizer"])
    save_checkpoint(paths["forward"], fwd, fwd_meta)
    save_checkpoint(paths["inverse"], inv, {**meta, "proprio_norm": proprio_norm, "action_norm": action_norm,
                                            "use_codes": True})
    cache = TextEmbeddingCache(paths["text_cache"], "minilm")
    rng = np.random.default_rng(seed)
    for task in tasks:
        emb = rng.normal(size=cfg.forward.text_dim).astype(np.float32)
        cache._table[task] = emb / np.linalg.norm(emb)  # stands in for what the encoder would have stored
    cache.save()
    if task_codes:
        fit_task_codes(fwd, {t: cache([t])[0] for t in task_codes}, task_codes, image_size)
        save_checkpoint(paths["forward"], fwd, fwd_meta)
    return paths


def fit_task_codes(fwd, embeddings: dict, task_codes: dict, image_size: int, steps: int = 60) -> None:
    """Teacher-forced fit of everything but the vision encoder: task -> a constant code sequence."""
    import torch

    from amplify_ros.fake_cameras_node import render

    frames = [np.stack([render(image_size, image_size, 0, 1, v).transpose(2, 0, 1) for v in range(3)])]
    with torch.no_grad():
        image_tokens = fwd.vision(torch.from_numpy(np.stack(frames)))
    n = len(task_codes)
    tokens = image_tokens.expand(n, -1, -1)
    text = torch.from_numpy(np.stack([embeddings[t] for t in task_codes]))
    codes = torch.tensor([[c] * fwd.code_length for c in task_codes.values()])
    params = [p for name, p in fwd.named_parameters() if not name.startswith("vision.")]
    opt = torch.optim.Adam(params, 3e-3)
    fwd.train()
    for _ in range(steps):  # ForwardDynamics.forward with the image tokens computed once
        cond = torch.cat([tokens, (fwd.text_proj(text) + fwd.text_type[0]).unsqueeze(1)], dim=1)
        inputs = torch.cat([fwd._sos(n, "cpu"), codes[:, :-1]], dim=1)
        x = torch.cat([cond, fwd._code_tokens(inputs, 0)], dim=1)
        logits, _ = fwd._run(x, fwd.block_causal_mask(cond.shape[1], fwd.code_length), None)
        loss = fwd.loss(logits[:, cond.shape[1]:], codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    fwd.eval()


class Recorder:
    """This program's node: publishes /joint_states, records /ur5/command and /amplify/status."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        from amplify_core.ur5 import JOINT_NAMES

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("pipeline_benchmark", context=self.context)
        self.lock = threading.Lock()
        self.commands: list[tuple[float, int]] = []  # (monotonic receive, latency ns)
        self.status: list[tuple[float, dict]] = []
        self.node.create_subscription(JointTrajectory, "/ur5/command", self._on_command, 10)
        self.node.create_subscription(String, "/amplify/status", self._on_status, 10)
        pub = self.node.create_publisher(JointState, "/joint_states", 10)
        state = JointState(name=list(JOINT_NAMES), position=list(HOME_Q))
        self.node.create_timer(0.02, lambda: pub.publish(state))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_command(self, msg) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.commands.append((time.monotonic(), now - stamp))

    def _on_status(self, msg) -> None:
        with self.lock:
            self.status.append((time.monotonic(), json.loads(msg.data)))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


def run_size(width: int, height: int, models: dict, args, log_dir: Path, backend: str,
             allocator: str = "tuned", load: int = 0) -> dict:
    use_ros_env_here()
    env = allocator_env(allocator)
    qos = {"camera_reliability": f"[{args.reliability}]", "camera_depth": f"[{args.depth}]"}
    model = {"onnx_dir": str(models["onnx"])} if backend == "onnx" else {}
    config = ROOT / "config"
    procs = {
        "cameras": node_argv("amplify_ros.fake_cameras_node", config / "fake_cameras.yaml", width=width,
                             height=height, jitter_ms=args.jitter_ms),
        "forward": node_argv("amplify_ros.forward_dynamics_node", config / "forward_dynamics.yaml",
                             checkpoint=str(models["forward"]), text_cache=str(models["text_cache"]), task=TASKS[0],
                             **model, **qos),
        "inverse": node_argv("amplify_ros.inverse_dynamics_node", config / "inverse_dynamics.yaml",
                             checkpoint=str(models["inverse"]), **model, **qos),
    }
    if args.recorder:
        procs["recorder"] = node_argv("amplify_ros.recorder_node", config / "recorder.yaml",
                                      output_dir=str(log_dir / "recorder"))
    recorder = Recorder()
    running = {}
    try:
        for name, argv in procs.items():
            log = log_dir / f"{name}_{width}x{height}_{backend}_{allocator}_load{load}.log"
            running[name] = start_process(argv, log, env)
        deadline = time.monotonic() + args.startup_timeout
        while not recorder.commands:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no /ur5/command within {args.startup_timeout} s; logs in {log_dir}")
            dead = [n for n, p in running.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead} exited; logs in {log_dir}")
            time.sleep(0.2)
        time.sleep(args.warmup)
        cpu0 = {name: process_cpu_s(p.pid) for name, p in running.items()}
        t0 = time.monotonic()
        time.sleep(args.duration)
        t1 = time.monotonic()
        cpu1 = {name: process_cpu_s(p.pid) for name, p in running.items()}
        with recorder.lock:
            commands = [lat for t, lat in recorder.commands if t0 <= t < t1]
            status = [s for t, s in recorder.status if t0 <= t < t1]
    finally:
        recorder.close()
        for p in running.values():
            stop_process(p)
    fwd = [s for s in status if s.get("node") == "forward_dynamics"]
    inv = [s for s in status if s.get("node") == "inverse_dynamics"]
    if not fwd or not inv or not commands:
        raise RuntimeError(f"no status or no commands in the measured window; logs in {log_dir}")
    lat = np.array(commands) / 1e6
    return {
        "size": f"{width}x{height}", "backend": backend, "allocator": allocator, "load": load,
        "reliability": args.reliability,
        "depth": args.depth,
        "camera_rate_hz": round(statistics.mean(statistics.mean(s["camera_rate_hz"].values()) for s in fwd), 1),
        "synced_rate_hz": round(statistics.mean(s["synced_rate_hz"] for s in fwd), 1),
        "codes_rate_hz": round(statistics.mean(s["achieved_rate_hz"] for s in fwd), 1),
        "control_rate_hz": round(len(commands) / (t1 - t0), 1),
        "latency_median_ms": round(float(np.median(lat)), 1),
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 1),
        "commands": len(commands),
        "forward_step_ms": fwd[-1]["step_ms"], "inverse_step_ms": inv[-1]["step_ms"],
        # codes the inverse node could not use because their frames had not reached it (counted over the run)
        "unmatched_codes": inv[-1]["unmatched_codes"] - inv[0]["unmatched_codes"],
        # share of one core each node process used over the measured window
        "cpu_percent": {name: None if cpu0[name] is None or cpu1[name] is None
                        else round(100 * (cpu1[name] - cpu0[name]) / (t1 - t0), 1) for name in running},
    }


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere or once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def allocator_env(allocator: str) -> dict:
    """The nodes' environment for --allocator: tuned (their own mallopt setting) or glibc (its defaults)."""
    return ros_env({"AMPLIFY_MALLOC_DEFAULTS": "1" if allocator == "glibc" else "0"})


@contextlib.contextmanager
def background_load(n: int):
    """N processes that each keep one core busy for the duration of the block."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, n))]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def cpu_column(r: dict) -> str:
    cpu = r.get("cpu_percent", {})
    names = ("cameras", "forward", "inverse", "recorder") if "recorder" in cpu else ("cameras", "forward", "inverse")
    return "/".join("-" if cpu.get(n) is None else f"{cpu[n]:.0f}" for n in names)


def target_met(r: dict) -> bool | None:
    """The issue's targets: the deployment backend (onnx) keeps the control rate and a p99 camera-to-command latency
    <= 100 ms, idle or under load; the PyTorch backend (the development path) keeps the rate on an idle machine.
    None: no target for this row (PyTorch under load, reported as it comes out)."""
    rate_ok = r["control_rate_hz"] >= MIN_RATE_HZ
    if r["backend"] == "onnx":
        return rate_ok and r["latency_p99_ms"] <= TARGET_P99_MS
    return rate_ok if not r.get("load") else None


def targets_met(results: list[dict]) -> bool:
    """Every row measured with the nodes' own allocator setting meets its target (glibc rows are the comparison)."""
    return all(target_met(r) is not False for r in results if r.get("allocator", "tuned") == "tuned")


def recorder_cpu(sizes: list[tuple[int, int]], args) -> int:
    """--recorder-only: fake cameras and an idle recorder_node, the recorder's CPU share per size and allocator."""
    config = ROOT / "config"
    print(f"{'camera':>9} {'malloc':>6} {'load':>4} {'recorder CPU %':>14} {'cameras CPU %':>13}")
    with tempfile.TemporaryDirectory(prefix="amplify_recorder_bench_") as tmp:
        for n_load in args.load:
            with background_load(n_load):
                for w, h in sizes:
                    for allocator in args.allocator:
                        env = allocator_env(allocator)
                        procs = [start_process(node_argv("amplify_ros.fake_cameras_node", config / "fake_cameras.yaml",
                                                         width=w, height=h), Path(tmp) / f"cameras_{w}x{h}.log", env),
                                 start_process(node_argv("amplify_ros.recorder_node", config / "recorder.yaml",
                                                         output_dir=str(Path(tmp) / "bags")),
                                               Path(tmp) / f"recorder_{w}x{h}.log", env)]
                        try:
                            time.sleep(args.warmup + 3)
                            c0, t0 = [process_cpu_s(p.pid) for p in procs], time.monotonic()
                            time.sleep(args.duration)
                            c1, t1 = [process_cpu_s(p.pid) for p in procs], time.monotonic()
                        finally:
                            for p in procs:
                                stop_process(p)
                        if None in c0 + c1:
                            print(f"{w}x{h} {allocator}: a process ended early; logs in {tmp}", file=sys.stderr)
                            return 1
                        cam, rec = (100 * (b - a) / (t1 - t0) for a, b in zip(c0, c1))  # procs: cameras, recorder
                        size = f"{w}x{h}"
                        print(f"{size:>9} {allocator:>6} {n_load:>4} {rec:>14.1f} {cam:>13.1f}", flush=True)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    sizes = []
    for s in args.sizes:
        try:
            w, h = (int(v) for v in s.lower().split("x"))
        except ValueError:
            print(f"--sizes: {s!r} is not WIDTHxHEIGHT", file=sys.stderr)
            return 2
        sizes.append((w, h))
    if args.recorder_only:
        return recorder_cpu(sizes, args)
    with tempfile.TemporaryDirectory(prefix="amplify_pipeline_bench_") as tmp:
        tmp = Path(tmp)
        log_dir = args.keep_logs or tmp
        log_dir.mkdir(parents=True, exist_ok=True)
        models = tiny_checkpoints(tmp / "models")
        if "onnx" in args.backend:
            from amplify_core.export import export_policy

            models["onnx"] = export_policy(models["inverse"], models["forward"], tmp / "onnx")
        results = []
        for n_load in args.load:
            with background_load(n_load):
                for w, h in sizes:
                    for backend in args.backend:
                        for allocator in args.allocator:
                            try:
                                results.append(run_size(w, h, models, args, log_dir, backend, allocator, n_load))
                            except RuntimeError as exc:
                                print(f"{w}x{h} {backend} {allocator} load {n_load}: FAILED: {exc}", file=sys.stderr)
                                return 1
    header = (f"{'camera':>9} {'backend':>7} {'malloc':>6} {'load':>4} {'QoS':>14} {'camera Hz':>9} "
              f"{'triples Hz':>10} {'control Hz':>10} {'latency median':>14} {'p99':>8} {'fwd step':>9} "
              f"{'inv step':>9} {'unmatched':>9} {'CPU % cam/fwd/inv[/rec]':>23} {'target':>6}")
    print(header)
    for r in results:
        print(f"{r['size']:>9} {r['backend']:>7} {r['allocator']:>6} {r['load']:>4} "
              f"{r['reliability'] + '/' + str(r['depth']):>14} {r['camera_rate_hz']:>9.1f} {r['synced_rate_hz']:>10.1f} "
              f"{r['control_rate_hz']:>10.1f} {r['latency_median_ms']:>11.1f} ms {r['latency_p99_ms']:>5.1f} ms "
              f"{r['forward_step_ms'] or 0:>6.1f} ms {r['inverse_step_ms'] or 0:>6.1f} ms {r['unmatched_codes']:>9} "
              f"{cpu_column(r):>23} {({True: 'met', False: 'missed', None: '-'})[target_met(r)]:>6}")
    print(f"targets (control >= {TARGET_RATE_HZ:.0f} Hz with {RATE_TOLERANCE:.0%} measurement tolerance, i.e. >= "
          f"{MIN_RATE_HZ:.2f} Hz; onnx also p99 <= {TARGET_P99_MS:.0f} ms; torch: rate, idle) of the tuned rows: "
          f"{'met' if targets_met(results) else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
