"""The one `main()` every node of the package shares: init, spin until Ctrl-C or shutdown, clean up."""

from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import uninstall_signal_handlers


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
    except RuntimeError:  # rclpy's RCLError is one, and so is pybind11's conversion error
        # rclpy's SIGINT/SIGTERM handler shuts the context down asynchronously: a callback publishing at that
        # moment, the executor building its next wait set, or a node still being constructed then fails with
        # "context is invalid" (3 of 15 SIGTERMs to a node with a 1 kHz timer). That is the requested shutdown,
        # not a fault: the cleanup below runs the same way and the exit status stays 0. A message taken from a
        # subscription in that moment fails in pybind11 instead ("RuntimeError: Unable to convert call argument";
        # the forward node at Ctrl-C, CI): the same shutdown, the same rule.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            if before_destroy is not None:
                before_destroy(node)
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        # After a SIGINT the context is already shut down, so rclpy.shutdown() above does not run and this rclpy
        # leaves its signal thread (a C++ std::thread) to a static destructor after the interpreter is gone; a
        # forward node once aborted there at Ctrl-C ("terminate called without an active exception", CI). Join it
        # here, while everything it touches still exists. Idempotent.
        uninstall_signal_handlers()
