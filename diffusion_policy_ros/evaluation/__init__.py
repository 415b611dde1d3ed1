"""Evaluating a checkpoint: episode runners (through the node graph, or the policy alone in the
sim), offline action error, the sampler benchmark, and the metrics they report.

Only `graph_episodes` and `graph_latency` talk to ROS (rclpy imported there, by their caller's node).
"""
