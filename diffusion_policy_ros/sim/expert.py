"""Scripted experts: Cartesian keyframes for each tcp, turned into joint targets by IK.

The plan is made once per episode from the true initial cube (and target) pose and the arm's
own start pose, then followed in time; `action(t)` returns joint position targets in the
config's joint order. Between keyframes the tcp moves along a minimum-jerk profile and its
orientation is slerped, so the joint targets are smooth at any control rate. A keyframe marked
`joint_space` is reached by a minimum-jerk move of the joints instead, from the IK solution of
the previous keyframe to the solution of this one nearest to it: a large reorientation then
crosses no wrist singularity (where following the tcp would spin two wrist joints against each
other) and its joint speed is known when the plan is made, so the plan can respect the safety
filter's joint limits (`JOINT_SPEED_LIMIT`, `JOINT_ACCEL_LIMIT`).

Expert modes (`make_expert(task, robot, mode)`): `keyframes`, these rest-to-rest plans, and
`continuous` (pick_place only, sim/continuous_expert.py), which re-decides every control step
from the world as it is then. Callers pass the world to `observe()` before each `action()`: a
keyframe plan ignores it, except the handover's right arm, which aims at the cube where it is.
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
# What the experts' joint targets stay within: 80 % of the safety filter's default joint limits
# (safety/limits.py: 1.5 rad/s, 6 rad/s^2), so demonstrations recorded through the node graph
# are the same motions the filter lets through, and a policy imitating them is not clamped.
JOINT_SPEED_LIMIT = 1.2
JOINT_ACCEL_LIMIT = 4.8
# Peak speed and acceleration of a minimum-jerk move of length 1 over 1 s.
MIN_JERK_PEAK_SPEED = 1.875
MIN_JERK_PEAK_ACCEL = 5.7735


@dataclasses.dataclass
class Keyframe:
    t: float
    pos: np.ndarray
    rot: np.ndarray   # 3x3, columns = tcp x (approach), y (finger opening), z
    grip: float
    joint_space: bool = False   # reached by interpolating the joints, not the tcp pose


def min_jerk_duration(joint_distance: float) -> float:
    """Shortest minimum-jerk move of `joint_distance` rad within the experts' joint limits."""
    return max(MIN_JERK_PEAK_SPEED * joint_distance / JOINT_SPEED_LIMIT,
               float(np.sqrt(MIN_JERK_PEAK_ACCEL * joint_distance / JOINT_ACCEL_LIMIT)))


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


def segment_at(frames: list[Keyframe], t: float) -> tuple[int, float] | None:
    """(index of the keyframe that ends the segment holding time t, progress 0..1), or None
    before the first and after the last keyframe."""
    if t <= frames[0].t:
        return None
    for i, (a, b) in enumerate(zip(frames, frames[1:]), start=1):
        if t <= b.t:
            return i, (t - a.t) / max(b.t - a.t, 1e-9)
    return None


def _wrist_flips(q: np.ndarray) -> list[np.ndarray]:
    """Joint vectors with the same tcp pose as `q` on the other wrist branch (joints 4 and 6 turned
    half a turn, joint 5 mirrored): IK seeds for the solution nearest to the previous one."""
    flips = []
    for s4 in (np.pi, -np.pi):
        for s6 in (np.pi, -np.pi):
            f = q.copy()
            f[3], f[4], f[5] = q[3] + s4, -q[4], q[5] + s6
            flips.append(f)
    return flips


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
        self.frame_q: dict[int, np.ndarray] = {}   # keyframe index -> joints, where joint-space moves start or end
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
        for arm in self.arms:
            arm.frame_q = self._joint_keyframes(arm)
        self._stretch_joint_moves()

    def _joint_keyframes(self, arm) -> dict[int, np.ndarray]:
        """The joints at both ends of every joint-space move, found as `action` will meet them:
        tcp segments followed by warm-started IK (the branch the arm stays on), and each
        joint-space target the IK solution nearest to where the move starts."""
        frames = arm.frames
        if not any(f.joint_space for f in frames):
            return {}
        q, out = arm.q.copy(), {0: arm.q.copy()}
        for i in range(1, len(frames)):
            if frames[i].joint_space:
                q = self._nearest_solution(arm, q, frames[i])
            else:
                for s in np.linspace(0.0, 1.0, 11)[1:]:
                    pos, rot, _ = sample_keyframes(frames, frames[i - 1].t + s * (frames[i].t - frames[i - 1].t))
                    q, _ = arm.ik.solve(q, pos, rot, iterations=30)
            out[i] = q.copy()
        return out

    @staticmethod
    def _nearest_solution(arm, q_from: np.ndarray, target: Keyframe) -> np.ndarray:
        best, best_distance = None, np.inf
        for seed in [q_from, *_wrist_flips(q_from)]:
            q, err = arm.ik.solve(np.clip(seed, arm.ik.lo, arm.ik.hi), target.pos, target.rot, iterations=300)
            _, rot = arm.ik.fk(q)
            if err > 1e-3 or np.abs(rot - target.rot).max() > 1e-2:
                continue
            distance = np.abs(q - q_from).max()
            if distance < best_distance:
                best, best_distance = q, distance
        if best is None:
            raise RuntimeError(f"{arm.prefix or 'arm'}: keyframe at {target.t} s unreachable")
        return best

    def _stretch_joint_moves(self) -> None:
        """Give every joint-space move at least the time the joint limits need. What a stretched
        move delays, it delays for every arm: each keyframe (of any arm) from its end on moves
        later by as much, so the arms keep their order (the right gripper closes on the cube
        only after the left arm has brought it)."""
        moves = sorted(((arm.frames[i].t, arm, i) for arm in self.arms for i in arm.frame_q
                        if i > 0 and arm.frames[i].joint_space), key=lambda move: move[0])
        for _, arm, i in moves:
            needed = min_jerk_duration(float(np.abs(arm.frame_q[i] - arm.frame_q[i - 1]).max()))
            delay = needed - (arm.frames[i].t - arm.frames[i - 1].t)
            if delay <= 1e-9:
                continue
            end = arm.frames[i].t
            for other in self.arms:
                for frame in other.frames:
                    if frame.t >= end - 1e-9:
                        frame.t += delay

    def plan(self, cube_pos, cube_yaw, target_pos) -> None:
        raise NotImplementedError

    def _aim_offset(self, arm, t: float) -> np.ndarray:
        """How far `arm`'s tcp target moves from the plan at time t to meet the world as it is."""
        return np.zeros(3)

    def observe(self, q, cube_pos, cube_quat, target_pos) -> None:
        """The world now (joint positions in config order, cube pose, target position), given
        before each `action()`. A keyframe plan is followed as made: it ignores it (a subclass that
        aims, `_aim_offset`, reads it)."""

    def action(self, t: float) -> np.ndarray:
        out = []
        for arm in self.arms:
            pos, rot, grip = sample_keyframes(arm.frames, t)
            pos = pos + self._aim_offset(arm, t)
            segment = segment_at(arm.frames, t)
            if segment is not None and arm.frames[segment[0]].joint_space:
                i, s = segment
                arm.q = arm.frame_q[i - 1] + _min_jerk(s) * (arm.frame_q[i] - arm.frame_q[i - 1])
            else:
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
    and bottom faces, so the two finger pairs never share a face. Both big turns (left: from
    top-down to facing the right arm; right: rolling to meet it) are joint-space moves, the
    right one made while the left arm picks, so neither waits for the other longer than needed.

    The right arm aims at the cube where it is, not where the plan put it: on its way from the
    waiting point to the cube its target moves by the cube's offset from the planned handover
    position (blended in along the approach, at most `max_aim_m`), and the offset is frozen
    when the fingers start to close. A left arm that holds the cube a little off the meeting
    point (a policy's, or one perturbed while recording) then still gets a grasp, and the
    demonstrations show the right arm following the cube rather than a fixed point in space."""
    meet = np.array([-0.01, 0.0, 0.22])   # left tcp at the handover
    right_reach = 0.0225                  # right tcp beyond the left tcp along x
    right_standoff = 0.10                 # right tcp waits this far further along x
    max_aim_m = 0.04

    def observe(self, q, cube_pos, cube_quat, target_pos) -> None:
        self._cube_now = np.asarray(cube_pos, float)

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
        waiting = meet_right + self.right_standoff * x
        sl, sr = left.start, right.start
        # Nominal times: joint-space moves are stretched where the joint limits need more.
        left.frames = [
            Keyframe(0.0, sl.pos, sl.rot, sl.grip),
            Keyframe(1.5, cube_pos + 0.10 * up, rot_grasp, OPEN),
            Keyframe(2.3, grasp, rot_grasp, OPEN),
            Keyframe(2.8, grasp, rot_grasp, CLOSED),
            Keyframe(3.8, grasp + 0.12 * up, rot_grasp, CLOSED),
            Keyframe(6.0, self.meet, rot_left_meet, CLOSED, joint_space=True),
            Keyframe(7.5, self.meet, rot_left_meet, CLOSED),
            Keyframe(8.0, self.meet, rot_left_meet, OPEN),
            Keyframe(9.0, self.meet - 0.12 * x, rot_left_meet, OPEN),
        ]
        right.frames = [
            Keyframe(0.0, sr.pos, sr.rot, sr.grip),
            Keyframe(3.8, waiting, rot_right_meet, OPEN, joint_space=True),
            Keyframe(6.0, waiting, rot_right_meet, OPEN),
            Keyframe(7.0, meet_right, rot_right_meet, OPEN),
            Keyframe(7.5, meet_right, rot_right_meet, CLOSED),
            Keyframe(8.0, meet_right, rot_right_meet, CLOSED),
            Keyframe(9.0, meet_right + 0.10 * x + 0.05 * up, rot_right_meet, CLOSED),
        ]
        # Where the cube's centre is when the left tcp is at the meeting point as planned: it
        # keeps its grasp offset (0.01 m below the tcp, in the grasp frame) through the turn.
        self._cube_at_meet = self.meet + rot_left_meet @ rot_grasp.T @ (cube_pos - grasp)
        self._cube_now = np.asarray(cube_pos, float)
        self._aim = np.zeros(3)

    @property
    def right_aim(self) -> np.ndarray:
        """The right arm's current offset from the plan towards the cube (m, world frame)."""
        return self._aim.copy()

    _APPROACH = 3   # right.frames index ending the approach from the waiting point to the cube

    def _right_aim(self, t: float) -> np.ndarray:
        frames = self.by_prefix["right_"].frames
        start, end = frames[self._APPROACH - 1].t, frames[self._APPROACH].t
        if t <= start:
            return np.zeros(3)
        if t < end:   # frozen from `end` on: the fingers close around where the cube was then
            offset = self._cube_now - self._cube_at_meet
            self._aim = offset * min(1.0, self.max_aim_m / max(float(np.linalg.norm(offset)), 1e-9))
        return _min_jerk(min(1.0, (t - start) / (end - start))) * self._aim

    def _aim_offset(self, arm, t: float) -> np.ndarray:
        return self._right_aim(t) if arm.prefix == "right_" else np.zeros(3)


EXPERT_MODES = ("keyframes", "continuous")


def make_expert(task: str, robot: RobotModel, mode: str = "keyframes") -> ScriptedExpert:
    from diffusion_policy_ros.sim.continuous_expert import ContinuousPickPlaceExpert
    experts = {("pick_place", "keyframes"): PickPlaceExpert, ("handover", "keyframes"): HandoverExpert,
               ("pick_place", "continuous"): ContinuousPickPlaceExpert}
    if mode not in EXPERT_MODES:
        raise ValueError(f"unknown expert mode {mode!r}; known: {list(EXPERT_MODES)}")
    if (task, mode) not in experts:
        known = sorted(f"{t} ({m})" for t, m in experts)
        raise ValueError(f"no {mode} scripted expert for task {task!r}; known: {', '.join(known)}")
    return experts[task, mode](robot)
