"""The ROS side of the Gazebo robot: ros2_control controllers per arm, ros_gz_bridge entries, and
the topics both serve, in one place so the graph's topics can be checked against them.

Per arm, in the arm's namespace (docs/HELPERS.md, "Controller outputs"): `joint_state_broadcaster`
(the arm's joint states), the arm's command controller (`arm_controller`, a
joint_trajectory_controller; `forward_position_controller` when the safety filter sends
Float64MultiArray) and, when the gripper has its own controller, `gripper_controller`. The bridge
carries the clock and the cameras; joint states and commands go through gz_ros2_control.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from diffusion_policy_ros.gazebo.model_source import ModelSource
from diffusion_policy_ros.gazebo.sensors import gz_camera_topics
from diffusion_policy_ros.robot_config import ArmConfig, ConfigError
from diffusion_policy_ros.safety.limits import SafetyParams

JOINT_STATE_BROADCASTER = "joint_state_broadcaster"
ARM_CONTROLLER = "arm_controller"
FORWARD_CONTROLLER = "forward_position_controller"
GRIPPER_CONTROLLER = "gripper_controller"
# A stopped safety filter leaves the arm on its last trajectory at most this long.
COMMAND_TIMEOUT_S = 0.5

# controller type -> (topic or action under the controller's name, interface type, what the
# controller does with it). The interfaces a controller is *commanded* through; state topics and
# actions the graph does not use are left out.
CONTROLLER_INTERFACES = {
    "joint_state_broadcaster/JointStateBroadcaster": ("../joint_states", "sensor_msgs/msg/JointState", "publishes"),
    "joint_trajectory_controller/JointTrajectoryController":
        ("joint_trajectory", "trajectory_msgs/msg/JointTrajectory", "subscribes"),
    "position_controllers/JointGroupPositionController": ("commands", "std_msgs/msg/Float64MultiArray", "subscribes"),
    "position_controllers/GripperActionController": ("gripper_cmd", "control_msgs/action/GripperCommand", "serves"),
}
BRIDGE_TYPES = {  # ROS type -> Gazebo type
    "rosgraph_msgs/msg/Clock": "gz.msgs.Clock",
    "sensor_msgs/msg/Image": "gz.msgs.Image",
    "sensor_msgs/msg/CameraInfo": "gz.msgs.CameraInfo",
}


@dataclasses.dataclass(frozen=True, order=True)
class Interface:
    """A topic or action one side of the graph uses: (name, type, role).

    role: `publishes` / `subscribes` for topics, `serves` / `calls` for actions."""
    name: str
    type: str
    role: str


def namespace_prefix(arm: ArmConfig) -> str:
    """`/left` for namespace `left`, `` for the root namespace."""
    ns = arm.namespace.strip("/")
    return f"/{ns}" if ns else ""


def controller_manager(arm: ArmConfig) -> str:
    return f"{namespace_prefix(arm)}/controller_manager"


@dataclasses.dataclass(frozen=True)
class ControllerSpec:
    name: str
    type: str
    parameters: dict[str, Any]


def arm_controllers(source: ModelSource, arm: ArmConfig) -> list[ControllerSpec]:
    """The controllers of one arm, in the order they are spawned."""
    states = {"joints": list(arm.joint_names), "interfaces": ["position", "velocity"]}
    specs = [ControllerSpec(JOINT_STATE_BROADCASTER, "joint_state_broadcaster/JointStateBroadcaster", states)]
    trajectory = {"command_interfaces": ["position"], "state_interfaces": ["position", "velocity"],
                  "allow_nonzero_velocity_at_trajectory_end": True, "cmd_timeout": COMMAND_TIMEOUT_S}
    joints = list(arm.controller_joint_names)
    if _safety_output(source) == "joint_trajectory":
        specs.append(ControllerSpec(ARM_CONTROLLER, "joint_trajectory_controller/JointTrajectoryController",
                                    {"joints": joints, **trajectory}))
    else:
        specs.append(ControllerSpec(FORWARD_CONTROLLER, "position_controllers/JointGroupPositionController",
                                    {"joints": joints}))
    grippers = list(arm.gripper_joints)
    if arm.gripper_controller == "joint_trajectory":
        specs.append(ControllerSpec(GRIPPER_CONTROLLER, "joint_trajectory_controller/JointTrajectoryController",
                                    {"joints": grippers, **trajectory}))
    elif arm.gripper_controller == "gripper_action":
        if len(grippers) != 1:
            raise ConfigError(f"arm {arm.name}: a gripper action controller drives one joint, got {grippers}")
        # A grasp stops the fingers short of their target: that is success, not a stall error.
        specs.append(ControllerSpec(GRIPPER_CONTROLLER, "position_controllers/GripperActionController",
                                    {"joint": grippers[0], "allow_stalling": True}))
    elif arm.gripper_controller == "forward_position":
        specs.append(ControllerSpec(GRIPPER_CONTROLLER, "position_controllers/JointGroupPositionController",
                                    {"joints": grippers}))
    return specs


def controllers_parameters(source: ModelSource) -> dict[str, Any]:
    """The gz_ros2_control parameter file of a config: one controller manager per arm namespace."""
    doc: dict[str, Any] = {}
    for arm in source.config.arms:
        sections = _arm_sections(source, arm)
        _check_topics(source, arm, controller_interfaces(sections))
        doc.update(sections)
    return doc


def _arm_sections(source: ModelSource, arm: ArmConfig) -> dict[str, Any]:
    specs = arm_controllers(source, arm)
    # joint_state_broadcaster publishes once per update: /joint_states as often as from sim_node.
    manager = {"update_rate": int(round(source.joint_state_rate_hz))}
    manager.update({spec.name: {"type": spec.type} for spec in specs})
    sections = {controller_manager(arm): {"ros__parameters": manager}}
    for spec in specs:
        sections[f"{namespace_prefix(arm)}/{spec.name}"] = {"ros__parameters": dict(spec.parameters)}
    return sections


def _safety_output(source: ModelSource) -> str:
    return SafetyParams.from_mapping(source.config.node_params("safety_filter_node")).output


def _check_topics(source: ModelSource, arm: ArmConfig, served: set["Interface"]) -> None:
    """The config's topics must be the ones gz_ros2_control will serve for this arm."""
    wanted = [("joint_states_topic", arm.joint_states_topic)]
    if _safety_output(source) == "joint_trajectory":
        wanted.append(("controller_topic", arm.controller_topic))
    else:
        wanted.append(("forward_topic", arm.forward_topic))
    if arm.gripper_controller != "none":
        wanted.append(("gripper_topic", arm.gripper_topic))
    names = sorted(i.name for i in served)
    for key, topic in wanted:
        if topic not in names:
            raise ConfigError(f"{arm.name}.{key} is {topic!r}, but in Gazebo the arm's controllers serve {names} "
                              f"(namespace {arm.namespace!r}); rename the topic in the config")


def bridge_entries(source: ModelSource) -> list[dict[str, Any]]:
    """ros_gz_bridge entries: the sim clock and every configured camera (depth where enabled)."""
    entries = [_entry("/clock", "/clock", "rosgraph_msgs/msg/Clock", lazy=False)]
    for camera in source.config.cameras:
        gz = gz_camera_topics(camera)
        entries.append(_entry(camera.rgb_topic, gz.rgb, "sensor_msgs/msg/Image"))
        if camera.depth:
            entries.append(_entry(camera.depth_topic, gz.depth, "sensor_msgs/msg/Image"))
        entries.append(_entry(camera.info_topic, gz.info, "sensor_msgs/msg/CameraInfo"))
    return entries


def _entry(ros_topic: str, gz_topic: str, ros_type: str, lazy: bool = True) -> dict[str, Any]:
    # Lazy: Gazebo renders a camera only while the bridge subscribes, i.e. while a ROS node does.
    entry = {"ros_topic_name": ros_topic, "gz_topic_name": gz_topic, "ros_type_name": ros_type,
             "gz_type_name": BRIDGE_TYPES[ros_type], "direction": "GZ_TO_ROS"}
    if lazy:
        entry["lazy"] = True
    return entry


# --- what each side serves (for the consistency checks) ---------------------------------------
def controller_interfaces(parameters: Mapping[str, Any]) -> set[Interface]:
    """Interfaces the controllers of a controller parameter file are used through."""
    out = set()
    for node, section in parameters.items():
        if not node.endswith("/controller_manager"):
            continue
        ns = node[: -len("/controller_manager")]
        for name, value in section.get("ros__parameters", {}).items():
            if not isinstance(value, Mapping) or "type" not in value:
                continue
            if value["type"] not in CONTROLLER_INTERFACES:
                raise ConfigError(f"{node}: controller {name} has type {value['type']}, which has no known topic")
            suffix, kind, role = CONTROLLER_INTERFACES[value["type"]]
            topic = f"{ns}/{suffix[3:]}" if suffix.startswith("../") else f"{ns}/{name}/{suffix}"
            out.add(Interface(topic, kind, role))
    return out


def bridge_interfaces(entries: Iterable[Mapping[str, Any]]) -> set[Interface]:
    """ROS topics a ros_gz_bridge configuration publishes (GZ_TO_ROS) or subscribes (ROS_TO_GZ)."""
    roles = {"GZ_TO_ROS": "publishes", "ROS_TO_GZ": "subscribes"}
    out = set()
    for entry in entries:
        direction = entry.get("direction", "BIDIRECTIONAL")
        if direction not in roles:
            raise ConfigError(f"bridge entry {entry.get('ros_topic_name')}: direction {direction} is not one-way")
        out.add(Interface(entry["ros_topic_name"], entry["ros_type_name"], roles[direction]))
    return out
