"""Teleop sources: leader->follower mapping, Joy Cartesian jog with IK, and both nodes over
real topics publishing the same teleop action topic."""
import os
import threading
import time

import numpy as np
import pytest

from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.teleop.cartesian_jog import CartesianJog, JogMapping
from diffusion_policy_ros.teleop.leader_follower import LeaderFollowerMap, LeaderMappingError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
LOWER = [-3, -1.9, -2.6, -3, -2.2, -3, 0.0]
UPPER = [3, 1.9, 2.6, 3, 2.2, 3, 0.08]


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


@pytest.fixture(scope="module")
def jog():
    return CartesianJog(os.path.join(ROOT, "resource/mjcf/single_arm.xml"), JOINTS[:6], "tcp",
                        gripper_joint="gripper", gripper_range=(0.0, 0.08))


def test_jog_moves_the_tool_along_the_commanded_axis(jog):
    jog.reset([0, 0.3, 0.8, 0, 0.5, 0], gripper=0.02)
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
    jog.reset([0, 0.3, 0.8, 0, 0.5, 0])
    for _ in range(80):                                          # far beyond the arm's reach
        jog.step([0, 1.0, 0, 0, 0, 0], [], 0.1)
    far = jog.tool_pose().translation()
    for _ in range(3):
        jog.step([0, -1.0, 0, 0, 0, 0], [], 0.1)                 # reversing responds at once
    assert jog.tool_pose().translation()[0] < far[0] - 0.02


def test_twist_mapping_deadzone_and_signs():
    m = JogMapping(axes=(0, -1, 2, -1, -1, -1), signs=(-1, 1, 1, 1, 1, 1), deadzone=0.2, linear_speed=1.0)
    np.testing.assert_allclose(m.twist([1.0, 0.9, 0.1]), [-1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(m.twist([0.6]), [-0.5, 0, 0, 0, 0, 0])


def test_teleop_nodes_publish_the_action_topic(rclpy_context):
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import JointState, Joy
    from trajectory_msgs.msg import JointTrajectory

    from diffusion_policy_ros.nodes.joy_teleop_node import JoyTeleop
    from diffusion_policy_ros.nodes.leader_follower_teleop_node import LeaderFollowerTeleop

    params = ["--ros-args", "--params-file", os.path.join(ROOT, "config/single_arm.yaml")]
    leader_node = LeaderFollowerTeleop(context=rclpy_context, cli_args=params)
    joy_node = JoyTeleop(context=rclpy_context, cli_args=params + ["-p", "joy_topic:=/joy_test",
                                                                        "-r", "/teleop/joint_trajectory:=/teleop_joy"])
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
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    q0 = [0.0, 0.3, 0.8, 0.0, 0.5, 0.0, 0.01]
    try:
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            stamp = probe.get_clock().now().to_msg()
            js = JointState(name=JOINTS, position=q0)
            js.header.stamp = stamp
            follower.publish(js)
            lj = JointState(name=JOINTS, position=[0.4, 0.3, 0.8, 0.0, 0.5, 0.0, 0.7])
            lj.header.stamp = stamp
            leader.publish(lj)
            joy.publish(Joy(axes=[0.0, 1.0, 0.0, 0.0, 0.0, 0.0], buttons=[0, 0]))
            time.sleep(0.05)
    finally:
        executor.shutdown()
        for n in (leader_node, joy_node, probe):
            n.destroy_node()
    lf, jy = got["/teleop/joint_trajectory"], got["/teleop_joy"]
    assert len(lf) >= 15 and len(jy) >= 15
    assert list(lf[-1].joint_names) == JOINTS
    first, last = lf[0].points[0].positions, lf[-1].points[0].positions
    assert abs(first[0] - q0[0]) < 0.15                           # ramps from the follower pose...
    assert last[0] == pytest.approx(0.4, abs=1e-6)                # ...to the leader's pose
    assert jy[-1].points[0].positions[1] != pytest.approx(q0[1], abs=1e-3)   # the jog moved the arm
    assert all(np.isfinite(m.points[0].positions).all() for m in jy)
