"""amplify-benchmark-workcell: env steps per second of the simulated workcell on one core.

Example::

    amplify-benchmark-workcell                      # 128 px, three cameras, scripted expert actions
    amplify-benchmark-workcell --image-size 224 --steps 300
    amplify-benchmark-workcell --no-render          # physics + IK only

One step is one 20 Hz control step: IK, the physics substeps and (unless --no-render) rendering the
front, side and corner cameras. Actions come from the task's scripted expert, episodes restart on
success. Prints steps/s and ms/step against the target (>= 100 steps/s with three 128 px cameras on one
core); the process pins itself to core 0 unless --cpu says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from training.cli_common import add_cpu, pin_cpu

TARGET_STEPS_PER_S = 100.0  # issue "workcell": three 128 px cameras, one core


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amplify-benchmark-workcell",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="put the red block in the bowl", help="task whose expert drives the arm")
    p.add_argument("--embodiment", choices=["robot", "human"], default="robot", help="robot arm or floating hand")
    p.add_argument("--image-size", type=int, default=None, help="square image size (default: config, 128)")
    p.add_argument("--steps", type=int, default=500, help="timed env steps (default 500)")
    p.add_argument("--no-render", action="store_true", help="skip camera rendering (physics and IK only)")
    p.add_argument("--threads", type=int, default=1,
                   help="software-rasteriser threads (LP_NUM_THREADS, default 1: the one-core figure)")
    add_cpu(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    pinned = pin_cpu(args.cpu)  # before the GL context, so the rasteriser's threads inherit it
    os.environ.setdefault("LP_NUM_THREADS", str(args.threads))  # must precede the GL context
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from amplify_core.workcell.env import WorkcellEnv
    from amplify_core.workcell.experts import ScriptedExpert

    with WorkcellEnv(args.task, embodiment=args.embodiment, image_size=args.image_size,
                     render=not args.no_render) as env:
        seed = 0
        env.reset(seed)
        expert = ScriptedExpert(env.task)
        for _ in range(10):  # warm-up (GL context, caches)
            env.step(expert.act(env))
        start = time.perf_counter()
        for _ in range(args.steps):
            _, _, terminated, truncated, _ = env.step(expert.act(env))
            if terminated or truncated:
                seed += 1
                env.reset(seed)
                expert = ScriptedExpert(env.task)
        elapsed = time.perf_counter() - start
    rate = args.steps / elapsed
    cams = "no cameras" if args.no_render else f"3 cameras at {env.config.image_size}x{env.config.image_size}"
    print(f"{rate:.1f} env steps/s ({1000 / rate:.2f} ms/step; 20 Hz control, "
          f"{env.config.substeps} physics substeps, {cams}, LP_NUM_THREADS={os.environ['LP_NUM_THREADS']}, {pinned})")
    if not args.no_render and env.config.image_size == 128:
        print(f"target >= {TARGET_STEPS_PER_S:.0f} steps/s with 3 cameras at 128 px on one core: "
              f"{'MET' if rate >= TARGET_STEPS_PER_S else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
