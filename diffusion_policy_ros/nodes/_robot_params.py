"""Helpers shared by the nodes: the node clock in seconds, responsive threads.
(Parameters: `nodes/_parameters.py`.)"""
from __future__ import annotations

import sys

from rclpy.node import Node


def now_seconds(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


# The sim's physics thread gives up the GIL in every C call (mj_step, render) and must win it
# back from the executor threads; with Python's default 5 ms switch interval a busy executor
# throttled it far below real time.
GIL_SWITCH_INTERVAL_S = 0.0005


def responsive_threads() -> None:
    """Let a thread returning from C code get the GIL back within 0.5 ms."""
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
