"""DAgger recording (sim/dagger.py): the policy drives, the continuous expert labels.

Two properties. Adopting the expert's own command changes nothing: with the expert driving, or a
driver executing exactly what the expert proposed, the episode is the plain expert recording,
array for array. And with a policy driving, each
label starts from what was really commanded: its tcp is within one control period of expert
motion (max_speed / rate) of the executed command's tcp, although the policy's commands lead
the arm elsewhere than the expert would have gone.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion_policy_ros.cli.sim_record import dataset_keys, record_episode  # noqa: E402
from diffusion_policy_ros.data.episode_builder import streams_for_config  # noqa: E402
from diffusion_policy_ros.policy.checkpoint import load_checkpoint  # noqa: E402
from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.sim.dagger import dagger_episode, labelled_episode  # noqa: E402
from diffusion_policy_ros.sim.env import SimEnv  # noqa: E402
from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REACTIVE = load_robot_config(os.path.join(ROOT, "config", "single_arm_reactive.yaml"))
SEED = 3
TIMEOUT_S = 1.5
CAMERAS = [camera.name for camera in REACTIVE.cameras]   # the untrained policy observes them all


@pytest.fixture(scope="module")
def env():
    with SimEnv(REACTIVE, cameras=CAMERAS, variant="static", expert_mode="continuous") as env:
        yield env


@pytest.fixture(scope="module")
def keys():
    return dataset_keys(streams_for_config(REACTIVE, cameras=CAMERAS, depth=True, tactile=True))


@pytest.fixture(scope="module")
def policy(env, tmp_path_factory):
    # Random actions within +-0.05 rad of a pose 0.3 rad off home: a policy that does not do the task.
    center = np.asarray(env.home, np.float32).copy()
    center[:3] += 0.3
    folder = make_untrained_checkpoint(REACTIVE, str(tmp_path_factory.mktemp("tiny") / "ckpt"), center=center)
    policy = load_checkpoint(folder, device="cpu")
    policy.set_sampler("streaming")
    return policy


def test_with_the_expert_driving_a_dagger_episode_is_the_expert_recording(env, keys, policy):
    expert, _ = record_episode(env, SEED, keys, after_success=2)
    assert expert is not None, "the expert failed this seed"
    dagger, success = dagger_episode(env, policy, SEED, keys, timeout_s=len(expert["action"]) / 20 + 5,
                                     after_success=2, expert_drives=True)
    assert success is not None
    assert set(dagger) == set(expert)
    for key in expert:
        np.testing.assert_allclose(dagger[key], expert[key], atol=1e-9, err_msg=key)
    # a driver that executes exactly what the expert proposed: adopting its own command changes nothing
    adopted, success = labelled_episode(env, SEED, keys, timeout_s=len(expert["action"]) / 20 + 5, after_success=2,
                                        drive=lambda obs, t: env.expert._proposed.copy())
    assert success is not None
    for key in expert:
        np.testing.assert_allclose(adopted[key], expert[key], atol=1e-9, err_msg=key)


def test_with_the_policy_driving_each_label_starts_from_the_command_really_executed(env, keys, policy):
    executed = []
    select = policy.select_action
    policy.select_action = lambda obs, t: executed.append(np.asarray(select(obs, t))) or executed[-1]
    try:
        data, success = dagger_episode(env, policy, SEED, keys, timeout_s=TIMEOUT_S, after_success=2)
    finally:
        del policy.select_action
    labels = data["action"]
    assert success is None and len(labels) == len(executed) == round(TIMEOUT_S * 20)
    # the policy drove: the arm went where it was sent, not where the labels pointed
    assert np.abs(np.stack(executed)[:, :3] - labels[:, :3]).max() > 0.1
    arm = env.expert.arms[0]
    arm_joints = ~arm.index.is_gripper

    def tcp(action):
        return arm.ik.fk(np.asarray(action)[:len(arm_joints)][arm_joints])[0]
    step = env.expert.max_speed / REACTIVE.control_rate_hz
    for k in range(1, len(labels)):
        assert np.linalg.norm(tcp(labels[k]) - tcp(executed[k - 1])) <= step + 1e-3, k
