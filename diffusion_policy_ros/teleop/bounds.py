"""What the safety filter accepts, as bounds a teleop source keeps its targets inside.

A teleop target the filter refuses does not move the robot, and a source that keeps integrating
its own target from there drifts further away with every tick until the filter rejects every
command (issue 19: a 3 s jog down the table left the arm frozen for good). So a teleop source
asks for no more than the filter grants: joint targets inside the joint limits minus the
filter's margin, each step within what the filter forwards in one control period, and the tool
inside the filter's workspace box. The numbers come from the filter's own parameters
(`SafetyParams`) and the same robot model, through the filter's `JointLimits`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from diffusion_policy_ros.safety.limits import JointLimits, SafetyParams
from diffusion_policy_ros.safety.rotations import rpy_to_matrix

# Kept inside the filter's own bounds, so a target at the edge is not clamped by rounding or by
# the filter's braking tail on every tick (each clamp is a SafetyEvent the operator sees).
JOINT_INSET_RAD = 0.02
WORKSPACE_INSET_M = 0.01


@dataclasses.dataclass(frozen=True)
class CommandBounds:
    """One arm's bounds, in the arm's configured joint order (grippers included)."""
    names: tuple[str, ...]
    lower: np.ndarray            # joint limits minus the filter's margin and JOINT_INSET_RAD
    upper: np.ndarray
    is_gripper: np.ndarray
    max_step: float              # rad per control period for arm joints (grippers: not limited)
    reject_step: float           # the filter rejects a first point this far from the robot
    workspace_min: np.ndarray    # the filter's box (tool site), in the box frame
    workspace_max: np.ndarray
    workspace_rotation: np.ndarray  # box frame -> model frame

    @classmethod
    def from_safety_params(cls, names: Sequence[str], gripper_joints: Sequence[str],
                           joint_ranges: Mapping[str, tuple[float, float]], params: SafetyParams,
                           period: float) -> "CommandBounds":
        limits = JointLimits.build(names, gripper_joints, joint_ranges, params)
        inset = np.where(limits.is_gripper, 0.0, JOINT_INSET_RAD)
        arm_velocity = limits.max_velocity[~limits.is_gripper]
        max_step = min(params.max_step_rad, float(arm_velocity.min()) * period) if arm_velocity.size \
            else params.max_step_rad
        return cls(tuple(names), limits.safe_lower + inset, limits.safe_upper - inset, limits.is_gripper,
                   max_step, params.reject_step_rad, np.asarray(params.workspace_min, float),
                   np.asarray(params.workspace_max, float), rpy_to_matrix(*params.workspace_rpy))

    def reorder(self, names: Sequence[str]) -> "CommandBounds":
        """The same bounds for these joints in this order."""
        index = [self.names.index(n) for n in names]
        return dataclasses.replace(self, names=tuple(names), lower=self.lower[index], upper=self.upper[index],
                                   is_gripper=self.is_gripper[index])

    # ---- joints ------------------------------------------------------------------------------
    def clamp_joints(self, q) -> np.ndarray:
        return np.clip(np.asarray(q, float), self.lower, self.upper)

    def limit_step(self, start, target) -> np.ndarray:
        """`target` moved back along the straight line from `start` until no arm joint steps more
        than max_step (one factor for all joints: the direction, and so the tool path, is kept)."""
        start, target = np.asarray(start, float), np.asarray(target, float)
        step = np.abs(target - start)[~self.is_gripper]
        largest = float(step.max()) if step.size else 0.0
        if largest <= self.max_step:
            return target.copy()
        out = start + (target - start) * (self.max_step / largest)
        out[self.is_gripper] = target[self.is_gripper]
        return out

    # ---- workspace ---------------------------------------------------------------------------
    def outside_distance(self, point, inset: float = 0.0) -> float:
        """How far (m, largest axis) the point is outside the box shrunk by `inset`; 0 inside."""
        local = self.workspace_rotation.T @ np.asarray(point, float)
        below = (self.workspace_min + inset) - local
        above = local - (self.workspace_max - inset)
        return float(max(0.0, below.max(), above.max()))

    def clamp_to_workspace(self, point, inset: float = WORKSPACE_INSET_M) -> np.ndarray:
        local = self.workspace_rotation.T @ np.asarray(point, float)
        lo, hi = self.workspace_min + inset, self.workspace_max - inset
        local = np.clip(local, np.minimum(lo, hi), np.maximum(lo, hi))
        return self.workspace_rotation @ local

    # ---- all together ------------------------------------------------------------------------
    def limit(self, start, target, tool_position: Callable[[np.ndarray], np.ndarray] | None = None
              ) -> np.ndarray:
        """The part of the move start -> target the filter accepts: joints clamped inside the
        limits, the step capped, and the tool kept inside the workspace box (the move is
        shortened until it is; from a start outside the box, only moves that get closer count).
        `tool_position(q)` gives the tool site's position for joint targets q (None: no box)."""
        start = np.asarray(start, float)
        q = self.limit_step(start, self.clamp_joints(target))
        if tool_position is None:
            return q
        start_outside = self.outside_distance(tool_position(start))
        for fraction in (1.0, 0.5, 0.25, 0.1):
            candidate = start + fraction * (q - start)
            candidate[self.is_gripper] = q[self.is_gripper]
            outside = self.outside_distance(tool_position(candidate))
            if outside == 0.0 or outside < start_outside:
                return candidate
        held = start.copy()
        held[self.is_gripper] = q[self.is_gripper]
        return held
