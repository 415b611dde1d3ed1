"""The safety filter's math, free of ROS: limits, the three-band filter, watchdog and e-stop.

`nodes/safety_filter_node.py` is thin glue around `SafetyFilter`; everything that decides what
reaches the robot lives here and is tested without a ROS graph.
"""
from diffusion_policy_ros.safety.filter import Band, FilterResult, SafetyFilter, SafetyEvent
from diffusion_policy_ros.safety.limits import JointLimits, SafetyParams
from diffusion_policy_ros.safety.trajectory import Trajectory

__all__ = ["Band", "FilterResult", "JointLimits", "SafetyEvent", "SafetyFilter", "SafetyParams",
           "Trajectory"]
