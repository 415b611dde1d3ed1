"""The safety filter as a real rclpy node on real topics, with a robot that executes what it is
sent (`safety_graph.TrackingRobot`): commands in, filtered trajectories out, every reject by its
reason, the stale-command watchdog, the latched e-stop (single arm and bimanual), the
tracking-error hold, and the Float64MultiArray input and output."""
from __future__ import annotations

import math

import numpy as np
import pytest
from std_msgs.msg import Bool, Float64MultiArray

from diffusion_policy_ros.controllers.jtc_audit import is_hold
from diffusion_policy_ros.msg import SafetyEvent
from diffusion_policy_ros.nodes._ros_convert import jtc_message, seconds, trajectory_msg
from safety_graph import UNHURRIED, filter_graph, robots_graph
from waiting import wait_for


@pytest.fixture(scope="class")
def graph(ros_domain_id):
    """One node and robot for the tests of `TestOneArm`, gone before the tests that start their
    own graph on the same domain."""
    with filter_graph(ros_domain_id, **UNHURRIED) as graph:
        yield graph


def outputs_through(robot, point, since=0):
    """Outputs (after the first `since`) that have `point` as one of their points: a forwarded
    command passes through its points (the filter only adds points between and after them)."""
    return [msg for _, msg in robot.outputs[since:]
            if any(np.allclose(p.positions, point, atol=1e-6) for p in msg.points)]


def holds_after(robot, since):
    """Holds and stops among the outputs after the first `since` (padded to stay valid however
    late they arrive)."""
    return [msg for _, msg in robot.outputs[since:] if is_hold(jtc_message(msg))]


def at_rest(node, robot) -> bool:
    """The filter holds and its last plan has run out: the arm stands still."""
    plan = node.filter.plan(robot.arm)
    return node.filter.holding(robot.arm) and plan is not None and robot.now() > plan.end_time


def events(robot, reason, since=0, action=None):
    return [e for e in robot.events[since:] if e.reason == reason and (action is None or e.action == action)]


class TestOneArm:
    def test_valid_command_passes_untouched_and_a_stale_hold_follows(self, graph):
        node, robot = graph
        n_out, n_ev = len(robot.outputs), len(robot.events)
        times, positions = robot.send([[0.01 * k, 0, 0, 0, 0, 0, 0] for k in range(1, 4)], first=0.3, step=0.05,
                                      stamp_zero=False)
        assert wait_for(lambda: outputs_through(robot, positions[-1], n_out))
        first = outputs_through(robot, positions[-1], n_out)[0]
        assert list(first.joint_names) == robot.names
        # The path passes untouched: every sent point lies on the forwarded trajectory.
        start = seconds(first.header.stamp)
        forwarded_t = np.array([start + seconds(p.time_from_start) for p in first.points])
        forwarded_q = np.array([p.positions for p in first.points])
        for t, q in zip(times, positions):
            on_path = [np.interp(t, forwarded_t, forwarded_q[:, j]) for j in range(len(robot.names))]
            np.testing.assert_allclose(on_path, q, atol=1e-6)
        assert not [e for e in robot.events[n_ev:] if e.action in (SafetyEvent.ACTION_CLAMP, SafetyEvent.ACTION_REJECT)]
        # no more commands: a hold follows within the watchdog timeout (+ the slack of a loaded machine)
        assert wait_for(lambda: events(robot, "stale_command", n_ev), 10.0)
        hold_event = events(robot, "stale_command", n_ev)[0]
        assert seconds(hold_event.header.stamp) - times[-1] <= node.params.watchdog_timeout_s + 0.5
        # the arm stops just past the last point: a jerk-limited stop from v = 0.01 rad per 0.05 s
        # carries it on by v * t_stop / 2 = v * sqrt(v / max_jerk) (about 12 mrad at 60 rad/s^3)
        v = 0.01 / 0.05
        stop = v * math.sqrt(v / node.params.max_jerk_rad_s3)
        end = np.array(hold_event.applied)
        np.testing.assert_allclose(end[1:], positions[-1][1:], atol=1e-6)
        assert 0.0 <= end[0] - positions[-1][0] <= stop + 1e-3
        assert not robot.violations


    def test_nan_is_rejected_with_an_event_and_a_hold(self, graph):
        node, robot = graph
        n_out = len(robot.outputs)
        _, moving = robot.send([[0.01, 0, 0, 0, 0, 0, 0]] * 2)
        assert wait_for(lambda: outputs_through(robot, moving[-1], n_out))  # a plan to hold from
        n_ev, n_out = len(robot.events), len(robot.outputs)
        robot.send([[0.02, math.nan, 0, 0, 0, 0, 0]])
        assert wait_for(lambda: events(robot, "non_finite", n_ev))
        event = events(robot, "non_finite", n_ev)[0]
        assert event.action == SafetyEvent.ACTION_REJECT and all(math.isnan(x) for x in event.applied)
        assert wait_for(lambda: holds_after(robot, n_out)), "no hold went out with the reject"
        assert all(math.isfinite(x) for p in holds_after(robot, n_out)[0].points for x in p.positions)
        assert not robot.violations


    def test_wrong_joint_names_and_clamps_produce_events(self, graph):
        node, robot = graph
        n_ev = len(robot.events)
        robot.send([[0.0] * 7], names=robot.names[:-1] + ["wrist_of_another_robot"])
        assert wait_for(lambda: events(robot, "unknown_joint", n_ev))
        assert "wrist_of_another_robot" in events(robot, "unknown_joint", n_ev)[0].message
        n_ev, n_out = len(robot.events), len(robot.outputs)
        robot.send([[0.2, 0, 0, 0, 0, 0, 0.5]])  # a fast step from rest and a gripper past its range
        assert wait_for(lambda: {"gripper_limit", "acceleration_limit"} <= {e.reason for e in robot.events[n_ev:]}), \
            [(e.reason, e.action, e.message) for e in robot.events[n_ev:]]
        clamps = [e for e in robot.events[n_ev:] if e.action == SafetyEvent.ACTION_CLAMP]
        assert clamps and all(len(e.joint_names) == len(e.requested) == len(e.applied) for e in clamps)
        out = lambda: [m for _, m in robot.outputs[n_out:] if m.header.stamp == clamps[0].header.stamp]  # noqa: E731
        assert wait_for(out)
        assert max(p.positions[6] for p in out()[0].points) <= 0.08 + 1e-9
        assert not robot.violations


    @pytest.mark.parametrize("reason", ["non_increasing_times", "past_trajectory", "max_step", "position_limit"])
    def test_each_reject_is_reported_by_its_reason(self, graph, reason):
        node, robot = graph
        assert wait_for(lambda: at_rest(node, robot))  # so that the hold is where the arm is now
        n_ev, n_out = len(robot.events), len(robot.outputs)
        q = robot.position()
        # Stamped 0 (from when it arrives, the JTC's rule), so that a slow delivery on a loaded
        # machine cannot turn the command into a past one; the past one is stamped in the past.
        if reason == "non_increasing_times":
            msg = trajectory_msg(robot.names, 0.0, [0.2, 0.2], [q, q])
        elif reason == "past_trajectory":
            now = robot.now()
            msg = trajectory_msg(robot.names, now - 1.0, [now - 0.5, now - 0.4], [q, q])
        elif reason == "max_step":  # the first point further from the robot than reject_step_rad
            msg = trajectory_msg(robot.names, 0.0, [0.2], [q + np.r_[0, 0, node.params.reject_step_rad + 0.1,
                                                                    0, 0, 0, 0]])
        else:  # a target further beyond a hard limit than reject_beyond_limit_rad
            far = q.copy()
            far[0] = node.filter.limits["arm"].upper[0] + node.params.reject_beyond_limit_rad + 0.1
            msg = trajectory_msg(robot.names, 0.0, [0.2], [far])
        robot.policy.publish(msg)
        assert wait_for(lambda: events(robot, reason, n_ev, SafetyEvent.ACTION_REJECT)), \
            [(e.reason, e.message) for e in robot.events[n_ev:]]
        # rejected, not forwarded: the output that went with it holds where the arm was
        assert wait_for(lambda: holds_after(robot, n_out))
        np.testing.assert_allclose(holds_after(robot, n_out)[0].points[-1].positions, q, atol=1e-6)
        assert len(robot.outputs) == n_out + 1 or all(seconds(m.header.stamp) == 0.0 for _, m in robot.outputs[n_out:])
        assert not robot.violations


    def test_estop_is_latched_until_released_by_the_service(self, graph):
        node, robot = graph
        assert wait_for(lambda: at_rest(node, robot))
        n_ev = len(robot.events)
        robot.estop_topic.publish(Bool(data=True))
        assert wait_for(lambda: events(robot, "estop", n_ev, SafetyEvent.ACTION_HOLD))
        held = np.array(events(robot, "estop", n_ev)[0].applied)
        robot.estop_topic.publish(Bool(data=False))  # false on the topic does not release
        n_ev, n_out = len(robot.events), len(robot.outputs)
        _, target = robot.send([[0.02, 0, 0, 0, 0, 0, 0]])
        assert wait_for(lambda: events(robot, "estop", n_ev, SafetyEvent.ACTION_REJECT))
        assert node.filter.estop_engaged
        # the command was decided (rejected) and what went out with it holds where the e-stop stopped
        assert wait_for(lambda: holds_after(robot, n_out))
        np.testing.assert_allclose(holds_after(robot, n_out)[0].points[-1].positions, held, atol=1e-6)
        assert not outputs_through(robot, target[-1], n_out), "a command went through during the e-stop"
        response, _ = robot.call_estop(False, "test done")
        assert response.success and not response.engaged
        n_out = len(robot.outputs)
        _, target = robot.send([[0.02, 0, 0, 0, 0, 0, 0]])
        assert wait_for(lambda: outputs_through(robot, target[-1], n_out)), "not forwarded after the release"
        assert not robot.violations


    def test_arm_moved_away_from_the_plan_is_held_where_it_is(self, graph):
        node, robot = graph
        n_out = len(robot.outputs)
        _, target = robot.send([[0.01 * k, 0, 0, 0, 0, 0, 0] for k in range(1, 6)], first=0.1, step=0.1)
        assert wait_for(lambda: outputs_through(robot, target[-1], n_out))
        n_ev, n_out = len(robot.events), len(robot.outputs)
        pushed = robot.push([0, 0.5, 0, 0, 0, 0, 0])  # far beyond max_tracking_error_rad
        assert wait_for(lambda: events(robot, "tracking_error", n_ev, SafetyEvent.ACTION_HOLD))
        event = events(robot, "tracking_error", n_ev)[0]
        np.testing.assert_allclose(event.applied, pushed, atol=1e-6)
        assert wait_for(lambda: holds_after(robot, n_out))
        hold = holds_after(robot, n_out)[0]
        assert all(np.allclose(p.positions, pushed, atol=1e-6) for p in hold.points)  # where it is, not back
        n_out = len(robot.outputs)
        _, target = robot.send([[0.01, 0, 0, 0, 0, 0, 0]])  # and commands go on from there
        assert wait_for(lambda: outputs_through(robot, target[-1], n_out))
        assert not robot.violations


def test_no_joint_state_yet_rejects_commands(ros_domain_id):
    with filter_graph(ros_domain_id, joint_states=False, **UNHURRIED) as (node, robot):
        robot.send([[0.01, 0, 0, 0, 0, 0, 0]])
        assert wait_for(lambda: events(robot, "no_joint_state", 0, SafetyEvent.ACTION_REJECT))
        assert not robot.outputs  # nothing to hold from, so nothing is sent
        robot.publish_joint_states = True
        assert wait_for(lambda: node.filter.ready("arm"))
        _, target = robot.send([[0.01, 0, 0, 0, 0, 0, 0]])
        assert wait_for(lambda: outputs_through(robot, target[-1]))


def test_float64_multi_array_in_and_out(ros_domain_id):
    """The policy's float64_multi_array output as the filter's input, and the filter's
    float64_multi_array output for a forward position controller (one value per joint, at the
    control rate)."""
    with filter_graph(ros_domain_id, output="float64_multi_array", **UNHURRIED) as (node, robot):
        target = robot.position() + np.r_[0.05, 0, 0, 0, 0, 0, 0]

        def policy_tick():  # the policy sends the target at the control rate until the arm is there
            robot.policy_forward.publish(Float64MultiArray(data=[float(x) for x in target]))
            n_fwd = len(robot.forwards)
            wait_for(lambda: len(robot.forwards) > n_fwd, 1.0)
            return np.allclose(robot.forwards[-1].data, target, atol=1e-6) if robot.forwards else False

        assert wait_for(policy_tick, 20.0, poll_s=0.0), "the forwarded positions never reached the target"
        lim = node.filter.limits["arm"]
        values = np.array([m.data for m in robot.forwards])
        assert values.shape[1] == 7 and np.all(np.isfinite(values))
        assert np.all(values >= lim.safe_lower - 1e-9) and np.all(values <= lim.safe_upper + 1e-9)
        n_ev = len(robot.events)
        robot.policy_forward.publish(Float64MultiArray(data=[math.nan] * 7))
        assert wait_for(lambda: events(robot, "non_finite", n_ev, SafetyEvent.ACTION_REJECT))
        robot.policy_forward.publish(Float64MultiArray(data=[0.0] * 3))
        assert wait_for(lambda: events(robot, "invalid_trajectory", n_ev, SafetyEvent.ACTION_REJECT))
        n_fwd = len(robot.forwards)
        assert wait_for(lambda: len(robot.forwards) > n_fwd + 2)
        assert all(np.all(np.isfinite(m.data)) for m in robot.forwards)


def test_estop_holds_both_arms_of_the_bimanual_config(ros_domain_id):
    with robots_graph(ros_domain_id, "config/bimanual.yaml", **UNHURRIED) as (node, robots):
        assert set(robots) == {"left", "right"}
        for robot in robots.values():
            n_out = len(robot.outputs)
            _, target = robot.send([[0.01 * k, 0, 0, 0, 0, 0, 0] for k in range(1, 6)], first=0.1, step=0.1)
            assert wait_for(lambda: outputs_through(robot, target[-1], n_out))
        left, right = robots["left"], robots["right"]
        n_ev = len(left.events)
        response, _ = left.call_estop(True, "bimanual test")
        assert response.engaged
        assert wait_for(lambda: {e.arm for e in events(left, "estop", n_ev, SafetyEvent.ACTION_HOLD)}
                        == {"left", "right"})
        for robot in robots.values():
            n_ev, n_out = len(robot.events), len(robot.outputs)
            _, target = robot.send([[0.01, 0, 0, 0, 0, 0, 0]])
            assert wait_for(lambda: [e for e in events(robot, "estop", n_ev, SafetyEvent.ACTION_REJECT)
                                     if e.arm == robot.arm])
            assert not outputs_through(robot, target[-1], n_out)
        response, _ = right.call_estop(False, "done")
        assert not response.engaged
        for robot in robots.values():
            n_out = len(robot.outputs)
            _, target = robot.send([[0.01, 0, 0, 0, 0, 0, 0]])
            assert wait_for(lambda: outputs_through(robot, target[-1], n_out))
            assert not robot.violations
