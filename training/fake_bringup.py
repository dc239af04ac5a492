"""Build the package into a ROS 2 workspace and bring the fake-hardware pipeline up with the real launch frontend,
enable the arm, and print the servo commands arriving at the fake UR controller.

What a ROS user does by hand, in one command: ``colcon build`` into WORKSPACE, ``ros2 launch amplify_ros
amplify_fake.launch.xml`` from its install (fake UR controller, fake cameras, forward and inverse nodes, UR5 driver),
``ros2 service call /ur5/enable std_srvs/srv/SetBool "{data: true}"``, then the fake controller's own log of the
servoL / servoJ targets it received (dashboard command ``fake servo log``). Ctrl-C (or ``--seconds``) stops the launch
the way Ctrl-C stops ``ros2 launch``; the arm stops with it.

Without ``--forward`` / ``--inverse`` it runs tiny models with random weights (built in a second, nothing downloaded):
the arm moves, not toward a task. Exit status 0 when commands reached the arm after enable and none before.

Example::

    amplify-fake-bringup --workspace /tmp/amplify_ws --seconds 5
    amplify-fake-bringup --workspace /tmp/amplify_ws --forward runs/main_job/models/forward.pt \\
        --inverse runs/main_job/models/amplify_10.pt --task "open the drawer" --text-cache runs/main_job/models/text_embeddings.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-fake-bringup", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, required=True,
                   help="colcon workspace to build into (build/ and install/ are created or updated there)")
    p.add_argument("--forward", type=Path, default=None, help="forward checkpoint (.pt); default: a tiny random one")
    p.add_argument("--inverse", type=Path, default=None, help="inverse checkpoint (.pt); default: a tiny random one")
    p.add_argument("--task", default=None, help="task instruction (default: the first task of the tiny models)")
    p.add_argument("--text-cache", type=Path, default=None, help="npz of task embeddings (default: the tiny models')")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to print commands after enable (default 5)")
    p.add_argument("--start-timeout", type=float, default=120.0,
                   help="seconds allowed for the launch to bring every node up and connect (default 120)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if (args.forward is None) != (args.inverse is None):
        print("amplify-fake-bringup: give both --forward and --inverse, or neither (tiny random models)",
              file=sys.stderr)
        return 2
    for name in ("forward", "inverse", "text_cache"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            print(f"amplify-fake-bringup: --{name.replace('_', '-')} {path}: no such file", file=sys.stderr)
            return 2
    from training.ros_processes import use_ros_env_here

    use_ros_env_here()  # this process's client node in the launch's ROS domain
    from amplify_ros.fake_ur.client import answers, dashboard, ports_lock, wait_for_free_ports
    from training.ros_launch import colcon_build, start_launch, stop_launch

    work = args.workspace.resolve()
    print(f"[bringup] colcon build into {work}", flush=True)
    prefix = colcon_build(work)
    if args.forward is None:
        from training.benchmark_pipeline import TASKS, tiny_checkpoints

        paths = tiny_checkpoints(work / "tiny_models")
        forward, inverse, cache, task = paths["forward"], paths["inverse"], paths["text_cache"], args.task or TASKS[0]
        print(f"[bringup] tiny random models in {work / 'tiny_models'}", flush=True)
    else:
        forward, inverse, cache, task = args.forward.resolve(), args.inverse.resolve(), args.text_cache, args.task or ""
    launch_args = {"forward_checkpoint": str(forward), "inverse_checkpoint": str(inverse), "task": task}
    if cache is not None:
        launch_args["text_cache"] = str(Path(cache).resolve())
    log_path = work / "launch.log"
    print("[bringup] ros2 launch amplify_ros amplify_fake.launch.xml "
          + " ".join(f"{k}:={json.dumps(v) if ' ' in v else v}" for k, v in launch_args.items())
          + f"   (output: {log_path})", flush=True)

    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import SetBool
    from trajectory_msgs.msg import JointTrajectory

    from amplify_ros.waiting import call_service, wait_until as wait

    with ports_lock():
        wait_for_free_ports()
        launched = start_launch(prefix, "amplify_fake.launch.xml", launch_args, log_path)
        rclpy.init()
        node = rclpy.create_node("fake_bringup")
        commands = []  # receive times of the policy's /ur5/command messages
        node.create_subscription(JointTrajectory, "/ur5/command", lambda msg: commands.append(time.monotonic()), 10)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        ok = False
        try:
            enable = node.create_client(SetBool, "/ur5/enable")
            wait(lambda: enable.service_is_ready() or launched.poll() is not None, args.start_timeout, "/ur5/enable")
            if launched.poll() is not None:
                raise RuntimeError(f"the launch exited with status {launched.returncode}; see {log_path}")
            wait(answers, args.start_timeout, "the fake UR controller on 127.0.0.1")
            # the models load in a few seconds; enable once the policy streams (the driver's watchdog needs it)
            wait(lambda: len(commands) >= 10 or launched.poll() is not None, args.start_timeout,
                 "policy commands on /ur5/command")
            n, t0 = len(commands), time.monotonic()
            time.sleep(1.0)
            print(f"[bringup] the policy publishes /ur5/command at {(len(commands) - n) / (time.monotonic() - t0):.1f} Hz",
                  flush=True)
            dashboard("fake servo log")  # what arrived before enable
            time.sleep(1.0)
            before = json.loads(dashboard("fake servo log"))
            print(f"[bringup] before enable: {len(before)} servo commands at the fake arm (motion needs /ur5/enable)",
                  flush=True)
            reply = wait(lambda: _enable(call_service, enable, SetBool), args.start_timeout, "successful /ur5/enable",
                         poll=0.5)
            print(f"[bringup] /ur5/enable true: {reply.message}", flush=True)
            received, t_end = 0, time.monotonic() + args.seconds
            while time.monotonic() < t_end:
                time.sleep(0.5)
                entries = json.loads(dashboard("fake servo log"))
                received += len(entries)
                if entries:
                    t, name, target = entries[-1]
                    print(f"[bringup] {len(entries):3d} {name} commands in the last 0.5 s, latest target "
                          f"[{', '.join(f'{v:.4f}' for v in target)}]", flush=True)
                else:
                    print("[bringup]   0 commands in the last 0.5 s", flush=True)
            ok = received > 0 and not before
            print(f"[bringup] {received} servo commands at the fake arm in {args.seconds:g} s after enable"
                  + ("" if ok else " -- FAILED: " + ("none arrived" if not received else "commands before enable")),
                  flush=True)
        finally:
            executor.shutdown()
            spinner.join(timeout=5)
            node.destroy_node()
            rclpy.shutdown()
            rc = stop_launch(launched)
            print(f"[bringup] launch stopped (Ctrl-C), exit status {rc}", flush=True)
    return 0 if ok and rc == 0 else 1


def _enable(call_service, client, srv):
    """The enable reply once the driver accepts it (it refuses until connected and the control script runs)."""
    reply = call_service(client, srv.Request(data=True))
    return reply if reply.success else None


if __name__ == "__main__":
    sys.exit(main())
