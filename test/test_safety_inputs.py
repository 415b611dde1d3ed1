"""The safety filter's input checks and threads, without a ROS graph: caps and range checks on
real message objects before any per-point work, malformed and stale joint states, commands
abandoned mid-way without a trace, and the runner's e-stop and watchdog taking the filter from
a busy worker."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffusion_policy_ros.nodes._ros_convert import to_time, trajectory_msg
from diffusion_policy_ros.robot_config import ConfigError, load_robot_config
from diffusion_policy_ros.safety import Band, JointLimits, SafetyParams
from diffusion_policy_ros.safety.build import build_safety_filter
from diffusion_policy_ros.safety.filter import ACTION_HOLD, ACTION_REJECT, Interrupted
from diffusion_policy_ros.safety.messages import InputRejected, read_trajectory
from diffusion_policy_ros.safety.runner import TRAJECTORY, FilterRunner, UrgentLock
from waiting import wait_for

HOME = np.array([0.0, 0.03, 0.81, 0.0, -1.31, 0.0, 0.04])
NOW = 1000.0


@pytest.fixture(scope="module")
def config():
    return load_robot_config("config/single_arm.yaml")


@pytest.fixture
def filt(config):
    f = build_safety_filter(config)
    f.update_joint_state("arm", f.limits["arm"].names, HOME, NOW)
    return f


def trajectory(names, start, offsets, positions):
    return trajectory_msg(names, start, start + np.asarray(offsets, float), positions)


def reason_of(result):
    assert result.band is Band.REJECT and result.events, result
    return result.events[0].reason


class Untouchable:
    """A trajectory point that fails the test when anything reads it."""

    def __getattr__(self, name):
        raise AssertionError("a point was read before the message-level checks")


class PlainTrajectory:
    """JointTrajectory's fields on a plain object (the real message type-checks its points)."""

    def __init__(self, names, points, start):
        self.joint_names = list(names)
        self.points = points
        self.header = JointTrajectory().header
        self.header.stamp = to_time(start)


def test_caps_names_and_stamp_are_checked_before_any_point_is_read(filt):
    names = filt.limits["arm"].names
    params = filt.params
    msg = PlainTrajectory(names, [Untouchable()] * (params.max_points + 1), NOW)
    with pytest.raises(InputRejected) as e:
        read_trajectory(msg, NOW, params, names)
    assert e.value.reason == "too_many_points"
    msg = PlainTrajectory(list(names[:-1]) + ["someone_elses_joint"], [Untouchable()], NOW)
    with pytest.raises(InputRejected) as e:
        read_trajectory(msg, NOW, params, names)
    assert e.value.reason == "unknown_joint" and "someone_elses_joint" in str(e.value)
    msg = PlainTrajectory(names, [Untouchable()], NOW - params.max_stamp_age_s - 0.5)
    with pytest.raises(InputRejected) as e:
        read_trajectory(msg, NOW, params, names)
    assert e.value.reason == "invalid_time" and "old" in str(e.value)
    names_read, times, positions = read_trajectory(trajectory(names, 0.0, [0.1], [HOME]), NOW, params, names)
    assert times[0] == pytest.approx(NOW + 0.1)  # stamp 0: from now, as a JTC reads it
    np.testing.assert_array_equal(positions, [HOME])


@pytest.mark.parametrize("change, reason", [
    (lambda m: setattr(m.points[0].time_from_start, "sec", 2 ** 31 - 1), "beyond_horizon"),
    (lambda m: setattr(m.header.stamp, "sec", 2 ** 31 - 1), "beyond_horizon"),
    (lambda m: setattr(m.points[0].time_from_start, "sec", 600), "beyond_horizon"),
    (lambda m: setattr(m.points[1].time_from_start, "sec", -1), "invalid_time"),
    (lambda m: setattr(m.points[1].time_from_start, "nanosec", 2 ** 32 - 1), "invalid_time"),
    (lambda m: setattr(m.header.stamp, "nanosec", 1_000_000_000), "invalid_time"),
    (lambda m: setattr(m.header.stamp, "sec", 5), "invalid_time"),
    (lambda m: setattr(m.points[1], "positions", [0.0] * 3), "invalid_trajectory"),
    (lambda m: setattr(m, "points", []), "invalid_trajectory"),
    (lambda m: setattr(m.points[1], "time_from_start", Duration(sec=0, nanosec=100_000_000)), "non_increasing_times"),
    (lambda m: m.points.__setitem__(1, JointTrajectoryPoint(positions=[math.nan] * 7,
                                                            time_from_start=Duration(sec=0, nanosec=300_000_000))),
     "non_finite"),
])
def test_out_of_range_fields_are_rejected_by_reason_with_a_hold(filt, change, reason):
    names = filt.limits["arm"].names
    msg = trajectory(names, NOW, [0.1, 0.2, 0.3], [HOME + 0.01, HOME + 0.02, HOME + 0.03])
    change(msg)
    started = time.monotonic()
    result = filt.filter_trajectory("arm", msg, NOW)
    assert reason_of(result) == reason
    assert result.events[0].action == ACTION_REJECT
    assert result.trajectory is not None and filt.holding("arm")  # rejected: the arm holds
    assert time.monotonic() - started < 5.0  # never the hang of a 2**31 s point subdivided by 0.1 s


def test_first_point_beyond_the_horizon_is_rejected_and_later_ones_dropped(filt):
    names = filt.limits["arm"].names
    horizon = filt.max_horizon_s
    far = filt.filter_command("arm", names, [NOW + 600.0], [HOME + 0.1], NOW)
    assert reason_of(far) == "beyond_horizon"
    long = filt.filter_command("arm", names, NOW + np.arange(1, 31) * 0.1, [HOME + 0.001 * k for k in range(30)], NOW)
    assert long.band is not Band.REJECT
    last_command_point = filt._command_end["arm"]
    assert last_command_point <= NOW + horizon + 1e-9


def test_malformed_joint_states_are_reported_once_and_never_used(filt):
    names = list(filt.limits["arm"].names)
    cases = [
        (JointState(name=names, position=[]), "invalid_joint_state"),          # finding 4: IndexError before
        (JointState(name=names[:-1], position=list(HOME[:-1])), "invalid_joint_state"),
        (JointState(name=names + [names[0]], position=list(HOME) + [0.0]), "invalid_joint_state"),
        (JointState(name=names, position=list(HOME[:-1]) + [math.nan]), "invalid_joint_state"),
    ]
    for msg, reason in cases:
        msg.header.stamp = to_time(NOW + 0.01)
        filt._joint_state_problem["arm"] = None
        result = filt.joint_state("arm", msg, NOW + 0.01)
        assert result is not None and result.events[0].reason == reason, msg
        assert result.trajectory is None
        assert filt.joint_state("arm", msg, NOW + 0.02) is None  # the same problem again: no new event
    future = JointState(name=names, position=list(HOME + 0.2))
    future.header.stamp = to_time(NOW + 5.0)
    filt._joint_state_problem["arm"] = None
    assert filt.joint_state("arm", future, NOW + 0.03).events[0].reason == "invalid_joint_state"
    old = JointState(name=names, position=list(HOME + 0.2))
    old.header.stamp = to_time(NOW - 5.0)
    assert filt.joint_state("arm", old, NOW + 0.04).events[0].reason == "stale_joint_state"
    np.testing.assert_allclose(filt._measured["arm"], HOME)  # none of them was taken for the arm
    good = JointState(name=["base_of_something_else"] + names, position=[9.0] + list(HOME))
    good.header.stamp = to_time(NOW + 0.05)
    assert filt.joint_state("arm", good, NOW + 0.05) is None


def test_stale_joint_states_hold_the_arm_and_reject_commands(filt):
    names = filt.limits["arm"].names
    timeout = filt.params.joint_state_timeout_s
    moving = filt.filter_command("arm", names, NOW + np.arange(1, 9) * 0.1, [HOME + 0.01 * k for k in range(1, 9)], NOW)
    assert moving.band is not Band.REJECT
    assert filt.next_deadline() == pytest.approx(NOW + timeout)  # before the command's end + watchdog
    assert filt.tick(NOW + timeout - 0.01) == []
    held = filt.tick(NOW + timeout)
    assert [e.reason for r in held for e in r.events] == ["stale_joint_state"]
    assert held[0].events[0].action == ACTION_HOLD and filt.holding("arm")
    assert filt.next_deadline() is None
    later = NOW + timeout + 0.05
    r = filt.filter_command("arm", names, [later + 0.1], [HOME], later)
    assert reason_of(r) == "stale_joint_state"
    q, _ = filt.plan("arm").state_at(later)
    filt.update_joint_state("arm", names, q, later)  # joint states are back: commands pass again
    assert filt.filter_command("arm", names, [later + 0.1], [q + 0.005], later).band is not Band.REJECT


def test_a_robot_that_has_not_received_the_new_plan_yet_is_on_track(filt):
    """Measured shortly after a plan replaced another, the arm may still follow the old one (the
    new one is on its way): no tracking-error hold. Long after, the same gap is one."""
    names = filt.limits["arm"].names
    going = filt.filter_command("arm", names, NOW + 0.1 * np.arange(1, 11), [HOME + np.r_[0.1 * k, 0, 0, 0, 0, 0, 0]
                                                                          for k in range(1, 11)], NOW)
    assert going.band is not Band.REJECT
    old_plan = filt.plan("arm")
    later = NOW + 0.3
    q_old, _ = old_plan.state_at(later)
    back = filt.filter_command("arm", names, [later + 0.1, later + 0.2],
                               [q_old - np.r_[0.05, 0, 0, 0, 0, 0, 0], q_old - np.r_[0.1, 0, 0, 0, 0, 0, 0]], later)
    assert back.band is not Band.REJECT  # turning back, as fast as the acceleration limit lets it
    measured = later + 0.4
    q_measured, _ = old_plan.state_at(measured)  # still on the old plan
    assert np.max(np.abs(q_measured - filt.plan("arm").state_at(measured)[0])) > filt.params.max_tracking_error_rad
    assert filt.update_joint_state("arm", names, q_measured, measured + 0.01, stamp=measured) is None
    hold = filt.update_joint_state("arm", names, q_measured + np.r_[0.35, 0, 0, 0, 0, 0, 0], measured + 0.02,
                                   stamp=measured + 0.01)
    assert hold is not None and hold.events[0].reason == "tracking_error"


def test_an_interrupted_command_leaves_the_filter_as_it_was(filt):
    names = filt.limits["arm"].names
    before = (filt.plan("arm"), filt._command_end["arm"], filt.holding("arm"), dict(filt.counts))
    calls = []

    def interrupt():
        calls.append(1)
        return "urgent" if len(calls) > 5 else None

    with pytest.raises(Interrupted):
        filt.filter_command("arm", names, NOW + 0.02 * np.arange(1, 40), [HOME + 0.002 * k for k in range(39)], NOW,
                            interrupt)
    assert (filt.plan("arm"), filt._command_end["arm"], filt.holding("arm"), dict(filt.counts)) == before
    assert filt.filter_command("arm", names, [NOW + 0.1], [HOME + 0.01], NOW).band is not Band.REJECT


@pytest.mark.parametrize("values, message", [
    ({"watchdog_timeout_s": 0.0}, "watchdog_timeout_s must be > 0"),
    ({"max_points": 0}, "max_points must be >= 1"),
    ({"max_points": 2.5}, "max_points must be an integer"),
    ({"max_velocity_rad_s": math.nan}, "max_velocity_rad_s must be a finite number, got nan"),
    ({"max_step_rad": -0.1}, "max_step_rad must be > 0"),
    ({"reject_step_rad": True}, "reject_step_rad must be a number"),
    ({"max_velocity_scale": 2.0}, "max_velocity_scale must be"),
    ({"workspace_min": [0.0, 0.0]}, "workspace_min must have exactly 3 values"),
    ({"workspace_max": [1.0, math.nan, 1.0]}, "workspace_max must be a finite number, got nan"),
    ({"gripper_range_m": [math.nan, 0.08]}, "gripper_range_m must be a finite number, got nan"),
    ({"workspace_min": [0.0, 0.0, 2.0]}, "below workspace_max"),
    ({"gripper_range_m": [0.08, 0.0]}, "min < max"),
    ({"output": "effort"}, "output must be one of"),
    ({"input": "joystick"}, "input must be one of"),
    ({"max_stepp_rad": 0.1}, "did you mean 'max_step_rad'"),
])
def test_safety_params_are_validated(values, message):
    with pytest.raises(ConfigError, match=message):
        SafetyParams.from_mapping(values)


def test_safety_params_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match="max_processing_s"):
        SafetyParams(max_processing_s=0.0)
    with pytest.raises(ConfigError, match="workspace_rpy"):
        SafetyParams(workspace_rpy=(math.nan, 0.0, 0.0))
    assert SafetyParams.from_mapping({"max_points": 16}).max_points == 16


def test_joint_limits_are_validated():
    params = SafetyParams()
    ranges = {"a": (-1.0, 1.0), "g": (0.0, 0.08)}
    lim = JointLimits.build(["a", "g"], ["g"], ranges, params)
    np.testing.assert_allclose(lim.safe_lower, [-1.0 + params.position_margin_rad, 0.0])
    assert list(lim.is_gripper) == [False, True]
    with pytest.raises(ConfigError, match="no limited range"):
        JointLimits.build(["a", "b"], [], ranges, params)
    with pytest.raises(ConfigError, match="nothing inside margin"):
        JointLimits.build(["a"], [], {"a": (0.0, 0.08)}, params)
    with pytest.raises(ConfigError, match="must be positive"):
        JointLimits.build(["a"], [], ranges, SafetyParams(max_velocity_scale=0.0))
    grip = JointLimits.build(["g"], ["g"], {}, params)  # a gripper the model does not limit: the parameter
    np.testing.assert_allclose([grip.lower[0], grip.upper[0]], params.gripper_range_m)


def test_urgent_users_get_the_lock_ahead_of_the_ordinary_holder():
    lock = UrgentLock()
    order, inside, leave = [], threading.Event(), threading.Event()

    def urgent_user():
        with lock.urgent():
            order.append("urgent in")
            inside.set()
            leave.wait(5.0)
            order.append("urgent out")

    def ordinary_user():
        with lock.ordinary():
            order.append("ordinary in")

    urgent = threading.Thread(target=urgent_user)
    with lock.ordinary():
        urgent.start()
        assert wait_for(lock.wanted)  # what the worker polls between two points
        order.append("worker lets go")
    assert inside.wait(5.0)
    ordinary = threading.Thread(target=ordinary_user)
    ordinary.start()
    leave.set()
    urgent.join(5.0)
    ordinary.join(5.0)
    assert order == ["worker lets go", "urgent in", "urgent out", "ordinary in"]


def test_runner_estop_and_watchdog_do_not_wait_for_a_long_command(config):
    """With the caps raised far beyond the defaults, the worker is busy for seconds with one
    command; the e-stop and the watchdog still act within a fraction of that."""
    params = {**config.node_params("safety_filter_node"), "max_points": 5000, "max_processing_s": 60.0,
              "max_horizon_s": 5.0}
    filt = build_safety_filter(config, params)
    published = []
    clock = time.monotonic
    runner = FilterRunner(filt, clock, lambda r: published.append((clock(), r)), lambda kind, msg: msg)
    names = filt.limits["arm"].names
    runner.start()
    try:
        keep_fresh = threading.Event()

        def joint_states():
            while not keep_fresh.is_set():
                plan = filt.plan("arm")
                q = plan.state_at(clock())[0] if plan is not None else HOME
                runner.submit_joint_state("arm", JointState(name=list(names), position=list(q)))
                time.sleep(0.01)

        feeder = threading.Thread(target=joint_states, daemon=True)
        feeder.start()
        assert wait_for(lambda: filt.ready("arm"))
        now = clock()
        short = trajectory(names, now, [0.05, 0.1], [HOME + 0.002, HOME + 0.004])
        runner.submit_command("arm", TRAJECTORY, short)
        assert wait_for(lambda: runner.stats.filtered == 1)
        end = filt._command_end["arm"]
        n = 4000  # seconds of work for the worker, well within the horizon
        long = trajectory(names, 0.0, 0.01 + np.arange(n) * (4.0 / n), [HOME + 0.004 + 1e-5 * k for k in range(n)])
        long.header.stamp = to_time(clock())
        runner.submit_command("arm", TRAJECTORY, long)
        stale = lambda: [r for _, r in published if any(e.reason == "stale_command" for e in r.events)]  # noqa: E731
        assert wait_for(stale, 30.0), "the watchdog did not hold while the worker was busy"
        assert runner.stats.filtered == 1, "the long command was finished before the watchdog acted"
        held_at = stale()[0].events[0].stamp
        assert held_at - end <= filt.params.watchdog_timeout_s + 0.5
        engaged_at = clock()
        runner.engage_estop("test")
        assert clock() - engaged_at <= 0.5
        assert filt.estop_engaged
        assert wait_for(lambda: runner.stats.settled == runner.stats.received, 30.0)
        assert any(e.reason == "estop" and e.action == ACTION_REJECT for _, r in published for e in r.events)
        keep_fresh.set()
        feeder.join(5.0)
    finally:
        runner.stop()


def test_runner_refuses_oversized_messages_unread(config):
    filt = build_safety_filter(config)
    published = []
    decoded = []
    runner = FilterRunner(filt, time.monotonic, published.append, lambda kind, msg: decoded.append(msg) or msg)
    runner.start()
    try:
        names = list(filt.limits["arm"].names)
        runner.submit_joint_state("arm", JointState(name=names, position=list(HOME)))
        assert wait_for(lambda: filt.ready("arm"))
        runner.submit_command("arm", TRAJECTORY, b"x" * (filt.params.max_message_bytes + 1))
        runner.submit_joint_state("arm", b"y" * (filt.params.max_message_bytes + 1))
        assert wait_for(lambda: runner.stats.settled == 1)
        assert wait_for(lambda: {e.reason for r in published for e in r.events} == {"message_too_large"})
        assert len(decoded) == 1  # only the first joint state was ever decoded
        runner.submit_command("arm", "targets", Float64MultiArray(data=[0.0] * 3))
        assert wait_for(lambda: runner.stats.settled == 2)
        assert published[-1].events[0].reason == "invalid_trajectory"
    finally:
        runner.stop()


def test_a_clock_that_steps_back_is_answered_not_a_crash(config):
    """Sim time steps back when a sim restarts: a command decided before the start of the hold the
    filter planned at the later time must not crash the filter (it did: IndexError in a hold's
    acceleration, which has no segment)."""
    filt = build_safety_filter(config)
    names = list(filt.limits["arm"].names)
    filt.update_joint_state("arm", names, HOME, 10.0)          # holds from t = 10
    result = filt.filter_command("arm", names, [5.1, 5.2], [HOME, HOME], 5.0)
    assert result.band is not None                             # decided, whatever the band
    assert all(np.all(np.isfinite(p)) for p in (result.trajectory.positions if result.trajectory else []))


def test_a_decision_that_raises_is_refused_with_a_hold_and_the_worker_lives_on(config):
    """A bug in one decision (here an injected exception) refuses that command with an event and a
    hold; the next command is decided as usual (before, the worker thread died and the node went
    on without forwarding anything)."""
    filt = build_safety_filter(config)
    published = []
    runner = FilterRunner(filt, time.monotonic, published.append, lambda kind, msg: msg)
    decide, calls = filt.filter_trajectory, []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise IndexError("injected")
        return decide(*args, **kwargs)

    filt.filter_trajectory = fails_once
    runner.start()
    try:
        names = list(filt.limits["arm"].names)
        runner.submit_joint_state("arm", JointState(name=names, position=list(HOME)))
        assert wait_for(lambda: filt.ready("arm"))
        now = time.monotonic()
        runner.submit_command("arm", TRAJECTORY, trajectory(names, now, [0.05, 0.1], [HOME, HOME + 0.002]))
        assert wait_for(lambda: runner.stats.settled == 1)
        assert published[-1].events[0].reason == "internal_error" and "IndexError" in published[-1].events[0].message
        assert published[-1].trajectory is not None                      # the hold that went with it
        now = time.monotonic()
        runner.submit_command("arm", TRAJECTORY, trajectory(names, now, [0.05, 0.1], [HOME, HOME + 0.002]))
        assert wait_for(lambda: runner.stats.settled == 2) and runner.is_alive()
        assert not any(e.reason == "internal_error" for e in published[-1].events)
        assert runner.stats.errors == 1
    finally:
        runner.stop()
