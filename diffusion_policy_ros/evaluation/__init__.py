"""Evaluating a checkpoint: episode runners (through the node graph, or the policy alone in the
sim), offline action error, the sampler benchmark, and the metrics they report.

Only `graph_episodes` talks to ROS (rclpy imported there, by its caller's node).
"""
