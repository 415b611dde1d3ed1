"""safety_filter_node: every joint command passes here on its way to the controllers.

    python -m diffusion_policy_ros.nodes.safety_filter_node --ros-args --params-file config/single_arm.yaml

Per arm it reads JointTrajectory from `policy_topic` (or `teleop_topic` with input:=teleop) and the
arm's joint states, and sends the filtered plan to the arm's controllers (nodes/_controller_output.py):
the arm joints as JointTrajectory on `controller_topic`, as a FollowJointTrajectory goal
(output:=follow_joint_trajectory) or as positions at the control rate on `forward_topic`
(output:=float64_multi_array); the gripper, if `gripper_controller` gives it its own controller, to
that one. Every plan is stamped with the time it was planned from (holds too, padded to stay
valid however late they arrive: controllers/split.py). The decisions are
`diffusion_policy_ros.safety.SafetyFilter` (pass / clamp / reject-and-hold, watchdog, e-stop).
Publishes `safety/events` (SafetyEvent, one per clamp, reject or hold) and `/diagnostics`.
E-stop: service `safety/estop` (EStop: engage or release) and topic `safety/estop` (Bool, true
engages; only the service releases it).

Threads (`diffusion_policy_ros.safety.runner`): the executor only stores each command and joint
state as it arrives (serialized, so oversized ones are refused unread); a worker filters the
newest per arm, a watchdog thread wakes at the filter's next deadline, and the e-stop takes the
filter from the worker between two points of a command. docs/safety.md has the caps and numbers.
"""
from __future__ import annotations

import math
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.graph import policy_forward_topic
from diffusion_policy_ros.msg import SafetyEvent
from diffusion_policy_ros.node_parameters import SAFETY_FILTER_NODE
from diffusion_policy_ros.nodes._controller_output import ControllerOutput
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import responsive_threads
from diffusion_policy_ros.nodes._ros_convert import diagnostic_status, to_time
from diffusion_policy_ros.safety import Band, SafetyParams
from diffusion_policy_ros.safety.build import build_safety_filter
from diffusion_policy_ros.safety.runner import JOINT_STATE, TARGETS, TRAJECTORY, FilterRunner
from diffusion_policy_ros.srv import EStop

MESSAGE_TYPES = {TRAJECTORY: JointTrajectory, TARGETS: Float64MultiArray, JOINT_STATE: JointState}


class SafetyFilterNode(Node):
    def __init__(self, **kwargs):
        super().__init__("safety_filter_node", **PARAMETER_OPTIONS, **kwargs)
        declared = declare_node_parameters(self, SAFETY_FILTER_NODE)
        self.config = declared.robot
        self.params = SafetyParams.from_mapping(declared.values)
        self.filter = build_safety_filter(self.config, declared.values)
        self.get_logger().info(f"limits from {self.filter.kinematics.model_path}; input {self.params.input}, "
                               f"output {self.params.output}")
        responsive_threads()  # the e-stop and watchdog threads get the GIL back from the worker quickly
        self.runner = FilterRunner(self.filter, self.now, self._apply, decode,
                                   lambda: self.get_clock().ros_time_is_active)
        reliable = QoSProfile(depth=10)
        self.output = ControllerOutput(self, self.config, self.params.output, self.params.gripper_max_effort_n)
        self.get_logger().info(f"controllers: {self.output.describe()}")
        for arm in self.config.arms:
            source = arm.policy_topic if self.params.input == "policy" else arm.teleop_topic
            self.create_subscription(JointTrajectory, source, lambda m, a=arm.name: self._on_command(a, TRAJECTORY, m),
                                     reliable, raw=True)
            if self.params.input == "policy":  # the policy's float64_multi_array output: one target per tick
                self.create_subscription(Float64MultiArray, policy_forward_topic(arm),
                                         lambda m, a=arm.name: self._on_command(a, TARGETS, m), reliable, raw=True)
            self.create_subscription(JointState, arm.joint_states_topic,
                                     lambda m, a=arm.name: self._on_joint_state(a, m), qos_profile_sensor_data,
                                     raw=True)
        self._events = self.create_publisher(SafetyEvent, "safety/events", reliable)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self.create_service(EStop, "safety/estop", self._on_estop_service)
        self.create_subscription(Bool, "safety/estop", self._on_estop_topic, reliable)
        if self.output.streams_positions:
            self.create_timer(1.0 / self.config.control_rate_hz, self._on_forward_tick)
        self.create_timer(1.0 / max(self.params.status_rate_hz, 0.1), self._publish_diagnostics)
        self.event_count = 0
        self._logged: dict[tuple[str, str], float] = {}
        self.runner.start()

    def destroy_node(self):
        self.runner.stop()
        return super().destroy_node()

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, arm: str, data: bytes) -> None:
        if self.now() > 0:  # under use_sim_time the clock reads 0 until /clock arrives
            self.runner.submit_joint_state(arm, data)

    def _on_command(self, arm: str, kind: str, data: bytes) -> None:
        self.runner.submit_command(arm, kind, data)

    def _apply(self, result) -> None:
        if not self.context.ok():   # Ctrl-C shut ROS down before main() stopped the runner's threads
            return
        for event in result.events:
            self._publish_event(event)
        plan = result.trajectory
        if plan is None:
            return
        stop = result.band is Band.REJECT   # every reject, watchdog, tracking and e-stop hold
        self.output.send(result.arm, plan.start, plan.times, plan.positions, stop=stop)
        if stop and self.output.streams_positions:
            self._on_forward_tick()  # a hold goes out now, not at the next control tick

    def _on_forward_tick(self) -> None:
        now = self.now()
        for arm in self.output.split:
            plan = self.filter.plan(arm)
            if plan is not None and (not self.filter.holding(arm) or now <= plan.end_time + 1.0):
                self.output.send_positions(arm, plan.state_at(now)[0])

    def _publish_event(self, event) -> None:
        self.event_count += 1
        msg = SafetyEvent(action=event.action, reason=event.reason, arm=event.arm,
                          joint_names=list(event.joint_names), requested=list(event.requested),
                          applied=list(event.applied), message=event.message)
        msg.header.stamp = to_time(event.stamp)
        self._events.publish(msg)
        # One line per arm and reason a second: a flood of bad commands must not become a flood of logs.
        key, now = (event.arm, event.reason), time.monotonic()
        if now - self._logged.get(key, -math.inf) >= 1.0:
            self._logged[key] = now
            log = self.get_logger().warn if event.action != SafetyEvent.ACTION_CLAMP else self.get_logger().debug
            log(f"{event.arm}: {event.reason}: {event.message}")

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self.runner.engage_estop("safety/estop topic")

    def _on_estop_service(self, request, response):
        if request.engage:
            self.runner.engage_estop(request.reason or "safety/estop service")
            response.message = "e-stop engaged"
        else:
            self.runner.release_estop()
            response.message = "e-stop released"
            self.get_logger().warn(f"e-stop released ({request.reason or 'no reason given'})")
        response.success = True
        response.engaged = self.filter.estop_engaged
        return response

    def _publish_diagnostics(self) -> None:
        f = self.filter
        if f.estop_engaged:
            level, message = DiagnosticStatus.ERROR, f"e-stop engaged: {f.estop_reason}"
        elif not all(f.ready(a.name) for a in self.config.arms):
            level, message = DiagnosticStatus.WARN, "waiting for joint states"
        else:
            level, message = DiagnosticStatus.OK, "holding" if all(f.holding(a.name) for a in self.config.arms) \
                else "forwarding"
        stats = self.runner.stats
        values = {"pass": f.counts[Band.PASS], "clamp": f.counts[Band.CLAMP], "reject": f.counts[Band.REJECT],
                  "events": self.event_count, "superseded": stats.superseded, "late": stats.late,
                  "input": self.params.input, "output": self.params.output}
        msg = DiagnosticArray(status=[diagnostic_status(f"{self.get_name()}: safety filter", level, message,
                                                        values)])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(msg)


def decode(kind: str, data: bytes):
    return deserialize_message(data, MESSAGE_TYPES[kind])


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        node = SafetyFilterNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
