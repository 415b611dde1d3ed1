"""The shared robot config: both shipped configs load, and broken ones fail with the parameter named."""
import pathlib
import re

import pytest
import yaml

from diffusion_policy_ros.robot_config import ConfigError, RobotConfig, config_path, load_robot_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_single_arm_config_describes_one_arm_with_a_gripper():
    config = load_robot_config(ROOT / "config" / "single_arm.yaml")
    assert [a.name for a in config.arms] == ["arm"]
    assert config.joint_names[-1] == "gripper" and config.action_dim == 7
    assert config.gripper_indices == (6,)
    assert config.camera("scene").rgb_topic == "/camera/scene/image_raw"
    assert "policy_node" in config.node_parameters


def test_bimanual_config_orders_left_then_right_and_keeps_joint_names_unique():
    config = load_robot_config(ROOT / "config" / "bimanual.yaml")
    assert [a.namespace for a in config.arms] == ["left", "right"]
    assert config.action_dim == 14 and config.gripper_indices == (6, 13)
    assert {t.arm for t in config.tactile_sensors} == {"left", "right"}
    slices = config.arm_slices()
    assert [(arm.name, cols) for arm, cols in slices] == [("left", slice(0, 7)), ("right", slice(7, 14))]
    assert [config.joint_names[cols] for _, cols in slices] == [arm.joint_names for arm in config.arms]


def test_dotted_parameters_from_rclpy_give_the_same_config():
    doc = yaml.safe_load((ROOT / "config" / "single_arm.yaml").read_text())["/**"]["ros__parameters"]

    def flatten(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flatten(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    dotted = dict(flatten(doc))
    assert "camera.scene.width" in dotted
    from_dotted = RobotConfig.from_parameters(dotted)
    from_file = load_robot_config(ROOT / "config" / "single_arm.yaml")
    assert from_dotted.arms == from_file.arms and from_dotted.cameras == from_file.cameras


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["arm"].pop("joint_states_topic"), "missing parameter arm.joint_states_topic"),
    (lambda p: p["camera"]["scene"].update(width=-3), "camera.scene.width must be a positive integer"),
    (lambda p: p["arm"].update(gripper_joints=["claw"]), "gripper_joints ['claw']"),
    (lambda p: p.update(arms=[]), "names no arms"),
    (lambda p: p.update(control_rate_hz="fast"), "control_rate_hz must be a positive number"),
])
def test_broken_configs_name_the_bad_parameter(tmp_path, edit, message):
    doc = yaml.safe_load((ROOT / "config" / "single_arm.yaml").read_text())
    edit(doc["/**"]["ros__parameters"])
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_robot_config(path)


def test_unreadable_or_non_ros_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_robot_config(tmp_path / "absent.yaml")
    (tmp_path / "plain.yaml").write_text("robot: x\n")
    with pytest.raises(ConfigError, match="no '/\\*\\*:' section"):
        load_robot_config(tmp_path / "plain.yaml")
    (tmp_path / "bad.yaml").write_text("/**: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_robot_config(tmp_path / "bad.yaml")


def test_config_path_finds_shipped_configs_by_name():
    assert config_path("single_arm").endswith("single_arm.yaml")
    with pytest.raises(ConfigError, match="no robot config"):
        config_path("no_such_robot")
