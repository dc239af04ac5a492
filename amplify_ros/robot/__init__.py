"""UR5 streaming pieces without ROS: ur-rtde connection, command safety checks, speed-capped interpolation and
the paced servo loop. ``amplify_ros.ur5_driver_node`` wraps them in a ROS 2 node."""
