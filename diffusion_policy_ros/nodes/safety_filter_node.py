"""safety_filter_node: every joint command passes here on its way to the controllers.

    python -m diffusion_policy_ros.nodes.safety_filter_node --ros-args --params-file config/single_arm.yaml

Per arm it reads JointTrajectory from `policy_topic` (or `teleop_topic` with input:=teleop) and the
arm's joint states, and sends the filtered plan to the arm's controllers (nodes/_controller_output.py):
the arm joints as JointTrajectory on `controller_topic`, as a FollowJointTrajectory goal
(output:=follow_joint_trajectory) or as positions at the control rate on `forward_topic`
(output:=float64_multi_array); the gripper, if `gripper_controller` gives it its own controller, to
that one. Holds and stops are stamped 0 (start on receipt). The decisions are
`diffusion_policy_ros.safety.SafetyFilter` (pass / clamp / reject-and-hold, watchdog, e-stop).
Publishes `safety/events` (SafetyEvent, one per clamp, reject or hold) and `/diagnostics`.
E-stop: service `safety/estop` (EStop: engage or release) and topic `safety/estop` (Bool, true
engages; only the service releases it).
"""
from __future__ import annotations

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.graph import policy_forward_topic
from diffusion_policy_ros.msg import SafetyEvent
from diffusion_policy_ros.node_parameters import SAFETY_FILTER_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._controller_output import ControllerOutput
from diffusion_policy_ros.nodes._ros_convert import diagnostic_status, to_time, trajectory_points
from diffusion_policy_ros.safety import Band, SafetyParams
from diffusion_policy_ros.safety.build import build_safety_filter
from diffusion_policy_ros.srv import EStop

WATCHDOG_PERIOD_S = 0.02  # the hold goes out at most this late after the watchdog timeout (a faster
# Python timer starves the executor: commands then arrive hundreds of ms late)


class SafetyFilterNode(Node):
    def __init__(self, **kwargs):
        super().__init__("safety_filter_node", **PARAMETER_OPTIONS, **kwargs)
        declared = declare_node_parameters(self, SAFETY_FILTER_NODE)
        self.config = declared.robot
        self.params = SafetyParams.from_mapping(declared.values)
        self.filter = build_safety_filter(self.config, declared.values)
        self.get_logger().info(f"limits from {self.filter.kinematics.model_path}; input {self.params.input}, "
                               f"output {self.params.output}")
        reliable = QoSProfile(depth=10)
        self.output = ControllerOutput(self, self.config, self.params.output, self.params.gripper_max_effort_n)
        self.get_logger().info(f"controllers: {self.output.describe()}")
        for arm in self.config.arms:
            source = arm.policy_topic if self.params.input == "policy" else arm.teleop_topic
            self.create_subscription(JointTrajectory, source, lambda m, a=arm.name: self._on_command(a, m), reliable)
            if self.params.input == "policy":  # the policy's float64_multi_array output: one target per tick
                self.create_subscription(Float64MultiArray, policy_forward_topic(arm),
                                         lambda m, a=arm.name: self._on_forward_command(a, m), reliable)
            self.create_subscription(JointState, arm.joint_states_topic,
                                     lambda m, a=arm.name: self._on_joint_state(a, m), qos_profile_sensor_data)
        self._events = self.create_publisher(SafetyEvent, "safety/events", reliable)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self.create_service(EStop, "safety/estop", self._on_estop_service)
        self.create_subscription(Bool, "safety/estop", self._on_estop_topic, reliable)
        self.create_timer(WATCHDOG_PERIOD_S, self._on_watchdog)
        if self.output.streams_positions:
            self.create_timer(1.0 / self.config.control_rate_hz, self._on_forward_tick)
        self.create_timer(1.0 / max(self.params.status_rate_hz, 0.1), self._publish_diagnostics)
        self.event_count = 0

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, arm: str, msg: JointState) -> None:
        hold = self.filter.update_joint_state(arm, msg.name, msg.position, self.now())
        if hold is not None:
            self._apply(hold)

    def _on_command(self, arm: str, msg: JointTrajectory) -> None:
        now = self.now()
        times, positions = trajectory_points(msg, now)
        self._apply(self.filter.filter_command(arm, msg.joint_names, times, positions, now))

    def _on_forward_command(self, arm: str, msg: Float64MultiArray) -> None:
        now = self.now()
        names = self.filter.limits[arm].names
        positions = [list(msg.data)] if len(msg.data) == len(names) else [[float("nan")] * len(names)]
        self._apply(self.filter.filter_command(arm, names, [now + self.filter.period], positions, now))

    def _on_watchdog(self) -> None:
        for result in self.filter.tick(self.now()):
            self._apply(result)

    def _apply(self, result) -> None:
        for event in result.events:
            self._publish_event(event)
        plan = result.trajectory
        if plan is None:
            return
        stop = result.band is Band.REJECT   # every reject, watchdog, tracking and e-stop hold
        self.output.send(result.arm, plan.start, plan.times, plan.positions, start_on_receipt=stop)
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
        log = self.get_logger().warn if event.action != SafetyEvent.ACTION_CLAMP else self.get_logger().debug
        log(f"{event.arm}: {event.reason}: {event.message}")

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data and not self.filter.estop_engaged:
            for result in self.filter.engage_estop(self.now(), "safety/estop topic"):
                self._apply(result)

    def _on_estop_service(self, request, response):
        if request.engage:
            if not self.filter.estop_engaged:
                for result in self.filter.engage_estop(self.now(), request.reason or "safety/estop service"):
                    self._apply(result)
            response.message = "e-stop engaged"
        else:
            self.filter.release_estop()
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
        values = {"pass": f.counts[Band.PASS], "clamp": f.counts[Band.CLAMP], "reject": f.counts[Band.REJECT],
                  "events": self.event_count, "input": self.params.input, "output": self.params.output}
        msg = DiagnosticArray(status=[diagnostic_status(f"{self.get_name()}: safety filter", level, message,
                                                        values)])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(msg)


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
