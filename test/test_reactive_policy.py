"""The reactive flow in miniature, the policy alone (no ROS): a cube displaced during a short
episode reaches the policy's camera observation, and the streaming policy, refining every control
step, plans differently from that step on, and not before.

Two SimEnvs run the same seed, one static and one displaced, each driven by its own copy of the
same (untrained, small) policy with the same sampler noise. Until the displacement their worlds,
observations and plans are identical; the plans differ from the first step that observes the moved
cube. What the trained checkpoint does with that difference is the evaluation's business
(`dpros eval policy --variants static,displaced`), not a unit test's.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion_policy_ros.policy.checkpoint import load_checkpoint  # noqa: E402
from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.sim.env import SimEnv  # noqa: E402
from diffusion_policy_ros.sim.perturbations import sample_perturbations  # noqa: E402
from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REACTIVE = load_robot_config(os.path.join(ROOT, "config", "single_arm_reactive.yaml"))
CAMERAS = [camera.name for camera in REACTIVE.cameras]   # the untrained policy observes them all
STEPS_AFTER = 4   # control steps run past the one that first observes the displaced cube


def early_displacement_seed(env: SimEnv, candidates=range(40)) -> tuple[int, float]:
    """The candidate seed whose cube is displaced earliest (fewest steps to simulate)."""
    best = None
    for seed in candidates:
        env.reset(seed, observe=False)
        state_cube, _ = env.task.cube_pose(env.data)
        plan = sample_perturbations("displaced", seed, state_cube, env.task.target_pos(env.data),
                                    env.task.workspace)
        if len(plan.displacements) and (best is None or plan.displace_at_s < best[1]):
            best = (seed, plan.displace_at_s)
    return best


def rollout(env: SimEnv, policy, seed: int, steps: int):
    """-> per control step: (sim time, scene image observed, plan the policy made from it, moved?)"""
    obs = env.reset(seed)
    policy.reset(seed)
    keys, n_obs = list(policy.config.obs_shapes), policy.config.n_obs_steps
    recent = [obs] * n_obs
    out = []
    for _ in range(steps):
        history = {k: np.stack([o[k] for o in recent]) for k in keys}
        plan = policy.predict_action_chunk(history, env.time)
        out.append((env.time, obs["obs/scene/rgb"].copy(), plan, env.world.displaced))
        obs = env.step(plan[0])   # refined every control step: only the plan's first action runs
        recent = recent[1:] + [obs]
    return out


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    with SimEnv(REACTIVE, render=False) as env:   # actions near home: the arm stays clear of the cube
        home = env.home
    folder = make_untrained_checkpoint(REACTIVE, str(tmp_path_factory.mktemp("tiny") / "ckpt"), center=home)
    made = []
    for _ in range(2):
        policy = load_checkpoint(folder, device="cpu")
        policy.set_sampler("streaming", stream_execute_steps=1)
        made.append(policy)
    return made


def test_a_displaced_cube_reaches_the_observation_and_changes_the_plan_from_that_step(policies):
    static_policy, displaced_policy = policies
    with SimEnv(REACTIVE, cameras=CAMERAS, variant="static") as static_env, \
            SimEnv(REACTIVE, cameras=CAMERAS, variant="displaced") as displaced_env:
        seed, displace_at = early_displacement_seed(displaced_env)
        steps = int(np.ceil(displace_at * REACTIVE.control_rate_hz)) + 1 + STEPS_AFTER
        static = rollout(static_env, static_policy, seed, steps)
        displaced = rollout(displaced_env, displaced_policy, seed, steps)
        events = displaced_env.world.events

    assert [e["event"] for e in events] == ["cube displaced"], events
    assert not any(moved for *_, moved in static)
    # The first step whose observation was taken after the displacement.
    first = next(i for i, (t, *_rest) in enumerate(displaced) if t >= events[0]["t"])
    assert first >= 2, "the test needs steps before the displacement to compare"
    assert static_policy.last_report.warm_started and displaced_policy.last_report.warm_started, \
        "every step after the first refines the previous plan"
    for i in range(first):
        (t_a, image_a, plan_a, _), (t_b, image_b, plan_b, _) = static[i], displaced[i]
        assert t_a == t_b
        np.testing.assert_array_equal(image_a, image_b, err_msg=f"step {i}: the worlds differ before the displacement")
        np.testing.assert_array_equal(plan_a, plan_b, err_msg=f"step {i}: the plans differ before the displacement")
    for i in range(first, len(displaced)):
        image_a, image_b = static[i][1], displaced[i][1]
        changed = np.abs(image_a.astype(int) - image_b.astype(int)).max(axis=-1) > 30
        assert changed.sum() >= 10, f"step {i}: the camera does not show the moved cube ({changed.sum()} pixels)"
        assert np.abs(static[i][2] - displaced[i][2]).max() > 1e-6, f"step {i}: the plan ignored the moved cube"
