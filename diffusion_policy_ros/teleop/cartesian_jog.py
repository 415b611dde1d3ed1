"""Joystick / keyboard Cartesian jog: sensor_msgs/Joy axes -> end-effector twist -> joint
targets by differential IK (mink, on the robot's MuJoCo model).

The jog integrates a target pose of the arm's tool site; each step solves IK from the previous
solution. If the target runs out of reach, it is pulled back to the reached pose, so releasing
the stick stops the arm instead of letting it chase a pose it cannot get to.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass
class JogMapping:
    """Which Joy axis drives which Cartesian direction (-1: unused) and the speeds."""
    axes: Sequence[int] = (1, 0, 4, -1, -1, 3)   # vx, vy, vz, wx, wy, wz (a common gamepad layout)
    signs: Sequence[float] = (1, 1, 1, 1, 1, 1)
    deadzone: float = 0.1
    linear_speed: float = 0.15                   # m/s at full stick
    angular_speed: float = 0.8                   # rad/s
    gripper_open_button: int = 0
    gripper_close_button: int = 1
    gripper_speed: float = 0.05                  # m/s of finger opening

    def twist(self, axes: Sequence[float]) -> np.ndarray:
        out = np.zeros(6)
        for i, (ax, sign) in enumerate(zip(self.axes, self.signs)):
            if 0 <= ax < len(axes):
                v = float(axes[ax])
                v = 0.0 if abs(v) < self.deadzone else np.sign(v) * (abs(v) - self.deadzone) / (1 - self.deadzone)
                out[i] = sign * v
        out[:3] *= self.linear_speed
        out[3:] *= self.angular_speed
        return out

    def gripper_rate(self, buttons: Sequence[int]) -> float:
        def pressed(i):
            return 0 <= i < len(buttons) and bool(buttons[i])
        return self.gripper_speed * (float(pressed(self.gripper_open_button)) - float(pressed(self.gripper_close_button)))


class CartesianJog:
    """IK for one arm's site on a MuJoCo model (other joints of the model stay where they are)."""

    def __init__(self, model_path: str, arm_joints: Sequence[str], site: str, *,
                 gripper_joint: str | None = None, gripper_range: tuple[float, float] = (0.0, 0.08),
                 mapping: JogMapping | None = None, max_position_error: float = 0.02):
        import mink
        import mujoco

        self._mink = mink
        self.model = mujoco.MjModel.from_xml_path(model_path)
        self.mapping = mapping or JogMapping()
        self.arm_joints = list(arm_joints)
        ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in self.arm_joints]
        missing = [j for j, i in zip(self.arm_joints, ids) if i < 0]
        if missing:
            raise ValueError(f"joints {missing} not in the model {model_path}")
        if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, site) < 0:
            raise ValueError(f"site {site!r} not in the model {model_path}")
        self.qpos_adr = np.array([self.model.jnt_qposadr[i] for i in ids])
        self.site = site
        self.gripper_joint = gripper_joint
        self.gripper_range = gripper_range
        self.max_position_error = max_position_error
        self.configuration = mink.Configuration(self.model)
        self.task = mink.FrameTask(frame_name=site, frame_type="site", position_cost=1.0,
                                   orientation_cost=0.5, lm_damping=1e-3)
        self.posture = mink.PostureTask(self.model, cost=1e-3)
        self.limits = [mink.ConfigurationLimit(self.model)]
        self.target = None
        self.gripper = 0.0

    def reset(self, arm_q: Sequence[float], gripper: float = 0.0) -> None:
        q = self.model.qpos0.copy()
        q[self.qpos_adr] = arm_q
        self.configuration.update(q)
        self.posture.set_target_from_configuration(self.configuration)
        self.target = self.configuration.get_transform_frame_to_world(self.site, "site")
        self.gripper = float(gripper)

    def tool_pose(self):
        return self.configuration.get_transform_frame_to_world(self.site, "site")

    def step(self, axes: Sequence[float], buttons: Sequence[int], dt: float, iterations: int = 3
             ) -> tuple[np.ndarray, float]:
        """-> (arm joint targets, gripper opening). Translation in the world frame, rotation
        about the tool's own axes."""
        if self.target is None:
            raise RuntimeError("reset() the jog with the arm's current joints first")
        mink = self._mink
        twist = self.mapping.twist(axes)
        if np.any(twist):
            rotation = self.target.rotation() @ mink.SO3.exp(twist[3:] * dt)
            self.target = mink.SE3.from_rotation_and_translation(rotation, self.target.translation() + twist[:3] * dt)
        self.task.set_target(self.target)
        for _ in range(iterations):
            v = mink.solve_ik(self.configuration, [self.task, self.posture], dt, solver="daqp",
                              damping=1e-3, limits=self.limits)
            self.configuration.integrate_inplace(v, dt)
        reached = self.tool_pose()
        if np.linalg.norm(reached.translation() - self.target.translation()) > self.max_position_error:
            self.target = reached        # out of reach: stop where the arm got to
        lo, hi = self.gripper_range
        self.gripper = float(np.clip(self.gripper + self.mapping.gripper_rate(buttons) * dt, lo, hi))
        return self.configuration.q[self.qpos_adr].copy(), self.gripper
