"""The topics Gazebo serves (ros_gz_bridge + gz_ros2_control, from the shipped files) are the ones
the real policy node and safety filter use for the same config, with the same types.

The nodes are the real rclpy nodes, built from the config file on sim time; the policy node is
configured with a checkpoint that observes every input the config offers, so it subscribes to
all of them. Their topics are read from the nodes themselves. An edited copy of a config must
make the check fail."""
from __future__ import annotations

import os

import pytest
import yaml
from rclpy.action import ActionClient
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from diffusion_policy_ros.gazebo import shipped
from diffusion_policy_ros.gazebo.model_source import ModelSource
from diffusion_policy_ros.gazebo.ros_interfaces import Interface, bridge_interfaces, controller_interfaces
from diffusion_policy_ros.graph import policy_forward_topic
from diffusion_policy_ros.nodes.policy_node import PolicyNode
from diffusion_policy_ros.nodes.safety_filter_node import SafetyFilterNode
from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the two nodes publish for people and tools, not for the robot.
REPORTS = {"/rosout", "/parameter_events", "/diagnostics", "/policy/status", "/policy/action_chunk",
           "/safety/events", "/policy_node/transition_event"}
OPERATOR_INPUTS = {"/safety/estop"}   # an operator's e-stop, not the robot's


def type_name(cls) -> str:
    package, kind = cls.__module__.split(".")[:2]
    return f"{package}/{kind}/{cls.__name__}"


def node_interfaces(node) -> set[Interface]:
    found = {Interface(s.topic_name, type_name(s.msg_type), "subscribes") for s in node.subscriptions}
    found |= {Interface(p.topic_name, type_name(p.msg_type), "publishes") for p in node.publishers}
    for waitable in node.waitables:
        if isinstance(waitable, ActionClient):
            name = node.resolve_topic_name(waitable._action_name)
            found.add(Interface(name, type_name(waitable._action_type), "calls"))
    return found


def graph_needs(config, policy, safety) -> set[Interface]:
    """What the robot side must offer the two nodes, seen from the robot: topics the nodes read
    and nobody in the graph writes are to be published, commands they write and nobody in the
    graph reads are to be subscribed, actions they call are to be served."""
    used = node_interfaces(policy) | node_interfaces(safety)
    written = {i.name for i in used if i.role == "publishes"}
    read = {i.name for i in used if i.role == "subscribes"}
    not_from_the_robot = (OPERATOR_INPUTS | {policy_forward_topic(a) for a in config.arms}  # the policy's other output
                          | {t.topic for t in config.tactile_sensors})  # Gazebo has no taxel sensors
    needs = set()
    for i in used:
        if i.role == "subscribes" and i.name not in written | not_from_the_robot:
            needs.add(Interface(i.name, i.type, "publishes"))
        elif i.role == "publishes" and i.name not in read | REPORTS:
            needs.add(Interface(i.name, i.type, "subscribes"))
        elif i.role == "calls":
            needs.add(Interface(i.name, i.type, "serves"))
    return needs


def gazebo_offers(source: ModelSource) -> set[Interface]:
    """What the shipped bridge and controller files of the config serve. CameraInfo is bridged
    for viewers (RViz); no node of the graph reads it."""
    with open(os.path.join(ROOT, shipped.bridge_path(source)), encoding="utf-8") as f:
        bridge = bridge_interfaces(yaml.safe_load(f))
    with open(os.path.join(ROOT, shipped.controllers_path(source)), encoding="utf-8") as f:
        controllers = controller_interfaces(yaml.safe_load(f))
    images = {i.name.rsplit("/image_raw", 1)[0] for i in bridge if i.name.endswith("/image_raw")
              and not i.name.endswith("/depth/image_raw")}
    infos = {i.name for i in bridge if i.type == "sensor_msgs/msg/CameraInfo"}
    assert infos == {f"{prefix}/camera_info" for prefix in images}, "every bridged camera brings its CameraInfo"
    return {i for i in bridge if i.name not in infos} | controllers


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    work = tmp_path_factory.mktemp("gazebo_topics")
    return {name: make_untrained_checkpoint(load_robot_config(os.path.join(ROOT, "config", f"{name}.yaml")),
                                            str(work / name)) for name in shipped.SHIPPED_CONFIGS}


def used_topics(rclpy_context, config_file: str, checkpoint: str) -> set[Interface]:
    """Start the real nodes on the config, configure the policy, read their topics."""
    config = load_robot_config(config_file)
    args = ["--ros-args", "--params-file", config_file]
    sim_time = Parameter("use_sim_time", value=True)
    nodes = []
    try:
        safety = SafetyFilterNode(context=rclpy_context, cli_args=args, parameter_overrides=[sim_time])
        nodes.append(safety)
        policy = PolicyNode(context=rclpy_context, cli_args=args, parameter_overrides=[
            sim_time, Parameter("checkpoint", value=checkpoint), Parameter("device", value="cpu")])
        nodes.append(policy)
        assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS, policy.message
        return graph_needs(config, policy, safety)
    finally:
        for node in reversed(nodes):
            node.destroy_node()


def differences(needed: set[Interface], offered: set[Interface]) -> list[str]:
    return ([f"the nodes need {i}, Gazebo does not serve it" for i in sorted(needed - offered)]
            + [f"Gazebo serves {i}, no node uses it" for i in sorted(offered - needed)])


@pytest.mark.parametrize("name", shipped.SHIPPED_CONFIGS)
def test_gazebo_serves_exactly_the_topics_the_policy_and_safety_filter_use(rclpy_context, checkpoints, name):
    config_file = os.path.join(ROOT, "config", f"{name}.yaml")
    needed = used_topics(rclpy_context, config_file, checkpoints[name])
    offered = gazebo_offers(ModelSource(load_robot_config(config_file)))
    assert differences(needed, offered) == []
    assert Interface("/clock", "rosgraph_msgs/msg/Clock", "publishes") in offered  # nodes on sim time


def test_topic_check_fails_when_the_config_moves_a_camera(rclpy_context, checkpoints, tmp_path):
    with open(os.path.join(ROOT, "config", "single_arm.yaml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    doc["/**"]["ros__parameters"]["camera"]["scene"]["topic"] = "/cam/front"
    edited = tmp_path / "single_arm.yaml"
    edited.write_text(yaml.safe_dump(doc, sort_keys=False))
    needed = used_topics(rclpy_context, str(edited), checkpoints["single_arm"])
    shipped_source = ModelSource(load_robot_config(os.path.join(ROOT, "config", "single_arm.yaml")))
    assert differences(needed, gazebo_offers(shipped_source)) == [
        "the nodes need Interface(name='/cam/front/image_raw', type='sensor_msgs/msg/Image', role='publishes'), "
        "Gazebo does not serve it",
        "Gazebo serves Interface(name='/camera/scene/image_raw', type='sensor_msgs/msg/Image', role='publishes'), "
        "no node uses it"]
