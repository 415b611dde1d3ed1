"""The node graph a config brings up, without ROS: what `ros2 launch` and `dpros up` both start.

Launch files (launch/*.launch.py) and `dpros up` call `build_graph`, so the nodes, their
parameter files and their overrides cannot drift apart. Every node parameter is also a launch
argument named `<prefix>_<parameter>` (policy_checkpoint:=..., safety_max_step_rad:=...); an
empty value keeps the config file's.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import yaml

from diffusion_policy_ros.node_parameters import NODE_SCHEMAS
from diffusion_policy_ros.parameters import unknown_parameter_message
from diffusion_policy_ros.robot_config import (SHARED_PARAMETERS, ArmConfig, ConfigError, RobotConfig,
                                               config_path, flatten, load_robot_config)

PACKAGE = "diffusion_policy_ros"
MODES = {
    "robot": ("policy_node", "safety_filter_node"),
    "sim": ("sim_node", "policy_node", "safety_filter_node"),
    # Teleoperated demonstrations: the teleop source drives the robot through the same safety
    # filter as the policy would, and the recorder records sensors + the teleop commands.
    "record": ("sim_node", "teleop", "safety_filter_node", "demo_recorder_node"),
}
TELEOP_NODES = {"expert": "expert_teleop_node", "leader": "leader_follower_teleop_node",
                "joy": "joy_teleop_node"}
LIFECYCLE_NODES = ("policy_node",)
ARGUMENT_PREFIX = {"policy_node": "policy", "safety_filter_node": "safety", "sim_node": "sim",
                   "demo_recorder_node": "record"}
# Each node's own parameters (node_parameters.py), without the shared robot description.
NODE_PARAMETERS = {node: schema.names for node, schema in NODE_SCHEMAS.items()}


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    name: str                      # node name and executable (`ros2 run diffusion_policy_ros <name>`)
    params_file: str               # the robot config, passed with --params-file
    overrides: dict[str, Any]      # parameters set on top of the file
    lifecycle: bool = False
    namespace: str = ""

    @property
    def executable(self) -> str:
        return self.name

    @property
    def module(self) -> str:
        return f"{PACKAGE}.nodes.{self.name}"

    def ros_args(self, work_dir: str | None = None) -> list[str]:
        """Command-line ROS arguments. Overrides go in a second parameter file for this node
        (a later file wins for the same node; `-p` would lose to the config's node section)."""
        args = ["--ros-args", "-r", f"__node:={self.name}", "--params-file", self.params_file]
        if self.overrides:
            fd, path = tempfile.mkstemp(prefix=f"{self.name}_", suffix=".yaml", dir=work_dir)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                yaml.safe_dump({f"/**/{self.name}": {"ros__parameters": dict(self.overrides)}}, f)
            args += ["--params-file", path]
        return args


def launch_arguments(mode: str) -> dict[str, tuple[str, str]]:
    """Launch argument name -> (node, parameter) for every parameter of the mode's nodes."""
    out = {}
    for node in MODES[mode]:
        for name in NODE_PARAMETERS.get(node, ()):
            if "{" not in name:   # per-arm parameters ({arm}) are set in the config file
                out[f"{ARGUMENT_PREFIX[node]}_{name}"] = (node, name)
    return out


def argument_description(node: str, parameter: str) -> str:
    spec = NODE_SCHEMAS[node].match(parameter)
    constraints = spec.constraints()
    return (f"{node} {parameter}: {spec.description}" + (f" ({constraints})" if constraints else "")
            + "; '' keeps the config's value")


def check_node_sections(robot: RobotConfig) -> None:
    """Every key of every node section in the config is one its node declares (the nodes check
    the same at start-up; here a launch fails before anything starts)."""
    arms = [a.name for a in robot.arms]
    for node, values in robot.node_parameters.items():
        schema = NODE_SCHEMAS.get(node)
        if schema is None:
            raise ConfigError(f"{robot.source_path}: section for an unknown node '{node}'; nodes: "
                              f"{', '.join(sorted(NODE_SCHEMAS))}")
        for key, value in flatten(values).items():
            if schema.match(key, arms) is None and SHARED_PARAMETERS.match(key, arms) is None:
                raise ConfigError(f"{robot.source_path}: " + unknown_parameter_message(
                    node, key, schema.known_names(arms) + SHARED_PARAMETERS.known_names(arms)))
        schema.validate({k: v for k, v in flatten(values).items() if schema.match(k, arms)}, arms)


def parse_value(text: str) -> Any:
    """A launch/CLI value as YAML (numbers, booleans, lists), like `-p name:=value`."""
    return yaml.safe_load(text) if text != "" else ""


def parse_argument(node: str, name: str, text: str) -> Any:
    """A launch argument's text as the parameter's type (a string parameter keeps the text)."""
    spec = NODE_SCHEMAS[node].match(name)
    return spec.coerce(text if spec.kind == "string" else parse_value(text), node)


def build_graph(mode: str, config: str, arguments: Mapping[str, str] | None = None,
                use_sim_time: bool | None = None, teleop: str = "expert", sim: bool = True) -> list[NodeSpec]:
    """Nodes for `mode` ('robot', 'sim' or 'record') from the config; `arguments`: launch-argument
    values. In record mode `teleop` picks the source (expert, leader, joy) and `sim` whether the
    MuJoCo sim stands in for the robot."""
    if mode not in MODES:
        raise ConfigError(f"unknown graph mode {mode!r}; choose from {sorted(MODES)}")
    path = config_path(config)
    robot = load_robot_config(path)  # validates the file before anything starts
    check_node_sections(robot)
    known = launch_arguments(mode)
    overrides: dict[str, dict[str, Any]] = {node: {} for node in MODES[mode]}
    for key, text in (arguments or {}).items():
        if key not in known:
            raise ConfigError(unknown_parameter_message(f"launch arguments of mode {mode}", key, known)
                              .replace("parameter", "argument", 1))
        if str(text) != "":
            node, name = known[key]
            overrides[node][name] = parse_argument(node, name, str(text))
    if mode == "record":
        return _record_graph(path, overrides, teleop, sim, use_sim_time)
    if use_sim_time is None:
        use_sim_time = mode == "sim"  # the sim's stamps follow simulated time, published on /clock
    for node in overrides:
        if node != "sim_node":
            overrides[node].setdefault("use_sim_time", bool(use_sim_time))
    checkpoint = overrides.get("policy_node", {}).get("checkpoint") or robot.node_params("policy_node").get("checkpoint")
    if "policy_node" in overrides and checkpoint and not os.path.isdir(str(checkpoint)):
        raise ConfigError(f"policy checkpoint {checkpoint} is not a folder")
    return [NodeSpec(node, path, overrides[node], lifecycle=node in LIFECYCLE_NODES) for node in MODES[mode]]


def _record_graph(path, overrides, teleop, sim, use_sim_time) -> list[NodeSpec]:
    if teleop not in TELEOP_NODES:
        raise ConfigError(f"teleop must be one of {sorted(TELEOP_NODES)}, got {teleop!r}")
    if teleop == "expert" and not sim:
        raise ConfigError("the scripted expert needs the sim for its ground truth (teleop expert, sim on)")
    sim_time = sim if use_sim_time is None else use_sim_time
    specs = []
    if sim:
        specs.append(NodeSpec("sim_node", path, overrides["sim_node"]))
    specs.append(NodeSpec(TELEOP_NODES[teleop], path, {"use_sim_time": sim_time}))
    specs.append(NodeSpec("safety_filter_node", path,
                          {**overrides["safety_filter_node"], "input": "teleop", "use_sim_time": sim_time}))
    # The sim publishes its sensors reliably: a reliable subscription gets lost samples re-sent
    # (camera drivers of a real robot mostly publish best effort, the recorder's default).
    recorder = {"sensor_reliability": "reliable"} if sim else {}
    specs.append(NodeSpec("demo_recorder_node", path,
                          {**recorder, **overrides["demo_recorder_node"], "use_sim_time": sim_time}))
    return specs


def policy_forward_topic(arm: ArmConfig) -> str:
    """Where the policy publishes Float64MultiArray commands (output float64_multi_array); the
    safety filter reads them there, beside the arm's JointTrajectory `policy_topic`."""
    return f"{arm.policy_topic.rsplit('/', 1)[0]}/commands"
