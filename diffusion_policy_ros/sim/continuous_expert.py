"""The continuous pick-and-place expert: a feedback law re-evaluated at every control step.

The keyframe expert plans once per episode and moves rest-to-rest, dwelling at every keyframe.
This one keeps no plan: each step it looks at the cube, the target and the arm as they are now,
picks a goal for the tcp, and moves its commanded tcp towards that goal with bounded speed and
acceleration. Goals are points of a funnel above the cube (or above the target while carrying):
the further the tcp is from the funnel's axis, the higher the goal, so approach and descent
blend into one motion, and a cube that moves away lifts the tcp and sends it after the cube.
The gripper switches on the way: it closes during the last millimetres of the descent (lifting
starts once the fingers hold the cube), opens over the target as the cube touches down, and a
grasp that closed on nothing reopens and tries again. So every demonstrated state has a next
action that moves, and a displaced cube or a drifting target appear in the data as corrections.
"""
from __future__ import annotations

import numpy as np

from diffusion_policy_ros.sim.expert import CLOSED, OPEN, ScriptedExpert, _slerp, _wrap, top_down
from diffusion_policy_ros.sim.scene_builder import CUBE_HALF
from diffusion_policy_ros.sim.tasks import quat_yaw


def finger_yaw(rot: np.ndarray) -> float:
    """Heading of the finger-opening axis (the tcp's y column) in the table plane."""
    return float(np.arctan2(rot[1, 1], rot[0, 1]))


def nearest_grasp_yaw(cube_yaw: float, current: float) -> float:
    """Of the four finger headings that close on two opposite faces, the one nearest `current`
    (sticking to it keeps the wrist from flipping when the cube moves)."""
    return min((cube_yaw + k * np.pi / 2 for k in range(4)), key=lambda a: abs(_wrap(a - current)))


def funnel_height(distance: float, slope: float, cap: float, flat: float) -> float:
    """Height above the funnel's bottom for a tcp `distance` from its axis; the bottom is flat
    within `flat` of the axis, so a tcp that trails a moving axis can still get down."""
    return min(cap, slope * max(0.0, distance - flat))


def speed_towards(distance: float, max_speed: float, braking: float) -> float:
    """Speed that can still stop at the goal with deceleration `braking` (finite arrival)."""
    return min(max_speed, float(np.sqrt(2.0 * braking * distance)))


class ContinuousPickPlaceExpert(ScriptedExpert):
    max_speed = 0.25             # m/s of the commanded tcp
    max_accel = 1.5              # m/s^2, how fast the commanded velocity may change
    braking = 0.8                # m/s^2 of the arrival profile
    approach_height = 0.10       # funnel cap above the grasp point
    carry_height = 0.12          # funnel cap above the place point
    funnel_slope = 3.0           # metres up per metre off the axis: fingertips clear the cube's top
    funnel_flat = 0.005          # radius of the funnel's flat bottom
    grasp_offset = 0.005         # tcp above the cube centre when grasping
    place_clearance = 0.008      # tcp above the cube's resting height when letting go
    close_within = 0.006         # m from the grasp point: start closing (still descending)
    release_within = (0.010, 0.004)  # m from the place point (horizontal, vertical): open
    close_time_s = 0.3           # the fingers need this to close on the cube
    holding_gap = (0.025, 0.046) # pad gap (m) of fingers closed on the cube, not on air
    max_turn_rate = 3.0          # rad/s of the tcp's orientation

    def plan(self, cube_pos, cube_yaw, target_pos) -> None:
        arm = self.arms[0]
        self.pos = arm.start.pos.copy()
        self.vel = np.zeros(3)
        self.rot = arm.start.rot.copy()
        self.grip = OPEN if arm.start.grip > (OPEN + CLOSED) / 2 else CLOSED
        self.closed_at = None
        self.clock = 0.0
        self._adopted = None
        self._proposed = None
        self.observe(None, cube_pos, None, target_pos, cube_yaw=cube_yaw)

    def observe(self, q, cube_pos, cube_quat, target_pos, cube_yaw=None) -> None:
        """The world as it is now: joint positions (config order; None before the first step),
        the cube's pose and the target's position."""
        self.q_measured = None if q is None else np.asarray(q, float)
        self.cube = np.asarray(cube_pos, float)
        self.cube_yaw = quat_yaw(cube_quat) if cube_yaw is None else float(cube_yaw)
        self.target = np.asarray(target_pos, float)

    def adopt(self, action, t: float) -> None:
        """Take `action` (joint targets, config order), issued by someone else for time `t`, as
        its own last command. DAgger: the policy drives and the expert only labels; its next
        label must start from what the robot was really commanded (tcp, velocity, gripper), not
        from the command it proposed."""
        arm = self.arms[0]
        if self._proposed is not None and t == self.clock and np.array_equal(np.asarray(action, float), self._proposed):
            # its own command: the state it moved to is exact (the tcp of FK(IK(pos)) is not)
            self._adopted = (self.pos.copy(), t, self.grip, self.closed_at)
            return
        joints = np.asarray(action, float)[:len(arm.index.is_gripper)]
        q_arm = joints[~arm.index.is_gripper]
        pos, rot = arm.ik.fk(q_arm)
        grip = CLOSED if float(joints[arm.index.is_gripper][0]) < (OPEN + CLOSED) / 2 else OPEN
        previous = self._adopted      # (tcp, time, grip, closed_at) of the last adopted command
        vel = np.zeros(3) if previous is None or t <= previous[1] else (pos - previous[0]) / (t - previous[1])
        speed = float(np.linalg.norm(vel))
        # A policy may jump faster than the expert ever moves; its law knows no such speed.
        self.vel = vel if speed <= self.max_speed else vel * (self.max_speed / speed)
        if grip == OPEN:
            closed_at = None
        elif previous is not None and previous[2] == CLOSED and previous[3] is not None:
            closed_at = previous[3]   # still closing, or holding, since then
        else:
            closed_at = t
        self._adopted = (pos, t, grip, closed_at)
        self.pos, self.rot, self.grip, self.closed_at, self.clock = pos, rot, grip, closed_at, t
        arm.q = q_arm.copy()

    def grasp_point(self) -> np.ndarray:
        """Where the tcp closes on the cube as it is now."""
        return self.cube + np.array([0, 0, self.grasp_offset])

    def distance_to_grasp(self) -> float:
        """Metres from the commanded tcp to the grasp point."""
        return float(np.linalg.norm(self.pos - self.grasp_point()))

    # --- the feedback law --------------------------------------------------------------------
    def action(self, t: float) -> np.ndarray:
        arm = self.arms[0]
        dt = max(0.0, t - self.clock)
        self.clock = t
        goal, rot_goal, below_funnel = self._decide(t)
        self._move(goal, below_funnel, dt)
        self._turn(rot_goal, dt)
        arm.q, _ = arm.ik.solve(arm.q, self.pos, self.rot, iterations=15)
        self._proposed = np.array(self._with_gripper(arm, arm.q, self.grip), float)
        return self._proposed.copy()

    def _measured(self) -> tuple[np.ndarray, float]:
        """Measured tcp position and pad gap (the commanded ones before the first observation)."""
        arm = self.arms[0]
        if self.q_measured is None:
            return self.pos, self.grip
        joints = self.q_measured[:len(arm.index.is_gripper)]
        tcp, _ = arm.ik.fk(joints[~arm.index.is_gripper])
        return tcp, float(joints[arm.index.is_gripper][0])

    def _decide(self, t: float):
        tcp, gap = self._measured()
        grasp = self.grasp_point()
        # A cube in the air between closed fingers is held; on the table it must also be at the
        # tcp. (Through ROS the joint states can trail the cube's pose by a few ticks: while
        # carrying, the measured tcp may then be centimetres behind the cube it holds.)
        lifted = self.cube[2] > CUBE_HALF + 0.01
        holding = (self.grip == CLOSED and self.holding_gap[0] < gap < self.holding_gap[1]
                   and (lifted or np.linalg.norm(self.cube - tcp) < 0.03))
        closing = self.grip == CLOSED and self.closed_at is not None and t - self.closed_at < self.close_time_s
        if self.grip == CLOSED and not holding and not closing:
            self.grip, self.closed_at = OPEN, None      # closed on air, or the cube was taken: retry
        keep = self.rot
        if holding:
            place_z = CUBE_HALF + self.grasp_offset + self.place_clearance
            # Carry the cube, not the tcp, onto the target: keep the offset of the grasp.
            axis = self.target[:2] + (self.pos[:2] - self.cube[:2])
            goal, below = self._funnel(axis, place_z, self.carry_height)
            flat = np.linalg.norm(self.cube[:2] - self.target[:2])
            if flat < self.release_within[0] and self.pos[2] - place_z < self.release_within[1]:
                self.grip, self.closed_at = OPEN, None
            return goal, keep, below
        if self.grip == CLOSED:                          # closing: finish the descent
            return grasp, keep, False
        if self._cube_on_target():                       # done: rise and stay clear
            return np.array([*self.pos[:2], CUBE_HALF + self.carry_height]), keep, False
        goal, below = self._funnel(grasp[:2], grasp[2], self.approach_height)
        yaw = nearest_grasp_yaw(self.cube_yaw, finger_yaw(self.rot))
        if np.linalg.norm(self.pos - grasp) < self.close_within:
            self.grip, self.closed_at = CLOSED, t
        return goal, top_down(yaw), below

    def _funnel(self, axis_xy, bottom_z: float, cap: float):
        """Goal on a funnel over `axis_xy` whose bottom is at `bottom_z`; and whether the tcp is
        below the funnel's wall (then it must rise before it moves sideways)."""
        distance = float(np.linalg.norm(self.pos[:2] - axis_xy))
        height = funnel_height(distance, self.funnel_slope, cap, self.funnel_flat)
        goal = np.array([axis_xy[0], axis_xy[1], bottom_z + height])
        return goal, self.pos[2] < bottom_z + height - 0.005

    def _cube_on_target(self) -> bool:
        flat = np.linalg.norm(self.cube[:2] - self.target[:2])
        return flat < 0.02 and self.cube[2] < CUBE_HALF + 0.005

    def _move(self, goal: np.ndarray, below_funnel: bool, dt: float) -> None:
        error = goal - self.pos
        distance = float(np.linalg.norm(error))
        wanted = np.zeros(3)
        if distance > 1e-6:
            wanted = error / distance * speed_towards(distance, self.max_speed, self.braking)
            if below_funnel:
                wanted[:2] *= 0.2       # rise first: the fingertips are beside the cube
        change = wanted - self.vel
        limit = self.max_accel * dt
        norm = float(np.linalg.norm(change))
        if norm > limit:
            change *= limit / norm
        self.vel = self.vel + change
        step = self.vel * dt
        if np.linalg.norm(step) > distance and distance > 0:    # do not overshoot a near goal
            step = error
            self.vel = error / max(dt, 1e-9)
        self.pos = self.pos + step

    def _turn(self, rot_goal: np.ndarray, dt: float) -> None:
        relative = self.rot.T @ rot_goal
        angle = float(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1.0, 1.0)))
        if angle < 1e-6:
            self.rot = rot_goal
            return
        self.rot = _slerp(self.rot, rot_goal, min(1.0, self.max_turn_rate * dt / angle))
