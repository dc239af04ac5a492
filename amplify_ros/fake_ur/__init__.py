"""A protocol-level fake Universal Robots controller (RTDE 30004, dashboard 29999, script 30003) on 127.0.0.1.

Developer tool: the REAL ur-rtde client library connects to it, so the UR5 driver can be tested without an
arm. No rclpy import here. Start it with ``amplify-fake-ur`` or ``FakeURServer`` from ``server``.
"""
