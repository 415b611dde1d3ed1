"""Gazebo Harmonic instead of the embedded MuJoCo sim (ROS 2 Jazzy + Gazebo Harmonic).

    ros2 launch diffusion_policy_ros gazebo.launch.py policy_checkpoint:=/path/ckpt
    ros2 launch diffusion_policy_ros gazebo.launch.py config:=bimanual.yaml seed:=3 policy_checkpoint:=/path/ckpt

Starts gz sim with the task's world (cube and target where the MuJoCo sim puts them for `seed`);
per arm a robot_state_publisher with the arm's URDF in the arm's namespace, the model spawned from
it, and once it is in, its controllers (joint_state_broadcaster, arm_controller, gripper_controller);
the ros_gz_bridge for clock and cameras; the policy and the safety filter on sim time.
`description`, `world` and `bridge` default to the package's files for the config: see
diffusion_policy_ros/gazebo/launch_plan.py for their {config}, {arm} and {task} patterns.
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from diffusion_policy_ros.gazebo import launch_plan, shipped
from diffusion_policy_ros.graph import argument_description, launch_arguments
from diffusion_policy_ros.resources import package_share_path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph_launch import graph_nodes  # noqa: E402

ARGUMENTS = {
    "config": (os.path.join(package_share_path("config"), "single_arm.yaml"),
               "robot config (config/single_arm.yaml, config/bimanual.yaml)"),
    "description": (launch_plan.default_path(shipped.DESCRIPTION_PATTERN),
                    "URDF of each arm with gz_ros2_control; {config}: the config file's name, {arm}: the arm's"),
    "world": (launch_plan.default_path(shipped.WORLD_PATTERN),
              "Gazebo world; {task}: the config's task. The default gets the cube and target of `seed`"),
    "bridge": (launch_plan.default_path(shipped.BRIDGE_PATTERN), "ros_gz_bridge configuration (clock, cameras)"),
    "seed": ("", "episode whose cube and target poses the default world gets, as in the MuJoCo sim "
                 "('' = the config's sim_node seed)"),
    "gz_args": ("-r", "gz sim options before the world (-r: run at once; add -s for no GUI)"),
}


def _value(context, name):
    return context.perform_substitution(LaunchConfiguration(name))


def _gazebo(context):
    plan = launch_plan.plan(_value(context, "config"), _value(context, "description"), _value(context, "world"),
                            _value(context, "bridge"), _value(context, "seed"))
    gz = IncludeLaunchDescription(
        PythonLaunchDescriptionSource([FindPackageShare("ros_gz_sim"), "/launch/gz_sim.launch.py"]),
        launch_arguments={"gz_args": f"{_value(context, 'gz_args')} {plan.world}", "on_exit_shutdown": "true"}.items())
    actions = [gz, Node(package="ros_gz_bridge", executable="parameter_bridge", output="screen",
                        parameters=[{"config_file": plan.bridge}])]
    for arm in plan.arms:
        spawn = Node(package="ros_gz_sim", executable="create", output="screen",
                     arguments=["-topic", arm.description_topic, "-name", arm.model_name])
        controllers = Node(package="controller_manager", executable="spawner", output="screen",
                           arguments=[*arm.controllers, "--controller-manager", arm.controller_manager])
        actions += [Node(package="robot_state_publisher", executable="robot_state_publisher", namespace=arm.namespace,
                         output="screen", parameters=[{"robot_description": arm.description, "use_sim_time": True}]),
                    spawn, RegisterEventHandler(OnProcessExit(target_action=spawn, on_exit=[controllers]))]
    return actions + graph_nodes(context, "robot", use_sim_time=True)   # policy and filter on Gazebo's clock


def generate_launch_description():
    args = [DeclareLaunchArgument(name, default_value=default, description=text)
            for name, (default, text) in ARGUMENTS.items()]
    args += [DeclareLaunchArgument(name, default_value="", description=argument_description(node, param))
             for name, (node, param) in launch_arguments("robot").items()]
    return LaunchDescription(args + [OpaqueFunction(function=_gazebo)])
