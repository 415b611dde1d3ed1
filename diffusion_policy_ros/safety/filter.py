"""The three-band safety filter: pass, clamp, or reject-and-hold every joint command.

Every trajectory it forwards ends in a braking tail (each joint decelerating at its
acceleration limit), and a point is accepted only if the robot could still stop safely from
it: the tail stays inside the joint limits (with margin), the Cartesian workspace box and the
inter-arm clearance. Velocity, acceleration and per-point step are enforced by construction
(velocities are clipped to the window the previous segment allows). So whatever arrives, the
path the controller executes never leaves the limits, and when commands stop the robot has
already been told how to stop. All times are absolute seconds; the ROS node supplies `now`.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence

import numpy as np

from diffusion_policy_ros.safety.limits import JointLimits, SafetyParams
from diffusion_policy_ros.safety.messages import (InputRejected, joint_positions, names_problem, read_joint_state,
                                                  read_targets, read_trajectory)
from diffusion_policy_ros.safety.rotations import rpy_to_matrix
from diffusion_policy_ros.safety.smoothing import jerk_limited_stop
from diffusion_policy_ros.safety.trajectory import Trajectory

ACTION_CLAMP, ACTION_REJECT, ACTION_HOLD = 1, 2, 3  # SafetyEvent.msg constants
_EPS = 1e-9
_MIN_FUTURE_S = 1e-3  # a point closer than this to `now` counts as already passed


class Band(enum.IntEnum):
    PASS = 0
    CLAMP = 1
    REJECT = 2


@dataclasses.dataclass(frozen=True)
class SafetyEvent:
    action: int
    reason: str
    arm: str
    joint_names: tuple[str, ...]
    requested: tuple[float, ...]
    applied: tuple[float, ...]
    message: str
    stamp: float


@dataclasses.dataclass
class FilterResult:
    arm: str
    band: Band
    trajectory: Trajectory | None   # what to send to the controller (None: nothing new)
    events: list[SafetyEvent]


class SafetyFilter:
    """Filter state for all arms of one robot (one instance, so arms can be kept apart)."""

    def __init__(self, limits: Mapping[str, JointLimits], params: SafetyParams, period: float,
                 kinematics=None, max_horizon_s: float = 0.5):
        self.limits = dict(limits)
        self.params = params
        self.period = float(period)
        self.kinematics = kinematics
        self.max_horizon_s = max(float(max_horizon_s), self.period)
        self._workspace_rotation = rpy_to_matrix(*params.workspace_rpy)
        self._plans: dict[str, Trajectory] = {}
        self._previous: dict[str, Trajectory] = {}  # the plan each arm's current one replaced
        self._command_end: dict[str, float] = {arm: -math.inf for arm in self.limits}
        self._holding: dict[str, bool] = {arm: True for arm in self.limits}
        self._measured: dict[str, np.ndarray] = {}
        self._measured_at: dict[str, float] = {}
        self._joint_state_problem: dict[str, str | None] = {arm: None for arm in self.limits}
        self._other_poses: dict[str, list] = {}
        self._other_centres: dict[str, np.ndarray] = {}   # the same poses' link positions, stacked
        self.estop_engaged = False
        self.estop_reason = ""
        self.counts = {band: 0 for band in Band}

    # ---- state -------------------------------------------------------------------------------
    def ready(self, arm: str) -> bool:
        return arm in self._plans

    def plan(self, arm: str) -> Trajectory | None:
        return self._plans.get(arm)

    def holding(self, arm: str) -> bool:
        return self._holding[arm]

    def update_joint_state(self, arm: str, names: Sequence[str], positions: Sequence[float],
                           now: float, stamp: float = 0.0) -> FilterResult | None:
        """Measured positions (names may include other joints); see `joint_state`."""
        return self._use_joint_state(arm, now, now, joint_positions, names, positions, stamp, now, self.params,
                                     self.limits[arm].names)

    def joint_state(self, arm: str, msg, now: float, received: float | None = None) -> FilterResult | None:
        """A sensor_msgs/JointState (or anything shaped like one) for one arm, received at
        `received` (default: now).

        Records the measured positions (the first one anchors the plan), and holds where the arm
        is when it is far from the plan (moved by hand, a sim reset, a collision): planning on from
        where it is not would yank it back (a hold is returned). Closer than that, the plan stays
        anchored where the controller was told to be, also at rest: a controller that starts a new
        trajectory from its last command (the sim's, an open-loop JTC) would otherwise jump by the
        tracking error at the next command's first point, a velocity change the plan never
        checked (re-anchoring at rest silently did that: soak, issue 11). A
        malformed or stale message is not used; the first of a run of them returns an event. The
        measurement counts as taken at its stamp (unstamped: when it arrived)."""
        return self._use_joint_state(arm, now, now if received is None else received, read_joint_state, msg, now,
                                     self.params, self.limits[arm].names)

    def joint_state_rejected(self, arm: str, problem: InputRejected, now: float) -> FilterResult | None:
        """A joint state that is not used: an event for the first of a run with the same reason
        (they come at the driver's rate); the arm holds once they have been missing for
        joint_state_timeout_s (`tick`)."""
        if self._joint_state_problem[arm] == problem.reason:
            return None
        self._joint_state_problem[arm] = problem.reason
        return FilterResult(arm, Band.REJECT, None, [SafetyEvent(
            ACTION_REJECT, problem.reason, arm, (), (), (), f"joint state not used: {problem}", now)])

    def _use_joint_state(self, arm, now, received, read, *args) -> FilterResult | None:
        lim = self.limits[arm]
        try:
            q, stamp = read(*args)
        except InputRejected as e:
            return self.joint_state_rejected(arm, e, now)
        measured_at = min(stamp or received, now)
        self._joint_state_problem[arm] = None
        self._measured[arm] = q
        self._measured_at[arm] = measured_at
        if arm not in self._plans:
            self._set_plan(arm, Trajectory.hold(now, q))
            return None
        error = self._tracking_error(arm, measured_at, q)
        if error.max() <= self.params.max_tracking_error_rad:
            return None
        self._set_plan(arm, Trajectory(now, q, np.zeros_like(q), np.array([now + self.period]), q[None, :]))
        self._holding[arm] = True
        self._command_end[arm] = -math.inf
        joint = lim.names[int(np.argmax(error))]
        return FilterResult(arm, Band.REJECT, self._plans[arm], [SafetyEvent(
            ACTION_HOLD, "tracking_error", arm, lim.names, tuple(q), tuple(q),
            f"{joint} is {error.max():.3f} rad from the commanded path (> max_tracking_error_rad "
            f"{self.params.max_tracking_error_rad}); holding where the arm is", now)])

    def _tracking_error(self, arm: str, measured_at: float, q: np.ndarray) -> np.ndarray:
        """Per joint, how far q is from where the arm was told to be when q was measured. A
        measurement taken soon after a new plan started may come from a robot that had not
        received that plan yet (it is on its way): it is on track if it matches the plan before."""
        plans = [self._plans[arm]]
        if arm in self._previous and measured_at < plans[0].start + self.params.joint_state_timeout_s:
            plans.append(self._previous[arm])
        error = min((np.abs(p.state_at(measured_at)[0] - q) for p in plans), key=np.max)
        error[self.limits[arm].is_gripper] = 0.0  # a gripper closed on an object is blocked short of its target
        return error

    def _set_plan(self, arm: str, plan: Trajectory) -> None:
        if arm in self._plans:
            self._previous[arm] = self._plans[arm]
        self._plans[arm] = plan

    def joint_state_stale(self, arm: str, now: float) -> bool:
        return now >= self._measured_at.get(arm, -math.inf) + self.params.joint_state_timeout_s

    # ---- commands ----------------------------------------------------------------------------
    def filter_trajectory(self, arm: str, msg, now: float, interrupt=None) -> FilterResult:
        """A trajectory_msgs/JointTrajectory (or anything shaped like one) for one arm. Over-cap,
        malformed and out-of-range messages are rejected before any per-point work
        (`messages.read_trajectory`); the rest go to `filter_command`."""
        try:
            names, times, positions = read_trajectory(msg, now, self.params, self.limits[arm].names,
                                                      self.max_horizon_s)
        except InputRejected as e:
            return self.reject(arm, now, e.reason, str(e))
        return self.filter_command(arm, names, times, positions, now, interrupt)

    def filter_targets(self, arm: str, values: Sequence[float], now: float, interrupt=None) -> FilterResult:
        """A Float64MultiArray of targets in the arm's joint order: reached one period from now."""
        try:
            target = read_targets(values, self.limits[arm].names)
        except InputRejected as e:
            return self.reject(arm, now, e.reason, str(e))
        return self.filter_command(arm, self.limits[arm].names, [now + self.period], [target], now, interrupt)

    def filter_command(self, arm: str, names: Sequence[str], times: Sequence[float],
                       positions, now: float, interrupt=None) -> FilterResult:
        """Filter one trajectory command (absolute point times) for one arm.

        `interrupt`, if given, is called between points; when it returns a reason (str) the work
        is abandoned with `Interrupted(reason)` and the filter's state is left as it was."""
        lim = self.limits[arm]
        if self.estop_engaged:
            return self.reject(arm, now, "estop", f"e-stop engaged ({self.estop_reason})")
        if arm not in self._plans:
            return self.reject(arm, now, "no_joint_state", "no joint state received for this arm yet")
        if self.joint_state_stale(arm, now):
            return self.reject(arm, now, "stale_joint_state", self._stale_joint_state_message(arm, now))
        if len(times) > self.params.max_points:
            return self.reject(arm, now, "too_many_points", f"{len(times)} points; at most max_points "
                                                            f"{self.params.max_points} are accepted")
        names = list(names)
        problem = names_problem(names, lim.names)
        if problem:
            return self.reject(arm, now, "unknown_joint", problem)
        requested = np.asarray(positions, dtype=float)
        times = np.asarray(times, dtype=float)
        if requested.ndim != 2 or requested.shape != (len(times), len(names)) or len(times) == 0:
            return self.reject(arm, now, "invalid_trajectory",
                                f"need N points of {len(names)} positions, got shape {requested.shape}")
        requested = requested[:, [names.index(n) for n in lim.names]]
        if not (np.all(np.isfinite(requested)) and np.all(np.isfinite(times))):
            bad = [lim.names[j] for j in np.flatnonzero(~np.all(np.isfinite(requested), axis=0))]
            return self.reject(arm, now, "non_finite", f"NaN or Inf in the command (joints {bad})",
                                requested=requested[0])
        if np.any(np.diff(times) <= 0):
            return self.reject(arm, now, "non_increasing_times", "point times must strictly increase")
        future = times > now + _MIN_FUTURE_S
        if not future.any():
            return self.reject(arm, now, "past_trajectory",
                               f"all {len(times)} points are in the past (last {now - times[-1]:.3f} s ago)")
        times, requested = times[future], requested[future]
        if times[0] > now + self.max_horizon_s:
            return self.reject(arm, now, "beyond_horizon", f"the first point is {times[0] - now:.3f} s ahead; "
                                                           f"commands start within max_horizon_s {self.max_horizon_s}")
        # Commands stay short so that a silent source is noticed quickly: later points are dropped.
        within = times <= now + self.max_horizon_s
        times, requested = times[within], requested[within]

        beyond = np.maximum(lim.lower - requested, requested - lim.upper).max(axis=0)
        beyond[lim.is_gripper] = 0.0  # gripper targets out of range are clamped (open/close fully)
        if np.any(beyond > self.params.reject_beyond_limit_rad):
            bad = [lim.names[j] for j in np.flatnonzero(beyond > self.params.reject_beyond_limit_rad)]
            return self.reject(arm, now, "position_limit",
                                f"targets far outside the joint limits (joints {bad})", requested=requested[0])
        ref_q, ref_v = self._plans[arm].state_at(now)
        jump = np.abs(requested[0] - ref_q)
        jump[lim.is_gripper] = 0.0
        if jump.max() > self.params.reject_step_rad:
            return self.reject(arm, now, "max_step",
                                f"first point {jump.max():.3f} rad from the robot "
                                f"(> reject_step_rad {self.params.reject_step_rad})", requested=requested[0])

        reasons: dict[str, str] = {}
        targets = np.clip(requested, lim.safe_lower, lim.safe_upper)
        clipped = np.any(np.abs(targets - requested) > _EPS, axis=0)
        if np.any(clipped & ~lim.is_gripper):
            reasons["position_limit"] = "targets clamped inside the joint limits minus margin"
        if np.any(clipped & lim.is_gripper):
            reasons["gripper_limit"] = "gripper targets clamped to the gripper range"

        self._other_poses = self._poses_of_other_arms(arm, now)
        self._other_centres = {other: np.stack([pose[0] for pose in poses])
                               for other, poses in self._other_poses.items()}
        out_t, out_q, tail_t, tail_q, stopped = self._follow(arm, now, ref_q, ref_v, times, targets, reasons,
                                                             interrupt or _never)
        _check(interrupt)  # the last chance to drop the work before the state changes
        if not out_t:
            return self._keep_plan(arm, now, stopped or "workspace", requested[0])
        plan = Trajectory(now, ref_q, ref_v, np.array(out_t + tail_t), np.array(out_q + tail_q))
        self._set_plan(arm, plan)
        self._command_end[arm] = out_t[-1]
        self._holding[arm] = False
        events = self._clamp_events(arm, now, plan, times, requested, reasons)
        band = Band.CLAMP if events else Band.PASS
        self.counts[band] += 1
        return FilterResult(arm, band, plan, events)

    def _follow(self, arm, now, q_prev, v_prev, times, targets, reasons, interrupt):
        """Walk the command point by point, keeping each step stoppable; returns accepted points
        and the stop after the last one."""
        lim = self.limits[arm]
        step_cap = np.where(lim.is_gripper, np.inf, self.params.max_step_rad / self.period)
        vcap = np.minimum(lim.max_velocity, step_cap)
        plan = self._plans[arm]
        a_prev = plan.acceleration_at(now)
        # the path the arm is on: the current plan (the last command and its stop) until a step is
        # accepted, then that step's stop; its way on when no step toward the command is stoppable
        ahead = plan.times > now
        tail_t, tail_q = list(plan.times[ahead]), list(plan.positions[ahead])
        out_t, out_q = [], []
        t_prev = now
        for t_goal, q_goal in _subdivide(now, q_prev, times, targets, self.period):
            if t_goal <= t_prev + _EPS:
                continue   # the path under way was followed past this point
            dt = t_goal - t_prev
            v_want = (q_goal - q_prev) / dt
            lo = np.maximum(-vcap, v_prev - lim.max_acceleration * dt)
            hi = np.minimum(vcap, v_prev + lim.max_acceleration * dt)
            hi = np.maximum(lo, hi)
            v_new = np.clip(v_want, lo, hi)
            clamped = np.abs(v_new - v_want) > _EPS
            if np.any(clamped):
                accel_bound = (v_want > hi + _EPS) & (hi < vcap) | (v_want < lo - _EPS) & (lo > -vcap)
                speed_bound = clamped & ~accel_bound   # only the joints clamped, by their speed cap
                if np.any(accel_bound):
                    reasons.setdefault("acceleration_limit", "velocity change limited by max acceleration")
                if np.any(speed_bound & (lim.max_velocity <= step_cap)):
                    reasons.setdefault("velocity_limit", "joint velocity clamped")
                if np.any(speed_bound & (lim.max_velocity > step_cap)):
                    reasons.setdefault("max_step", f"step per point clamped to {self.params.max_step_rad} rad")
            v_slow = np.sign(v_prev) * np.maximum(np.abs(v_prev) - lim.max_acceleration * dt, 0.0)
            v_slow = np.clip(v_slow, lo, hi)
            candidates = [v_slow + alpha * (v_new - v_slow) for alpha in (1.0, 0.5, 0.25, 0.0)]
            if lim.max_jerk is not None:
                candidates.append(self._jerk_limited_slowdown(v_prev, a_prev, lim, dt))
            accepted = None
            violation = None
            for alpha, v in zip((1.0, 0.5, 0.25, 0.0, 0.0), candidates):
                _check(interrupt)
                q = q_prev + v * dt
                cand_t, cand_q = self._brake(t_goal, q, v, lim, (v - v_prev) / dt)
                found = self._violation(arm, [q] + cand_q)
                if found is None:
                    accepted = (v, q, cand_t, cand_q, alpha)
                    break
                violation = violation or found
            if accepted is None:
                along = self._along_path(arm, t_goal, tail_t, tail_q)
                if along is None:
                    reasons.setdefault(violation, f"stopped before the {violation.replace('_', ' ')} bound")
                    return out_t, out_q, tail_t, tail_q, violation
                knots_t, knots_q, tail_t, tail_q = along
                reasons.setdefault(violation, "no step toward the command stays stoppable: the arm goes on "
                                              "along the path under way")
                seg_t, seg_q = ([t_prev] + knots_t)[-3:], ([q_prev] + knots_q)[-3:]   # the last two segments
                v_end = (seg_q[-1] - seg_q[-2]) / (seg_t[-1] - seg_t[-2])
                v_before = v_prev if len(knots_t) == 1 else (seg_q[-2] - seg_q[-3]) / (seg_t[-2] - seg_t[-3])
                a_prev = (v_end - v_before) / (seg_t[-1] - seg_t[-2])
                v_prev, q_prev, t_prev = v_end, knots_q[-1], knots_t[-1]
                out_t += knots_t
                out_q += knots_q
                continue
            a_prev = (accepted[0] - v_prev) / dt
            v_prev, q_prev, tail_t, tail_q, alpha = accepted
            if alpha < 1.0:
                reasons.setdefault(violation or "workspace", "step shortened to stay stoppable inside the limits")
            t_prev = t_goal
            out_t.append(t_goal)
            out_q.append(q_prev)
        return out_t, out_q, tail_t, tail_q, None

    def _along_path(self, arm, t_goal, path_t, path_q):
        """The last resort of a step: on along the path the arm is already on (the current plan:
        the last command and its stop, or the stop of the last accepted step), to its first knot at
        or after `t_goal` -> (knot times, knots, the rest of the path), or None when the path is
        over. Those knots were checked stoppable when they were planned, and the executed path
        is exactly theirs: near a bound the planned stop eases its braking off where each candidate
        step brakes for a whole step and overshoots. So one step of the path under way replaces
        the step that was not stoppable, and the rest of the command is tried from there instead
        of being dropped."""
        if not path_t:
            return None
        upto = max(int(np.searchsorted(np.asarray(path_t), t_goal - _EPS, side="left")) + 1, 1)
        knots_t, knots_q = list(path_t[:upto]), list(path_q[:upto])
        rest_t, rest_q = list(path_t[upto:]), list(path_q[upto:])
        if self._violation(arm, knots_q + rest_q) is not None:   # checked when planned; kept honest
            return None
        return knots_t, knots_q, rest_t, rest_q

    @staticmethod
    def _jerk_limited_slowdown(v_prev, a_prev, lim: JointLimits, dt: float) -> np.ndarray:
        """The velocity after one step of slowing down whose acceleration stays within a jerk
        step of the current one. The plain slowdown (v_slow) can flip the acceleration at once:
        the jerk-limited stop from there must first unwind that acceleration and overshoots by
        millimetres, which at a gripper closed on its limit left no stoppable step at all."""
        a_brake = -np.sign(v_prev) * lim.max_acceleration
        a = np.clip(a_brake, a_prev - lim.max_jerk * dt, a_prev + lim.max_jerk * dt)
        a = np.clip(a, -lim.max_acceleration, lim.max_acceleration)
        return np.clip(v_prev + a * dt, -lim.max_velocity, lim.max_velocity)

    def _brake(self, t0: float, q: np.ndarray, v: np.ndarray, lim: JointLimits, a=None):
        """Points of a stop from (q, v, a): jerk-limited (ruckig) when the limits have a jerk bound,
        sampled every `brake_sample_s`; otherwise every joint decelerates at its limit, one period
        apart."""
        dt = self._brake_sample_s(lim)
        if lim.max_jerk is not None:
            offsets, points = jerk_limited_stop(q, v, np.zeros_like(q) if a is None else a, lim.max_velocity,
                                                lim.max_acceleration, lim.max_jerk, dt)
            return [t0 + dt_k for dt_k in offsets], points
        times, points = [], []
        dv = lim.max_acceleration * dt
        while True:
            v = np.sign(v) * np.maximum(np.abs(v) - dv, 0.0)
            if not np.any(v):
                return times, points
            q = q + v * dt
            t0 += dt
            times.append(t0)
            points.append(q)

    def _brake_sample_s(self, lim: JointLimits) -> float:
        if lim.max_jerk is None:
            return self.period
        return min(self.params.brake_sample_s or self.period, self.period)

    @staticmethod
    def _resample(plan: Trajectory, now: float, dt: float) -> tuple[list[float], list[np.ndarray]]:
        """The rest of `plan` sampled every dt from now. Each sample lies between two knots of a
        stop sampled every dt, so its differences are convex combinations of the stop's own and
        keep within the same velocity, acceleration and jerk bounds."""
        times = now + dt * np.arange(1, math.ceil((plan.end_time - now) / dt - 1e-9) + 1)
        return list(times), [plan.state_at(t)[0] for t in times]

    def _poses_of_other_arms(self, arm: str, now: float) -> dict[str, list]:
        """Link poses of every other arm at each position its plan still passes through.

        A new point must clear all of them, not just the pose at the same instant: then, whichever
        arm planned last checked every pairing still ahead, so re-planning one arm cannot create
        a collision with the other arm's older plan."""
        if self.kinematics is None:
            return {}
        poses = {}
        for other, plan in self._plans.items():
            if other == arm:
                continue
            positions = [plan.state_at(now)[0]] + [q for t, q in zip(plan.times, plan.positions) if t > now]
            poses[other] = []
            for q in positions:
                self.kinematics.update({other: q})
                poses[other].append(self.kinematics.arm_pose(other))
        return poses

    def _violation(self, arm: str, points: Sequence[np.ndarray]) -> str | None:
        """The first bound that a stop through `points` would break, in the order of the points
        (at one point: joint limits, then workspace, then clearance), or None."""
        lim = self.limits[arm]
        q = np.asarray(points)
        outside = (q < lim.safe_lower - _EPS) | (q > lim.safe_upper + _EPS)
        beyond_limits = np.flatnonzero(outside.any(axis=1))
        stop, reason = len(q), None
        if len(beyond_limits):
            stop = beyond_limits[0]
            reason = "gripper_limit" if np.all(lim.is_gripper[outside[stop]]) else "position_limit"
        if self.kinematics is None:
            return reason
        poses, tips = [], []
        for q_s in q[:stop]:
            self.kinematics.update({arm: q_s})
            tips.append(self.kinematics.end_effector(arm))
            poses.append(self.kinematics.arm_pose(arm))
        if poses:
            leaving = np.flatnonzero(~self.inside_workspace(np.array(tips)))
            if len(leaving):
                stop, reason = leaving[0], "workspace"
        return self._clearance_violation(arm, poses[:stop]) or reason

    def _clearance_violation(self, arm: str, poses: list) -> str | None:
        """"arm_clearance" if one of the arm's link `poses` comes closer than min_arm_distance_m to
        a pose another arm's plan still passes through. Bounding spheres of all pairings at once
        pick the few geom pairs that need the exact distance."""
        if not poses:
            return None
        clearance = self.params.min_arm_distance_m
        fingers = not self.params.fingers_may_meet
        centres = np.stack([pose[0] for pose in poses])
        for other, other_poses in self._other_poses.items():
            pairs = self.kinematics.sphere_close_pairs(arm, other, centres, self._other_centres[other], clearance,
                                                       fingers=fingers)
            for s, p in zip(*np.nonzero(pairs.any(axis=(1, 3)))):
                if self.kinematics.closer_than(arm, poses[s], other, other_poses[p], pairs[s, :, p], clearance,
                                               fingers=fingers):
                    return "arm_clearance"
        return None

    def inside_workspace(self, points: np.ndarray) -> np.ndarray:
        """Whether each point (..., 3) lies in the workspace box."""
        local = np.asarray(points, dtype=float) @ self._workspace_rotation
        return (np.all(local >= np.asarray(self.params.workspace_min) - _EPS, axis=-1)
                & np.all(local <= np.asarray(self.params.workspace_max) + _EPS, axis=-1))

    def _clamp_events(self, arm, now, plan, times, requested, reasons) -> list[SafetyEvent]:
        if not reasons:
            # Also catch changes no single check named (e.g. a stop part-way through).
            applied = np.array([plan.state_at(t)[0] for t in times])
            if np.all(np.abs(applied - requested) <= 1e-7):
                return []
            reasons = {"max_step": "command modified"}
        lim = self.limits[arm]
        applied = np.array([plan.state_at(t)[0] for t in times])
        deviation = np.abs(applied - requested)
        row = int(np.argmax(deviation.max(axis=1)))
        joints = np.flatnonzero(deviation[row] > 1e-7)
        if len(joints) == 0:
            joints = np.arange(len(lim.names))
        return [SafetyEvent(ACTION_CLAMP, reason, arm, tuple(lim.names[j] for j in joints),
                            tuple(float(requested[row, j]) for j in joints),
                            tuple(float(applied[row, j]) for j in joints), message, now)
                for reason, message in reasons.items()]

    def _keep_plan(self, arm: str, now: float, reason: str, requested: np.ndarray) -> FilterResult:
        """No first step toward the command can still stop inside the limits, although the plan's
        own stop can: e.g. a gripper opening while braking hard toward its closed limit, where the
        stop eases the braking off at once but every candidate step keeps it for a whole step
        (docs/safety.md). The current plan was checked point by point when it was made and ends in
        a stop, so it goes on and the command is dropped, as if it never came (the watchdog holds
        when no later command is followable), instead of a hold that stops the whole arm."""
        lim = self.limits[arm]
        self.counts[Band.CLAMP] += 1
        applied = self._plans[arm].state_at(now)[0]
        event = SafetyEvent(ACTION_CLAMP, reason, arm, lim.names, tuple(float(x) for x in requested),
                            tuple(float(x) for x in applied),
                            "no stoppable step toward the command from the current state; the current plan "
                            "goes on", now)
        return FilterResult(arm, Band.CLAMP, None, [event])

    # ---- holds -------------------------------------------------------------------------------
    def _hold_plan(self, arm: str, now: float) -> Trajectory:
        """Stop from where the current plan is now, as fast as the limits allow. A stop already
        under way (the braking tail after the last command point, or a hold) is kept: braking anew
        from a point of its sampled profile would start from a finite-difference acceleration that
        lags the real one, and could overshoot the limit that stop was planned to stop short of."""
        lim = self.limits[arm]
        current = self._plans[arm]
        q, v = current.state_at(now)
        if self._holding[arm] or now >= self._command_end[arm]:
            times, points = self._resample(current, now, self._brake_sample_s(lim))
        else:
            times, points = self._brake(now, q, v, lim, current.acceleration_at(now))
        if not points:
            times, points = [now + self.period], [q]
        if np.all(q >= lim.safe_lower - _EPS) and np.all(q <= lim.safe_upper + _EPS):
            points = [np.clip(p, lim.safe_lower, lim.safe_upper) for p in points]
        plan = Trajectory(now, q, v, np.array(times), np.array(points))
        self._set_plan(arm, plan)
        self._holding[arm] = True
        return plan

    def reject(self, arm, now, reason, message, requested=None) -> FilterResult:
        """Drop a command: an event, and a hold from where the plan is now."""
        lim = self.limits[arm]
        self.counts[Band.REJECT] += 1
        plan = self._hold_plan(arm, now) if arm in self._plans else None
        req = tuple(float(x) for x in requested) if requested is not None else ()
        event = SafetyEvent(ACTION_REJECT, reason, arm, lim.names if req else (), req,
                            tuple(math.nan for _ in req), message, now)
        return FilterResult(arm, Band.REJECT, plan, [event])

    def tick(self, now: float) -> list[FilterResult]:
        """Watchdog: hold every arm whose last valid command ran out more than the timeout ago,
        or whose joint states stopped coming."""
        results = []
        for arm in self.limits:
            if arm not in self._plans or self._holding[arm]:
                continue
            if self.joint_state_stale(arm, now):
                reason, message = "stale_joint_state", self._stale_joint_state_message(arm, now)
            elif now >= self._command_end[arm] + self.params.watchdog_timeout_s:
                reason = "stale_command"
                message = f"no new command {now - self._command_end[arm]:.3f} s after the last one ran out"
            else:
                continue
            plan = self._hold_plan(arm, now)
            q = tuple(plan.final_position)
            results.append(FilterResult(arm, Band.REJECT, plan, [SafetyEvent(
                ACTION_HOLD, reason, arm, self.limits[arm].names, q, q, message + "; holding", now)]))
        return results

    def next_deadline(self) -> float | None:
        """When `tick` will next hold an arm if nothing arrives before (None: every arm holds)."""
        deadlines = [min(self._command_end[arm] + self.params.watchdog_timeout_s,
                         self._measured_at.get(arm, -math.inf) + self.params.joint_state_timeout_s)
                     for arm in self.limits if arm in self._plans and not self._holding[arm]]
        return min(deadlines, default=None)

    def _stale_joint_state_message(self, arm: str, now: float) -> str:
        return (f"no valid joint state for {now - self._measured_at.get(arm, -math.inf):.3f} s "
                f"(joint_state_timeout_s {self.params.joint_state_timeout_s})")

    def engage_estop(self, now: float, reason: str = "") -> list[FilterResult]:
        """Latch the e-stop: every arm stops now; commands are rejected until `release_estop`."""
        self.estop_engaged = True
        self.estop_reason = reason or "e-stop"
        results = []
        for arm in self.limits:
            if arm in self._plans:
                plan = self._hold_plan(arm, now)
                q = tuple(plan.final_position)
                results.append(FilterResult(arm, Band.REJECT, plan, [SafetyEvent(
                    ACTION_HOLD, "estop", arm, self.limits[arm].names, q, q,
                    f"e-stop engaged: {self.estop_reason}", now)]))
        return results

    def release_estop(self) -> None:
        self.estop_engaged = False
        self.estop_reason = ""


class Interrupted(Exception):
    """Filtering a command was abandoned (the reason: what the interrupt callback returned)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _never() -> None:
    return None


def _check(interrupt) -> None:
    reason = interrupt() if interrupt is not None else None
    if reason:
        raise Interrupted(reason)


def _subdivide(now, q0, times, targets, period):
    """Yield (time, target) with consecutive times at most one period apart (linear in between)."""
    t_prev, q_prev = now, q0
    for t, q in zip(times, targets):
        pieces = max(1, math.ceil((t - t_prev) / period - 1e-6))  # stamps carry ns rounding
        for k in range(1, pieces + 1):
            frac = k / pieces
            yield t_prev + frac * (t - t_prev), q_prev + frac * (q - q_prev)
        t_prev, q_prev = t, q
