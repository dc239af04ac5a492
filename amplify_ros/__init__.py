"""amplify_ros: thin rclpy nodes over amplify_core (amplify_core never imports this package)."""
