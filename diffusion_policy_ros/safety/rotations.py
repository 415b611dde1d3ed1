"""Rotation matrices from roll/pitch/yaw: tf_transformations where installed (ROS machines),
transforms3d otherwise (both use the static-axes 'sxyz' convention, so results agree)."""
from __future__ import annotations

import numpy as np

try:  # ROS' own helper, present on machines with a full ROS install
    from tf_transformations import euler_matrix as _tf_euler_matrix
except ImportError:  # pragma: no cover - depends on the machine
    _tf_euler_matrix = None


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """3x3 rotation for fixed-axis roll (x), pitch (y), yaw (z)."""
    if _tf_euler_matrix is not None:
        return np.asarray(_tf_euler_matrix(roll, pitch, yaw, "sxyz"))[:3, :3]
    from transforms3d.euler import euler2mat
    return np.asarray(euler2mat(roll, pitch, yaw, "sxyz"))
