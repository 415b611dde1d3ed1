"""Scripted experts: Cartesian keyframes for each tcp, turned into joint targets by IK.

The plan is made once per episode from the true initial cube (and target) pose and the arm's
own start pose, then followed in time; `action(t)` returns joint position targets in the
config's joint order. Between keyframes the tcp moves along a minimum-jerk profile and its
orientation is slerped, so the joint targets are smooth at any control rate.
"""
from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from diffusion_policy_ros.sim.ik import ArmIK
from diffusion_policy_ros.sim.robot_model import RobotModel
from diffusion_policy_ros.sim.scene_builder import ARM_JOINT_RANGES

OPEN = 0.07
CLOSED = 0.0


@dataclasses.dataclass
class Keyframe:
    t: float
    pos: np.ndarray
    rot: np.ndarray   # 3x3, columns = tcp x (approach), y (finger opening), z
    grip: float


def frame(x_axis, y_axis) -> np.ndarray:
    x = np.asarray(x_axis, float)
    x /= np.linalg.norm(x)
    y = np.asarray(y_axis, float)
    y = y - x * (x @ y)
    y /= np.linalg.norm(y)
    return np.column_stack([x, y, np.cross(x, y)])


def top_down(finger_yaw: float) -> np.ndarray:
    return frame([0, 0, -1], [np.cos(finger_yaw), np.sin(finger_yaw), 0])


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def grasp_yaw(cube_yaw: float, bearing: float) -> float:
    """Of the cube's four face normals, the one nearest the arm's natural finger direction."""
    natural = bearing + np.pi / 2
    candidates = [cube_yaw + k * np.pi / 2 for k in range(4)]
    return min(candidates, key=lambda a: abs(_wrap(a - natural)))


def _quat(rot):
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, rot.reshape(-1))
    return q


def _slerp(r0, r1, s):
    q0, q1 = _quat(r0), _quat(r1)
    if q0 @ q1 < 0:
        q1 = -q1
    dot = np.clip(q0 @ q1, -1.0, 1.0)
    theta = np.arccos(dot)
    q = q0 if theta < 1e-6 else (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)
    out = np.zeros(9)
    mujoco.mju_quat2Mat(out, q / np.linalg.norm(q))
    return out.reshape(3, 3)


def _min_jerk(s: float) -> float:
    return s * s * s * (10 - 15 * s + 6 * s * s)


def sample_keyframes(frames: list[Keyframe], t: float):
    if t <= frames[0].t:
        f = frames[0]
        return f.pos, f.rot, f.grip
    for a, b in zip(frames, frames[1:]):
        if t <= b.t:
            s = (t - a.t) / max(b.t - a.t, 1e-9)
            m = _min_jerk(s)
            return a.pos + m * (b.pos - a.pos), _slerp(a.rot, b.rot, m), a.grip + s * (b.grip - a.grip)
    f = frames[-1]
    return f.pos, f.rot, f.grip


class _Arm:
    def __init__(self, robot: RobotModel, index):
        m = robot.model
        self.index = index
        self.prefix = index.prefix
        base = m.body(f"{self.prefix}base")
        self.base_pos = m.body_pos[base.id].copy()
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, m.body_quat[base.id])
        self.base_rot = rot.reshape(3, 3)
        self.ik = ArmIK(m, index.arm_qpos_adr, index.arm_dof_adr, index.tcp_site,
                        [ARM_JOINT_RANGES[i] for i in range(len(index.arm_qpos_adr))])
        self.frames: list[Keyframe] = []
        self.q = None

    def to_world(self, p_local) -> np.ndarray:
        return self.base_pos + self.base_rot @ np.asarray(p_local, float)

    def bearing(self, point) -> float:
        d = np.asarray(point) - self.base_pos
        return float(np.arctan2(d[1], d[0]))


class ScriptedExpert:
    """Base: owns one IK per arm; subclasses write `plan()`."""

    def __init__(self, robot: RobotModel):
        self.robot = robot
        self.arms = [_Arm(robot, a) for a in robot.arms]
        self.by_prefix = {a.prefix: a for a in self.arms}

    def home_joints(self, home_tcp: dict) -> np.ndarray:
        """Joint vector (config order) with each tcp at its home point, pointing down, open."""
        q = []
        for arm in self.arms:
            p = arm.to_world(home_tcp[arm.prefix])
            rot = top_down(arm.bearing(p) + np.pi / 2)
            guess = np.array([0.0, 0.3, 1.2, 0.0, 1.4, 0.0])
            sol, err = arm.ik.solve(guess, p, rot, iterations=200)
            if err > 1e-3:
                raise RuntimeError(f"home pose of {arm.prefix or 'arm'} unreachable ({err:.3f} m)")
            q.extend(self._with_gripper(arm, sol, OPEN))
        return np.array(q)

    def _with_gripper(self, arm, q_arm, grip):
        out, k = [], 0
        for is_grip in arm.index.is_gripper:
            if is_grip:
                out.append(grip)
            else:
                out.append(q_arm[k])
                k += 1
        return out

    def reset(self, q_start, qpos_full, cube_pos, cube_quat, target_pos) -> None:
        """Plan an episode from the start state; q_start in config order."""
        for arm, (_, cols) in zip(self.arms, self.robot.config.arm_slices()):
            q_arm_full = np.asarray(q_start[cols])
            arm.q = q_arm_full[~arm.index.is_gripper].copy()
            arm.ik.set_base_pose(qpos_full)
            pos, rot = arm.ik.fk(arm.q)
            arm.start = Keyframe(0.0, pos, rot, float(q_arm_full[arm.index.is_gripper][0]))
        from diffusion_policy_ros.sim.tasks import quat_yaw
        self.plan(np.asarray(cube_pos, float), quat_yaw(cube_quat), np.asarray(target_pos, float))

    def plan(self, cube_pos, cube_yaw, target_pos) -> None:
        raise NotImplementedError

    def action(self, t: float) -> np.ndarray:
        out = []
        for arm in self.arms:
            pos, rot, grip = sample_keyframes(arm.frames, t)
            arm.q, _ = arm.ik.solve(arm.q, pos, rot, iterations=15)
            out.extend(self._with_gripper(arm, arm.q, grip))
        return np.array(out)


class PickPlaceExpert(ScriptedExpert):
    approach_height = 0.10
    carry_height = 0.12

    def plan(self, cube_pos, cube_yaw, target_pos):
        arm = self.arms[0]
        rot = top_down(grasp_yaw(cube_yaw, arm.bearing(cube_pos)))
        up = np.array([0, 0, 1.0])
        grasp = cube_pos + 0.005 * up
        place = np.array([target_pos[0], target_pos[1], cube_pos[2] + 0.008])
        s = arm.start
        arm.frames = [
            Keyframe(0.0, s.pos, s.rot, s.grip),
            Keyframe(1.5, cube_pos + self.approach_height * up, rot, OPEN),
            Keyframe(2.3, grasp, rot, OPEN),
            Keyframe(2.8, grasp, rot, CLOSED),
            Keyframe(3.6, grasp + self.carry_height * up, rot, CLOSED),
            Keyframe(5.0, place + self.carry_height * up, rot, CLOSED),
            Keyframe(5.8, place, rot, CLOSED),
            Keyframe(6.3, place, rot, OPEN),
            Keyframe(7.0, place + self.carry_height * up, rot, OPEN),
        ]


class HandoverExpert(ScriptedExpert):
    """Left picks top-down holding the cube's upper part, turns it towards the right arm at the
    meeting point; the right gripper, rolled 90 degrees, takes the protruding part by its top
    and bottom faces, so the two finger pairs never share a face."""
    meet = np.array([-0.01, 0.0, 0.22])   # left tcp at the handover
    right_reach = 0.0225                  # right tcp beyond the left tcp along x

    def plan(self, cube_pos, cube_yaw, target_pos):
        left, right = self.by_prefix["left_"], self.by_prefix["right_"]
        up = np.array([0, 0, 1.0])
        x = np.array([1.0, 0, 0])
        rot_grasp = top_down(grasp_yaw(cube_yaw, left.bearing(cube_pos)))
        grasp = cube_pos + 0.01 * up
        side = 1.0 if rot_grasp[1, 1] >= 0 else -1.0
        rot_left_meet = frame([1, 0, 0], [0, side, 0])
        rot_right_meet = frame([-1, 0, 0], [0, 0, 1])
        meet_right = self.meet + self.right_reach * x
        sl, sr = left.start, right.start
        left.frames = [
            Keyframe(0.0, sl.pos, sl.rot, sl.grip),
            Keyframe(1.5, cube_pos + 0.10 * up, rot_grasp, OPEN),
            Keyframe(2.3, grasp, rot_grasp, OPEN),
            Keyframe(2.8, grasp, rot_grasp, CLOSED),
            Keyframe(3.6, grasp + 0.12 * up, rot_grasp, CLOSED),
            Keyframe(5.2, self.meet, rot_left_meet, CLOSED),
            Keyframe(6.7, self.meet, rot_left_meet, CLOSED),
            Keyframe(7.2, self.meet, rot_left_meet, OPEN),
            Keyframe(8.2, self.meet - 0.12 * x, rot_left_meet, OPEN),
        ]
        right.frames = [
            Keyframe(0.0, sr.pos, sr.rot, sr.grip),
            Keyframe(3.5, sr.pos, sr.rot, OPEN),
            Keyframe(5.2, meet_right + 0.10 * x, rot_right_meet, OPEN),
            Keyframe(6.2, meet_right, rot_right_meet, OPEN),
            Keyframe(6.7, meet_right, rot_right_meet, CLOSED),
            Keyframe(7.2, meet_right, rot_right_meet, CLOSED),
            Keyframe(8.2, meet_right + 0.10 * x + 0.05 * up, rot_right_meet, CLOSED),
        ]


EXPERTS = {"pick_place": PickPlaceExpert, "handover": HandoverExpert}


def make_expert(task: str, robot: RobotModel) -> ScriptedExpert:
    if task not in EXPERTS:
        raise ValueError(f"no scripted expert for task {task!r}; known: {sorted(EXPERTS)}")
    return EXPERTS[task](robot)
