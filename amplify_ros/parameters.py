"""Declaring rclpy parameters with descriptions and ranges (``ros2 param describe`` shows them)."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node


def float_param(desc, lo, hi):
    return ParameterDescriptor(description=desc, floating_point_range=[FloatingPointRange(from_value=lo, to_value=hi)])


def int_param(desc, lo, hi):
    return ParameterDescriptor(description=desc, integer_range=[IntegerRange(from_value=lo, to_value=hi, step=1)])


def text_param(desc):
    return ParameterDescriptor(description=desc)


READ_AT_START = "read at start-up: read-only (set it in the params file or with -p, then restart the node)"


def declare(node: Node, parameters: dict, runtime: tuple[str, ...] = ()) -> dict:
    """Declare ``parameters`` {name: (default, descriptor)} and return their values. Only the names in ``runtime``
    take effect when changed while the node runs; every other one is declared read-only, so ``ros2 param set``
    is refused with rclpy's reason instead of reporting a success that changes nothing."""
    unknown = set(runtime) - set(parameters)
    if unknown:
        raise ValueError(f"runtime parameters {sorted(unknown)} are not declared")
    for name, (default, descriptor) in parameters.items():
        if name not in runtime:
            descriptor = ParameterDescriptor(**{f: getattr(descriptor, f) for f in (
                "description", "additional_constraints", "floating_point_range", "integer_range")})
            descriptor.read_only = True
            descriptor.description = f"{descriptor.description} ({READ_AT_START})"
        node.declare_parameter(name, default, descriptor)
    return {name: node.get_parameter(name).value for name in parameters}


def per_camera(values, n: int, name: str) -> list:
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"parameter {name} needs 1 or {n} values (one per camera), got {values}")
    return values
