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


def declare(node: Node, parameters: dict) -> dict:
    for name, (default, descriptor) in parameters.items():
        node.declare_parameter(name, default, descriptor)
    return {name: node.get_parameter(name).value for name in parameters}


def per_camera(values, n: int, name: str) -> list:
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"parameter {name} needs 1 or {n} values (one per camera), got {values}")
    return values
