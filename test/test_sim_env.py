"""The MuJoCo sim without ROS: scenes, tasks, sensors and the scripted experts."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.sim.env import SimEnv, run_expert_episode  # noqa: E402
from diffusion_policy_ros.sim.robot_model import RobotModel, load_scene_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [("single_arm", "pick_place"), ("bimanual", "handover")]


def config(robot):
    return load_robot_config(os.path.join(ROOT, "config", f"{robot}.yaml"))


@pytest.fixture(scope="module", params=CASES, ids=[c[1] for c in CASES])
def headless(request):
    robot, _ = request.param
    with SimEnv(config(robot), render=False) as env:
        yield env


def test_expert_succeeds_on_at_least_90_percent_of_20_seeds(headless):
    results = [run_expert_episode(headless, seed) for seed in range(100, 120)]
    assert sum(results) >= 18, f"{headless.task.name}: {sum(results)}/20, failed {np.flatnonzero(~np.array(results))}"


def test_doing_nothing_never_succeeds(headless):
    for seed in range(5):
        headless.reset(seed)
        hold = headless.joint_positions()
        assert not headless.success()
        while not headless.done:
            headless.step(hold, observe=False)
        assert not headless.success(), f"seed {seed}: a do-nothing policy counted as success"


def test_reset_is_deterministic_per_seed_and_varies_across_seeds(headless):
    poses = []
    for seed in (7, 7, 8):
        headless.reset(seed)
        poses.append(np.concatenate([*headless.object_pose(), headless.joint_positions()]))
    np.testing.assert_array_equal(poses[0], poses[1])
    assert np.linalg.norm(poses[0][:3] - poses[2][:3]) > 1e-3


def test_bad_actions_are_refused(headless):
    headless.reset(0)
    with pytest.raises(ValueError, match="takes"):
        headless.step(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        headless.step(np.full(headless.config.action_dim, np.nan))


@pytest.mark.parametrize("robot", ["single_arm", "bimanual"])
def test_observation_keys_shapes_and_units(robot):
    cfg = config(robot)
    with SimEnv(cfg) as env:
        obs = env.reset(3)
        assert obs["obs/joint_pos"].shape == (cfg.action_dim,) and obs["obs/joint_pos"].dtype == np.float32
        for cam in cfg.cameras:
            rgb = obs[f"obs/{cam.name}/rgb"]
            assert rgb.shape == (cam.height, cam.width, 3) and rgb.dtype == np.uint8
            assert rgb.std() > 5, "camera image is flat"
            if cam.depth:
                depth = obs[f"obs/{cam.name}/depth"]
                assert depth.shape == (cam.height, cam.width) and depth.dtype == np.float32
                assert 0.0 < depth.min() and depth.max() <= cam.depth_max_m
            else:
                assert f"obs/{cam.name}/depth" not in obs
        for t in cfg.tactile_sensors:
            grid = obs[f"obs/{t.name}/tactile"]
            assert grid.shape == (t.rows, t.cols) and grid.dtype == np.float32
            assert np.all(grid == 0)   # open gripper, nothing touched


def test_scene_camera_sees_cube_and_target():
    with SimEnv(config("single_arm")) as env:
        rgb = env.reset(0)["obs/scene/rgb"].astype(int)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    green = (rgb[..., 1] > 150) & (rgb[..., 0] < 100) & (rgb[..., 2] < 100)
    assert red.sum() >= 4 and green.sum() >= 4, (red.sum(), green.sum())


def test_tactile_reads_force_only_while_fingers_touch_the_cube():
    with SimEnv(config("single_arm"), render=False) as env:
        env.reset(2)
        touching_steps = 0
        while not env.done:
            env.step(env.expert_action(), observe=False)
            force = sum(env.read_tactile(s.name).sum() for s in env.config.tactile_sensors)
            touching = bool(env.task.contacts.fingers_touching_cube(env.data))
            if touching:
                touching_steps += 1
                assert force > 0.5, f"fingers hold the cube but tactile reads {force} N"
            else:
                assert force == 0.0, f"tactile reads {force} N with nothing touched"
        assert touching_steps >= 15    # held through lift and carry
        assert env.success()


def test_forward_kinematics_with_mujoco_alone():
    """The safety filter's route to FK: the scene model + RobotModel + mj_kinematics."""
    cfg = config("bimanual")
    model = load_scene_model(cfg.robot)
    data = mujoco.MjData(model)
    robot = RobotModel(model, cfg)
    robot.set_joint_positions(data, np.zeros(cfg.action_dim))
    mujoco.mj_kinematics(model, data)
    # Zero pose: upper arm up (0.16 + 0.30 m), forearm + wrist + tcp offset along x.
    reach = 0.14 + 0.14 + 0.05 + 0.065
    np.testing.assert_allclose(data.site("left_tcp").xpos, [-0.45 + reach, 0, 0.46], atol=1e-9)
    np.testing.assert_allclose(data.site("right_tcp").xpos, [0.45 - reach, 0, 0.46], atol=1e-9)
    np.testing.assert_allclose(robot.joint_positions(data), 0.0, atol=1e-12)
