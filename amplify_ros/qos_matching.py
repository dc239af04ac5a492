"""Camera QoS: a subscription whose reliability follows what the topic's publishers offer, as ``ros2 bag record``
chooses it. A reliable subscription matches no best-effort publisher (most camera drivers publish sensor-data QoS,
best effort), and a best-effort one receives from every publisher but loses a reliable publisher's retransmissions.
So with ``auto``: reliable while every publisher is reliable, best effort as soon as one is not; the publishers are
looked at when the node starts and again every ``check_period`` (new ones appear, old ones go), and each choice is
logged with its reason. ``reliable`` or ``best_effort`` forces a policy (a mismatch is then logged as an error)."""

from __future__ import annotations

from typing import Callable

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
CHOICES = ("auto", *RELIABILITY)


def camera_qos(reliability: str, depth: int, name: str = "camera_reliability") -> QoSProfile:
    if reliability not in RELIABILITY:
        raise ValueError(f"parameter {name}: {reliability!r} is not one of {sorted(RELIABILITY)}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE)


def reliability_for(offered: list) -> tuple[str | None, str]:
    """The reliability that receives from every publisher of ``offered`` (their ReliabilityPolicy), and why;
    None while there is no publisher."""
    best_effort = sum(r == ReliabilityPolicy.BEST_EFFORT for r in offered)
    if not offered:
        return None, "no publisher yet"
    why = f"{len(offered) - best_effort} reliable and {best_effort} best-effort publisher(s)"
    return ("best_effort" if best_effort else "reliable"), why


class MatchedSubscription:
    """One topic's subscription with the reliability ``reliability`` (auto | reliable | best_effort) and keep-last
    ``depth``; ``kwargs`` go to ``create_subscription`` (callback_group, raw)."""

    def __init__(self, node: Node, msg_type, topic: str, callback: Callable, depth: int, reliability: str = "auto",
                 check_period: float = 1.0, name: str = "camera_reliability", **kwargs):
        if reliability not in CHOICES:
            raise ValueError(f"parameter {name}: {reliability!r} for {topic} is not one of {list(CHOICES)}")
        self.node, self.msg_type, self.topic, self.callback, self.depth = node, msg_type, topic, callback, int(depth)
        self.mode, self.kwargs, self.name = reliability, kwargs, name
        self.subscription, self.reliability = None, None
        self._waiting_logged = False
        if reliability == "auto":
            self.check()
            node.create_timer(check_period, self.check, callback_group=kwargs.get("callback_group"))
        else:
            self._subscribe(reliability, f"parameter {name}")

    def check(self) -> None:
        offered = [info.qos_profile.reliability for info in self.node.get_publishers_info_by_topic(self.topic)]
        wanted, why = reliability_for(offered)
        if wanted is None:
            if self.subscription is None and not self._waiting_logged:
                self.node.get_logger().info(f"{self.topic}: no publisher yet; choosing its QoS when one appears")
                self._waiting_logged = True
            return
        if wanted != self.reliability:
            self._subscribe(wanted, f"auto: {why}")

    def _subscribe(self, reliability: str, why: str) -> None:
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
        events = SubscriptionEventCallbacks(incompatible_qos=lambda info: self.node.get_logger().error(
            f"{self.topic}: a publisher's QoS is incompatible with {self.name}={reliability} (a reliable "
            f"subscription cannot receive from a best-effort publisher); use auto or best_effort"))
        self.subscription = self.node.create_subscription(self.msg_type, self.topic, self.callback,
                                                          camera_qos(reliability, self.depth, self.name),
                                                          event_callbacks=events, **self.kwargs)
        self.reliability = reliability
        self.node.get_logger().info(f"{self.topic}: subscribed {reliability}, keep last {self.depth} ({why})")
