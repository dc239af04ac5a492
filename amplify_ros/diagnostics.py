"""``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` (the topic rqt_robot_monitor and diagnostic_aggregator
read), built from the JSON status a node already publishes: one ``DiagnosticStatus`` per node, named after the
node's fully qualified name, with a level, a one-line message and every status field as a key/value pair."""

from __future__ import annotations

import json

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
TOPIC = "/diagnostics"  # absolute, as diagnostic_updater publishes it: one aggregator sees every namespace


class Diagnostics:
    def __init__(self, node: Node, hardware_id: str = ""):
        self.node, self.hardware_id = node, hardware_id
        self.pub = node.create_publisher(DiagnosticArray, TOPIC, 10)

    def publish(self, level: bytes, message: str, values: dict) -> DiagnosticArray:
        status = DiagnosticStatus(level=level, name=self.node.get_fully_qualified_name(), message=message,
                                  hardware_id=self.hardware_id)
        status.values = [KeyValue(key=k, value=v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
        return msg


def model_node_level(status: dict) -> tuple[bytes, str]:
    """A model node's level and message from its status: ERROR when the model did not load, WARN while it publishes
    nothing (with the reason), OK while it publishes."""
    if status.get("model_error"):
        return ERROR, f"model not loaded: {status['model_error']}"
    if status.get("idle_reason"):
        return WARN, f"publishing nothing: {status['idle_reason']}"
    return OK, f"publishing at {status.get('achieved_rate_hz', 0.0)} Hz"
