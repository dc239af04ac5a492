"""The one `main()` every node of the package shares: init, spin until Ctrl-C or shutdown, clean up."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import uninstall_signal_handlers


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Images up to 16 MB (a 1920x1080 rgb8 frame is 6.2 MB) come from the heap, and up to 256 MB of freed heap is kept.
MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def keep_message_buffers() -> bool:
    """Let glibc reuse freed image buffers instead of mapping fresh zeroed pages for every message.

    Every image a subscription takes is a fresh ~1 MB allocation per 640x480 frame (the serialized sample, the C
    message, the Python bytes). glibc serves blocks that large with mmap and returns them with munmap, so each
    message pays page faults on a megabyte of zeroed pages: measured 3.1-3.4 ms of CPU per 640x480 message (a third
    of a core for three 30 Hz cameras) in a bare rclpy subscriber, against 1.4 ms with the thresholds below, the
    same as the environment variables MALLOC_MMAP_THRESHOLD_=16777216 MALLOC_TRIM_THRESHOLD_=268435456 give. Set
    here because a node started by ``ros2 run`` or ``ros2 launch`` cannot be given them first. The cost is the
    memory kept: at most the trim threshold of freed heap. Returns False (and changes nothing) off glibc, or where
    ``AMPLIFY_MALLOC_DEFAULTS=1`` asks to leave the allocator as it is (to measure the difference).
    """
    if os.environ.get("AMPLIFY_MALLOC_DEFAULTS") == "1":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                    TRIM_THRESHOLD_BYTES))


def run_node(make_node: Callable[[], Node], args=None, threads: int = 1,
             before_destroy: Callable[[Node], None] | None = None) -> None:
    """Create the node, spin it (``threads`` > 1: a multi-threaded executor), and always shut down cleanly.

    ``before_destroy`` runs on every exit path while the node still exists (the driver stops the arm there).
    """
    keep_message_buffers()
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
