"""The sim's action interfaces, as ros2_control's controllers serve them (control_msgs):

* FollowJointTrajectory on `<controller_topic's namespace>/follow_joint_trajectory`: a goal passes
  the JTC's checks or is rejected, runs on the arm controller, succeeds when its last point is
  reached and is canceled when a newer goal replaces it;
* GripperCommand on `gripper_topic` (gripper_controller gripper_action): the fingers move to the
  goal position; it succeeds once they are there (reached_goal) or have stopped short of it,
  blocked by what they grasp (stalled), and is aborted when a newer goal replaces it.
"""
from __future__ import annotations

import dataclasses
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.task import Future

from diffusion_policy_ros.controllers.jtc_rules import rejection
from diffusion_policy_ros.controllers.split import follow_joint_trajectory_action
from diffusion_policy_ros.nodes._controller_output import control_msgs_action
from diffusion_policy_ros.nodes._ros_convert import jtc_message
from diffusion_policy_ros.sim.trajectory import TrajectoryRejected

REACHED_TOLERANCE_M = 0.002
STALL_WINDOW_S = 0.2       # no finger motion for this long with the command done: stalled
STALL_MOTION_M = 0.0005
CHECK_PERIOD_S = 0.02


@dataclasses.dataclass
class _Goal:
    done: Future
    target: float = 0.0
    last_position: float | None = None
    still_since: float = 0.0


class _Server:
    """One goal at a time: a new goal ends the previous one ('preempted')."""

    def __init__(self, node):
        self.node = node
        self.accepted = 0
        self._goal: _Goal | None = None
        node.create_timer(CHECK_PERIOD_S, self._poll)

    def _replace(self, goal: _Goal) -> _Goal:
        self.accepted += 1
        if self._goal is not None and not self._goal.done.done():
            self._goal.done.set_result("preempted")
        self._goal = goal
        return goal

    def _poll(self) -> None:
        goal = self._goal
        if goal is not None and not goal.done.done():
            outcome = self.outcome(goal)
            if outcome:
                goal.done.set_result(outcome)


class SimTrajectoryAction(_Server):
    def __init__(self, node, arm, controllers):
        super().__init__(node)
        self.arm, self.controllers = arm, controllers
        self.action = control_msgs_action("FollowJointTrajectory")
        ActionServer(node, self.action, follow_joint_trajectory_action(arm.controller_topic),
                     execute_callback=self._execute, goal_callback=self._accept,
                     cancel_callback=lambda request: CancelResponse.ACCEPT)

    def _accept(self, goal) -> GoalResponse:
        reason = rejection(self.controllers.jtc["arm"], jtc_message(goal.trajectory),
                           int(round(self.node.now() * 1e9)))
        if reason is not None:
            self.controllers.rejected += 1
            self.node.get_logger().error(f"{self.arm.name}: FollowJointTrajectory goal rejected: {reason}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    async def _execute(self, goal_handle):
        result = self.action.Result()
        with self.node._lock:
            try:
                self.controllers.trajectory("arm", self.node.now(), jtc_message(goal_handle.request.trajectory))
            except TrajectoryRejected as e:
                result.error_code, result.error_string = self.action.Result.INVALID_GOAL, str(e)
                goal_handle.abort()
                return result
        outcome = await self._replace(_Goal(Future())).done
        if outcome == "preempted":
            result.error_code = self.action.Result.INVALID_GOAL
            result.error_string = "Current goal cancelled due to new incoming action."
            goal_handle.canceled()
        else:
            result.error_code = self.action.Result.SUCCESSFUL
            goal_handle.succeed()
        return result

    def outcome(self, goal) -> str | None:
        return None if self.controllers.followers["arm"].active else "reached"


class SimGripperAction(_Server):
    def __init__(self, node, arm, controllers):
        super().__init__(node)
        self.arm, self.controllers = arm, controllers
        self.action = control_msgs_action("GripperCommand")
        self.index = node.config.joint_names.index(arm.gripper_joints[0])
        ActionServer(node, self.action, arm.gripper_topic, execute_callback=self._execute,
                     cancel_callback=lambda request: CancelResponse.ACCEPT)

    async def _execute(self, goal_handle):
        with self.node._lock:
            target = self.controllers.gripper_goal(self.node.now(), goal_handle.request.command.position)
        outcome = await self._replace(_Goal(Future(), target)).done
        result = self.action.Result(position=self._position(), effort=0.0, stalled=outcome == "stalled",
                                    reached_goal=outcome == "reached")
        if outcome == "preempted":
            goal_handle.abort()
        else:
            goal_handle.succeed()
        return result

    def _position(self) -> float:
        with self.node._lock:
            return float(self.node.env.joint_positions()[self.index])

    def outcome(self, goal) -> str | None:
        q, now = self._position(), time.monotonic()
        if abs(q - goal.target) <= REACHED_TOLERANCE_M:
            return "reached"
        if goal.last_position is None or abs(q - goal.last_position) > STALL_MOTION_M:
            goal.last_position, goal.still_since = q, now
        elif not self.controllers.followers["gripper"].active and now - goal.still_since >= STALL_WINDOW_S:
            return "stalled"
        return None
