"""The launch files in the real launch engine (launch / launch_ros): each loads, declares every node
parameter of its graph as a launch argument (described from the parameter schema), and expands to
exactly the nodes, parameter files and overrides `dpros up` starts (both from graph.build_graph),
each an installed executable. test_ros2_launch.py runs them with `ros2 launch`."""
from __future__ import annotations

import os

import pytest

from diffusion_policy_ros import graph
from ros2_tools import need

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAPH_LAUNCH_FILES = {"robot.launch.py": "robot", "sim.launch.py": "sim", "record.launch.py": "record"}
CHECKPOINT = os.path.join(ROOT, "checkpoints", "single_arm_pick_place")


@pytest.fixture(autouse=True)
def launch_engine():
    need(modules=["launch", "launch_ros"])


def load(name: str):
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    return get_launch_description_from_python_launch_file(os.path.join(ROOT, "launch", name))


def expand(description, arguments: dict[str, str]):
    """What the launch engine starts for these arguments: the actions the description's
    OpaqueFunction returns once every DeclareLaunchArgument is visited, as `ros2 launch` would."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    actions = []
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.visit(context)
        elif isinstance(entity, OpaqueFunction):
            actions += entity.visit(context) or []
    return actions


def started_nodes(actions):
    from launch_ros.actions import Node
    return [a for a in actions if isinstance(a, Node)]


def test_there_are_launch_files():
    names = set(os.listdir(os.path.join(ROOT, "launch")))
    assert set(GRAPH_LAUNCH_FILES) | {"gazebo.launch.py"} <= names


@pytest.mark.parametrize("name, mode", GRAPH_LAUNCH_FILES.items())
def test_every_node_parameter_is_a_described_launch_argument(name, mode):
    declared = {a.name: a for a in load(name).get_launch_arguments()}
    expected = set(graph.launch_arguments(mode)) | {"config"}
    if mode == "record":
        expected |= {"teleop", "sim", "keyboard"}
    assert set(declared) == expected
    step = declared["safety_max_step_rad"]
    assert step.description.startswith("safety_filter_node max_step_rad: largest step per trajectory point")
    for argument, (node, parameter) in graph.launch_arguments(mode).items():
        assert declared[argument].description.startswith(f"{node} {parameter}: ")


@pytest.mark.parametrize("name, mode", GRAPH_LAUNCH_FILES.items())
@pytest.mark.parametrize("config", ["config/single_arm.yaml", "config/bimanual.yaml"])
def test_the_launch_engine_starts_the_nodes_dpros_up_starts(name, mode, config):
    from ament_index_python.packages import get_package_prefix
    from launch_ros.actions import LifecycleNode
    arguments = {"config": os.path.join(ROOT, config)} | ({} if mode == "record" else {"policy_checkpoint": CHECKPOINT})
    nodes = started_nodes(expand(load(name), arguments))
    specs = graph.build_graph(mode, config, {k: v for k, v in arguments.items() if k != "config"})
    assert [n.node_executable for n in nodes] == [s.executable for s in specs]
    for node, spec in zip(nodes, specs):
        assert node.node_package == graph.PACKAGE
        assert isinstance(node, LifecycleNode) == spec.lifecycle
        executable = os.path.join(get_package_prefix(graph.PACKAGE), "lib", graph.PACKAGE, spec.executable)
        assert os.access(executable, os.X_OK), f"{executable} is not installed (make build)"


def test_a_wrong_launch_argument_value_stops_the_launch_before_any_node():
    import launch.logging
    from launch import LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    service = LaunchService(argv=[], noninteractive=True)
    service.include_launch_description(IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(ROOT, "launch", "robot.launch.py")),
        launch_arguments={"policy_checkpoint": CHECKPOINT, "safety_max_step_rad": "-1"}.items()))
    assert service.run() != 0
    with open(os.path.join(launch.logging.launch_config.log_dir, "launch.log"), encoding="utf-8") as f:
        log = f.read()
    assert "Caught exception in launch (see debug for traceback): safety_filter_node: parameter max_step_rad " \
           "must be > 0, got -1.0" in log
    assert "process started" not in log


def test_record_graph_drives_the_robot_through_the_safety_filter_from_the_teleop_topic():
    specs = {s.name: s for s in graph.build_graph("record", "config/single_arm.yaml", {"record_dataset_name": "demos"})}
    assert list(specs) == ["sim_node", "expert_teleop_node", "safety_filter_node", "demo_recorder_node"]
    assert specs["safety_filter_node"].overrides["input"] == "teleop"
    assert specs["demo_recorder_node"].overrides["dataset_name"] == "demos"
    leader = graph.build_graph("record", "config/bimanual.yaml", {}, teleop="leader", sim=False)
    assert [s.name for s in leader] == ["leader_follower_teleop_node", "safety_filter_node", "demo_recorder_node"]
    with pytest.raises(ValueError, match="needs the sim"):
        graph.build_graph("record", "config/single_arm.yaml", {}, teleop="expert", sim=False)
