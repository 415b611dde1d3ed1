"""Property tests of the safety filter's math (no ROS graph): whatever command stream arrives,
the path the controller is told to execute stays inside every limit, and every intervention is
reported. The robot model is the real MJCF (resource/mjcf/*.xml) through MuJoCo."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.safety import Band
from diffusion_policy_ros.safety.build import build_safety_filter
from diffusion_policy_ros.safety.filter import ACTION_CLAMP, ACTION_HOLD, ACTION_REJECT
from diffusion_policy_ros.safety.executed_path import ExecutedPath, check_limits

HOME = np.array([0.0, 0.03, 0.81, 0.0, -1.31, 0.0, 0.04])  # tcp near (0.3, 0, 0.3) in the arm base frame
# Bimanual: both tcps at the table centre with this pose (the arms would collide).
REACH = np.array([0.0, 0.57, 0.02, 0.0, -0.96, 0.0, 0.04])
TOL = 1e-6


@pytest.fixture(scope="module")
def single_config():
    return load_robot_config("config/single_arm.yaml")


@pytest.fixture(scope="module")
def bimanual_config():
    return load_robot_config("config/bimanual.yaml")


def check_path(path: ExecutedPath, filt, arm, kinematics=True):
    check_limits(path, filt.limits[arm], filt.params.max_step_rad, filt.period, TOL)
    if kinematics:
        for qi in path.q:
            filt.kinematics.update({arm: qi})
            assert filt.inside_workspace(filt.kinematics.end_effector(arm)), "workspace"


def check_stop(plan, filt, arm, stop_start):
    """The stop at the end of a forwarded trajectory (from `stop_start`: the last command point,
    or the anchor of a hold) is jerk-limited: sampled at its points, every `brake_sample_s`,
    finite differences stay within max_acceleration and max_jerk, and it ends at rest."""
    lim = filt.limits[arm]
    knot_t, knot_q = plan.knots()
    first = int(np.searchsorted(knot_t, stop_start - 1e-9))
    t, q = knot_t[first:], knot_q[first:]
    if len(t) < 2 or (len(t) == 2 and np.allclose(q[0], q[1], atol=1e-12)):
        return 0  # already at rest (a hold in place)
    dt = np.diff(t)
    np.testing.assert_allclose(dt, dt[0], rtol=1e-6, atol=1e-9)  # evenly sampled
    dt = dt[0]
    assert dt <= filt.params.brake_sample_s + 1e-9
    if len(t) >= 3:
        acc = np.diff(q, n=2, axis=0) / dt ** 2
        assert np.all(np.abs(acc) <= lim.max_acceleration + 1e-6), "stop: acceleration limit"
    if len(t) >= 4:
        jerk = np.diff(q, n=3, axis=0) / dt ** 3
        assert np.all(np.abs(jerk) <= lim.max_jerk * (1 + 1e-6) + 1e-3), "stop: jerk limit"
    if len(t) >= 3:  # at rest: the last two points coincide up to the profile's sampling
        assert np.all(np.abs(q[-1] - q[-2]) <= lim.max_jerk * dt ** 3 + 1e-9), "stop ends moving"
    return len(t)


def robot_follows(filt, now, sag=0.0):
    """Joint states from a robot that tracks every arm's plan exactly, or `sag` (rad per joint)
    off it (they must keep coming: without them the filter holds)."""
    for arm in filt.limits:
        plan = filt.plan(arm)
        if plan is not None:
            filt.update_joint_state(arm, list(filt.limits[arm].names), plan.state_at(now)[0] + sag, now)


def command_strategy(n_joints):
    finite = st.floats(-0.8, 0.8)
    wild = st.sampled_from([math.nan, math.inf, -math.inf, 5.0, -5.0, 0.31, -0.31])
    offset = st.one_of(finite, finite, finite, finite, finite, wild)
    point = st.lists(offset, min_size=n_joints, max_size=n_joints)
    return st.fixed_dictionaries({
        "delay": st.floats(0.0, 0.4),                    # time since the previous command
        "t0": st.floats(-0.25, 0.2),                     # first point's time relative to now
        "step": st.floats(0.02, 0.3),                    # spacing of points
        "points": st.lists(point, min_size=1, max_size=8),
        "names": st.sampled_from(["ok", "ok", "ok", "ok", "shuffled", "wrong"]),
    })


def run_stream(filt, arm, stream, t0=100.0, sag=0.0):
    lim = filt.limits[arm]
    names = list(lim.names)
    now = t0
    filt.update_joint_state(arm, names, HOME, now)
    path = ExecutedPath(now, HOME)
    results = []
    for cmd in stream:
        # the watchdog ticks between commands, as the node's timer does
        for k in range(1, int(cmd["delay"] / 0.02) + 1):
            robot_follows(filt, now + 0.02 * k, sag)
            for r in filt.tick(now + 0.02 * k):
                path.replace(r.trajectory)
                check_stop(r.trajectory, filt, arm, r.trajectory.start)
                results.append((r, None))
        now += cmd["delay"] + 1e-4
        robot_follows(filt, now, sag)
        q_now, _ = filt.plan(arm).state_at(now)
        offsets = np.array(cmd["points"], float)
        with np.errstate(invalid="ignore"):  # inf - inf in a wild command stays a NaN command
            positions = q_now + np.cumsum(offsets, axis=0)
        times = now + cmd["t0"] + cmd["step"] * np.arange(len(offsets))
        cmd_names = names
        if cmd["names"] == "shuffled":
            order = np.random.default_rng(len(offsets)).permutation(len(names))
            cmd_names = [names[i] for i in order]
            positions = positions[:, order]
        elif cmd["names"] == "wrong":
            cmd_names = names[:-1] + ["elbow_of_someone_else"]
        r = filt.filter_command(arm, cmd_names, times, positions, now)
        results.append((r, (cmd_names, times, positions, cmd)))
        if r.trajectory is not None:
            path.replace(r.trajectory)
            stop_start = r.trajectory.start if r.band is Band.REJECT else filt._command_end[arm]
            check_stop(r.trajectory, filt, arm, stop_start)
    return path, results


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.lists(command_strategy(7), min_size=1, max_size=10))
def test_no_forwarded_command_violates_a_limit(single_config, stream):
    filt = build_safety_filter(single_config)
    path, results = run_stream(filt, "arm", stream)
    check_path(path, filt, "arm")
    for r, cmd in results:
        if r.band is not Band.PASS:
            assert r.events, "every clamp or reject produces a safety event"
            assert all(e.action in (ACTION_CLAMP, ACTION_REJECT, ACTION_HOLD) for e in r.events)
        else:
            assert not r.events
            names, times, positions, _ = cmd
            order = [names.index(n) for n in filt.limits["arm"].names]
            for t, q in zip(times, positions[:, order]):
                if r.trajectory.start + 1e-3 < t <= r.trajectory.start + filt.max_horizon_s:
                    np.testing.assert_allclose(r.trajectory.state_at(t)[0], q, atol=1e-7)
        if cmd is not None:
            names, _, positions, spec = cmd
            if spec["names"] == "wrong":
                assert r.band is Band.REJECT and r.events[0].reason == "unknown_joint"
            elif not np.all(np.isfinite(positions)):
                assert r.band is Band.REJECT and r.events[0].reason == "non_finite"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.lists(command_strategy(7), min_size=2, max_size=8), fraction=st.floats(-0.9, 0.9))
def test_a_robot_off_its_commands_by_less_than_the_tracking_bound_changes_no_command_path(
        single_config, stream, fraction):
    """A real arm sags and a gripper stalls on an object: measured positions a little off the
    command (below max_tracking_error_rad) must not move the plan's anchor, at rest neither (a
    controller that starts from its last command would jump to the next command's first point:
    found by the 600 s soak)."""
    filt = build_safety_filter(single_config)
    sag = fraction * filt.params.max_tracking_error_rad * np.ones(7)
    path, _ = run_stream(filt, "arm", stream, sag=sag)
    check_path(path, filt, "arm", kinematics=False)


def test_nan_rejects_and_holds(single_config):
    filt = build_safety_filter(single_config)
    names = list(filt.limits["arm"].names)
    filt.update_joint_state("arm", names, HOME, 10.0)
    moving = filt.filter_command("arm", names, 10.0 + 0.1 * np.arange(1, 6),
                                 HOME + np.linspace(0.02, 0.1, 5)[:, None] * np.r_[1, 0, 0, 0, 0, 0, 0], 10.0)
    assert moving.band is Band.PASS
    bad = HOME.copy()
    bad[2] = math.nan
    r = filt.filter_command("arm", names, [10.25], [bad], 10.15)
    assert r.band is Band.REJECT and r.events[0].reason == "non_finite" and r.events[0].action == ACTION_REJECT
    assert all(math.isnan(x) for x in r.events[0].applied)
    assert filt.holding("arm")
    # the hold stops the arm: no motion after the braking tail
    q_end = r.trajectory.final_position
    assert np.allclose(filt.plan("arm").state_at(20.0)[0], q_end)
    assert abs(q_end[0] - HOME[0]) < 0.2


def test_hold_from_full_speed_is_a_smooth_jerk_limited_stop(single_config):
    filt = build_safety_filter(single_config)
    names = list(filt.limits["arm"].names)
    lim = filt.limits["arm"]
    filt.update_joint_state("arm", names, HOME, 0.0)
    now, q = 0.0, HOME.copy()
    for _ in range(6):  # speed joint_1 up as fast as the filter allows
        robot_follows(filt, now)
        q_now, _ = filt.plan("arm").state_at(now)
        r = filt.filter_command("arm", names, [now + 0.1, now + 0.2],
                                [q_now + np.r_[0.3, 0, 0, 0, 0, 0, 0], q_now + np.r_[0.6, 0, 0, 0, 0, 0, 0]], now)
        now += 0.1
    q0, v0 = filt.plan("arm").state_at(now)
    a0 = filt.plan("arm").acceleration_at(now)
    assert abs(v0[0]) > 1.0, "the arm should be moving fast before the hold"
    bad = q0.copy()
    bad[1] = math.nan
    robot_follows(filt, now)
    hold = filt.filter_command("arm", names, [now + 0.1], [bad], now).trajectory
    assert filt.holding("arm")
    n = check_stop(hold, filt, "arm", hold.start)
    assert n >= 6, "a jerk-limited stop from full speed takes several samples"
    knot_t, knot_q = hold.knots()
    v = np.diff(knot_q, axis=0) / np.diff(knot_t)[:, None]
    dt = filt.params.brake_sample_s
    # continuous in velocity with the motion it interrupts: the first sample's mean velocity is
    # where the previous velocity and acceleration lead, within what the jerk limit allows
    expected = v0 + a0 * dt / 2
    assert np.all(np.abs(v[0] - expected) <= lim.max_jerk * dt ** 2 / 6 + 1e-6)
    assert np.all(np.abs(v) <= lim.max_velocity + 1e-9)
    assert np.all(np.abs(v[-1]) <= lim.max_jerk * dt ** 2 / 6 + 1e-9), "the stop ends at rest"
    assert np.allclose(filt.plan("arm").state_at(now + 5.0)[0], hold.final_position)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(joint=st.integers(0, 5), others=st.lists(st.floats(-0.004, 0.004), min_size=6, max_size=6),
       speed_fraction=st.floats(0.05, 0.95), sign=st.sampled_from([-1.0, 1.0]))
def test_a_clamp_names_only_the_limit_that_changed_the_command(single_config, joint, others, speed_fraction, sign):
    """From rest, one point a period ahead that asks one joint for a speed its acceleration
    cannot reach in a period but under its velocity limit, the others barely moving: the clamp is
    an acceleration clamp, not also a velocity one (every joint that was not clamped at all once
    counted as velocity bound, so each acceleration clamp was reported twice)."""
    filt = build_safety_filter(single_config)
    lim = filt.limits["arm"]
    names = list(lim.names)
    filt.update_joint_state("arm", names, HOME, 0.0)
    reachable = lim.max_acceleration[joint] * filt.period   # from rest within one period
    assert reachable < 0.8 * lim.max_velocity[joint], "the config leaves no speed to test between the two"
    speed = 1.1 * reachable + speed_fraction * (0.95 * lim.max_velocity[joint] - 1.1 * reachable)
    step = np.r_[others, 0.0]
    step[joint] = sign * speed * filt.period
    r = filt.filter_command("arm", names, [filt.period], [HOME + step], 0.0)
    assert r.band is Band.CLAMP
    assert {e.reason for e in r.events} == {"acceleration_limit"}


def test_hold_during_a_braking_tail_keeps_that_stop(single_config):
    # Found by hypothesis: the gripper is sent past its range, so the plan runs up to the limit
    # and its braking tail stops just inside it; a NaN arrives during that tail. Braking anew
    # from the sampled tail (whose finite-difference acceleration lags the real one) overshot
    # the limit and was clipped there: an acceleration spike in the stop.
    clamped = {"delay": 0.2346957314423008, "t0": -0.15369730268221046, "step": 0.3, "names": "ok",
               "points": [[-0.2236074897864032, -0.48148781582697525, 0.0, 0.31, 0.0, 0.31, 0.05787090933710726],
                          [0.19435605974273018, 0.0, 0.0689796602728665, -0.31, -0.31, 0.0, 0.5585607571583981]]}
    nan_command = {"delay": 0.19213934747419273, "t0": 0.2, "step": 0.2, "names": "ok", "points": [[math.nan] * 7]}
    filt = build_safety_filter(single_config)
    path, results = run_stream(filt, "arm", [clamped, nan_command])  # checks every stop
    assert [r.band for r, cmd in results if cmd is not None] == [Band.CLAMP, Band.REJECT]
    check_path(path, filt, "arm")


def gripper_to_its_limit_then_rejects(config, reject_times):
    """The gripper sent far past its range (the plan runs it up to the limit at full speed and
    brakes just inside), then a NaN command at each of `reject_times`: -> (filter, path, holds)."""
    filt = build_safety_filter(config)
    names = list(filt.limits["arm"].names)
    start = HOME.copy()
    start[6] = 0.0
    target = start.copy()
    target[6] = 0.5
    filt.update_joint_state("arm", names, start, 0.0)
    path = ExecutedPath(0.0, start)
    ramp = [start + (target - start) * k / 5 for k in range(1, 6)]
    r = filt.filter_command("arm", names, [0.1, 0.2, 0.3, 0.4, 0.5], ramp, 0.0)
    assert r.band is Band.CLAMP
    path.replace(r.trajectory)
    holds = []
    for now in reject_times:
        robot_follows(filt, now)
        hold = filt.filter_command("arm", names, [now + 0.1], [np.full(7, math.nan)], now).trajectory
        path.replace(hold)
        holds.append(hold)
    return filt, path, holds


def test_a_hold_decided_at_a_knot_starts_from_the_velocity_the_arm_has(single_config):
    # Found by the node's hostile fuzzing: at a knot the plan reported the next segment's velocity,
    # so a hold decided exactly then changed the gripper's velocity at 4.6 m/s^2 (limit 2).
    filt, path, _ = gripper_to_its_limit_then_rejects(single_config, [0.3])  # 0.3: a knot of the plan
    check_path(path, filt, "arm", kinematics=False)


def test_a_second_hold_keeps_the_stop_of_the_first(single_config):
    # Found by the node's hostile fuzzing: a reject while the arm already held braked anew from a
    # sample of that hold (a lagging acceleration), overshot the gripper's range and was clipped.
    filt, path, holds = gripper_to_its_limit_then_rejects(single_config, [0.29, 0.31])
    for hold in holds:
        check_stop(hold, filt, "arm", hold.start)
    check_path(path, filt, "arm", kinematics=False)


def test_stale_command_holds_within_timeout(single_config):
    filt = build_safety_filter(single_config)
    names = list(filt.limits["arm"].names)
    filt.update_joint_state("arm", names, HOME, 0.0)
    times = np.array([0.1, 0.2, 0.3])
    r = filt.filter_command("arm", names, times, np.tile(HOME, (3, 1)) + 0.01, 0.0)
    assert r.band is Band.PASS
    timeout = filt.params.watchdog_timeout_s
    robot_follows(filt, 0.3)
    assert filt.tick(0.3 + timeout - 0.01) == []
    holds = filt.tick(0.3 + timeout)
    assert len(holds) == 1
    event = holds[0].events[0]
    assert event.action == ACTION_HOLD and event.reason == "stale_command"
    assert filt.holding("arm") and filt.tick(5.0) == []  # one hold, not a stream of them


def test_estop_latched_until_released(single_config):
    filt = build_safety_filter(single_config)
    names = list(filt.limits["arm"].names)
    filt.update_joint_state("arm", names, HOME, 0.0)
    results = filt.engage_estop(0.0, "test")
    assert [e.reason for r in results for e in r.events] == ["estop"]
    for k in range(1, 20):  # time passing, watchdog ticks and valid commands do not release it
        now = 0.1 * k
        robot_follows(filt, now)
        assert filt.tick(now) == []
        r = filt.filter_command("arm", names, [now + 0.1], [HOME], now)
        assert r.band is Band.REJECT and r.events[0].reason == "estop"
    assert filt.estop_engaged
    filt.release_estop()
    r = filt.filter_command("arm", names, [2.1], [HOME], 2.0)
    assert r.band is Band.PASS


def test_workspace_box_stops_before_the_boundary(single_config):
    """Lowering the arm with joint_2 reaches the box floor (z = 0) long before joint_2's limit:
    the workspace, not the joint limit, must be what stops it, just above the floor."""
    filt = build_safety_filter(single_config)
    lim = filt.limits["arm"]
    names = list(lim.names)
    floor = filt.params.workspace_min[2]
    filt.update_joint_state("arm", names, HOME, 0.0)
    filt.kinematics.update({"arm": HOME})
    assert filt.kinematics.end_effector("arm")[2] > floor + 0.2  # it starts well above the floor
    now, path = 0.0, ExecutedPath(0.0, HOME)
    reasons = set()
    for _ in range(40):  # 8 rad asked of joint_2 in 4 s: far past both the floor and its limit
        robot_follows(filt, now)
        q, _ = filt.plan("arm").state_at(now)
        target = q + np.r_[0, 0.2, 0, 0, 0, 0, 0]
        r = filt.filter_command("arm", names, [now + 0.1, now + 0.2], [q + (target - q) / 2, target], now)
        reasons |= {e.reason for e in r.events}
        path.replace(r.trajectory)
        now += 0.1
    check_path(path, filt, "arm")
    assert "workspace" in reasons and "position_limit" not in reasons, reasons
    final, _ = filt.plan("arm").state_at(now + 5.0)
    assert final[1] < lim.safe_upper[1] - 0.5, "joint_2 ran to its limit: the workspace did not stop it"
    filt.kinematics.update({"arm": final})
    assert floor <= filt.kinematics.end_effector("arm")[2] <= floor + 0.05  # stopped just above the floor


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.lists(st.tuples(st.sampled_from(["left", "right"]), command_strategy(7)),
                       min_size=1, max_size=8))
def test_two_arms_keep_their_distance(bimanual_config, stream):
    filt = build_safety_filter(bimanual_config)
    now = 0.0
    # both arms reach toward each other; the filter must keep min_arm_distance_m between links
    for arm in ("left", "right"):
        filt.update_joint_state(arm, list(filt.limits[arm].names), HOME, now)
    paths = {arm: ExecutedPath(now, HOME) for arm in ("left", "right")}
    reasons = set()
    for arm, cmd in stream:
        names = list(filt.limits[arm].names)
        now += cmd["delay"] + 1e-4
        robot_follows(filt, now)
        for r in filt.tick(now):
            paths[r.arm].replace(r.trajectory)
        q_now, _ = filt.plan(arm).state_at(now)
        noise = np.nan_to_num(np.array(cmd["points"]), nan=0, posinf=0, neginf=0) * 0.1
        frac = np.linspace(0.3, 1.0, len(noise))[:, None]
        positions = q_now + frac * (REACH - q_now) + noise
        times = now + 0.1 * np.arange(1, len(positions) + 1)
        r = filt.filter_command(arm, names, times, positions, now)
        reasons.update(e.reason for e in r.events)
        if r.band is not Band.PASS:
            assert r.events
        paths[arm].replace(r.trajectory)
        check_stop(r.trajectory, filt, arm, r.trajectory.start if r.band is Band.REJECT else filt._command_end[arm])
        other = "right" if arm == "left" else "left"
        for t, q in zip(r.trajectory.times, r.trajectory.positions):
            filt.kinematics.update({arm: q, other: filt.plan(other).state_at(t)[0]})
            assert filt.kinematics.arm_distance(arm, other, 1.0, fingers=not filt.params.fingers_may_meet) \
                >= filt.params.min_arm_distance_m - TOL
    for arm in paths:
        check_path(paths[arm], filt, arm, kinematics=False)
    if len(stream) >= 6 and {a for a, _ in stream} == {"left", "right"}:
        assert reasons, "arms driven toward each other must have been stopped somewhere"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fractions=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6),
       left_fractions=st.lists(st.floats(0.5, 1.0), min_size=1, max_size=4),
       jitter=st.lists(st.floats(-0.6, 0.6), min_size=6, max_size=6), fingers=st.booleans())
def test_arm_clearance_is_decided_like_the_exact_distance(bimanual_config, fractions, left_fractions, jitter,
                                                           fingers):
    """The filter computes exact geom distances only where bounding spheres of a pairing of its own
    stop's poses with the other arm's planned poses come within the clearance
    (`sphere_close_pairs`, `closer_than`); its verdict is that of the distance over all geom pairs."""
    kinematics = build_safety_filter(bimanual_config).kinematics
    clearance = 0.08
    reach = REACH.copy()
    reach[:6] += np.array(jitter)

    def poses_of(arm, target, amounts):
        for f in amounts:   # on the way from home to reaching into the other arm's space
            kinematics.update({arm: HOME + f * (target - HOME)})
            yield kinematics.arm_pose(arm)

    right, left = list(poses_of("right", reach, fractions)), list(poses_of("left", REACH, left_fractions))
    pairs = kinematics.sphere_close_pairs("left", "right", np.stack([p[0] for p in left]),
                                          np.stack([p[0] for p in right]), clearance, fingers=fingers)
    assert pairs.shape[0] == len(left) and pairs.shape[2] == len(right)
    for s, p in np.ndindex(len(left), len(right)):
        too_close = kinematics.closer_than("left", left[s], "right", right[p], pairs[s, :, p], clearance,
                                           fingers=fingers)
        exact = kinematics.arm_distance("left", "right", 2 * clearance, fingers=fingers)
        assert too_close == (exact < clearance), (exact, too_close)


def test_arm_far_from_the_plan_is_held_where_it_is(single_config):
    """A sim reset (or a push) moves the arm away from the path the filter planned: the filter
    holds at the measured position instead of dragging the arm back, and plans on from there."""
    filt = build_safety_filter(single_config)
    names = list(filt.limits["arm"].names)
    filt.update_joint_state("arm", names, HOME, 0.0)
    away = HOME + np.r_[0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    r = filt.filter_command("arm", names, 0.1 * np.arange(1, 5), np.linspace(HOME, away, 5)[1:], 0.0)
    assert r.band is not Band.REJECT
    assert filt.update_joint_state("arm", names, HOME + 0.01, 0.05) is None   # tracking error is normal
    gripper_blocked = filt.plan("arm").state_at(0.1)[0].copy()
    gripper_blocked[6] = 0.0
    assert filt.update_joint_state("arm", names, gripper_blocked, 0.1) is None   # a gripper may be blocked
    teleported = HOME - np.r_[0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    hold = filt.update_joint_state("arm", names, teleported, 0.2)
    assert hold is not None and hold.band is Band.REJECT and filt.holding("arm")
    assert hold.events[0].action == ACTION_HOLD and hold.events[0].reason == "tracking_error"
    np.testing.assert_allclose(hold.trajectory.final_position, teleported)
    np.testing.assert_allclose(filt.plan("arm").state_at(1.0)[0], teleported)
    # the next command starts from where the arm is: accepted, not a max_step reject
    nxt = filt.filter_command("arm", names, [0.3], [teleported + 0.02], 0.2)
    assert nxt.band is not Band.REJECT


def follow_without_hold(filt, path, names, times, points, now):
    """Filter one command that must be followed (clamped, not rejected, not dropped); the executed
    path takes what goes out and its stop must be jerk-limited."""
    r = filt.filter_command("arm", names, times, points, now)
    assert r.band is not Band.REJECT, [e.message for e in r.events]
    assert r.trajectory is not None, f"command dropped: {[e.message for e in r.events]}"
    path.replace(r.trajectory)
    check_stop(r.trajectory, filt, "arm", filt._command_end["arm"])


@settings(max_examples=60, deadline=None)
@given(closed=st.floats(-0.02, 0.01), jitter=st.floats(0.0, 0.006), seed=st.integers(0, 2**31))
@pytest.mark.parametrize("config_file", ["config/single_arm.yaml", "config/single_arm_reactive.yaml"])
def test_a_gripper_closing_on_its_limit_is_clamped_not_rejected(config_file, closed, jitter, seed):
    """A policy closing the gripper on an object sends targets at (or past) the closed limit,
    jittering from chunk to chunk, while the arm holds: the gripper is clamped and the arm goes
    on (a reject would stop the whole arm mid-grasp)."""
    filt = build_safety_filter(load_robot_config(config_file))
    names = list(filt.limits["arm"].names)
    rng = np.random.default_rng(seed)
    now = 100.0
    filt.update_joint_state("arm", names, HOME, now)
    path = ExecutedPath(now, HOME)
    for _ in range(40):
        now += filt.period
        robot_follows(filt, now)
        target = HOME.copy()
        target[-1] = closed
        points = target + rng.normal(0.0, jitter, (8, len(names)))
        times = now + filt.period * np.arange(1, 9)
        follow_without_hold(filt, path, names, times, points, now)
    check_path(path, filt, "arm")


STREAM_START = 100.0


def gripper_stream(filt, rng, commands):
    """`commands` chunks of a policy's stream at its worst for the gripper (the test below), each
    as (now, times, points) once the joint state at `now` of a robot tracking the plan exactly has
    reached the filter; the arm starts at HOME at STREAM_START. scripts/bench_safety_streams.py
    draws many more and longer ones."""
    lim = filt.limits["arm"]
    names = list(lim.names)
    now = STREAM_START
    filt.update_joint_state("arm", names, HOME, now)
    gripper_choices = [lim.lower[-1], lim.upper[-1], lim.lower[-1] - 0.01, lim.upper[-1] + 0.01]
    gripper = lim.lower[-1]
    for _ in range(commands):
        now += filt.period * rng.uniform(0.8, 1.3)
        robot_follows(filt, now)
        if rng.random() < 0.2:
            gripper = rng.choice(gripper_choices + [rng.uniform(lim.lower[-1], lim.upper[-1])])
        stamp = now - rng.uniform(0.0, 0.04)
        q, _ = filt.plan("arm").state_at(now)
        drift = np.r_[rng.normal(0.0, 0.02, len(names) - 1), 0.0]
        points = q + np.outer(np.arange(1, 9), drift)
        points[:, -1] = gripper + rng.normal(0.0, 0.004, 8)
        yield now, stamp + filt.period * np.arange(1, 9), points


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31))
@example(seed=70)   # a gripper braking toward its open limit, then sent just inside it: no step was stoppable
def test_a_moving_arm_with_late_chunks_and_gripper_targets_past_its_limits_is_followed(seed):
    """A policy's stream at its worst for the gripper: the arm moving, the control period jittered
    0.8-1.3x, chunks up to 40 ms late, gripper targets at either limit, 1 cm past it or in between.
    Where no step toward a command can stop inside the limits although the plan's own path can (a
    gripper reversing while braking hard toward a limit), the arm goes on along that path for the
    step and the rest of the command is followed from there: no command is held or dropped, and
    what the arm executes stays inside every limit with every stop jerk-limited."""
    filt = build_safety_filter(load_robot_config("config/single_arm_reactive.yaml"))
    names = list(filt.limits["arm"].names)
    path = ExecutedPath(STREAM_START, HOME)
    for now, times, points in gripper_stream(filt, np.random.default_rng(seed), 40):
        follow_without_hold(filt, path, names, times, points, now)
    check_path(path, filt, "arm")
