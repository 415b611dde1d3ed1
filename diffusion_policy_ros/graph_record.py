"""The node graph of record mode, described once for `launch/record.launch.py` and `dpros up record`.

    sim (or the real robot's drivers) -> sensors
    teleop source (expert | leader | joy) -> each arm's teleop_topic
    safety_filter_node reads the teleop topic (remapped from its policy input) -> controllers
    demo_recorder_node records sensors + teleop_topic; keyboard_episode_node drives it

Pure Python (no launch/rclpy imports): each node is a `NodeSpec` that the launch file turns into
`launch_ros.actions.Node` and `dpros up` into a subprocess command.
"""
from __future__ import annotations

import dataclasses
import sys

PACKAGE = "diffusion_policy_ros"
TELEOP_NODES = {"expert": "expert_teleop_node", "leader": "leader_follower_teleop_node",
                "joy": "joy_teleop_node"}


@dataclasses.dataclass
class NodeSpec:
    executable: str                                   # <name>_node: module diffusion_policy_ros.nodes.<name>_node
    name: str
    parameters: dict = dataclasses.field(default_factory=dict)
    remappings: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    interactive: bool = False                         # needs the terminal (keyboard)

    def command(self, params_file: str, python: str = sys.executable) -> list[str]:
        """`python -m ...` command line with the robot config and this node's parameters."""
        cmd = [python, "-m", f"{PACKAGE}.nodes.{self.executable}", "--ros-args", "-r", f"__node:={self.name}",
               "--params-file", params_file]
        if self.parameters:
            # A second params file, not `-p`: node-scoped values in the config file win over `-p`.
            cmd += ["--params-file", self.write_overlay()]
        for src, dst in self.remappings:
            cmd += ["-r", f"{src}:={dst}"]
        return cmd


    def write_overlay(self) -> str:
        import tempfile

        import yaml
        with tempfile.NamedTemporaryFile("w", prefix=f"{self.name}_", suffix=".yaml", delete=False) as f:
            yaml.safe_dump({f"/**/{self.name}": {"ros__parameters": dict(self.parameters)}}, f)
        return f.name


def record_graph(robot_config, *, teleop: str = "expert", sim: bool = True, keyboard: bool = True,
                 dataset_root: str | None = None, dataset_name: str | None = None,
                 record_rate_hz: float | None = None, use_sim_time: bool | None = None) -> list[NodeSpec]:
    """Nodes for recording demonstrations with `robot_config`.

    teleop: expert (the sim's scripted expert; needs sim), leader (leader arm), joy (gamepad).
    use_sim_time defaults to `sim`: the sim's stamps follow its /clock, and so must the
    recorder's receive-time stamps of unstamped teleop commands.
    """
    if teleop not in TELEOP_NODES:
        raise ValueError(f"teleop must be one of {sorted(TELEOP_NODES)}, got {teleop!r}")
    if teleop == "expert" and not sim:
        raise ValueError("the scripted expert needs the sim (sim=True) for its ground truth")
    sim_time = sim if use_sim_time is None else use_sim_time
    common = {"use_sim_time": sim_time}
    nodes = []
    if sim:
        nodes.append(NodeSpec("sim_node", "sim_node"))
    nodes.append(NodeSpec(TELEOP_NODES[teleop], TELEOP_NODES[teleop], dict(common)))
    # Teleop commands reach the robot through the same safety filter as the policy's.
    nodes.append(NodeSpec("safety_filter_node", "safety_filter_node", dict(common),
                          remappings=[(arm.policy_topic, arm.teleop_topic) for arm in robot_config.arms]))
    recorder = dict(common)
    for key, value in (("dataset_root", dataset_root), ("dataset_name", dataset_name),
                       ("record_rate_hz", record_rate_hz)):
        if value is not None:
            recorder[key] = value
    nodes.append(NodeSpec("demo_recorder_node", "demo_recorder_node", recorder))
    if keyboard:
        nodes.append(NodeSpec("keyboard_episode_node", "keyboard_episode_node", {}, interactive=True))
    return nodes
