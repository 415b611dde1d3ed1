"""An object's pose as the policy observes it: float32 [x, y, z, qx, qy, qz, qw] (metres, the
frame the robot config names), the quaternion in ROS order with qw >= 0.

q and -q are the same rotation; a PoseStamped may carry either. Fixing the sign makes one pose one
vector, so the policy never sees the same cube as two far-apart inputs (the sim and a perception
system publishing the same pose give the same observation).
"""
from __future__ import annotations

import numpy as np

SIZE = 7
QUATERNION = slice(3, 7)


def pose_vector(position, quaternion_xyzw) -> np.ndarray | None:
    """-> the observation vector; None for a non-finite value or a quaternion far from unit length
    (a malformed pose: the caller drops it and the input goes stale)."""
    p = np.asarray(position, dtype=np.float64).reshape(3)
    q = np.asarray(quaternion_xyzw, dtype=np.float64).reshape(4)
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        return None
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 1e-2:
        return None
    q = q / norm
    if q[3] < 0:
        q = -q
    return np.concatenate([p, q]).astype(np.float32)


def wxyz_to_xyzw(q) -> np.ndarray:
    """MuJoCo's (w, x, y, z) -> ROS's (x, y, z, w)."""
    q = np.asarray(q, dtype=np.float64)
    return np.array([q[1], q[2], q[3], q[0]])
