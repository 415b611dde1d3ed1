"""The robot description every part of the graph shares, read from `config/<robot>.yaml`.

The YAML is a ROS 2 parameter file. Nodes get it through ROS parameters (`--params-file`),
pure-Python tools (sim CLI, training, `dpros up`) read the same file here; both end in
`RobotConfig.from_parameters`, so a parameter has one meaning everywhere.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import yaml

from diffusion_policy_ros.parameters import (ConfigError, NodeSchema, ParameterSpec, is_ros_own,
                                             unknown_parameter_message)

SHARED_SECTION = "/**"
# How an arm's gripper is commanded on a ros2_control robot (`<arm>.gripper_controller`):
# none: the gripper is one more joint of the arm's joint_trajectory_controller (controller_topic);
# joint_trajectory: a second JTC over the gripper joints (JointTrajectory on gripper_topic);
# gripper_action: a GripperActionController (control_msgs/action/GripperCommand, action gripper_topic);
# forward_position: a forward position controller (Float64MultiArray on gripper_topic).
GRIPPER_CONTROLLERS = ("none", "joint_trajectory", "gripper_action", "forward_position")


def _shared(name, kind, description, default=None, **constraints):
    # Every node reads the robot description once at start-up: read-only, like robot_description.
    return ParameterSpec(name, kind, default, description, **constraints)


# The shared `/**` section every node of the graph gets (a typo in it stops every node, naming the
# key). `from_parameters` checks the values and how they fit together; this lists the names.
SHARED_PARAMETERS = NodeSchema("robot config (/**)", (
    _shared("robot", "string", "robot model and sim scene: resource/mjcf/<robot>.xml"),
    _shared("task", "string", "sim task (pick_place | handover); '' on a robot without a sim task", ""),
    _shared("control_rate_hz", "double", "policy actions and safety-filter commands per second",
            minimum=0.0, exclusive_minimum=True),
    _shared("arms", "string_array", "arm names, in action order; each has a section of that name"),
    _shared("{arm}.namespace", "string", "ROS namespace of the {arm} arm ('' = root)", ""),
    _shared("{arm}.joint_names", "string_array", "joints of the {arm} arm, in action order"),
    _shared("{arm}.gripper_joints", "string_array", "joints of the {arm} arm that are gripper fingers (metres)", []),
    _shared("{arm}.end_effector", "string", "MJCF site of the {arm} arm's tool centre (workspace checks)", "tcp"),
    _shared("{arm}.joint_states_topic", "string", "sensor_msgs/JointState of the {arm} arm"),
    _shared("{arm}.teleop_topic", "string", "JointTrajectory from teleop sources for the {arm} arm"),
    _shared("{arm}.policy_topic", "string", "JointTrajectory from the policy to the safety filter for the {arm} arm"),
    _shared("{arm}.controller_topic", "string", "JointTrajectory to the {arm} arm's joint_trajectory_controller"),
    _shared("{arm}.forward_topic", "string", "Float64MultiArray to the {arm} arm's forward position controller"),
    _shared("{arm}.gripper_controller", "string", "how the {arm} arm's gripper is commanded", "none",
            choices=GRIPPER_CONTROLLERS),
    _shared("{arm}.gripper_topic", "string", "topic or action of the {arm} arm's gripper controller", ""),
    _shared("cameras", "string_array", "cameras published and observed (each has a camera.<name> section)", []),
    _shared("camera.{name}.topic", "string", "camera '{name}': <topic>/image_raw, <topic>/depth/image_raw, "
            "<topic>/camera_info"),
    _shared("camera.{name}.width", "int", "camera '{name}' image width in pixels", minimum=1),
    _shared("camera.{name}.height", "int", "camera '{name}' image height in pixels", minimum=1),
    _shared("camera.{name}.depth", "bool", "camera '{name}' also has a depth image (32FC1, metres)", False),
    _shared("camera.{name}.depth_max_m", "double", "camera '{name}' depth beyond this is invalid", 2.0,
            minimum=0.0, exclusive_minimum=True),
    _shared("tactile_sensors", "string_array", "fingertip tactile pads (TactileArray)", []),
    _shared("tactile.rows", "int", "taxel rows of every pad without its own", 4, minimum=1),
    _shared("tactile.cols", "int", "taxel columns of every pad without its own", 4, minimum=1),
    _shared("tactile.{name}.arm", "string", "arm that carries tactile pad '{name}' (unset: the first arm)", ""),
    _shared("tactile.{name}.topic", "string", "TactileArray topic of pad '{name}' (unset: /tactile/{name})", ""),
    _shared("tactile.{name}.rows", "int", "taxel rows of pad '{name}' (unset: tactile.rows)", 4, minimum=1),
    _shared("tactile.{name}.cols", "int", "taxel columns of pad '{name}' (unset: tactile.cols)", 4, minimum=1),
    _shared("object_poses", "string_array", "objects whose pose (geometry_msgs/PoseStamped) is observed, from "
            "a perception system or the sim; each may have an object_pose.<name> section", []),
    _shared("object_pose.{name}.topic", "string", "PoseStamped topic of object '{name}' (unset: /{name}_pose)", ""),
    _shared("object_pose.{name}.frame_id", "string", "frame the pose of object '{name}' must be given in; "
            "a pose in another frame is dropped", "world"),
), uses_robot_config=False)


@dataclasses.dataclass(frozen=True)
class ArmConfig:
    name: str
    namespace: str
    joint_names: tuple[str, ...]
    gripper_joints: tuple[str, ...]
    end_effector: str
    joint_states_topic: str
    teleop_topic: str
    policy_topic: str
    controller_topic: str       # JointTrajectory to the arm's joint_trajectory_controller
    forward_topic: str
    gripper_controller: str = "none"   # one of GRIPPER_CONTROLLERS
    gripper_topic: str = ""            # topic or action name of the gripper controller

    @property
    def gripper_indices(self) -> tuple[int, ...]:
        return tuple(self.joint_names.index(j) for j in self.gripper_joints)

    @property
    def controller_joint_names(self) -> tuple[str, ...]:
        """Joints of the trajectory on controller_topic: the arm joints, and the gripper too when
        it has no controller of its own."""
        if self.gripper_controller == "none":
            return self.joint_names
        return tuple(j for j in self.joint_names if j not in self.gripper_joints)


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    name: str
    topic: str
    width: int
    height: int
    depth: bool
    depth_max_m: float

    @property
    def rgb_topic(self) -> str:
        return f"{self.topic}/image_raw"

    @property
    def depth_topic(self) -> str:
        return f"{self.topic}/depth/image_raw"

    @property
    def info_topic(self) -> str:
        return f"{self.topic}/camera_info"

    @property
    def frame_id(self) -> str:
        return f"{self.name}_camera_optical_frame"


@dataclasses.dataclass(frozen=True)
class TactileConfig:
    name: str
    arm: str
    topic: str
    rows: int
    cols: int

    @property
    def frame_id(self) -> str:
        return f"{self.name}_tactile_frame"


@dataclasses.dataclass(frozen=True)
class ObjectPoseConfig:
    """An observed object pose: observation `obs/<name>_pose` (obs_keys.pose), from PoseStamped."""
    name: str
    topic: str
    frame_id: str


@dataclasses.dataclass(frozen=True)
class RobotConfig:
    robot: str
    task: str
    control_rate_hz: float
    arms: tuple[ArmConfig, ...]
    cameras: tuple[CameraConfig, ...]
    tactile_sensors: tuple[TactileConfig, ...]
    node_parameters: Mapping[str, Mapping[str, Any]]
    source_path: str | None = None
    object_poses: tuple[ObjectPoseConfig, ...] = ()

    @property
    def joint_names(self) -> tuple[str, ...]:
        """All arms' joints in action order (arms in config order)."""
        return tuple(j for arm in self.arms for j in arm.joint_names)

    @property
    def action_dim(self) -> int:
        return len(self.joint_names)

    @property
    def gripper_indices(self) -> tuple[int, ...]:
        names = self.joint_names
        return tuple(names.index(j) for arm in self.arms for j in arm.gripper_joints)

    def arm_slices(self) -> tuple[tuple[ArmConfig, slice], ...]:
        """Each arm with its columns in a vector of all arms' joints (actions, joint positions)."""
        out, start = [], 0
        for arm in self.arms:
            out.append((arm, slice(start, start + len(arm.joint_names))))
            start += len(arm.joint_names)
        return tuple(out)

    def arm(self, name: str) -> ArmConfig:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ConfigError(f"unknown arm {name!r}; configured arms: {[a.name for a in self.arms]}")

    def camera(self, name: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise ConfigError(f"unknown camera {name!r}; configured cameras: {[c.name for c in self.cameras]}")

    def node_params(self, node: str) -> dict[str, Any]:
        """Parameters of one node's section (`/**/<node>`), without the shared ones."""
        return dict(self.node_parameters.get(node, {}))

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any], *, node_parameters=None,
                        source_path: str | None = None) -> "RobotConfig":
        """Build from the shared `/**` parameters, nested (YAML) or dotted (rclpy) keys. A key
        the shared section does not have is an error naming the closest one."""
        nested = _nest(params)
        p = _Params(nested)
        if not p.str_list("arms", default=[]):
            raise ConfigError("config names no arms (parameter 'arms')")
        check_shared_keys(flatten(nested))
        arms = []
        for name in p.str_list("arms"):
            a = p.section(name)
            joints = tuple(a.str_list("joint_names"))
            grippers = tuple(a.str_list("gripper_joints", default=[]))
            unknown = [g for g in grippers if g not in joints]
            if unknown:
                raise ConfigError(f"{name}.gripper_joints {unknown} are not in {name}.joint_names")
            if len(set(joints)) != len(joints):
                raise ConfigError(f"{name}.joint_names has duplicates: {list(joints)}")
            gripper_controller = a.str("gripper_controller", default="none")
            if gripper_controller not in GRIPPER_CONTROLLERS:
                raise ConfigError(f"{name}.gripper_controller must be one of {list(GRIPPER_CONTROLLERS)}, "
                                  f"got {gripper_controller!r}")
            gripper_topic = a.str("gripper_topic", default="")
            if gripper_controller != "none" and not (grippers and gripper_topic):
                raise ConfigError(f"{name}.gripper_controller {gripper_controller} needs gripper_joints and "
                                  f"{name}.gripper_topic")
            if gripper_controller == "gripper_action" and len(grippers) != 1:
                raise ConfigError(f"{name}.gripper_controller gripper_action commands one gripper joint "
                                  f"(GripperCommand has one position), got {list(grippers)}")
            arms.append(ArmConfig(
                name=name, namespace=a.str("namespace", default=""), joint_names=joints,
                gripper_joints=grippers, end_effector=a.str("end_effector", default="tcp"),
                joint_states_topic=a.str("joint_states_topic"), teleop_topic=a.str("teleop_topic"),
                policy_topic=a.str("policy_topic"), controller_topic=a.str("controller_topic"),
                forward_topic=a.str("forward_topic"), gripper_controller=gripper_controller,
                gripper_topic=gripper_topic))
        if not arms:
            raise ConfigError("config names no arms (parameter 'arms')")
        all_joints = [j for arm in arms for j in arm.joint_names]
        if len(set(all_joints)) != len(all_joints):
            raise ConfigError("joint names must be unique across arms (prefix them, e.g. left_joint_1)")

        cameras = []
        for name in p.str_list("cameras", default=[]):
            c = p.section("camera").section(name)
            cameras.append(CameraConfig(
                name=name, topic=c.str("topic"), width=c.positive_int("width"),
                height=c.positive_int("height"), depth=c.bool("depth", default=False),
                depth_max_m=c.positive_float("depth_max_m", default=2.0)))

        tactile = []
        grid = p.section("tactile")
        for name in p.str_list("tactile_sensors", default=[]):
            t = grid.section(name) if grid.has(name) else _Params({})
            tactile.append(TactileConfig(
                name=name, arm=t.str("arm", default=arms[0].name),
                topic=t.str("topic", default=f"/tactile/{name}"),
                rows=t.positive_int("rows", default=grid.positive_int("rows", default=4)),
                cols=t.positive_int("cols", default=grid.positive_int("cols", default=4))))

        poses = []
        pose_sections = p.section("object_pose")
        for name in p.str_list("object_poses", default=[]):
            o = pose_sections.section(name) if pose_sections.has(name) else _Params({})
            poses.append(ObjectPoseConfig(name=name, topic=o.str("topic", default=f"/{name}_pose"),
                                          frame_id=o.str("frame_id", default="world")))
        if len({o.name for o in poses}) != len(poses):
            raise ConfigError(f"object_poses names an object twice: {[o.name for o in poses]}")

        return cls(robot=p.str("robot"), task=p.str("task", default=""),
                   control_rate_hz=p.positive_float("control_rate_hz"), arms=tuple(arms),
                   cameras=tuple(cameras), tactile_sensors=tuple(tactile),
                   node_parameters=dict(node_parameters or {}), source_path=source_path,
                   object_poses=tuple(poses))


def load_robot_config(path: str | os.PathLike) -> RobotConfig:
    """Read a `config/*.yaml` parameter file (shared `/**` section plus `/**/<node>` sections)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read robot config {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"robot config {path} is not valid YAML: {e}") from e
    if not isinstance(doc, dict) or SHARED_SECTION not in doc:
        raise ConfigError(f"robot config {path} has no '{SHARED_SECTION}:' section")
    shared = _ros_parameters(doc[SHARED_SECTION], SHARED_SECTION, path)
    nodes = {}
    for key, section in doc.items():
        if key == SHARED_SECTION:
            continue
        nodes[key.rsplit("/", 1)[-1]] = _ros_parameters(section, key, path)
    return RobotConfig.from_parameters(shared, node_parameters=nodes, source_path=path)


def config_path(name_or_path: str) -> str:
    """`single_arm` or `config/single_arm.yaml` or an absolute path -> an existing file path."""
    if os.path.isfile(name_or_path):
        return os.path.abspath(name_or_path)
    from diffusion_policy_ros.resources import package_share_path
    candidate = os.path.join(package_share_path("config"), f"{name_or_path.removesuffix('.yaml')}.yaml")
    if os.path.isfile(candidate):
        return candidate
    raise ConfigError(f"no robot config {name_or_path!r} (looked for the file and for {candidate})")


def shared_arms(params: Mapping[str, Any]) -> list[str]:
    arms = params.get("arms", [])
    return [a for a in arms if isinstance(a, str)] if isinstance(arms, (list, tuple)) else []


def is_shared_parameter(key: str, params: Mapping[str, Any]) -> bool:
    """Whether a dotted key belongs to the shared robot description (`params`: its dotted keys)."""
    return SHARED_PARAMETERS.match(key, shared_arms(params)) is not None


def check_shared_keys(dotted: Mapping[str, Any]) -> None:
    arms = shared_arms(dotted)
    for key in dotted:
        if SHARED_PARAMETERS.match(key, arms) is None and not is_ros_own(key):
            raise ConfigError(unknown_parameter_message(SHARED_PARAMETERS.node, key,
                                                        SHARED_PARAMETERS.known_names(arms)))


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML mappings -> dotted keys, as rclpy names parameters."""
    out = {}
    for key, value in nested.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _ros_parameters(section: Any, key: str, path: str) -> dict[str, Any]:
    if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
        raise ConfigError(f"{path}: section {key!r} must hold a 'ros__parameters:' mapping")
    return section["ros__parameters"]


def _nest(params: Mapping[str, Any]) -> dict[str, Any]:
    """rclpy hands parameters over dotted (`camera.scene.width`); YAML nests them. Accept both."""
    nested: dict[str, Any] = {}
    for key, value in params.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping):
            node.setdefault(leaf, {}).update(_nest(value))
        else:
            node[leaf] = value
    return nested


class _Params:
    """Typed look-ups with errors that name the parameter."""

    _MISSING = object()

    def __init__(self, values: Mapping[str, Any], prefix: str = ""):
        self._values = values
        self._prefix = prefix

    def has(self, key: str) -> bool:
        return key in self._values

    def section(self, key: str) -> "_Params":
        value = self._values.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"parameter {self._prefix}{key} must be a mapping")
        return _Params(value, f"{self._prefix}{key}.")

    def _get(self, key, default):
        if key in self._values:
            return self._values[key]
        if default is self._MISSING:
            raise ConfigError(f"missing parameter {self._prefix}{key}")
        return default

    def str(self, key, default=_MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"parameter {self._prefix}{key} must be a string, got {value!r}")
        return value

    def str_list(self, key, default=_MISSING) -> list[str]:
        value = self._get(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"parameter {self._prefix}{key} must be a list of strings, got {value!r}")
        return list(value)

    def bool(self, key, default=_MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"parameter {self._prefix}{key} must be true or false, got {value!r}")
        return value

    def positive_int(self, key, default=_MISSING) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"parameter {self._prefix}{key} must be a positive integer, got {value!r}")
        return value

    def positive_float(self, key, default=_MISSING) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"parameter {self._prefix}{key} must be a positive number, got {value!r}")
        return float(value)
