"""Teleop sources: leader->follower mapping, Joy Cartesian jog with IK, the bounds they keep to
what the safety filter accepts, re-anchoring, and both nodes over real topics publishing the same
teleop action topic."""
import os
import threading

import numpy as np
import pytest

from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.runtime.spin_thread import SpinThread
from diffusion_policy_ros.safety.build import build_safety_filter
from diffusion_policy_ros.safety.filter import Band
from diffusion_policy_ros.safety.kinematics import RobotKinematics
from diffusion_policy_ros.safety.limits import SafetyParams
from diffusion_policy_ros.teleop.bounds import CommandBounds
from diffusion_policy_ros.teleop.cartesian_jog import JOY_LAYOUTS, CartesianJog, JogMapping
from diffusion_policy_ros.teleop.leader_follower import LeaderFollowerMap, LeaderMappingError
from diffusion_policy_ros.teleop.recovery import SAFETY_HOLD, SAFETY_REJECT, Reanchor
from waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "config/single_arm.yaml")
JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
LOWER = [-3, -1.9, -2.6, -3, -2.2, -3, 0.0]
UPPER = [3, 1.9, 2.6, 3, 2.2, 3, 0.08]
HOME = [0.04, -0.03, 0.41, 0.0, 1.27, 0.03]         # near the sim's home pose (tool 0.24 m above the table)
DOWN, UP = [0, 0, 0, 0, -1.0, 0], [0, 0, 0, 0, 1.0, 0]   # right stick (xbox layout): tool down / up


def make_map(**kw):
    args = dict(follower_joints=JOINTS, leader_joints=[f"leader_{j}" for j in JOINTS], lower=LOWER,
                upper=UPPER, gripper_joints=["gripper"], leader_gripper_range=(0.2, 1.2), max_velocity=1.0)
    args.update(kw)
    return LeaderFollowerMap(**args)


def test_leader_mapping_scale_offset_gripper_and_limits():
    m = make_map(scale=[1, -1, 1, 1, 1, 2, 1], offset=[0.1, 0, 0, 0, 0, 0, 0])
    names = [f"leader_{j}" for j in JOINTS][::-1]               # any order
    leader = np.array([0.5, 0.3, 5.0, 0, 0, 2.0, 0.7])          # joint 3 beyond the follower's limit
    target = m.map(names, leader[::-1])
    np.testing.assert_allclose(target[:6], [0.6, -0.3, 2.6, 0, 0, 3.0])   # scaled, offset, clipped
    assert target[6] == pytest.approx(0.04)                     # half-open leader -> half-open follower
    with pytest.raises(LeaderMappingError, match="lacks"):
        m.map(JOINTS, leader)


def test_leader_first_reading_ramps_and_stale_leader_stops():
    m = make_map()
    names = [f"leader_{j}" for j in JOINTS]
    leader = [1.0, 0, 0, 0, 0, 0, 1.2]
    assert m.step(names, leader, 0.0, 0.0, None) is None         # follower pose unknown: no jump
    first = m.step(names, leader, 0.0, 0.0, np.zeros(7))
    np.testing.assert_allclose(first, 0.0)                       # starts where the follower is
    second = m.step(names, leader, 0.1, 0.1, np.zeros(7))
    assert second[0] == pytest.approx(0.1)                       # 1 rad/s for 0.1 s
    assert second[6] == pytest.approx(0.008)                     # gripper: 1 range/s
    for k in range(2, 20):
        out = m.step(names, leader, 0.1 * k, 0.1 * k, None)
    assert out[0] == pytest.approx(1.0)
    assert m.step(names, leader, 1.0, 2.0, None) is None         # 1 s old: stale


def test_leader_reanchor_restarts_the_ramp_from_the_follower_and_limit_applies():
    m = make_map()
    names = [f"leader_{j}" for j in JOINTS]
    leader = [1.0, 0, 0, 0, 0, 0, 1.2]
    for k in range(5):
        m.step(names, leader, 0.1 * k, 0.1 * k, np.zeros(7))
    assert m.last_target[0] == pytest.approx(0.4)                # walking toward the leader
    m.reanchor()                                                 # the filter held the follower at 0.05
    held = np.array([0.05, 0, 0, 0, 0, 0, 0.0])
    np.testing.assert_allclose(m.step(names, leader, 0.5, 0.5, held), held)
    after = m.step(names, leader, 0.6, 0.6, held, limit=lambda start, q: start + 0.5 * (q - start))
    assert after[0] == pytest.approx(0.05 + 0.5 * 0.1)          # the caller's limit halves the step


@pytest.fixture(scope="module")
def bounds():
    config = load_robot_config(CONFIG)
    arm = config.arms[0]
    params = SafetyParams.from_mapping(config.node_params("safety_filter_node"))
    return CommandBounds.from_safety_params(arm.joint_names, arm.gripper_joints,
                                            RobotKinematics(config).joint_ranges(), params, 0.1)


def test_bounds_follow_the_filter_parameters(bounds):
    # config/single_arm.yaml: margin 0.05 rad, max_step_rad 0.25, default max velocity 1.5 rad/s at 10 Hz
    assert bounds.lower[1] == pytest.approx(-1.9 + 0.05 + 0.02) and bounds.upper[1] == pytest.approx(1.9 - 0.05 - 0.02)
    assert bounds.max_step == pytest.approx(0.15) and bounds.reject_step == 1.0
    np.testing.assert_allclose(bounds.workspace_min, [-0.2, -0.6, 0.0])
    start = np.array(HOME + [0.04])
    far = start + np.array([0.6, -0.3, 0, 0, 0, 0, 0.03])
    out = bounds.limit_step(start, far)
    np.testing.assert_allclose(out[:6] - start[:6], (far - start)[:6] * 0.15 / 0.6)   # same direction
    assert out[6] == far[6]                                       # the gripper is not step-limited
    beyond = start.copy()
    beyond[1] = 2.5
    assert bounds.limit(start, beyond)[1] == pytest.approx(start[1] + 0.15)
    assert bounds.clamp_joints(beyond)[1] == pytest.approx(bounds.upper[1])


def test_bounds_shorten_a_move_that_leaves_the_workspace(bounds):
    def tool(q):                                  # made-up kinematics: the tool sinks 1 m per rad of joint_2
        return np.array([0.3, 0.0, 0.05 - (q[1] - HOME[1])])
    start = np.array(HOME + [0.04])
    down = start.copy()
    down[1] += 0.8                                # one full step (0.15 rad) would end at z = -0.1
    out = bounds.limit(start, down, tool)
    assert 0.0 <= tool(out)[2] < 0.05             # shortened, still downward, still inside the box
    below = start.copy()
    below[1] += 0.1                               # a start below the floor (z = -0.05)
    assert tool(bounds.limit(below, start, tool))[2] > tool(below)[2]   # a move back in is allowed
    assert tool(bounds.limit(below, down, tool))[2] == pytest.approx(tool(below)[2])  # deeper is not


def test_reanchor_on_rejects_holds_episodes_and_divergence():
    r = Reanchor(0.5)
    grip = [False] * 6 + [True]
    q = np.zeros(7)
    assert r.check(q, q, grip) is None
    r.safety_event(1, "velocity_limit")                           # a clamp: the robot still follows
    assert r.check(q, q, grip) is None
    r.safety_event(SAFETY_REJECT, "max_step")
    assert "rejected" in r.check(q, q, grip) and r.check(q, q, grip) is None   # once per reason
    r.safety_event(SAFETY_HOLD, "stale_command")
    assert "holds" in r.check(q, q, grip)
    r.episode(3)
    assert r.check(q, q, grip) is None                            # the first episode seen is no reset
    r.episode(4)
    assert "episode" in r.check(q, q, grip)
    blocked_gripper = q.copy()
    blocked_gripper[6] = 0.9
    assert r.check(q, blocked_gripper, grip) is None              # a gripper blocked on an object
    moved = q.copy()
    moved[2] = 0.6
    assert "0.60 rad" in r.check(q, moved, grip)


@pytest.fixture(scope="module")
def jog():
    return CartesianJog(os.path.join(ROOT, "resource/mjcf/single_arm.xml"), JOINTS[:6], "tcp",
                        gripper_range=(0.0, 0.08))


def test_jog_moves_the_tool_along_the_commanded_axis(jog):
    jog.anchor([0, 0.3, 0.8, 0, 0.5, 0], gripper=0.02)
    p0 = jog.tool_pose().translation()
    for _ in range(10):                                          # full stick +x (axis 1) for 1 s
        q, g = jog.step([0, 1.0, 0, 0, 0, 0], [1, 0], 0.1)
    moved = jog.tool_pose().translation() - p0
    assert moved[0] == pytest.approx(0.15, abs=0.01)
    assert abs(moved[1]) < 0.005 and abs(moved[2]) < 0.005
    assert g == pytest.approx(0.02 + 0.05)                        # open button for 1 s
    q_before = q.copy()
    for _ in range(5):
        q, _ = jog.step([0.05, 0, 0, 0, 0, 0], [], 0.1)          # inside the deadzone: hold
    np.testing.assert_allclose(q, q_before, atol=1e-3)


def test_jog_out_of_reach_stops_instead_of_winding_up(jog):
    jog.anchor([0, 0.3, 0.8, 0, 0.5, 0])
    for _ in range(80):                                          # far beyond the arm's reach
        jog.step([0, 1.0, 0, 0, 0, 0], [], 0.1)
    far = jog.tool_pose().translation()
    for _ in range(3):
        jog.step([0, -1.0, 0, 0, 0, 0], [], 0.1)                 # reversing responds at once
    assert jog.tool_pose().translation()[0] < far[0] - 0.02


def test_twist_mapping_deadzone_signs_buttons_and_layouts():
    m = JogMapping(axes=(0, -1, 2, -1, -1, -1), signs=(-1, 1, 1, 1, 1, 1), deadzone=0.2, linear_speed=1.0)
    np.testing.assert_allclose(m.twist([1.0, 0.9, 0.1]), [-1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(m.twist([0.6]), [-0.5, 0, 0, 0, 0, 0])
    pad = JogMapping.for_layout("sdl_gamepad", angular_speed=1.0)
    buttons = [0] * 15
    buttons[11] = 1                                               # d-pad up: pitch (wy) +
    np.testing.assert_allclose(pad.twist([0.0] * 6, buttons), [0, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(pad.twist([0, 0, 0, -1.0, 0, 0]), [0, 0, -0.15, 0, 0, 0])  # right stick back
    assert set(JOY_LAYOUTS) >= {"xbox", "ps4", "sdl_gamepad"}
    with pytest.raises(ValueError, match="unknown joy_layout"):
        JogMapping.for_layout("n64")
    with pytest.raises(ValueError, match="axes needs 6"):
        JogMapping(axes=(1, 0, 4))


def filter_in_the_loop(jog_axes, bounds, seconds_each=3.0):
    """The jog drives the real SafetyFilter; the robot executes exactly what the filter forwards.
    Returns, per tick: (band, events, measured joints, tool z)."""
    config = load_robot_config(CONFIG)
    safety = build_safety_filter(config)
    names = config.arms[0].joint_names
    jog = CartesianJog(os.path.join(ROOT, "resource/mjcf/single_arm.xml"), JOINTS[:6], "tcp",
                       gripper_range=(0.0, 0.08), bounds=bounds)
    measured = np.array(HOME + [0.07])
    now = 100.0
    safety.update_joint_state("arm", names, measured, now)
    jog.anchor(measured[:6], measured[6])
    log = []
    for axes in jog_axes:
        for _ in range(int(round(seconds_each / 0.1))):
            q, g = jog.step(axes, [], 0.1, measured=measured[:6])
            result = safety.filter_command("arm", names, [now + 0.1], [list(q) + [g]], now)
            now += 0.1
            measured = safety.plan("arm").state_at(now)[0]
            safety.update_joint_state("arm", names, measured, now)
            log.append((result.band, [(e.action, e.reason) for e in result.events], measured.copy(),
                        jog.tool_position(measured[:6])[2]))
    return log


def test_full_down_jog_stops_at_the_workspace_floor_and_jogging_back_moves_at_once(bounds):
    """Issue 19's lock-up, on plain data: 3 s full down, then back up. The filter never rejects, the
    tool stops inside the box, and the first tick of jogging back moves the arm up."""
    log = filter_in_the_loop([DOWN, UP], bounds)
    assert all(band is not Band.REJECT for band, *_ in log), [e for _, e, *_ in log if e]
    heights = [z for *_, z in log]
    assert min(heights) >= 0.0                                    # the filter's workspace floor
    assert heights[29] < 0.02                                     # ...which the jog reached
    assert heights[31] > heights[29] + 0.005                      # up again within 0.2 s
    assert heights[-1] > 0.3


def test_jog_seeded_from_a_robot_that_does_not_follow_stays_within_a_step(bounds):
    """Whatever the jog asks, its command is within one step of the measured joints: a robot that
    stopped (held by the filter, blocked) is never asked to jump."""
    jog = CartesianJog(os.path.join(ROOT, "resource/mjcf/single_arm.xml"), JOINTS[:6], "tcp",
                       gripper_range=(0.0, 0.08), bounds=bounds)
    stuck = np.array(HOME)
    jog.anchor(stuck)
    for _ in range(40):
        q, _ = jog.step([0, 1.0, -1.0, 0, 0, 0.5], [], 0.1, measured=stuck)
        assert np.abs(q - stuck).max() <= bounds.max_step + 1e-9


def node_args(tmp_path, config, **joy_params):
    """--ros-args for the teleop nodes: the config plus an overlay (a node section in the config
    beats `-p`). No safety filter runs in these tests: bounds come from the nodes' own parameters."""
    import yaml
    overlay = tmp_path / "overlay.yaml"
    sections = {"joy_teleop_node": {"safety_filter_node": "", **joy_params},
                "leader_follower_teleop_node": {"safety_filter_node": ""}}
    overlay.write_text(yaml.safe_dump({f"/**/{node}": {"ros__parameters": values} for node, values in sections.items()}))
    return ["--ros-args", "--params-file", config, "--params-file", str(overlay)]


def test_teleop_nodes_publish_the_action_topic(rclpy_context, tmp_path):
    """Both sources over real topics: the leader ramps from the follower to the leader's pose, the
    jog moves the arm while the stick is held and holds still once Joy goes stale."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import JointState, Joy
    from trajectory_msgs.msg import JointTrajectory

    from diffusion_policy_ros.nodes.joy_teleop_node import JoyTeleop
    from diffusion_policy_ros.nodes.leader_follower_teleop_node import LeaderFollowerTeleop

    params = node_args(tmp_path, CONFIG, joy_topic="/joy_test")
    leader_node = LeaderFollowerTeleop(context=rclpy_context, cli_args=params)
    joy_node = JoyTeleop(context=rclpy_context, cli_args=params + ["-r", "/teleop/joint_trajectory:=/teleop_joy"])
    probe = rclpy.create_node("teleop_probe", context=rclpy_context)
    got = {"/teleop/joint_trajectory": [], "/teleop_joy": []}
    for topic in got:
        probe.create_subscription(JointTrajectory, topic, lambda m, t=topic: got[t].append(m), 50)
    follower = probe.create_publisher(JointState, "/joint_states", 10)
    leader = probe.create_publisher(JointState, "/leader/joint_states", 10)
    joy = probe.create_publisher(Joy, "/joy_test", 10)
    executor = MultiThreadedExecutor(context=rclpy_context)
    for n in (leader_node, joy_node, probe):
        executor.add_node(n)
    thread = SpinThread(executor).start()
    q0 = [0.0, 0.3, 0.8, 0.0, 0.5, 0.0, 0.01]
    stick = {"axes": [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]}
    stop = threading.Event()

    def devices():
        """The robot, the leader arm and the gamepad, each publishing until the test ends."""
        while not stop.wait(0.05):
            stamp = probe.get_clock().now().to_msg()
            js = JointState(name=JOINTS, position=q0)
            js.header.stamp = stamp
            follower.publish(js)
            lj = JointState(name=JOINTS, position=[0.4, 0.3, 0.8, 0.0, 0.5, 0.0, 0.7])
            lj.header.stamp = stamp
            leader.publish(lj)
            if stick["axes"] is not None:
                joy.publish(Joy(axes=stick["axes"], buttons=[0, 0]))
    publisher = threading.Thread(target=devices, daemon=True)
    publisher.start()
    try:
        lf, jy = got["/teleop/joint_trajectory"], got["/teleop_joy"]
        # The leader's 0.4 rad at most 1 rad/s from the follower's 0.0: several ramp steps, then there.
        assert wait_for(lambda: lf and lf[-1].points[0].positions[0] == pytest.approx(0.4, abs=1e-6), 60), \
            [m.points[0].positions[0] for m in lf[-5:]]
        assert wait_for(lambda: len(jy) >= 3 and jy[-1].points[0].positions[1] != pytest.approx(q0[1], abs=1e-3), 60)
        stick["axes"] = None                                      # the gamepad goes silent: stale Joy
        seen = len(jy)
        # Stale after 0.5 s: then three commands in a row are the same hold.
        assert wait_for(lambda: len(jy) >= seen + 3 and _same_last(jy, 3), 60)
    finally:
        stop.set()
        publisher.join(timeout=5)
        thread.stop()
        for n in (leader_node, joy_node, probe):
            n.destroy_node()
    assert list(lf[-1].joint_names) == JOINTS
    first = lf[0].points[0].positions
    assert abs(first[0] - q0[0]) < 0.15                           # ramps from the follower pose...
    assert len([m for m in lf if m.points[0].positions[0] < 0.4 - 1e-6]) >= 3   # ...in steps
    assert all(m.header.stamp.sec == 0 and m.header.stamp.nanosec == 0 for m in lf + jy)   # "start now"
    assert all(np.isfinite(m.points[0].positions).all() for m in jy)


def _same_last(messages, n):
    last = [np.array(m.points[0].positions) for m in messages[-n:]]
    return all(np.allclose(q, last[0], atol=1e-9) for q in last)


def test_bimanual_leader_with_one_stale_leader_commands_only_the_other_arm(rclpy_context, tmp_path):
    """The right leader's readings are 2 s old on arrival: while the left arm gets command after
    command (so the node ticked), the right gets none; fresh readings then start its ramp from
    the follower's pose."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from diffusion_policy_ros.nodes._ros_convert import to_time
    from diffusion_policy_ros.nodes.leader_follower_teleop_node import LeaderFollowerTeleop

    config = load_robot_config(os.path.join(ROOT, "config/bimanual.yaml"))
    node = LeaderFollowerTeleop(context=rclpy_context,
                                cli_args=node_args(tmp_path, os.path.join(ROOT, "config/bimanual.yaml")))
    probe = rclpy.create_node("bimanual_leader_probe", context=rclpy_context)
    got = {arm.name: [] for arm in config.arms}
    pubs = {}
    for arm in config.arms:
        probe.create_subscription(JointTrajectory, arm.teleop_topic, got[arm.name].append, 50)
        pubs[arm.name] = (probe.create_publisher(JointState, arm.joint_states_topic, 10),
                          probe.create_publisher(JointState, f"/{arm.namespace}/leader/joint_states", 10))
    executor = MultiThreadedExecutor(context=rclpy_context)
    for n in (node, probe):
        executor.add_node(n)
    spinner = SpinThread(executor).start()
    follower_q = [0.0, 0.3, 0.8, 0.0, 0.5, 0.0, 0.01]
    leader_q = [0.3, 0.3, 0.8, 0.0, 0.5, 0.0, 0.7]
    right_age = {"s": 2.0}
    stop = threading.Event()

    def devices():
        while not stop.wait(0.05):
            now = probe.get_clock().now().nanoseconds * 1e-9
            for arm in config.arms:
                follower, leader = pubs[arm.name]
                js = JointState(name=list(arm.joint_names), position=follower_q)
                js.header.stamp = to_time(now)
                follower.publish(js)
                lj = JointState(name=list(arm.joint_names), position=leader_q)
                lj.header.stamp = to_time(now - (right_age["s"] if arm.name == "right" else 0.0))
                leader.publish(lj)
    publisher = threading.Thread(target=devices, daemon=True)
    publisher.start()
    try:
        assert wait_for(lambda: len(got["left"]) >= 5, 60)
        assert got["right"] == []                       # five ticks of the node, none for the stale arm
        right_age["s"] = 0.0
        assert wait_for(lambda: len(got["right"]) >= 3, 60)
    finally:
        stop.set()
        publisher.join(timeout=5)
        spinner.stop()
        node.destroy_node()
        probe.destroy_node()
    first = np.array(got["right"][0].points[0].positions)
    assert np.abs(first - follower_q)[:6].max() <= 0.1 + 1e-6      # a ramp step from the follower


def test_leader_against_a_robot_that_does_not_follow_never_drifts_into_rejects(rclpy_context, tmp_path):
    """A real safety filter between the leader node and a robot that stays where it is (its
    joint states never change): the filter holds on the tracking error, the leader node starts
    again from the follower each time, so no command ever gets far enough for a max_step reject.
    Before re-anchoring the ramp walked on to the leader's pose and every command was rejected."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from diffusion_policy_ros.msg import SafetyEvent
    from diffusion_policy_ros.nodes._ros_convert import to_time
    from diffusion_policy_ros.nodes.leader_follower_teleop_node import LeaderFollowerTeleop
    from diffusion_policy_ros.nodes.safety_filter_node import SafetyFilterNode

    import yaml
    overlay = tmp_path / "filter.yaml"
    overlay.write_text(yaml.safe_dump({"/**/safety_filter_node": {"ros__parameters": {"input": "teleop"}}}))
    safety = SafetyFilterNode(context=rclpy_context,
                              cli_args=["--ros-args", "--params-file", CONFIG, "--params-file", str(overlay)])
    leader_node = LeaderFollowerTeleop(context=rclpy_context, cli_args=["--ros-args", "--params-file", CONFIG])
    probe = rclpy.create_node("frozen_robot_probe", context=rclpy_context)
    commands, events = [], []
    probe.create_subscription(JointTrajectory, "/teleop/joint_trajectory", commands.append, 100)
    probe.create_subscription(SafetyEvent, "/safety/events", events.append, 100)
    follower = probe.create_publisher(JointState, "/joint_states", 10)
    leader = probe.create_publisher(JointState, "/leader/joint_states", 10)
    executor = MultiThreadedExecutor(context=rclpy_context)
    for n in (safety, leader_node, probe):
        executor.add_node(n)
    spinner = SpinThread(executor).start()
    frozen = HOME + [0.04]
    far = [HOME[0] + 1.5] + HOME[1:] + [0.5]            # joint_1 1.5 rad away: a long walk
    stop = threading.Event()

    def devices():
        while not stop.wait(0.02):
            stamp = to_time(probe.get_clock().now().nanoseconds * 1e-9)
            js = JointState(name=JOINTS, position=frozen)
            js.header.stamp = stamp
            follower.publish(js)
            lj = JointState(name=JOINTS, position=far)
            lj.header.stamp = stamp
            leader.publish(lj)
    publisher = threading.Thread(target=devices, daemon=True)
    publisher.start()
    try:
        # 30 commands: without re-anchoring the walk would be 1.5 rad out after 15 of them.
        assert wait_for(lambda: len(commands) >= 30, 120), len(commands)
    finally:
        stop.set()
        publisher.join(timeout=5)
        spinner.stop()
        for n in (safety, leader_node, probe):
            n.destroy_node()
    offsets = [abs(m.points[0].positions[0] - frozen[0]) for m in commands]
    holds = [e for e in events if e.action == SafetyEvent.ACTION_HOLD and e.reason == "tracking_error"]
    assert holds, [(e.action, e.reason) for e in events]       # the filter noticed the robot did not move
    assert max(offsets) < 1.0, offsets                        # the filter's reject_step_rad
    assert not [e for e in events if e.action == SafetyEvent.ACTION_REJECT and e.reason == "max_step"]
