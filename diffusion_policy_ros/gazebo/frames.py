"""Rigid transforms and the number formatting URDF and SDF files share."""
from __future__ import annotations

import numpy as np


def fmt(values) -> str:
    """Numbers as the generated files write them: 6 significant digits, no `-0`."""
    return " ".join(f"{(0.0 if abs(v) < 5e-13 else float(v)):.6g}" for v in np.atleast_1d(values))


def quat_to_matrix(quat) -> np.ndarray:
    """MuJoCo quaternion (w, x, y, z) -> 3x3 rotation matrix."""
    w, x, y, z = np.asarray(quat, dtype=float) / np.linalg.norm(quat)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def matrix_to_rpy(rotation) -> np.ndarray:
    """3x3 rotation -> fixed-axis roll (x), pitch (y), yaw (z), as URDF `rpy` and SDF poses use."""
    r = np.asarray(rotation, dtype=float)
    pitch = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    if abs(r[2, 0]) < 1 - 1e-9:
        roll = np.arctan2(r[2, 1], r[2, 2])
        yaw = np.arctan2(r[1, 0], r[0, 0])
    else:  # pitch at +-90 degrees: roll and yaw turn about the same axis; put it all in yaw
        roll = 0.0
        yaw = np.arctan2(-r[0, 1], r[1, 1])
    return np.array([roll, pitch, yaw])


class Transform:
    """A pose: rotation matrix and translation, composable."""

    def __init__(self, rotation=None, translation=None):
        self.rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
        self.translation = np.zeros(3) if translation is None else np.asarray(translation, dtype=float)

    @classmethod
    def from_mujoco(cls, pos, quat) -> "Transform":
        return cls(quat_to_matrix(quat), pos)

    def __matmul__(self, other: "Transform") -> "Transform":
        return Transform(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def inverse(self) -> "Transform":
        return Transform(self.rotation.T, -self.rotation.T @ self.translation)

    @property
    def rpy(self) -> np.ndarray:
        return matrix_to_rpy(self.rotation)

    def urdf_origin(self) -> str:
        return f'<origin xyz="{fmt(self.translation)}" rpy="{fmt(self.rpy)}"/>'

    def sdf_pose(self) -> str:
        return f"<pose>{fmt(np.concatenate([self.translation, self.rpy]))}</pose>"


def camera_body_frame(mujoco_camera: Transform) -> Transform:
    """A MuJoCo camera looks along its -z with +y up; Gazebo sensors and ROS camera links look
    along +x with +z up. Same origin, axes renamed: x = -z_mj, y = -x_mj, z = y_mj."""
    r = mujoco_camera.rotation
    return Transform(np.column_stack([-r[:, 2], -r[:, 0], r[:, 1]]), mujoco_camera.translation)


# The ROS optical frame (z forward, x right, y down) in a camera link (x forward, z up).
OPTICAL_IN_CAMERA_LINK = Transform(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
