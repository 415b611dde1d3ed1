"""Declared parameters: one schema per node, checked at start-up (a mistyped key stops the node and
names the closest known key), declared with descriptors (`ros2 param describe`), and the runtime
changes the schema does not allow refused."""
from __future__ import annotations

import re

import pytest
import yaml
from rclpy.exceptions import ParameterNotDeclaredException
from rclpy.parameter import Parameter

from diffusion_policy_ros import graph
from diffusion_policy_ros.node_parameters import NODE_SCHEMAS
from diffusion_policy_ros.parameters import NodeSchema, ParameterError, ParameterSpec, closest_name
from diffusion_policy_ros.robot_config import SHARED_PARAMETERS, ConfigError, load_robot_config
from diffusion_policy_ros.safety.limits import SafetyParams

CONFIG = "config/single_arm.yaml"


@pytest.fixture
def rclpy_context(ros_domain_id):
    """A context per test, shut down after it: a node whose constructor raised is never destroyed,
    and leaving a dozen of them in one long-lived context upset the next modules' DDS traffic."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    context.try_shutdown()


def mistype(name: str) -> str:
    """The key a tired user types: one letter dropped from the last word."""
    head, _, leaf = name.rpartition(".")
    i = max(1, len(leaf) // 2)
    return (head + "." if head else "") + leaf[:i] + leaf[i + 1:]


# ---- the schema, without ROS ----------------------------------------------------------------
def test_values_are_typed_checked_and_defaults_filled():
    schema = NodeSchema("demo", (
        ParameterSpec("rate_hz", "double", 10.0, "rate", minimum=0.0, exclusive_minimum=True),
        ParameterSpec("mode", "string", "a", "mode", choices=("a", "b")),
        ParameterSpec("box", "double_array", [0.0, 1.0], "box", length=2),
        ParameterSpec("{arm}.topic", "string", "", "topic of the {arm} arm"),
    ))
    values = schema.validate({"rate_hz": 5, "left.topic": "/l"}, arms=["left", "right"])
    assert values == {"rate_hz": 5.0, "left.topic": "/l", "mode": "a", "box": [0.0, 1.0], "right.topic": ""}
    assert isinstance(values["rate_hz"], float)
    for bad, message in [({"rate_hz": 0.0}, "rate_hz must be > 0"), ({"rate_hz": "fast"}, "must be a number"),
                         ({"mode": "c"}, "must be one of ['a', 'b']"), ({"box": [1.0]}, "exactly 2 values"),
                         ({"rate_hz": True}, "must be a number"), ({"middle.topic": "/m"}, "unknown parameter")]:
        with pytest.raises(ParameterError, match=re.escape(message)):
            schema.validate(bad, arms=["left", "right"])


def test_an_unknown_key_names_the_node_and_the_closest_known_key():
    with pytest.raises(ParameterError) as error:
        SafetyParams.from_mapping({"max_velocty": 1.0})
    assert str(error.value) == ("safety_filter_node: unknown parameter 'max_velocty'; "
                                "did you mean 'max_velocity_rad_s'?")
    assert closest_name("physics_rate", NODE_SCHEMAS["sim_node"].names) == "physics_rate_hz"
    assert closest_name("arm.gripper_controler", SHARED_PARAMETERS.known_names(["arm"])) == "arm.gripper_controller"


@pytest.mark.parametrize("schema", [*NODE_SCHEMAS.values(), SHARED_PARAMETERS], ids=lambda s: s.node)
def test_every_parameter_is_described(schema):
    for spec in schema.parameters:
        assert len(spec.description) > 10, f"{schema.node}.{spec.name} has no description"


def test_safety_parameters_are_the_safety_params_fields():
    import dataclasses
    assert graph.NODE_PARAMETERS["safety_filter_node"] == tuple(f.name for f in dataclasses.fields(SafetyParams))
    spec = NODE_SCHEMAS["safety_filter_node"].match("workspace_min")
    assert spec.kind == "double_array" and spec.length == 3 and spec.read_only


def test_shipped_configs_set_only_known_parameters():
    for path in ("config/single_arm.yaml", "config/bimanual.yaml"):
        graph.check_node_sections(load_robot_config(path))


def test_a_typo_in_a_config_file_stops_the_graph_before_it_starts(tmp_path):
    doc = yaml.safe_load(open(CONFIG))
    doc["/**/safety_filter_node"]["ros__parameters"]["max_velocty"] = 1.0
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"safety_filter_node: unknown parameter 'max_velocty'; "
                                          r"did you mean 'max_velocity_rad_s'\?"):
        graph.build_graph("sim", str(path), {})
    doc = yaml.safe_load(open(CONFIG))
    doc["/**"]["ros__parameters"]["arm"]["gripper_controler"] = "none"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"unknown parameter 'arm.gripper_controler'; "
                                          r"did you mean 'arm.gripper_controller'\?"):
        graph.build_graph("sim", str(path), {})
    with pytest.raises(ConfigError, match=r"unknown argument 'safety_max_stp_rad'; did you mean 'safety_max_step_rad'"):
        graph.build_graph("sim", CONFIG, {"safety_max_stp_rad": "0.1"})
    with pytest.raises(ParameterError, match="max_step_rad must be > 0"):
        graph.build_graph("sim", CONFIG, {"safety_max_step_rad": "-1"})


# ---- real nodes -----------------------------------------------------------------------------
def construct(node: str, context, cli_args, overrides=()):
    """Start the node as its executable would (its class, the params file on the command line)."""
    kwargs = {"context": context, "cli_args": cli_args, "parameter_overrides": list(overrides)}
    if node == "synthetic_sensors":
        from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors
        return SyntheticSensors(load_robot_config(CONFIG), 10.0, **kwargs)
    classes = {"sim_node": "SimNode", "policy_node": "PolicyNode", "safety_filter_node": "SafetyFilterNode",
               "demo_recorder_node": "DemoRecorder", "expert_teleop_node": "ExpertTeleopNode",
               "leader_follower_teleop_node": "LeaderFollowerTeleop", "joy_teleop_node": "JoyTeleop",
               "keyboard_episode_node": "KeyboardEpisodeNode", "jtc_check_node": "JtcCheckNode"}
    module = __import__(f"diffusion_policy_ros.nodes.{node}", fromlist=[classes[node]])
    return getattr(module, classes[node])(**kwargs)


@pytest.mark.parametrize("node", sorted(NODE_SCHEMAS))
def test_a_mistyped_key_in_a_nodes_section_stops_that_node(node, rclpy_context, tmp_path):
    schema = NODE_SCHEMAS[node]
    real = next((n for n in schema.expanded(["arm"])), "control_rate_hz")
    typo = mistype(real)
    doc = yaml.safe_load(open(CONFIG))
    section = doc.setdefault(f"/**/{node}", {"ros__parameters": {}})["ros__parameters"]
    section[typo] = schema.expanded(["arm"])[real].default if real in schema.expanded(["arm"]) else 10.0
    path = tmp_path / f"{node}.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ParameterError) as error:
        construct(node, rclpy_context, ["--ros-args", "-r", f"__node:={node}", "--params-file", str(path)])
    assert str(error.value) == f"{node}: unknown parameter '{typo}'; did you mean '{real}'?"


def test_every_parameter_is_declared_with_its_descriptor(rclpy_context):
    from diffusion_policy_ros.nodes.safety_filter_node import SafetyFilterNode
    node = SafetyFilterNode(context=rclpy_context, cli_args=["--ros-args", "--params-file", CONFIG])
    try:
        names = node.get_parameters_by_prefix("").keys()
        own = set(SafetyParams.schema().names)
        assert own <= set(names)
        for d in node.describe_parameters(list(names)):
            if d.name == "use_sim_time":
                continue
            assert d.description, f"{d.name} has no description"
            assert d.read_only
        step = node.describe_parameter("max_step_rad")
        assert step.type == Parameter.Type.DOUBLE.value and step.floating_point_range[0].from_value == 0.0
        assert node.describe_parameter("output").additional_constraints == \
            "one of: joint_trajectory, follow_joint_trajectory, float64_multi_array"
        assert list(node.get_parameter("workspace_min").value) == [-0.2, -0.6, 0.0]  # from the file
        result = node.set_parameters([Parameter("max_step_rad", value=1.0)])[0]
        assert not result.successful and "read-only" in result.reason
        assert node.params.max_step_rad == 0.25
    finally:
        node.destroy_node()


def test_runtime_changes_follow_the_schema(rclpy_context):
    from diffusion_policy_ros.nodes.policy_node import PolicyNode
    node = PolicyNode(context=rclpy_context, cli_args=["--ros-args", "--params-file", CONFIG])
    try:
        assert node.set_parameters([Parameter("sampler", value="ddim")])[0].successful  # applied on configure
        refused = node.set_parameters([Parameter("sampler", value="euler")])[0]
        assert not refused.successful and "must be one of" in refused.reason
        assert node.get_parameter("sampler").value == "ddim"
        assert not node.set_parameters([Parameter("stale_after_s", value=0.0)])[0].successful
        with pytest.raises(ParameterNotDeclaredException):
            node.set_parameters([Parameter("no_such_parameter", value=1)])
        assert node.get_parameter("denoising_steps").type_ == Parameter.Type.INTEGER_ARRAY
    finally:
        node.destroy_node()
