"""Record teleoperated demonstrations.

    ros2 launch diffusion_policy_ros record.launch.py config:=single_arm teleop:=expert sim:=true \
        dataset_name:=pick_demos

Same nodes as `dpros up record` (both come from diffusion_policy_ros.graph_record). The keyboard
node needs a terminal: run `ros2 run diffusion_policy_ros keyboard_episode_node` beside it, or
pass keyboard:=true to open it in an xterm.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from diffusion_policy_ros.graph_record import record_graph
from diffusion_policy_ros.robot_config import config_path, load_robot_config

ARGS = {
    "config": ("single_arm", "robot config name (config/<name>.yaml) or path"),
    "teleop": ("expert", "teleop source: expert (sim only) | leader | joy"),
    "sim": ("true", "run the MuJoCo sim instead of a real robot"),
    "keyboard": ("false", "open the keyboard episode control in an xterm"),
    "dataset_root": ("", "folder the datasets live in (default: the config's)"),
    "dataset_name": ("", "dataset folder name under dataset_root (default: <robot>_demos)"),
    "record_rate_hz": ("", "recording rate (default: the config's)"),
}


def _nodes(context):
    arg = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    params_file = config_path(arg["config"])
    robot = load_robot_config(params_file)
    specs = record_graph(robot, teleop=arg["teleop"], sim=arg["sim"].lower() == "true",
                         keyboard=arg["keyboard"].lower() == "true",
                         dataset_root=arg["dataset_root"] or None, dataset_name=arg["dataset_name"] or None,
                         record_rate_hz=float(arg["record_rate_hz"]) if arg["record_rate_hz"] else None)
    return [Node(package="diffusion_policy_ros", executable=s.executable, name=s.name, output="screen",
                 parameters=[params_file, s.parameters], remappings=s.remappings,
                 prefix="xterm -e" if s.interactive else None, emulate_tty=True)
            for s in specs]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=_nodes)])
