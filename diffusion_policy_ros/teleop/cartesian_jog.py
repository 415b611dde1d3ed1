"""Joystick Cartesian jog: sensor_msgs/Joy axes -> tool twist -> joint targets by differential IK
(mink, on the robot's MuJoCo model).

The jog keeps a target pose of the arm's tool site and moves it with the sticks. Every step
solves IK from the robot's measured joints (not from the jog's own previous answer), so the
solution stays on the configuration branch the arm is on and can never drift away from the
robot; the step is capped, the joints stay inside the filter's limits minus margin, and the
target inside its workspace box (`CommandBounds`). When the target runs out of reach it is
pulled back to the pose the command reaches, so releasing the stick stops the arm instead of
letting it chase a pose it cannot get to.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from diffusion_policy_ros.teleop.bounds import WORKSPACE_INSET_M, CommandBounds

# Indices into sensor_msgs/Joy per gamepad layout. The ROS joy driver reports sticks pushed
# forward or left as positive. Twist components: vx vy vz (world frame) wx wy wz (tool frame).
JOY_LAYOUTS = {
    # joy_node, Xbox 360 / One pad (Linux xpad driver): axes 0 left stick left/right, 1 left stick
    # forward/back, 2 LT, 3 right stick left/right, 4 right stick forward/back, 5 RT, 6 d-pad
    # left/right, 7 d-pad up/down; buttons 0 A, 1 B, 2 X, 3 Y, 4 LB, 5 RB.
    "xbox": {"axes": (1, 0, 4, 6, 7, 3), "twist_buttons": (-1,) * 12,
             "gripper_open_button": 0, "gripper_close_button": 1},
    # joy_node, DualShock 4 (hid-playstation / hid-sony): the same axes as the Xbox pad; buttons
    # 0 cross, 1 circle, 2 triangle, 3 square, 4 L1, 5 R1.
    "ps4": {"axes": (1, 0, 4, 6, 7, 3), "twist_buttons": (-1,) * 12,
            "gripper_open_button": 0, "gripper_close_button": 1},
    # game_controller_node (SDL's controller database, any pad it knows): axes 0 left stick
    # left/right, 1 left stick forward/back, 2 right stick left/right, 3 right stick
    # forward/back, 4 LT, 5 RT; buttons 0 A/cross, 1 B/circle, 11-14 d-pad up, down, left, right.
    "sdl_gamepad": {"axes": (1, 0, 3, -1, -1, 2), "twist_buttons": (-1, -1, -1, -1, -1, -1, 13, 14, 11, 12, -1, -1),
                    "gripper_open_button": 0, "gripper_close_button": 1},
}
DEFAULT_LAYOUT = "xbox"


@dataclasses.dataclass
class JogMapping:
    """Which Joy input drives which twist component (-1: none), and the speeds at full stick.

    `twist_buttons` holds a (positive, negative) button pair per component, for pads whose
    d-pad is buttons."""
    axes: Sequence[int] = JOY_LAYOUTS[DEFAULT_LAYOUT]["axes"]
    signs: Sequence[float] = (1, 1, 1, 1, 1, 1)
    twist_buttons: Sequence[int] = JOY_LAYOUTS[DEFAULT_LAYOUT]["twist_buttons"]
    deadzone: float = 0.1
    linear_speed: float = 0.15                   # m/s at full stick
    angular_speed: float = 0.8                   # rad/s
    gripper_open_button: int = JOY_LAYOUTS[DEFAULT_LAYOUT]["gripper_open_button"]
    gripper_close_button: int = JOY_LAYOUTS[DEFAULT_LAYOUT]["gripper_close_button"]
    gripper_speed: float = 0.05                  # m/s of finger opening

    def __post_init__(self):
        for name, size in (("axes", 6), ("signs", 6), ("twist_buttons", 12)):
            if len(getattr(self, name)) != size:
                raise ValueError(f"joy mapping: {name} needs {size} values "
                                 f"(vx vy vz wx wy wz{' as +/- pairs' if size == 12 else ''}), "
                                 f"got {len(getattr(self, name))}")
        if not 0.0 <= self.deadzone < 1.0:
            raise ValueError(f"joy mapping: deadzone must be in [0, 1), got {self.deadzone}")

    @classmethod
    def for_layout(cls, layout: str, **overrides) -> "JogMapping":
        """A named layout (JOY_LAYOUTS), with any field set explicitly taking precedence."""
        if layout not in JOY_LAYOUTS:
            raise ValueError(f"unknown joy_layout {layout!r}; choose from {sorted(JOY_LAYOUTS)}")
        return cls(**{**JOY_LAYOUTS[layout], **overrides})

    def twist(self, axes: Sequence[float], buttons: Sequence[int] = ()) -> np.ndarray:
        out = np.zeros(6)
        for i, (ax, sign) in enumerate(zip(self.axes, self.signs)):
            value = 0.0
            if 0 <= ax < len(axes) and np.isfinite(axes[ax]):
                v = float(np.clip(axes[ax], -1.0, 1.0))
                value = 0.0 if abs(v) < self.deadzone else np.sign(v) * (abs(v) - self.deadzone) / (1 - self.deadzone)
            value += float(_pressed(buttons, self.twist_buttons[2 * i])) - float(_pressed(buttons, self.twist_buttons[2 * i + 1]))
            out[i] = sign * np.clip(value, -1.0, 1.0)
        out[:3] *= self.linear_speed
        out[3:] *= self.angular_speed
        return out

    def gripper_rate(self, buttons: Sequence[int]) -> float:
        return self.gripper_speed * (float(_pressed(buttons, self.gripper_open_button))
                                     - float(_pressed(buttons, self.gripper_close_button)))


def _pressed(buttons: Sequence[int], index: int) -> bool:
    return 0 <= index < len(buttons) and bool(buttons[index])


class CartesianJog:
    """IK for one arm's tool site on a MuJoCo model (other joints of the model stay where they are).

    `bounds` (arm joints then gripper, in `arm_joints` + [gripper] order) are what the safety
    filter accepts; without them only the model's joint ranges apply."""

    def __init__(self, model_path: str, arm_joints: Sequence[str], site: str, *,
                 gripper_range: tuple[float, float] = (0.0, 0.08), mapping: JogMapping | None = None,
                 bounds: CommandBounds | None = None, max_position_error: float = 0.02,
                 max_orientation_error: float = 0.1):
        import mink
        import mujoco

        self._mink = mink
        self._mujoco = mujoco
        self.model = mujoco.MjModel.from_xml_path(model_path)
        self.mapping = mapping or JogMapping()
        self.arm_joints = list(arm_joints)
        ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in self.arm_joints]
        missing = [j for j, i in zip(self.arm_joints, ids) if i < 0]
        if missing:
            raise ValueError(f"joints {missing} not in the model {model_path}")
        self.site_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.site_id < 0:
            raise ValueError(f"site {site!r} not in the model {model_path}")
        self.bounds = bounds
        if bounds is not None:
            if len(bounds.names) < len(self.arm_joints) or list(bounds.names[:len(self.arm_joints)]) != self.arm_joints:
                raise ValueError(f"bounds are for joints {list(bounds.names)}, the jog moves {self.arm_joints}")
            # The IK itself stays inside the filter's limits, so near a limit it moves the other
            # joints instead of asking for a target the filter would clamp.
            n = len(self.arm_joints)
            self.model.jnt_range[ids] = np.stack([bounds.lower[:n], bounds.upper[:n]], axis=1)
            self.model.jnt_limited[ids] = 1
        self.qpos_adr = np.array([self.model.jnt_qposadr[i] for i in ids])
        self.site = site
        self.gripper_range = gripper_range
        self.max_position_error = max_position_error
        self.max_orientation_error = max_orientation_error
        self.configuration = mink.Configuration(self.model)
        self.task = mink.FrameTask(frame_name=site, frame_type="site", position_cost=1.0,
                                   orientation_cost=0.5, lm_damping=1e-3)
        self.posture = mink.PostureTask(self.model, cost=1e-3)
        self.limits = [mink.ConfigurationLimit(self.model)]
        self._fk = mujoco.MjData(self.model)
        self.target = None
        self.gripper = 0.0
        self.commanded: np.ndarray | None = None

    def anchor(self, arm_q: Sequence[float], gripper: float = 0.0) -> None:
        """Start from the robot's joints: the target becomes the tool pose there."""
        q = self.model.qpos0.copy()
        q[self.qpos_adr] = arm_q
        self.configuration.update(q)
        self.posture.set_target_from_configuration(self.configuration)
        self.target = self.configuration.get_transform_frame_to_world(self.site, "site")
        lo, hi = self.gripper_range
        self.gripper = float(np.clip(gripper, lo, hi))
        self.commanded = np.asarray(arm_q, float).copy()

    def tool_pose(self):
        return self.configuration.get_transform_frame_to_world(self.site, "site")

    def tool_position(self, arm_q: Sequence[float]) -> np.ndarray:
        """The tool site's position for these arm joints (the IK's state is left alone)."""
        self._fk.qpos[:] = self.model.qpos0
        self._fk.qpos[self.qpos_adr] = np.asarray(arm_q, float)[:len(self.qpos_adr)]
        self._mujoco.mj_kinematics(self.model, self._fk)
        return self._fk.site_xpos[self.site_id].copy()

    def step(self, axes: Sequence[float], buttons: Sequence[int], dt: float,
             measured: Sequence[float] | None = None, iterations: int = 3) -> tuple[np.ndarray, float]:
        """-> (arm joint targets, gripper opening). Translation in the world frame, rotation about
        the tool's own axes. `measured`: the arm's measured joints, the IK's starting point
        (without it the IK continues from its previous answer)."""
        if self.target is None:
            raise RuntimeError("anchor() the jog on the arm's current joints first")
        mink = self._mink
        seed = self.configuration.q[self.qpos_adr].copy() if measured is None else np.asarray(measured, float)
        if not np.all(np.isfinite(seed)):
            raise ValueError("measured joints are not finite")
        q = self.configuration.q.copy()
        q[self.qpos_adr] = seed
        self.configuration.update(q)
        twist = self.mapping.twist(axes, buttons)
        if np.any(twist):
            rotation = self.target.rotation() @ mink.SO3.exp(twist[3:] * dt)
            self.target = mink.SE3.from_rotation_and_translation(rotation, self.target.translation() + twist[:3] * dt)
            if self.bounds is not None:
                self._clamp_target()
        self.task.set_target(self.target)
        for _ in range(iterations):
            v = mink.solve_ik(self.configuration, [self.task, self.posture], dt, solver="daqp",
                              damping=1e-3, limits=self.limits)
            self.configuration.integrate_inplace(v, dt)
        arm_q = self.configuration.q[self.qpos_adr].copy()
        if self.bounds is not None:
            n = len(self.arm_joints)
            arm_q = self._limited(seed, arm_q, n)
            q = self.configuration.q.copy()
            q[self.qpos_adr] = arm_q
            self.configuration.update(q)
        reached = self.tool_pose()
        position_error = np.linalg.norm(reached.translation() - self.target.translation())
        orientation_error = np.linalg.norm((reached.rotation().inverse() @ self.target.rotation()).log())
        if position_error > self.max_position_error or orientation_error > self.max_orientation_error:
            self.target = reached        # out of reach: stop where the command gets to
        lo, hi = self.gripper_range
        self.gripper = float(np.clip(self.gripper + self.mapping.gripper_rate(buttons) * dt, lo, hi))
        self.commanded = arm_q
        return arm_q.copy(), self.gripper

    def _limited(self, seed, arm_q, n) -> np.ndarray:
        """The IK answer cut down to what the filter accepts (gripper columns are not the IK's)."""
        bounds = self.bounds
        pad = bounds.lower[n:]          # a placeholder gripper value inside its bounds
        full = bounds.limit(np.concatenate([seed, pad]), np.concatenate([arm_q, pad]),
                            lambda q: self.tool_position(q[:n]))
        return full[:n]

    def _clamp_target(self) -> None:
        mink = self._mink
        inside = self.bounds.clamp_to_workspace(self.target.translation(), WORKSPACE_INSET_M)
        self.target = mink.SE3.from_rotation_and_translation(self.target.rotation(), inside)
