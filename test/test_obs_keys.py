"""Observation keys: built and parsed in one place (plain data)."""
import pytest

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.obs_keys import ObsKey, ObsKeyError


def test_keys_round_trip_through_parse():
    assert obs_keys.rgb("scene") == "obs/scene/rgb"
    assert obs_keys.depth("wrist") == "obs/wrist/depth"
    assert obs_keys.tactile("finger_l") == "obs/finger_l/tactile"
    for key, parsed in [("obs/scene/rgb", ObsKey("scene", "rgb")), ("obs/wrist/depth", ObsKey("wrist", "depth")),
                        ("obs/finger_l/tactile", ObsKey("finger_l", "tactile")),
                        (obs_keys.JOINT_POS, ObsKey("joint_pos", "proprio")),
                        ("obs/left/gripper", ObsKey("left/gripper", "proprio"))]:
        assert obs_keys.parse(key) == parsed
        assert str(parsed) == key


def test_images_and_cameras():
    keys = ["obs/joint_pos", "obs/scene/rgb", "obs/wrist/depth", "obs/scene/depth", "obs/pad/tactile", "action"]
    assert [k for k in keys if obs_keys.is_image(k)] == ["obs/scene/rgb", "obs/wrist/depth", "obs/scene/depth"]
    assert obs_keys.cameras(keys) == ["scene", "wrist"]
    assert not obs_keys.is_obs("action") and not obs_keys.is_obs("obs/")


@pytest.mark.parametrize("bad", ["action", "timestamp", "obs/", "observation.state"])
def test_not_an_observation_key(bad):
    with pytest.raises(ObsKeyError, match="is not an observation key"):
        obs_keys.parse(bad)
