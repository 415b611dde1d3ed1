"""Controller outputs a ros2_control robot accepts: the joint_trajectory_controller's own validation
rules (controllers/jtc_rules.py) on every message the safety filter sends in a sim episode, its
holds and its e-stop, also as if each arrived late; the arm / gripper split; the action outputs."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.controllers.jtc_audit import JtcAudit, is_hold
from diffusion_policy_ros.controllers.jtc_rules import JtcMessage, JtcPoint, JtcSettings, rejection
from diffusion_policy_ros.controllers.split import HOLD_ACCEPTED_FOR_S, ArmControllers, padded_hold
from diffusion_policy_ros.msg import SafetyEvent, TaskStatus
from diffusion_policy_ros.nodes._ros_convert import jtc_message
from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.runtime.spin_thread import SpinThread
from diffusion_policy_ros.srv import EStop, ResetEpisode
from ros2_tools import need
from waiting import wait_for

CONFIG = "config/single_arm.yaml"
PARAMS = ["--ros-args", "--params-file", CONFIG]
ARM = tuple(f"joint_{i}" for i in range(1, 7))
MS = 1_000_000
# Every message is checked as if it arrived this long after it was sent (independent of this
# machine's load). A forwarded command is rejected once all its points are past (the robot then
# finishes the previous command, which ends in a stop): for the expert's one-step commands after
# ~0.15 s. A hold or stop must be accepted however late it comes (up to HOLD_ACCEPTED_FOR_S).
DELAYS_S = (0.0, 0.05, 1.0)
STOPS_ONLY_S = 1.0


def message(stamp_ns, times_ms, names=ARM, **fields):
    points = [JtcPoint(t * MS, positions=fields.get("positions", [0.0] * len(names)),
                       velocities=fields.get("velocities", ()), effort=fields.get("effort", ()))
              for t in times_ms]
    return JtcMessage(stamp_ns, names, points)


# ---- the rules, on plain messages ------------------------------------------------------------
def test_the_jtc_rules_reject_what_the_controller_rejects():
    jtc = JtcSettings(ARM)
    now = 1_000_000 * MS
    assert rejection(jtc, message(now, [50, 100]), now) is None
    cases = [
        (message(now, [50], names=ARM + ("gripper",)), "Joints on incoming trajectory don't match"),
        (message(now, []), "Empty trajectory received."),
        (message(now, [50], names=ARM[:5] + ("wrist",)), "Incoming joint wrist doesn't match"),
        (message(now, [50, 50]), "Time between points 0 and 1 is not strictly increasing"),
        (message(now, [50], positions=[0.0] * 5), "Mismatch between joint_names size (6) and positions (5)"),
        (message(now, [50], velocities=[0.1] * 6), "Velocity of last trajectory point of joint joint_1"),
        (message(now, [50], effort=[1.0] * 6), "Trajectories with effort fields"),
        (message(now - 200 * MS, [50, 100]), "that ends in the past"),
    ]
    for msg, reason in cases:
        assert reason in (rejection(jtc, msg, now) or ""), reason
    assert rejection(JtcSettings(ARM, allow_partial_joints_goal=True), message(now, [50], names=ARM[:3]), now) is None


def test_a_late_hold_is_accepted_once_padded():
    """The issue's case: a 2-point 50 ms hold that arrived 90 ms late. Stamped when it was planned
    (so a late one joins the stop where it is by now) and padded, it is accepted up to
    HOLD_ACCEPTED_FOR_S late, and recognised as a hold."""
    jtc = JtcSettings(ARM)
    sent = 5_000 * MS
    assert "ends in the past" in rejection(jtc, message(sent, [25, 50]), sent + 90 * MS)
    times, positions = padded_hold(sent * 1e-9, [sent * 1e-9 + 0.025, sent * 1e-9 + 0.05], np.ones((2, 6)))
    np.testing.assert_allclose(positions[-1], positions[-2])
    hold = message(sent, [int(round((t - sent * 1e-9) * 1000)) for t in times])
    assert is_hold(hold) and not is_hold(message(sent, [25, 50])) and not is_hold(message(0, [25, 50]))
    late = int(HOLD_ACCEPTED_FOR_S * 1000) * MS
    assert rejection(jtc, hold, sent + 90 * MS) is None
    assert rejection(jtc, hold, sent + late - MS) is None
    assert "ends in the past" in rejection(jtc, hold, sent + late + MS)


def test_each_controller_gets_its_own_joints():
    robot = load_robot_config(CONFIG)
    arm = robot.arm("arm")
    assert arm.gripper_controller == "joint_trajectory"    # the shipped default: arm JTC + gripper JTC
    split = ArmControllers(arm)
    q = np.arange(7.0)[None] * [[1.0], [2.0]]
    out = split.trajectories(10.0, [10.1, 10.2], q, start_on_receipt=False)
    assert out["arm"].joint_names == ARM and out["gripper"].joint_names == ("gripper",)
    np.testing.assert_allclose(out["arm"].positions, q[:, :6])
    np.testing.assert_allclose(out["gripper"].positions, q[:, 6:])
    np.testing.assert_allclose(out["arm"].times_from_start, [0.1, 0.2])
    assert out["arm"].stamp == 10.0
    assert split.trajectories(10.0, [10.1], q[:1], start_on_receipt=True)["gripper"].stamp == 0.0
    assert split.split_positions(q[1]) == (list(q[1, :6]), [q[1, 6]])


# ---- a sim episode through the real nodes -----------------------------------------------------
class Observer:
    """The robot's side: audits what reaches the controllers, calls reset and the e-stop."""

    def __init__(self, context, robot, delays=DELAYS_S):
        self.node = rclpy.create_node("controller_observer", context=context,
                                      parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.audit = JtcAudit({a.controller_topic: JtcSettings(a.controller_joint_names) for a in robot.arms}
                              | {a.gripper_topic: JtcSettings(a.gripper_joints) for a in robot.arms
                                 if a.gripper_controller == "joint_trajectory"}, delays, from_sent=True)
        self.problems: list[str] = []   # rejections at a delay where nothing may be rejected
        self.events: list[SafetyEvent] = []
        self.status: list[TaskStatus] = []
        self.lock = threading.Lock()
        for topic in self.audit.controllers:
            self.node.create_subscription(JointTrajectory, topic, lambda m, t=topic: self._check(t, m), 50)
        self.node.create_subscription(SafetyEvent, "safety/events", self.events.append, 50)
        self.node.create_subscription(TaskStatus, "/sim/task_status", self.status.append, 10)
        self.reset = self.node.create_client(ResetEpisode, "/sim/reset")
        self.estop = self.node.create_client(EStop, "safety/estop")

    def _check(self, topic, msg):
        plain = jtc_message(msg)
        with self.lock:
            for delay, reason in self.audit.check(topic, plain, self.node.get_clock().now().nanoseconds):
                if delay < STOPS_ONLY_S or is_hold(plain):
                    self.problems.append(f"{topic} at +{delay:g} s (stamp {plain.stamp_ns}): {reason}")

    def call(self, client, request):
        assert client.wait_for_service(timeout_sec=30.0), f"no {client.srv_name}"
        future = client.call_async(request)
        assert wait_for(future.done, 30.0), f"no answer from {client.srv_name}"
        return future.result()


def run_episode(context, overrides=(), safety_overrides=(), seed=3):
    """sim + safety filter (teleop input) + scripted expert; one seeded episode to success, then
    the expert stops (watchdog hold) and the e-stop is engaged and released. Returns the observer."""
    from diffusion_policy_ros.nodes.expert_teleop_node import ExpertTeleopNode
    from diffusion_policy_ros.nodes.safety_filter_node import SafetyFilterNode
    from diffusion_policy_ros.nodes.sim_node import SimNode
    overrides = list(overrides)
    sim = SimNode(context=context, cli_args=PARAMS, parameter_overrides=overrides)
    on_sim_time = overrides + [Parameter("use_sim_time", value=True)]   # as in the sim graph: /clock
    safety = SafetyFilterNode(context=context, cli_args=PARAMS,
                              parameter_overrides=on_sim_time + [Parameter("input", value="teleop"),
                                                                 *safety_overrides])
    expert = ExpertTeleopNode(context=context, cli_args=PARAMS, parameter_overrides=on_sim_time)
    observer = Observer(context, sim.config)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    for node in (sim, safety, expert, observer.node):
        executor.add_node(node)
    spinner = SpinThread(executor).start()
    try:
        assert wait_for(lambda: all(safety.filter.ready(a.name) for a in sim.config.arms), 30.0)
        assert observer.call(observer.reset, ResetEpisode.Request(seed=seed)).success
        solved = wait_for(lambda: any(s.success and s.seed == seed for s in observer.status), 120.0)
        assert solved, "the expert did not solve the episode through the safety filter and the split controllers"
        n_events = len(observer.events)
        executor.remove_node(expert)            # the teleop source goes silent: the watchdog holds
        assert wait_for(lambda: any(e.reason == "stale_command" for e in observer.events[n_events:]), 30.0)
        assert observer.call(observer.estop, EStop.Request(engage=True, reason="test")).engaged
        assert wait_for(lambda: any(e.reason == "estop" for e in observer.events[n_events:]), 30.0)
        assert not observer.call(observer.estop, EStop.Request(engage=False, reason="test")).engaged
        return observer, sim, safety
    finally:
        spinner.stop()
        sim.shutdown()
        for node in (sim, safety, expert, observer.node):
            node.destroy_node()


def test_every_command_of_an_episode_its_holds_and_its_estop_pass_the_jtc_rules(rclpy_context):
    arm, gripper = "/arm_controller/joint_trajectory", "/gripper_controller/joint_trajectory"
    observer, sim, safety = run_episode(rclpy_context)
    audit = observer.audit
    assert wait_for(lambda: audit.counts[arm].holds >= 2, 10.0), audit.summary()
    assert observer.problems == [], observer.problems[:5]
    assert audit.counts[arm].messages > 50 and audit.counts[gripper].messages > 50, audit.summary()
    assert audit.counts[arm].holds >= 2       # the watchdog hold and the e-stop
    late = sum(c.rejected[STOPS_ONLY_S] for c in audit.counts.values())
    assert sum(c.rejected[d] for c in audit.counts.values() for d in DELAYS_S) == late


def test_follow_joint_trajectory_and_gripper_command_outputs_drive_the_sim(rclpy_context):
    need(modules=["control_msgs.action"])
    overrides = [Parameter("arm.gripper_controller", value="gripper_action"),
                 Parameter("arm.gripper_topic", value="/gripper_controller/gripper_cmd")]
    observer, sim, safety = run_episode(rclpy_context, overrides, seed=4,
                                        safety_overrides=[Parameter("output", value="follow_joint_trajectory")])
    assert observer.audit.counts["/arm_controller/joint_trajectory"].messages == 0  # goals, not the topic
    arm_goals = sim.actions["arm/follow_joint_trajectory"].accepted
    gripper_goals = sim.actions["arm/gripper_command"].accepted
    assert arm_goals > 50 and gripper_goals >= 2   # gripper goals only when its target moves


def test_an_action_output_without_control_msgs_says_what_is_missing(ros_env, tmp_path):
    """A ROS install without control_msgs: the filter configured for goals refuses to start and says why."""
    import subprocess
    import sys
    overlay = tmp_path / "goals.yaml"   # a later params file wins over the config's node section
    overlay.write_text("/**/safety_filter_node:\n  ros__parameters:\n    output: follow_joint_trajectory\n")
    code = f"""
import sys
class NoControlMsgs:
    def find_spec(self, name, path=None, target=None):
        if name == "control_msgs" or name.startswith("control_msgs."):
            raise ImportError("hidden for this test")
sys.meta_path.insert(0, NoControlMsgs())
from diffusion_policy_ros.nodes import safety_filter_node
safety_filter_node.main(["safety_filter_node", "--ros-args", "--params-file", "config/single_arm.yaml",
                         "--params-file", "{overlay}"])
"""
    out = subprocess.run([sys.executable, "-c", code], env=ros_env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "sends control_msgs/FollowJointTrajectory goals, but the control_msgs package is not installed" in out.stderr
