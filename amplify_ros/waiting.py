"""Waiting from a plain thread while an executor spins elsewhere: for a condition, or for a service's answer.

Used by the benchmarks and the tests, which drive nodes from the outside; nodes themselves never block like this.
"""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float, what: str, poll: float = 0.05):
    """The first truthy value of ``predicate()``; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def call_service(client, request, timeout: float = 15.0):
    """Call a service whose node is spun by another thread and return the response."""
    if not client.wait_for_service(timeout_sec=timeout):
        raise TimeoutError(f"service {client.srv_name} not available after {timeout} s")
    future = client.call_async(request)
    wait_until(future.done, timeout, f"the answer of {client.srv_name}", poll=0.02)
    return future.result()
