"""What a teleop node needs from the safety filter: its limits, and word when it refused.

`FilterFeedback` asks the running safety filter node for its parameters (so `--set safety_...`
overrides count too) and turns them into `CommandBounds` per arm; until the filter answers, a
teleop node has no bounds and does not command. It also listens to the filter's `safety/events`
and the sim's `/sim/task_status`, and keeps a `Reanchor` per arm that tells the node when to start
again from the measured joints. With `safety_filter_node: ""` the bounds come from the node's own
parameters (the same names as the filter's), for a graph without a filter.
"""
from __future__ import annotations

import dataclasses

from rclpy.parameter import parameter_value_to_python
from rclpy.qos import QoSProfile

from diffusion_policy_ros.msg import SafetyEvent, TaskStatus
from diffusion_policy_ros.safety.limits import SafetyParams
from diffusion_policy_ros.teleop.bounds import CommandBounds
from diffusion_policy_ros.teleop.recovery import Reanchor

SAFETY_PARAMETERS = tuple(f.name for f in dataclasses.fields(SafetyParams))


class OnceLog:
    """Logs each thing a node waits for once, and when it arrives (the first time, and after
    each wait)."""

    def __init__(self, logger):
        self.logger = logger
        self._waiting: set[str] = set()
        self._arrived: set[str] = set()

    def waiting(self, key: str, message: str) -> None:
        if key not in self._waiting:
            self._waiting.add(key)
            self._arrived.discard(key)
            self.logger.info(f"waiting for {message}")

    def arrived(self, key: str, message: str) -> None:
        if key not in self._arrived:
            self._arrived.add(key)
            self._waiting.discard(key)
            self.logger.info(message)


class FilterFeedback:
    def __init__(self, node, robot_config, wait_log: OnceLog):
        self.node = node
        self.config = robot_config
        self.log = wait_log
        self.bounds: dict[str, CommandBounds] | None = None
        self.reanchor: dict[str, Reanchor] = {}
        reliable = QoSProfile(depth=50)
        node.create_subscription(SafetyEvent, "safety/events", self._on_event, reliable)
        node.create_subscription(TaskStatus, "/sim/task_status", self._on_task_status, 10)
        self.filter_node = str(node.get_parameter("safety_filter_node").value)
        self._client = self._request = None
        if self.filter_node:
            from rclpy.parameter_client import AsyncParameterClient
            self._client = AsyncParameterClient(node, self.filter_node)
            self._timer = node.create_timer(0.5, self._ask_filter)
        else:
            own = {name: node.get_parameter(name).value for name in SAFETY_PARAMETERS}
            self._set_bounds(own, "this node's parameters")

    def ready(self) -> bool:
        if self.bounds is None:
            self.log.waiting("filter", f"the safety filter's limits (parameters of {self.filter_node}); "
                                       "not commanding until it answers")
        return self.bounds is not None

    def _ask_filter(self) -> None:
        if self.bounds is not None or self._request is not None:
            return
        if not self._client.services_are_ready():
            self.ready()  # logs what it waits for
            return
        self._request = self._client.get_parameters(list(SAFETY_PARAMETERS))
        self._request.add_done_callback(self._on_parameters)

    def _on_parameters(self, future) -> None:
        self._request = None
        try:
            values = future.result().values
        except Exception as e:  # noqa: BLE001 - the filter went away mid-call: ask again
            self.node.get_logger().warn(f"reading {self.filter_node}'s parameters failed ({e}); retrying")
            return
        found = {name: parameter_value_to_python(v) for name, v in zip(SAFETY_PARAMETERS, values)}
        self._set_bounds({k: v for k, v in found.items() if v is not None}, self.filter_node)
        self._timer.cancel()

    def _set_bounds(self, values, source: str) -> None:
        from diffusion_policy_ros.safety.kinematics import RobotKinematics
        values = {k: (list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v)
                  for k, v in values.items()}
        params = SafetyParams.from_mapping(values)
        ranges = RobotKinematics(self.config, params.robot_model).joint_ranges()
        period = 1.0 / self.config.control_rate_hz
        self.bounds = {arm.name: CommandBounds.from_safety_params(arm.joint_names, arm.gripper_joints, ranges,
                                                                  params, period)
                       for arm in self.config.arms}
        self.reanchor = {arm.name: Reanchor(0.5 * params.reject_step_rad) for arm in self.config.arms}
        self.log.arrived("filter", f"limits from {source}: workspace {list(params.workspace_min)} .. "
                                   f"{list(params.workspace_max)} m, joint margin {params.position_margin_rad} rad, "
                                   f"step <= {next(iter(self.bounds.values())).max_step:.3f} rad per tick")

    def _on_event(self, msg: SafetyEvent) -> None:
        if msg.arm in self.reanchor:
            self.reanchor[msg.arm].safety_event(msg.action, msg.reason)

    def _on_task_status(self, msg: TaskStatus) -> None:
        for reanchor in self.reanchor.values():
            reanchor.episode(msg.episode)
