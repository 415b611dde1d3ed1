"""The safety filter node under hostile input (issue 11): a real node, real topics, a robot that
executes every output and checks it against the limits on arrival (`safety_graph.TrackingRobot`).

Fuzzed message streams (count, points, times, names, values) never produce an output outside the
position, velocity, step or acceleration limits; the e-stop service answers within a bound while
a flood of the largest accepted commands arrives; and each finding of the issue has its test:
1 a huge legal command, 2 a point far beyond the horizon, 3 times of 2**31 s, 4 an empty joint
state, 5 joint states that stop, 6 (checkpoints: test_checkpoint.py), 7 the watchdog while the
worker is busy. Bounds on time here are generous safety bounds (seconds where the findings were
seconds late); `dpros bench safety` measures the real latencies.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffusion_policy_ros.controllers.jtc_audit import is_hold
from diffusion_policy_ros.msg import SafetyEvent
from diffusion_policy_ros.safety import Band
from diffusion_policy_ros.nodes._ros_convert import jtc_message, seconds, to_duration, to_time, trajectory_msg
from safety_graph import UNHURRIED, filter_graph, settled
from waiting import wait_for

ESTOP_BOUND_S = 1.0       # the e-stop answers (and the hold is out) within this, whatever arrives
WATCHDOG_SLACK_S = 0.5    # the stale-command hold is decided within timeout + this


def offsets_ramp(n, total=0.05, joint=0):
    """n small steps adding up to `total` rad on one joint (a legal, slow motion)."""
    rows = np.zeros((n, 7))
    rows[:, joint] = np.linspace(total / n, total, n)
    return rows


def legal_command(robot, n_points, span_s, lead_s=0.02, stamp_zero=True):
    """n points spread over span_s, finite, inside the limits, starting lead_s from now."""
    return robot.send(offsets_ramp(n_points), first=lead_s, step=span_s / max(n_points - 1, 1), stamp_zero=stamp_zero)


def slow_command(robot, n_points):
    """A legal command of n points over 0.95 s, stamped 0 (from when it arrives): built before
    the test needs it, since building it takes a while."""
    q = robot.position()
    return trajectory_msg(robot.names, 0.0, np.linspace(0.02, 0.97, n_points), q + offsets_ramp(n_points))


def assert_no_violation(robot):
    assert not robot.violations, robot.violations[:5]


# ---- fuzzing ----------------------------------------------------------------------------------
WILD = [math.nan, math.inf, -math.inf, 5.0, -5.0, 1e300]
# One thing wrong per message (or nothing: about half the stream is valid, so that the arm moves
# and the forwarded path itself is put to the test, clamps included).
FAULTS = ["none"] * 16 + [
    "names_wrong", "names_duplicate", "names_missing", "names_extra", "no_points", "points_over_cap",
    "points_far_over_cap", "stamp_ancient", "stamp_2_31", "stamp_nanosec", "stamp_future", "first_far",
    "first_2_31", "negative_time", "non_increasing", "wild_value", "big_jump", "width", "all_past"]
JOINT_STATE_FAULTS = ["true", "empty", "nan", "width", "names_missing", "names_duplicate", "stamp_old",
                      "stamp_future"]


@st.composite
def hostile_message(draw):
    return {
        "kind": draw(st.sampled_from(["trajectory"] * 6 + ["targets", "joint_state"])),
        "fault": draw(st.sampled_from(FAULTS)),
        "joint_state_fault": draw(st.sampled_from(JOINT_STATE_FAULTS)),
        "n": draw(st.integers(1, 16)),
        "shuffled": draw(st.booleans()),
        "stamp": draw(st.sampled_from(["zero", "now", "past"])),
        "past_s": draw(st.floats(0.0, 0.3)),
        "first": draw(st.floats(0.0, 0.6)),
        "step": draw(st.floats(0.002, 0.3)),
        "offsets": draw(st.lists(st.floats(-0.3, 0.3), min_size=7, max_size=7)),
        "scale": draw(st.sampled_from([0.0, 0.01, 0.1, 0.3, 1.0])),
        "wild": draw(st.sampled_from(WILD)),
        "at": draw(st.integers(0, 15)),
        "delay": draw(st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.2])),
    }


def by_name(values, names, robot_names):
    """Values in `names` order (0 for a joint the arm does not have)."""
    index = {n: i for i, n in enumerate(robot_names)}
    return [float(values[index[n]]) if n in index else 0.0 for n in names]


def fuzzed_names(fault, shuffled, names, seed):
    if shuffled:
        names = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    return {"names_wrong": names[:-1] + ["elbow_of_someone_else"], "names_duplicate": names[:-1] + [names[0]],
            "names_missing": names[:-1], "names_extra": names + ["spare"]}.get(fault, names)


def build(spec, robot):
    """-> (kind, message) for one fuzzed spec. Joint states are malformed or true: a well-formed
    state with a false position is a lying sensor, which no filter can tell from a push."""
    now = robot.now()
    q = robot.position(now)
    if spec["kind"] == "joint_state":
        fault = spec["joint_state_fault"]
        names = fuzzed_names(fault, spec["shuffled"], robot.names, spec["n"])
        values = by_name(q, names, robot.names)
        values = {"empty": [], "nan": values[:-1] + [math.nan], "width": values + [0.0]}.get(fault, values)
        msg = JointState(name=names, position=values)
        msg.header.stamp = to_time({"stamp_old": now - 1.0, "stamp_future": now + 1.0}.get(fault, now))
        return "joint_state", msg
    fault = spec["fault"]
    names = fuzzed_names(fault, spec["shuffled"], robot.names, spec["n"])
    offsets = np.asarray(spec["offsets"]) * spec["scale"]
    if spec["kind"] == "targets":
        target = q + offsets
        if fault == "wild_value":
            target[spec["at"] % 7] = spec["wild"]
        if fault == "width":
            names = names + ["spare"]
        return "targets", Float64MultiArray(data=by_name(target, names, robot.names))
    n = {"no_points": 0, "points_over_cap": 65, "points_far_over_cap": 400}.get(fault, spec["n"])
    stamp = {"zero": 0.0, "now": now, "past": now - spec["past_s"]}[spec["stamp"]]
    stamp = {"stamp_ancient": 5.0, "stamp_2_31": 2.0 ** 31 - 1, "stamp_future": now + 3.0,
             "all_past": now - 1.5}.get(fault, stamp)
    msg = JointTrajectory(joint_names=names)
    msg.header.stamp = to_time(stamp)
    if fault == "stamp_nanosec":
        msg.header.stamp.nanosec = 2 ** 32 - 1
    origin = now if stamp == 0.0 else stamp
    first = {"first_far": 600.0, "all_past": -1.5}.get(fault, spec["first"])
    step = 1.0 / n if fault == "all_past" else spec["step"]
    for k in range(n):
        t = now + first + step * k - origin
        position = q + offsets * (k + 1) / n
        if fault == "wild_value" and k == spec["at"] % n:
            position[spec["at"] % 7] = spec["wild"]
        if fault == "big_jump":
            position[spec["at"] % 6] += 2.0
        values = by_name(position, names, robot.names)
        point = JointTrajectoryPoint(positions=values + [0.0] if fault == "width" and k == n - 1 else values)
        point.time_from_start = to_duration(max(t, 0.0))
        if fault == "first_2_31" and k == 0:
            point.time_from_start.sec = 2 ** 31 - 1
        if fault == "negative_time" and k == n - 1:
            point.time_from_start.sec = -1
        if fault == "non_increasing" and k == n - 1 and n > 1:
            point.time_from_start = msg.points[0].time_from_start
        msg.points.append(point)
    return "trajectory", msg


@pytest.fixture
def fuzz_graph(ros_domain_id):
    """One graph for all examples (hypothesis runs them in one call of the test); torn down before
    the next test starts its own on the same domain."""
    with filter_graph(ros_domain_id, **UNHURRIED) as graph:
        yield graph


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(stream=st.lists(hostile_message(), min_size=1, max_size=6))
def test_fuzzed_messages_never_produce_an_unsafe_output(fuzz_graph, stream):
    node, robot = fuzz_graph
    sent = node.runner.stats.received
    for spec in stream:
        kind, msg = build(spec, robot)
        if kind == "joint_state":
            robot.joints.publish(msg)
        else:
            (robot.policy_forward if kind == "targets" else robot.policy).publish(msg)
            sent += 1
        if spec["delay"]:
            time.sleep(spec["delay"])  # part of the attack: how fast messages follow each other
    assert wait_for(lambda: settled(node, robot, sent), 30.0), (node.runner.stats, len(robot.outputs))
    assert_no_violation(robot)
    assert node.runner.is_alive()


# ---- the e-stop under attack ------------------------------------------------------------------
def estop_hold(robot, asked: float):
    """(decided, arrived) of the e-stop's hold asked for at `asked`: when the filter decided it
    (its event's stamp) and when the first hold after that decision
    reached the robot; None until both are in."""
    for event in list(robot.events):
        if event.reason == "estop" and event.action == SafetyEvent.ACTION_HOLD and seconds(event.header.stamp) >= asked:
            decided = seconds(event.header.stamp)
            for arrival, msg in list(robot.outputs):
                if arrival >= decided and is_hold(jtc_message(msg)):
                    return decided, arrival
    return None


def forwarded(node) -> int:
    """Commands the filter has forwarded (passed or clamped) so far."""
    return node.filter.counts[Band.PASS] + node.filter.counts[Band.CLAMP]


def largest_commands(robot, node):
    """Two commands of max_points points over the horizon, stamped 0 (from when they arrive):
    there and back, 0.05 rad on joint_1. Built once, so that sending them costs the attacker
    next to nothing."""
    q = robot.position()
    n, span = node.params.max_points, node.filter.max_horizon_s - 0.05
    offsets = np.linspace(0.02, 0.02 + span, n)
    ramp = offsets_ramp(n)
    there = trajectory_msg(robot.names, 0.0, offsets, q + ramp)
    back = trajectory_msg(robot.names, 0.0, offsets, q + ramp[::-1] - ramp[-1])
    return there, back


def test_estop_answers_within_a_bound_under_a_flood_of_the_largest_commands(ros_domain_id):
    with filter_graph(ros_domain_id) as (node, robot):
        stop = threading.Event()
        sent = [0]
        there, back = largest_commands(robot, node)

        def flood():  # 1 kHz asked; the same two messages, swapped every half second
            while not stop.is_set():
                robot.policy.publish(there if int(time.monotonic() * 2) % 2 else back)
                sent[0] += 1
                time.sleep(0.001)

        attacker = threading.Thread(target=flood, daemon=True)
        attacker.start()
        try:
            # The e-stop is asked for under a flood, not before one has built up (a fast run
            # used to finish its four e-stops after 90 messages).
            assert wait_for(lambda: sent[0] > 100, 30), "the flood never got going"
            for _ in range(4):
                count = node.runner.stats.filtered
                assert wait_for(lambda: node.runner.stats.filtered > count + 2), "the flood is not being filtered"
                asked = robot.now()
                response, took = robot.call_estop(True)
                assert response.success and response.engaged and took <= ESTOP_BOUND_S
                assert wait_for(lambda: estop_hold(robot, asked) is not None), "no hold after the e-stop"
                _, arrival = estop_hold(robot, asked)
                assert arrival - asked <= ESTOP_BOUND_S
                response, _ = robot.call_estop(False)
                assert not response.engaged
        finally:
            stop.set()
            attacker.join(5.0)
        assert sent[0] > 100 and node.runner.stats.superseded > 0  # it was a flood, and the newest won
        assert_no_violation(robot)


# ---- the seven findings -----------------------------------------------------------------------
def test_finding1_a_huge_legal_command_is_refused_unread_and_the_estop_is_not_delayed(ros_domain_id):
    with filter_graph(ros_domain_id) as (node, robot):
        before = len(robot.events)
        legal_command(robot, 10_000, 0.95)  # finite, the right names, inside the limits, within 1 s
        time.sleep(0.3)  # the finding's timing: the e-stop follows 0.3 s later
        response, took = robot.call_estop(True)
        assert response.engaged and took <= ESTOP_BOUND_S
        assert wait_for(lambda: "message_too_large" in robot.reasons(before))
        robot.call_estop(False)
        before = len(robot.events)
        legal_command(robot, node.params.max_points + 1, 0.5)  # small in bytes, over the point cap
        assert wait_for(lambda: "too_many_points" in robot.reasons(before))
        assert_no_violation(robot)


def test_finding1_a_command_too_slow_to_filter_is_dropped_and_holds_from_where_the_robot_is(ros_domain_id):
    # Caps raised so that the message is read: then max_processing_s is what bounds the work.
    with filter_graph(ros_domain_id, max_points=20_000, max_message_bytes=4_000_000) as (node, robot):
        long = slow_command(robot, 10_000)
        legal_command(robot, 3, 0.2)
        assert wait_for(lambda: forwarded(node) == 1)
        before = len(robot.events)
        robot.policy.publish(long)
        # decided: dropped as late, or (the finding) forwarded, thousands of points long
        assert wait_for(lambda: "late" in robot.reasons(before)
                        or any(len(msg.points) > 1000 for _, msg in robot.outputs), 60.0)
        # Nothing went out long after the time it was planned from (the finding: a plan stamped
        # ~7 s before it was sent), and holds start where the robot is (the finding: a hold of
        # 6 rad/s from the end of that plan, which the robot never executed).
        assert all(arrival - seconds(msg.header.stamp) <= 1.0 for arrival, msg in robot.outputs)
        assert_no_violation(robot)
        assert "late" in robot.reasons(before)
        assert wait_for(lambda: settled(node, robot, 2), 20.0)
        assert_no_violation(robot)


def test_finding2_a_point_far_beyond_the_horizon_is_rejected(ros_domain_id):
    with filter_graph(ros_domain_id) as (node, robot):
        before, count = len(robot.events), len(robot.outputs)
        sent_at = robot.now()
        robot.send([[0.05, 0, 0, 0, 0, 0, 0]], first=600.0)
        assert wait_for(lambda: "beyond_horizon" in robot.reasons(before))
        assert wait_for(lambda: settled(node, robot, 1))
        for _, msg in robot.outputs[count:]:  # a hold, not 6,001 points over 600 s
            assert is_hold(jtc_message(msg)) and len(msg.points) < 100, msg
            moving = [p for p in msg.points if not np.allclose(p.positions, msg.points[-1].positions)]
            assert all(seconds(msg.header.stamp) + seconds(p.time_from_start) <= sent_at + 5.0 for p in moving)
        assert_no_violation(robot)


def test_finding3_times_of_2_31_seconds_are_rejected_not_a_hang(ros_domain_id):
    with filter_graph(ros_domain_id) as (node, robot):
        names = robot.names
        q = robot.position()
        for field in ("time_from_start", "stamp"):
            before = len(robot.events)
            msg = trajectory_msg(names, robot.now(), [robot.now() + 0.1], [q])
            if field == "stamp":
                msg.header.stamp.sec = 2 ** 31 - 1
            else:
                msg.points[0].time_from_start.sec = 2 ** 31 - 1
            robot.policy.publish(msg)
            assert wait_for(lambda: "beyond_horizon" in robot.reasons(before)), field
        before = len(robot.events)
        msg = trajectory_msg(names, robot.now(), [robot.now() + 0.1], [q])
        msg.points[0].time_from_start.nanosec = 2 ** 32 - 1
        robot.policy.publish(msg)
        assert wait_for(lambda: "invalid_time" in robot.reasons(before))
        response, took = robot.call_estop(True)  # and the node still answers
        assert response.engaged and took <= ESTOP_BOUND_S
        assert_no_violation(robot)


def test_finding4_a_joint_state_without_positions_is_rejected_not_a_crash(ros_domain_id):
    with filter_graph(ros_domain_id, **UNHURRIED) as (node, robot):
        before = len(robot.events)
        robot.publish_joint_states = False  # else a good one may replace it before the filter looks
        empty = JointState(name=robot.names, position=[])
        empty.header.stamp = to_time(robot.now())
        robot.joints.publish(empty)
        assert wait_for(lambda: "invalid_joint_state" in robot.reasons(before))
        robot.publish_joint_states = True
        assert node.runner.is_alive()
        robot.send(offsets_ramp(3))  # the node still forwards commands
        assert wait_for(lambda: forwarded(node) == 1)
        assert_no_violation(robot)


def test_finding5_joint_states_that_stop_hold_the_arm_and_stop_forwarding(ros_domain_id):
    with filter_graph(ros_domain_id, **UNHURRIED) as (node, robot):
        robot.send(offsets_ramp(3))
        assert wait_for(lambda: forwarded(node) == 1)
        before = len(robot.events)
        robot.publish_joint_states = False
        stop = threading.Event()

        def policy():  # commands keep coming at 10 Hz, as in the finding
            while not stop.is_set():
                robot.send(offsets_ramp(3, total=0.01), first=0.1, step=0.1)
                stop.wait(0.1)

        sender = threading.Thread(target=policy, daemon=True)
        sender.start()
        try:
            stale = lambda: [e for e in robot.events[before:] if e.reason == "stale_joint_state"]  # noqa: E731
            # The watchdog's hold, or the reject of a command that came first: either way the arm holds.
            assert wait_for(stale), "nothing noticed that joint states stopped"
            assert node.filter.holding("arm")
            held_at = forwarded(node)
            assert wait_for(lambda: sum(e.action == SafetyEvent.ACTION_REJECT for e in stale()) >= 3), \
                "commands were not rejected while joint states were missing"
            assert forwarded(node) == held_at, "a command was forwarded without joint states"
            robot.publish_joint_states = True
            assert wait_for(lambda: forwarded(node) > held_at), "forwarding did not resume"
        finally:
            stop.set()
            sender.join(5.0)
        assert_no_violation(robot)


def test_finding7_the_watchdog_and_estop_act_on_time_while_the_worker_is_busy(ros_domain_id):
    # Caps and the processing bound raised far beyond the defaults, so that one command keeps the
    # worker busy for seconds: the watchdog and the e-stop must not wait for it.
    with filter_graph(ros_domain_id, max_points=20_000, max_message_bytes=4_000_000,
                      max_processing_s=60.0) as (node, robot):
        long = slow_command(robot, 8000)
        before = len(robot.events)
        times, _ = legal_command(robot, 3, 0.4, lead_s=0.3, stamp_zero=False)  # its end in the test's clock
        assert wait_for(lambda: forwarded(node) == 1)
        robot.policy.publish(long)  # busy with it when the short command runs out
        stale = lambda: [e for e in robot.events[before:] if e.reason == "stale_command"]  # noqa: E731
        assert wait_for(stale, 30.0), "no stale-command hold"
        assert seconds(stale()[0].header.stamp) - times[-1] <= node.params.watchdog_timeout_s + WATCHDOG_SLACK_S
        assert node.runner.stats.filtered == 1, "the long command was done before the watchdog held"
        response, took = robot.call_estop(True)  # the worker is still at it
        assert response.engaged and took <= ESTOP_BOUND_S
        assert wait_for(lambda: settled(node, robot, 2), 60.0)
        assert_no_violation(robot)
