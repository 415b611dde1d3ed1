"""Shared by the launch files: launch arguments and nodes from `diffusion_policy_ros.graph.build_graph`,
the list `dpros up` starts too (gazebo.launch.py adds Gazebo and puts the graph on its clock)."""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from diffusion_policy_ros.graph import PACKAGE, argument_description, build_graph, launch_arguments
from diffusion_policy_ros.resources import package_share_path


RECORD_ARGUMENTS = {
    "teleop": ("expert", "teleop source: expert (sim only) | leader | joy"),
    "sim": ("true", "the MuJoCo sim stands in for the robot"),
    "keyboard": ("false", "open the keyboard episode control (start/save/discard) in an xterm"),
}


def graph_nodes(context, mode, use_sim_time=None):
    """The graph's nodes for `mode`, lifecycle nodes configured and then activated once."""
    values = {name: context.perform_substitution(_arg(name)) for name in launch_arguments(mode)}
    config = context.perform_substitution(_arg("config"))
    actions = []
    options = {}
    if mode == "record":
        record = {name: context.perform_substitution(_arg(name)) for name in RECORD_ARGUMENTS}
        options = {"teleop": record["teleop"], "sim": record["sim"].lower() == "true"}
        if record["keyboard"].lower() == "true":
            actions.append(Node(package=PACKAGE, executable="keyboard_episode_node", prefix="xterm -e",
                                output="screen", emulate_tty=True))
    for spec in build_graph(mode, config, values, use_sim_time=use_sim_time, **options):
        params = [spec.params_file, spec.overrides] if spec.overrides else [spec.params_file]
        if not spec.lifecycle:
            actions.append(Node(package=PACKAGE, executable=spec.executable, name=spec.name,
                                namespace=spec.namespace, parameters=params, output="screen"))
            continue
        node = LifecycleNode(package=PACKAGE, executable=spec.executable, name=spec.name,
                             namespace=spec.namespace, parameters=params, output="screen")
        configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                transition_id=Transition.TRANSITION_CONFIGURE))
        # Activated once configured; not again after a deactivate (`ros2 lifecycle set ... deactivate`)
        activate = RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
            entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                  transition_id=Transition.TRANSITION_ACTIVATE))]))
        actions += [activate, node, configure]
    return actions


def _arg(name):
    from launch.substitutions import LaunchConfiguration
    return LaunchConfiguration(name)


def graph_launch_description(mode: str, default_config: str = "single_arm.yaml") -> LaunchDescription:
    args = [DeclareLaunchArgument("config", default_value=os.path.join(package_share_path("config"), default_config),
                                  description="robot config (config/single_arm.yaml, config/bimanual.yaml)")]
    if mode == "record":
        args += [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, (default, text) in RECORD_ARGUMENTS.items()]
    for name, (node, param) in launch_arguments(mode).items():
        args.append(DeclareLaunchArgument(name, default_value="", description=argument_description(node, param)))
    return LaunchDescription(args + [OpaqueFunction(function=graph_nodes, args=[mode])])
