"""The reactive pick-and-place task without ROS: the world moves as each episode's seed says, and
the continuous expert moves without dwelling and follows a cube that is moved away."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion_policy_ros.robot_config import ConfigError, load_robot_config  # noqa: E402
from diffusion_policy_ros.sim.env import SimEnv  # noqa: E402
from diffusion_policy_ros.sim.perturbations import (DISPLACE_DISTANCE_M, DISPLACE_WINDOW_S,  # noqa: E402
                                                    DRIFT_RANGE_M, DRIFT_SPEED_MPS, Perturbations, bounce,
                                                    sample_perturbations)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REACTIVE = load_robot_config(os.path.join(ROOT, "config", "single_arm_reactive.yaml"))
WORKSPACE = ((0.30, 0.50), (-0.15, 0.15))


@pytest.fixture(scope="module")
def env():
    with SimEnv(REACTIVE, render=False, variant="static", expert_mode="continuous") as e:
        yield e


def run_expert(env, seed, variant):
    """-> (success, actions, time of the first success)"""
    env.variant = variant
    env.reset(seed, observe=False)
    actions, first = [], None
    while not env.done and (first is None or env.time < first + 0.5):
        actions.append(env.expert_action())
        env.step(actions[-1], observe=False)
        if first is None and env.success():
            first = env.time
    return env.success(), np.array(actions), first


def test_perturbations_are_a_function_of_the_seed_and_within_their_ranges():
    plans = [sample_perturbations("displaced_drifting", s, (0.4, 0.0), (0.35, 0.13), WORKSPACE) for s in range(40)]
    again = sample_perturbations("displaced_drifting", 3, (0.4, 0.0), (0.35, 0.13), WORKSPACE)
    np.testing.assert_array_equal(again.displacements, plans[3].displacements)
    assert again.displace_at_s == plans[3].displace_at_s
    assert len({p.displace_at_s for p in plans}) == 40
    for p in plans:
        assert DISPLACE_WINDOW_S[0] <= p.displace_at_s <= DISPLACE_WINDOW_S[1]
        distances = np.linalg.norm(p.displacements, axis=1)
        assert len(distances) and np.all((distances >= DISPLACE_DISTANCE_M[0]) & (distances <= DISPLACE_DISTANCE_M[1]))
        assert DRIFT_SPEED_MPS[0] <= np.linalg.norm(p.drift_velocity) <= DRIFT_SPEED_MPS[1]
    only_cube = sample_perturbations("displaced", 3, (0.4, 0.0), (0.35, 0.13), WORKSPACE)
    assert only_cube.drift_velocity is None and only_cube.displace_at_s is not None
    assert sample_perturbations("static", 3, (0.4, 0.0), (0.35, 0.13), WORKSPACE).static
    with pytest.raises(ValueError, match="unknown task variant 'shaken'"):
        sample_perturbations("shaken", 3, (0.4, 0.0), (0.35, 0.13), WORKSPACE)


def test_bounce_reflects_at_both_walls():
    lo, hi = np.array([0.0]), np.array([1.0])
    assert np.allclose([bounce(np.array([x]), lo, hi)[0] for x in (0.25, 1.25, 2.25, -0.25)], [0.25, 0.75, 0.25, 0.25])


def test_a_variant_moves_the_world_but_not_the_seed_s_start(env):
    starts = {}
    for variant in ("static", "displaced", "drifting"):
        env.variant = variant
        env.reset(11, observe=False)
        starts[variant] = np.concatenate([*env.object_pose(), env.target_position(), env.joint_positions()])
        hold = env.joint_positions()
        cube0, target0 = env.object_pose()[0], env.target_position()
        while not env.done:
            env.step(hold, observe=False)
            assert not env.success(), f"{variant}: doing nothing succeeded"
        moved = np.linalg.norm(env.object_pose()[0][:2] - cube0[:2])
        drift = env.target_position()[:2] - target0[:2]
        if variant == "displaced":
            (event,) = env.world.events
            assert event["event"] == "cube displaced"
            assert DISPLACE_DISTANCE_M[0] - 1e-3 <= moved <= DISPLACE_DISTANCE_M[1] + 1e-3
            assert abs(event["t"] - env.world.plan.displace_at_s) < 0.01
        else:
            assert moved < 1e-3
        if variant == "drifting":
            assert np.linalg.norm(drift) > 0.01 and np.all(np.abs(drift) <= DRIFT_RANGE_M + 1e-9)
        else:
            assert np.allclose(drift, 0)
    np.testing.assert_array_equal(starts["static"], starts["displaced"])
    np.testing.assert_array_equal(starts["static"], starts["drifting"])


def test_a_lifted_cube_is_not_displaced(env):
    env.variant = "static"
    env.reset(5, observe=False)
    cube = env.task.cube_pose(env.data)[0]
    env.data.qpos[env.task.cube_qpos + 2] = 0.1     # as if in the gripper
    env.world.start(Perturbations(displace_at_s=0.0, displacements=np.array([[0.05, 0.0]])), env.data)
    env.step(env.joint_positions(), duration=0.004, observe=False)
    assert env.world.events[0]["event"] == "cube not displaced: lifted"
    assert abs(env.object_pose()[0][0] - cube[0]) < 0.01


def test_continuous_expert_succeeds_on_every_variant_without_dwelling(env):
    for variant, seeds in (("static", (100, 101, 102)), ("displaced", (103, 104, 105)),
                           ("drifting", (106,)), ("displaced_drifting", (107,))):
        for seed in seeds:
            success, actions, first = run_expert(env, seed, variant)
            assert success, f"{variant} seed {seed}: the continuous expert failed ({env.world.events})"
            # Until the cube is placed the arm never stands still: every action moves a joint.
            before = actions[:int(round(first * REACTIVE.control_rate_hz)) - 1]
            steps = np.abs(np.diff(before[:, :6], axis=0)).max(axis=1)
            assert steps.min() > 1e-4, f"{variant} seed {seed}: the expert rests at step {steps.argmin()}"


def test_keyframe_expert_dwells_and_misses_a_displaced_cube():
    with SimEnv(REACTIVE, render=False, variant="displaced", expert_mode="keyframes") as keyframes:
        success, actions, _ = run_expert(keyframes, 104, "displaced")
        assert keyframes.world.displaced and not success
        steps = np.abs(np.diff(actions[:, :6], axis=0)).max(axis=1)
        assert steps.min() < 1e-4   # it rests at its keyframes (the grasp), which a per-step policy cannot learn


def test_continuous_expert_goes_after_a_displaced_cube_and_closes_on_the_way(env):
    env.variant = "static"
    env.reset(104, observe=False)
    cube = env.object_pose()[0]
    away = np.array([0.0, 0.07 if cube[1] < 0 else -0.07])
    env.world.start(Perturbations(displace_at_s=1.0, displacements=away[None]), env.data)
    closes, was_closed = [], False      # (time, commanded tcp, its speed) whenever the gripper starts closing
    while not env.done and not env.success():
        action = env.expert_action()
        if action[6] < 0.01 and not was_closed:
            closes.append((env.time, env.expert.pos.copy(), np.linalg.norm(env.expert.vel)))
        was_closed = action[6] < 0.01
        env.step(action, observe=False)
    assert env.world.displaced and env.success()
    t, tcp, speed = closes[-1]
    assert t > 1.0 and np.linalg.norm(tcp[:2] - (cube[:2] + away)) < 0.015, "the grasp was not at the new place"
    assert speed > 0.01, "the gripper closed while the arm stood still"


def test_unknown_variant_and_mode_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown task variant 'wobbly'"):
        SimEnv(REACTIVE, render=False, variant="wobbly")
    with pytest.raises(ValueError, match="unknown expert mode 'psychic'"):
        SimEnv(REACTIVE, render=False, expert_mode="psychic")
    bimanual = load_robot_config(os.path.join(ROOT, "config", "bimanual.yaml"))
    with pytest.raises(ConfigError, match="task handover has only the variants static, not displaced"):
        SimEnv(bimanual, render=False, variant="displaced")
    with pytest.raises(ValueError, match="no continuous scripted expert for task 'handover'"):
        SimEnv(bimanual, render=False, expert_mode="continuous")


def test_the_nodes_accept_exactly_the_variants_and_expert_modes():
    from diffusion_policy_ros.node_parameters import EXPERT_TELEOP_NODE, SIM_NODE
    from diffusion_policy_ros.sim.expert import EXPERT_MODES
    from diffusion_policy_ros.sim.perturbations import VARIANTS
    assert SIM_NODE.match("task_variant").choices == VARIANTS
    assert EXPERT_TELEOP_NODE.match("expert_mode").choices == EXPERT_MODES
