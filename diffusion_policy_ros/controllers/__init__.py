"""How commands reach a ros2_control robot: the controllers' own acceptance rules and the split of
an arm's joint plan over its arm and gripper controllers (plain Python, no rclpy)."""
