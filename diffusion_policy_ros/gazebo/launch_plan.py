"""What gazebo.launch.py starts for a config, worked out without ROS: the world file for the
seed, the bridge file, and per arm its URDF text, namespace and controllers to spawn.

The launch file's `description`, `world` and `bridge` arguments are paths that may name
`{config}` (the config file's name), `{arm}` (each arm's name) and `{task}` (the config's task);
relative paths are taken from the package's share directory.
"""
from __future__ import annotations

import dataclasses
import os

from diffusion_policy_ros.gazebo import shipped
from diffusion_policy_ros.gazebo.model_source import ModelSource
from diffusion_policy_ros.gazebo.ros_interfaces import arm_controllers, controller_manager
from diffusion_policy_ros.gazebo.urdf import robot_name
from diffusion_policy_ros.resources import package_share_path
from diffusion_policy_ros.robot_config import ConfigError, config_path, load_robot_config


@dataclasses.dataclass(frozen=True)
class ArmLaunch:
    arm: str
    namespace: str             # "" or e.g. "left"
    model_name: str            # the model's name in Gazebo
    description: str           # URDF text, $(find ...) resolved
    description_file: str
    controller_manager: str    # e.g. /left/controller_manager
    controllers: tuple[str, ...]

    @property
    def description_topic(self) -> str:
        return f"/{self.namespace}/robot_description" if self.namespace else "/robot_description"


@dataclasses.dataclass(frozen=True)
class GazeboLaunch:
    world: str
    bridge: str
    arms: tuple[ArmLaunch, ...]


def default_path(pattern: str) -> str:
    """A launch argument's default: the pattern under the package's share directory."""
    return os.path.join(os.path.abspath(package_share_path()), pattern)


def plan(config: str, description: str = "", world: str = "", bridge: str = "",
         seed: str = "") -> GazeboLaunch:
    """`config`: a config file or a shipped config's name; `description`, `world`, `bridge`:
    patterns (empty: the shipped ones); `seed`: the episode whose cube and target poses the
    shipped world gets (empty: the config's sim_node seed)."""
    source = ModelSource(load_robot_config(config_path(config)))
    names = {"config": source.name, "task": source.task.name}
    if world and _resolve(world, names) != _resolve(default_path(shipped.WORLD_PATTERN), names):
        world_file = _existing(_resolve(world, names), "world")
    else:
        episode = source.default_seed if seed == "" else _seed(seed)
        world_file = shipped.world_for_seed(source, episode)
    pattern = description or default_path(shipped.DESCRIPTION_PATTERN)
    if len(source.arms) > 1 and "{arm}" not in pattern:
        raise ConfigError(f"config {source.name} has {len(source.arms)} arms, one URDF each: the description "
                          f"path must name {{arm}}, got {pattern!r}")
    bridge_file = _existing(_resolve(bridge or default_path(shipped.BRIDGE_PATTERN), names), "bridge")
    arms = []
    for arm in source.arms:
        path = _existing(_resolve(pattern, {**names, "arm": arm.config.name}), "description")
        with open(path, encoding="utf-8") as f:
            text = shipped.resolve_find(f.read())
        arms.append(ArmLaunch(arm.config.name, arm.config.namespace.strip("/"), robot_name(source, arm), text, path,
                              controller_manager(arm.config),
                              tuple(c.name for c in arm_controllers(source, arm.config))))
    return GazeboLaunch(world_file, bridge_file, tuple(arms))


def _resolve(pattern: str, names: dict[str, str]) -> str:
    try:
        path = pattern.format(**names)
    except (KeyError, IndexError) as e:
        raise ConfigError(f"{pattern!r} names {e}; the patterns know {{config}}, {{arm}} and {{task}}") from e
    return path if os.path.isabs(path) else os.path.join(os.path.abspath(package_share_path()), path)


def _existing(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise ConfigError(f"no {what} file {path}: for a config of your own, write its Gazebo files with "
                          f"`dpros describe gazebo --config <file> --out <folder>` and pass them as launch arguments")
    return path


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"seed must be an integer, got {text!r}") from None
