"""Running the node graph from outside it: node processes, lifecycle transitions, a client node.

Shared by `dpros up`, `dpros bench graph` and `dpros eval sim`; imports rclpy only inside the
functions that talk to the graph.
"""
