"""Helpers of the model-pipeline tests: tiny checkpoints, processes (training/ros_processes.py), a probe node."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # training/ is importable when pytest runs from elsewhere
from amplify_ros.fake_ur.client import ports_lock as fake_ur_ports_lock  # noqa: E402,F401
from amplify_ros.fake_ur.client import stop_process, wait_for_free_ports  # noqa: E402,F401
from training.benchmark_pipeline import HOME_Q, TASKS, tiny_checkpoints  # noqa: E402,F401  (shared with the benchmark)
from training.ros_processes import node_argv, ros_env, start_process, use_ros_env_here  # noqa: E402,F401
from amplify_ros.waiting import call_service, wait_until  # noqa: E402


class Probe:
    """The test's own rclpy node: records messages with receive times, publishes, calls services."""

    def __init__(self, name: str = "pipeline_probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.lock = threading.Lock()
        self.messages: dict[str, list] = defaultdict(list)  # topic -> [(monotonic, wall ns, msg)]
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def record(self, msg_type, topic: str, qos=10, keep: int = 2000):
        def on_msg(msg):
            with self.lock:
                box = self.messages[topic]
                box.append((time.monotonic(), time.time_ns(), msg))
                del box[:-keep]

        self.node.create_subscription(msg_type, topic, on_msg, qos)

    def get(self, topic: str) -> list:
        with self.lock:
            return list(self.messages[topic])

    def statuses(self, node_name: str) -> list[dict]:
        return [s for s in (json.loads(m.data) for _, _, m in self.get("/amplify/status")) if s.get("node") == node_name]

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.1):
        return wait_until(predicate, timeout, what, poll)

    def call(self, srv_type, name: str, request, timeout: float = 15.0):
        return call_service(self.node.create_client(srv_type, name), request, timeout)

    def close(self):
        self.executor.shutdown()
        self.thread.join(timeout=5)  # the spin thread out of its wait set before the context goes
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)
