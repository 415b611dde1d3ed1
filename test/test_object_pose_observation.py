"""Object poses as observations (robot config `object_poses`): one vector per pose whatever sign its
quaternion came with, malformed poses refused, the sim and a recorded PoseStamped giving the same
vector, and a quaternion normalized over its own range so a tilt the demonstrations never showed
stays a small input."""
import math
import pathlib

import numpy as np
import pytest
import torch

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.data.episode_conversion import message_typestore, stream_decoder
from diffusion_policy_ros.data.recording_plan import recording_plan
from diffusion_policy_ros.policy.configuration import robot_obs_shapes
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer
from diffusion_policy_ros.pose_observation import pose_vector
from diffusion_policy_ros.robot_config import ConfigError, load_robot_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATE = ROOT / "config" / "single_arm_state.yaml"


def test_q_and_minus_q_give_one_vector_with_qw_not_negative():
    yaw = 2.5
    q = np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])
    a, b = pose_vector([0.4, 0.1, 0.02], q), pose_vector([0.4, 0.1, 0.02], -q)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (7,) and a[6] >= 0


@pytest.mark.parametrize("position, quaternion", [
    ([0.4, float("nan"), 0.0], [0, 0, 0, 1]),
    ([0.4, 0.0, 0.0], [0, 0, 0, float("inf")]),
    ([0.4, 0.0, 0.0], [0, 0, 0, 0]),          # a default-constructed orientation
    ([0.4, 0.0, 0.0], [0, 0, 0.5, 0.5]),      # not a rotation
])
def test_a_malformed_pose_gives_no_observation(position, quaternion):
    assert pose_vector(position, quaternion) is None


def test_state_config_names_the_sim_poses_and_their_observations():
    config = load_robot_config(STATE)
    assert [(o.name, o.topic, o.frame_id) for o in config.object_poses] == [
        ("object", "/sim/object_pose", "world"), ("target", "/sim/target_pose", "world")]
    shapes = robot_obs_shapes(config)
    assert shapes["obs/object_pose"] == [7] and shapes["obs/target_pose"] == [7]
    assert obs_keys.is_pose("obs/object_pose") and not obs_keys.is_pose("obs/joint_pos")
    assert load_robot_config(ROOT / "config" / "single_arm.yaml").object_poses == ()


def test_an_object_named_twice_is_refused(tmp_path):
    text = STATE.read_text().replace("object_poses: [object, target]", "object_poses: [object, object]")
    (tmp_path / "twice.yaml").write_text(text)
    with pytest.raises(ConfigError, match="twice"):
        load_robot_config(tmp_path / "twice.yaml")


def test_the_sim_observes_only_the_objects_it_has(tmp_path):
    from diffusion_policy_ros.sim.env import SimEnv
    env = SimEnv(load_robot_config(STATE), render=False)
    obs = env.reset(7)
    position, quat_wxyz = env.object_pose()
    np.testing.assert_allclose(obs["obs/object_pose"][:3], position, atol=1e-6)
    assert abs(abs(float(obs["obs/object_pose"][3:] @ [quat_wxyz[1], quat_wxyz[2], quat_wxyz[3], quat_wxyz[0]]))
               - 1.0) < 1e-5
    np.testing.assert_allclose(obs["obs/target_pose"], [*env.target_position(), 0, 0, 0, 1], atol=1e-6)
    text = STATE.read_text().replace("object_poses: [object, target]", "object_poses: [object, mug]")
    (tmp_path / "mug.yaml").write_text(text)
    with pytest.raises(ConfigError, match="mug"):
        SimEnv(load_robot_config(tmp_path / "mug.yaml"), render=False)


def _recorded(store, frame_id, quaternion_xyzw):
    msgtype = "geometry_msgs/msg/PoseStamped"
    types = store.types
    msg = types[msgtype](
        header=types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                            frame_id=frame_id),
        pose=types["geometry_msgs/msg/Pose"](position=types["geometry_msgs/msg/Point"](x=0.4, y=-0.1, z=0.02),
                                             orientation=types["geometry_msgs/msg/Quaternion"](*quaternion_xyzw)))
    return bytes(store.serialize_cdr(msg, msgtype))


def test_a_recorded_pose_decodes_to_the_same_vector_and_a_wrong_frame_is_refused():
    stream = next(s for s in recording_plan(load_robot_config(STATE)).streams if s["key"] == "obs/object_pose")
    assert stream["kind"] == "pose" and stream["topic"] == "/sim/object_pose"
    store = message_typestore()
    decode = stream_decoder(stream, store)
    q = [0.0, 0.0, -math.sin(0.3), -math.cos(0.3)]     # the negative hemisphere on the wire
    np.testing.assert_allclose(decode(_recorded(store, "world", q)), pose_vector([0.4, -0.1, 0.02], q))
    with pytest.raises(ValueError, match="frame 'camera'"):
        decode(_recorded(store, "camera", q))
    with pytest.raises(ValueError, match="unit length"):
        decode(_recorded(store, "world", [0.0, 0.0, 0.0, 0.0]))


def test_a_tilt_the_data_never_showed_stays_a_small_input():
    # a cube lying on the table: yaw varies, the contact rocks it by a few thousandths in qx, qy
    rng = np.random.default_rng(0)
    flat = np.array([pose_vector([0.3 + 0.01 * i, 0.0, 0.02],
                                 [*rng.uniform(-0.003, 0.003, 2), math.sin(a / 2), math.cos(a / 2)])
                     for i, a in enumerate(np.linspace(-0.7, 0.7, 20))])
    norm = MinMaxNormalizer.fit({"obs/object_pose": flat, "obs/joint_pos": flat})
    tilt = math.radians(5)
    tilted = torch.tensor(pose_vector([0.35, 0.0, 0.02], [math.sin(tilt / 2), 0.0, 0.0, math.cos(tilt / 2)]))
    assert norm.normalize("obs/object_pose", tilted).abs().max() <= 1.0
    # any other vector keeps its data range (the same rows as a plain vector blow up)
    assert norm.normalize("obs/joint_pos", tilted).abs().max() > 10.0
