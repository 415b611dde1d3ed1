"""Conversions between ROS messages and the plain values the core modules use (stamps, trajectories,
safety events, diagnostics). Used by the policy and safety filter nodes."""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint


def to_time(seconds: float) -> Time:
    sec = int(math.floor(seconds))
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def to_duration(seconds: float) -> Duration:
    sec = int(math.floor(seconds))
    return Duration(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def seconds(stamp) -> float:
    """Time or Duration -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def trajectory_msg(joint_names, start: float, times, positions, frame_id: str = "") -> JointTrajectory:
    """Absolute point times -> a JointTrajectory stamped `start` with relative time_from_start."""
    msg = JointTrajectory(joint_names=list(joint_names))
    msg.header.stamp = to_time(start)
    msg.header.frame_id = frame_id
    for t, q in zip(times, positions):
        msg.points.append(JointTrajectoryPoint(positions=[float(x) for x in q],
                                               time_from_start=to_duration(t - start)))
    return msg


def jtc_message(msg: JointTrajectory):
    """A JointTrajectory as the plain message controllers/jtc_rules.py checks."""
    from diffusion_policy_ros.controllers.jtc_rules import JtcMessage, JtcPoint
    return JtcMessage(
        stamp_ns=msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
        joint_names=tuple(msg.joint_names),
        points=tuple(JtcPoint(p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec,
                              tuple(p.positions), tuple(p.velocities), tuple(p.accelerations), tuple(p.effort))
                     for p in msg.points))


def trajectory_points(msg: JointTrajectory, now: float) -> tuple[np.ndarray, np.ndarray]:
    """A JointTrajectory -> (absolute times, positions (N, J)); stamp 0 means 'now' (JTC rule).
    Points without positions become NaN rows so the caller rejects them by name."""
    start = seconds(msg.header.stamp) or now
    times = np.array([start + seconds(p.time_from_start) for p in msg.points], dtype=float)
    width = len(msg.joint_names)
    rows = [list(p.positions) if len(p.positions) == width else [math.nan] * width for p in msg.points]
    return times, np.array(rows, dtype=float).reshape(len(rows), width)


def diagnostic_status(name: str, level: bytes, message: str, values: dict,
                      hardware_id: str = "") -> DiagnosticStatus:
    """level: DiagnosticStatus.OK / WARN / ERROR / STALE."""
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
