"""Gazebo Harmonic instead of the embedded MuJoCo sim (for machines with ROS 2 Jazzy + Gazebo).

    ros2 launch diffusion_policy_ros gazebo.launch.py description:=/path/robot.urdf policy_checkpoint:=/path/ckpt

`description` is a URDF whose <ros2_control> uses gz_ros2_control/GazeboSimSystem and the
gz_ros2_control plugin with config/gazebo_controllers.yaml. Starts gz sim (ros_gz_sim), spawns
the robot from /robot_description, bridges camera, depth and clock with config/gazebo_bridge.yaml
(ros_gz_bridge), spawns joint_state_broadcaster and the joint_trajectory_controller
`arm_controller`, and the robot graph (policy + safety filter) on sim time.
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import Command, LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph_launch import graph_launch_description  # noqa: E402

from diffusion_policy_ros.resources import package_share_path  # noqa: E402


def generate_launch_description():
    bridge = os.path.join(package_share_path("config"), "gazebo_bridge.yaml")
    world = LaunchConfiguration("world")
    gz = IncludeLaunchDescription(
        PythonLaunchDescriptionSource([FindPackageShare("ros_gz_sim"), "/launch/gz_sim.launch.py"]),
        launch_arguments={"gz_args": ["-r ", world]}.items())
    state_publisher = Node(package="robot_state_publisher", executable="robot_state_publisher",
                           parameters=[{"robot_description": Command(["cat ", LaunchConfiguration("description")]),
                                        "use_sim_time": True}])
    spawn = Node(package="ros_gz_sim", executable="create", arguments=["-topic", "robot_description", "-name", "robot"])
    bridge_node = Node(package="ros_gz_bridge", executable="parameter_bridge",
                       parameters=[{"config_file": bridge, "use_sim_time": True}])
    controllers = [Node(package="controller_manager", executable="spawner", arguments=[name])
                   for name in ("joint_state_broadcaster", "arm_controller")]
    graph = graph_launch_description("robot")
    args = [DeclareLaunchArgument("description", description="URDF with gz_ros2_control (required)"),
            DeclareLaunchArgument("world", default_value="empty.sdf", description="Gazebo world")]
    return LaunchDescription(args + [gz, state_publisher, spawn, bridge_node, *controllers, *graph.entities])
