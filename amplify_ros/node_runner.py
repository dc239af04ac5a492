"""The one `main()` every node of the package shares: init, spin until Ctrl-C or shutdown, clean up."""

from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], args=None, threads: int = 1,
             before_destroy: Callable[[Node], None] | None = None) -> None:
    """Create the node, spin it (``threads`` > 1: a multi-threaded executor), and always shut down cleanly.

    ``before_destroy`` runs on every exit path while the node still exists (the driver stops the arm there).
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            if before_destroy is not None:
                before_destroy(node)
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
