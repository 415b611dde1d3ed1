"""The bimanual handover's scripted expert against the safety filter of `config/bimanual.yaml`
(no ROS): its joint targets stay within the filter's joint limits, and an episode in which the
filter stands between the expert and the sim still hands the cube over, with no command
rejected and no arm-clearance intervention. The fingers meet at the handover: with
`fingers_may_meet` off, the same episode is stopped by the arm clearance."""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.safety.build import build_safety_filter  # noqa: E402
from diffusion_policy_ros.safety.filter import ACTION_REJECT  # noqa: E402
from diffusion_policy_ros.sim.env import SimEnv  # noqa: E402
from diffusion_policy_ros.sim.expert import JOINT_ACCEL_LIMIT, JOINT_SPEED_LIMIT  # noqa: E402

CONFIG = "config/bimanual.yaml"


@pytest.fixture(scope="module")
def robot():
    return load_robot_config(CONFIG)


@pytest.fixture(scope="module")
def env(robot):
    with SimEnv(robot, render=False) as sim:
        yield sim


def test_expert_joint_targets_keep_within_the_joint_limits(env, robot):
    arm_joints = np.array([i for i in range(robot.action_dim) if i not in robot.gripper_indices])
    period = env.control_period
    for seed in range(3):
        env.reset(seed, observe=False)
        targets = [env.joint_positions()]
        while not env.done:
            targets.append(env.expert_action())
            env.step(targets[-1], observe=False)
        assert env.success(), f"seed {seed}: the expert did not hand over"
        speed = np.diff(np.array(targets)[:, arm_joints], axis=0) / period
        acceleration = np.diff(speed, axis=0) / period
        assert np.abs(speed).max() <= JOINT_SPEED_LIMIT + 1e-6, f"seed {seed}: {np.abs(speed).max():.2f} rad/s"
        assert np.abs(acceleration).max() <= JOINT_ACCEL_LIMIT, f"seed {seed}: {np.abs(acceleration).max():.2f} rad/s^2"


def filtered_episode(env, robot, seed: int, fingers_may_meet: bool):
    """The expert's targets, one per control period, through the safety filter to the sim (which
    holds what the filter forwards for the next period); -> (success, the filter's events)."""
    params = {**robot.node_params("safety_filter_node"), "fingers_may_meet": fingers_may_meet}
    safety = build_safety_filter(robot, params)
    slices = dict((arm.name, cols) for arm, cols in robot.arm_slices())
    names = {arm.name: list(arm.joint_names) for arm in robot.arms}
    env.reset(seed, observe=False)
    events = []
    while not env.done:
        now = env.time
        measured = env.joint_positions()
        action = env.expert_action()
        forwarded = measured.copy()
        for arm, cols in slices.items():
            safety.update_joint_state(arm, names[arm], measured[cols], now)
            result = safety.filter_command(arm, names[arm], [now + env.control_period], [action[cols]], now)
            events += result.events
            forwarded[cols] = result.trajectory.state_at(now + env.control_period)[0]
        env.step(forwarded, observe=False)
    return env.success(), events


def test_the_handover_passes_the_bimanual_safety_filter(env, robot):
    success, events = filtered_episode(env, robot, seed=1, fingers_may_meet=True)
    reasons = sorted({e.reason for e in events})
    assert success, f"the filtered expert failed (filter events: {reasons})"
    assert not [e for e in events if e.action == ACTION_REJECT], reasons
    assert "arm_clearance" not in reasons


def test_without_fingers_may_meet_the_clearance_stops_the_handover(env, robot):
    success, events = filtered_episode(env, robot, seed=1, fingers_may_meet=False)
    assert "arm_clearance" in {e.reason for e in events}
    assert not success


def episode_with_the_left_arm_off(env, robot, seed: int, shoulder_offset_rad: float, aim_m: float):
    """The expert's episode with the left shoulder turned by `shoulder_offset_rad` from the lift on
    (the cube in its hand then reaches the meeting point some centimetres to the side, as a
    policy's left arm may bring it); -> (success, the right arm's aim in m)."""
    left_shoulder = robot.joint_names.index("left_joint_1")
    env.expert.max_aim_m = aim_m
    try:
        env.reset(seed, observe=False)
        while not env.done:
            action = env.expert_action()
            if env.time >= 4.0:
                action[left_shoulder] += shoulder_offset_rad
            env.step(action, observe=False)
        return env.success(), env.expert.right_aim
    finally:
        env.expert.max_aim_m = type(env.expert).max_aim_m


def test_the_right_arm_takes_the_cube_where_the_left_brought_it(env, robot):
    success, aim = episode_with_the_left_arm_off(env, robot, seed=1, shoulder_offset_rad=0.08, aim_m=0.04)
    assert success
    # The cube came 3.6 cm to the side (along y, across the right fingers): the right arm followed.
    assert 0.03 < abs(aim[1]) <= 0.04 and np.abs(aim[[0, 2]]).max() < 0.005, aim
    assert episode_with_the_left_arm_off(env, robot, seed=1, shoulder_offset_rad=0.0, aim_m=0.04)[1] \
        == pytest.approx(np.zeros(3), abs=0.002), "on the plan the aim is nil"
    success, aim = episode_with_the_left_arm_off(env, robot, seed=1, shoulder_offset_rad=0.08, aim_m=0.0)
    assert not success, "aiming at the planned meeting point misses the cube"
