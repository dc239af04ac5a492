"""amplify-benchmark-driver: servo streaming rate and command latency of the UR5 driver against the fake UR.

Example::

    amplify-benchmark-driver                          # 5 s of /ur5/command at 20 Hz
    amplify-benchmark-driver --duration 10 --json bench.json
    python -m training.benchmark_driver --duration 2

Starts the fake UR controller (amplify-fake-ur, 127.0.0.1 only) and the driver node (config/ur5_driver.yaml)
as processes, on its own ROS_DOMAIN_ID with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, enables motion, streams
/ur5/command and prints:

* servo streaming rate measured AT THE CONTROLLER: servo commands the fake received per second (from their
  arrival times), target >= the configured rtde_frequency (125 Hz on CB3);
* command-to-controller latency, median and p99, target p99 <= 10 ms. Method: the commanded pose zig-zags in
  y by +-amplitude, so every command reverses the direction of the interpolated setpoint. Command k's latency
  is from just before it is published (time.monotonic() here) to the arrival at the fake controller (the
  kernel's receive stamp of the RTDE package, SO_TIMESTAMPNS, on the CLOCK_MONOTONIC scale; logged per servo
  command, read back with the dashboard command ``fake servo log``) of the first servoL that moves toward it.
  CLOCK_MONOTONIC is system-wide on Linux, so both ends share one clock.
  It includes ROS transport, the node, the pipe to the robot process, the servo loop (woken by a new command
  with servo_wake_on_command, the default; else up to 1/rtde_frequency later) and ur-rtde's RTDE write.

The fake controller's ports are fixed (30004, 30003, 29999): nothing else may listen on them. Exit code 0 when
the figures were measured (whether or not they meet the targets), 1 when the run failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from amplify_ros.fake_ur.client import answers, dashboard, start_fake_ur, stop_process
from amplify_ros.waiting import call_service, wait_until
from training.ros_processes import ROOT, node_argv, start_process

log = logging.getLogger("amplify-benchmark-driver")

AXES = ["x", "y", "z", "rx", "ry", "rz", "gripper"]
RATE_TARGET_TOLERANCE = 0.01  # the rate target counts as met within 1 % of rtde_frequency (clock resolution)
LATENCY_P99_TARGET_MS = 10.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amplify-benchmark-driver",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds of streaming (default 5)")
    p.add_argument("--rate", type=float, default=20.0, help="/ur5/command rate in Hz (default 20, the policy rate)")
    p.add_argument("--amplitude", type=float, default=0.0005,
                   help="zig-zag amplitude in m around the start pose (default 0.0005)")
    p.add_argument("--config", type=Path, default=ROOT / "config" / "ur5_driver.yaml",
                   help="driver parameter file (default config/ur5_driver.yaml); robot_ip must be 127.0.0.1")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID for this run (default: 100 + pid %% 100, away from other work)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return p


def analyse(published: list[tuple[float, int]], servo_log: list, period: float) -> dict:
    """Rate and latency figures from the publish times/directions and the controller's servo log."""
    t_first, t_last = published[0][0], published[-1][0]
    servo = [(t, np.asarray(target)) for t, name, target in servo_log if name == "servoL" and t >= t_first]
    if len(servo) < 3:
        raise RuntimeError(f"the controller received only {len(servo)} servoL commands while streaming")
    times = np.array([t for t, _ in servo])
    window = times[times <= t_last + period]
    rate = (len(window) - 1) / (window[-1] - window[0])
    y = np.array([target[1] for _, target in servo])
    latencies, missed = [], 0
    for k in range(1, len(published)):
        t_pub, direction = published[k]
        horizon = published[k + 1][0] if k + 1 < len(published) else t_last + 0.1
        found = None
        for i in np.flatnonzero((times > t_pub) & (times <= horizon)):
            if i > 0 and (y[i] - y[i - 1]) * direction > 0:
                found = times[i] - t_pub
                break
        if found is None:
            missed += 1
        else:
            latencies.append(found * 1000.0)
    if not latencies:
        raise RuntimeError("no servoL reflecting a command was found")
    lat = np.array(latencies)
    return {"servo_rate_hz": float(rate), "servo_commands": int(len(window)),
            "window_s": float(window[-1] - window[0]), "latency_median_ms": float(np.median(lat)),
            "latency_p99_ms": float(np.percentile(lat, 99)), "latency_max_ms": float(lat.max()),
            "latency_n": int(lat.size), "commands_missed": missed}


def run(args, workdir: Path) -> dict:
    import rclpy
    from std_msgs.msg import String
    from std_srvs.srv import SetBool
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    import yaml

    params = yaml.safe_load(args.config.read_text())
    ros_params = params["/**/ur5_driver"]["ros__parameters"]
    if ros_params.get("robot_ip", "127.0.0.1") != "127.0.0.1":
        raise ValueError(f"--config robot_ip must be 127.0.0.1 (the fake controller), got {ros_params['robot_ip']!r}")
    frequency = float(ros_params.get("rtde_frequency", 125.0))
    if answers():
        raise RuntimeError("something already answers on 127.0.0.1:29999; stop it first (the fake's ports are fixed)")
    procs: dict[str, subprocess.Popen] = {}
    context = rclpy.Context()
    try:
        procs["fake"] = start_fake_ur(["--log-level", "WARNING"], log_path=workdir / "fake_ur.log")
        procs["driver"] = start_process(node_argv("amplify_ros.ur5_driver_node", args.config), workdir / "driver.log",
                                        env=dict(os.environ))
        rclpy.init(context=context)
        node = rclpy.create_node("ur5_driver_benchmark", context=context)
        pub = node.create_publisher(JointTrajectory, "/ur5/command", 10)
        status = {}
        node.create_subscription(String, "/ur5/status", lambda m: status.update(json.loads(m.data)), 10)
        enable = node.create_client(SetBool, "/ur5/enable")
        from rclpy.executors import SingleThreadedExecutor
        import threading
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        wait_until(lambda: status.get("connected"), 30, "the driver to connect")
        answer = call_service(enable, SetBool.Request(data=True), timeout=10.0)
        if not answer.success:
            raise RuntimeError(f"/ur5/enable refused: {answer.message}")
        start = np.array(json.loads(dashboard("fake stats"))["tcp_pose"])
        dashboard("fake servo log")  # drop everything before the stream
        published = []
        n = int(args.duration * args.rate)
        log.info("streaming %d commands at %g Hz", n, args.rate)
        t0 = time.monotonic()
        for k in range(n):
            direction = 1 if k % 2 == 0 else -1
            target = start + np.array([0.0, direction * args.amplitude, 0, 0, 0, 0])
            msg = JointTrajectory()
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.joint_names = AXES
            msg.points = [JointTrajectoryPoint(positions=[float(v) for v in target] + [0.0])]
            published.append((time.monotonic(), direction))
            pub.publish(msg)
            time.sleep(max(0.0, t0 + (k + 1) / args.rate - time.monotonic()))
        time.sleep(0.1)
        servo_log = json.loads(dashboard("fake servo log"))
        figures = analyse(published, servo_log, 1.0 / frequency)
        figures.update(rtde_frequency=frequency, command_rate_hz=args.rate, duration_s=args.duration,
                       driver_status=dict(status))
        executor.shutdown()
        node.destroy_node()
        return figures
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
        stop_process(procs.get("driver"), signal.SIGINT)  # the driver stops the arm and the control script
        stop_process(procs.get("fake"), signal.SIGTERM)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.duration > 0 and args.rate > 0 and args.amplitude > 0):
        raise SystemExit("--duration, --rate and --amplitude must be > 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id if args.domain_id is not None else 100 + os.getpid() % 100)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # for this process and the driver
    with tempfile.TemporaryDirectory(prefix="benchmark_driver_") as tmp:
        try:
            f = run(args, Path(tmp))
        except (RuntimeError, ValueError, OSError) as exc:
            log.error("benchmark failed: %s", exc)
            for name in ("driver.log", "fake_ur.log"):
                path = Path(tmp) / name
                if path.exists():
                    log.error("%s (tail):\n%s", name, path.read_text()[-2000:])
            return 1
    rate_ok = f["servo_rate_hz"] >= f["rtde_frequency"] * (1 - RATE_TARGET_TOLERANCE)
    latency_ok = f["latency_p99_ms"] <= LATENCY_P99_TARGET_MS
    print(f"UR5 driver benchmark: {f['duration_s']:g} s of /ur5/command at {f['command_rate_hz']:g} Hz "
          f"-> driver node -> robot process -> fake UR controller (127.0.0.1)")
    print(f"servo streaming rate at the controller: {f['servo_rate_hz']:.1f} Hz "
          f"({f['servo_commands']} servoL in {f['window_s']:.2f} s); target >= {f['rtde_frequency']:g} Hz: "
          f"{'met' if rate_ok else 'NOT met'}")
    print(f"command-to-controller latency: median {f['latency_median_ms']:.1f} ms, p99 {f['latency_p99_ms']:.1f} ms, "
          f"max {f['latency_max_ms']:.1f} ms (n={f['latency_n']}, {f['commands_missed']} not found); "
          f"target p99 <= {LATENCY_P99_TARGET_MS:g} ms: {'met' if latency_ok else 'NOT met'}")
    if args.json is not None:
        args.json.write_text(json.dumps({**f, "rate_target_met": rate_ok, "latency_target_met": latency_ok}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
