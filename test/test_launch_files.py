"""Launch files cannot run here (no `launch` on PyPI), so parse them: every executable, config file
and parameter they name must exist in the package, and they must build the same node list as
`dpros up` (both come from diffusion_policy_ros.graph)."""
from __future__ import annotations

import ast
import glob
import inspect
import os

import pytest

from diffusion_policy_ros import graph
from diffusion_policy_ros.robot_config import load_robot_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH_FILES = sorted(glob.glob(os.path.join(ROOT, "launch", "*.py")))
EXTERNAL = {("ros_gz_sim", "create"), ("ros_gz_bridge", "parameter_bridge"),
            ("robot_state_publisher", "robot_state_publisher"), ("controller_manager", "spawner")}


def literals(tree):
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def node_calls(tree):
    """(package, executable) of Node(...)/LifecycleNode(...) calls with literal arguments."""
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        kw = {k.arg: k.value for k in call.keywords}
        if "executable" in kw and isinstance(kw["executable"], ast.Constant):
            pkg = kw.get("package")
            yield (pkg.value if isinstance(pkg, ast.Constant) else graph.PACKAGE, kw["executable"].value)


def test_there_are_launch_files():
    names = {os.path.basename(p) for p in LAUNCH_FILES}
    assert {"robot.launch.py", "sim.launch.py", "gazebo.launch.py", "record.launch.py"} <= names


def test_record_graph_drives_the_robot_through_the_safety_filter_from_the_teleop_topic():
    specs = {s.name: s for s in graph.build_graph("record", "config/single_arm.yaml", {"record_dataset_name": "demos"})}
    assert list(specs) == ["sim_node", "expert_teleop_node", "safety_filter_node", "demo_recorder_node"]
    assert specs["safety_filter_node"].overrides["input"] == "teleop"
    assert specs["demo_recorder_node"].overrides["dataset_name"] == "demos"
    leader = graph.build_graph("record", "config/bimanual.yaml", {}, teleop="leader", sim=False)
    assert [s.name for s in leader] == ["leader_follower_teleop_node", "safety_filter_node", "demo_recorder_node"]
    with pytest.raises(ValueError, match="needs the sim"):
        graph.build_graph("record", "config/single_arm.yaml", {}, teleop="expert", sim=False)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=os.path.basename)
def test_launch_file_names_only_what_exists(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    if path.endswith(".launch.py"):
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    for text in literals(tree):
        if text.endswith(".yaml") and "/" not in text:
            assert os.path.isfile(os.path.join(ROOT, "config", text)), f"{path} names missing config/{text}"
    for package, executable in node_calls(tree):
        if package == graph.PACKAGE:
            assert os.path.isfile(os.path.join(ROOT, graph.PACKAGE, "nodes", f"{executable}.py"))
        else:
            assert (package, executable) in EXTERNAL, f"unexpected executable {package}/{executable}"
    for name in ("_graph_launch", "graph_launch_description"):
        if name in literals(tree) or any(isinstance(n, ast.ImportFrom) and n.module == name for n in ast.walk(tree)):
            assert os.path.isfile(os.path.join(ROOT, "launch", "_graph_launch.py"))


@pytest.mark.parametrize("mode", sorted(graph.MODES))
@pytest.mark.parametrize("config", ["config/single_arm.yaml", "config/bimanual.yaml"])
def test_graph_nodes_and_parameters_exist(mode, config):
    specs = graph.build_graph(mode, config, {})
    for spec in specs:
        source_path = os.path.join(ROOT, graph.PACKAGE, "nodes", f"{spec.name}.py")
        assert os.path.isfile(source_path), f"no executable {spec.name}"
        source = open(source_path, encoding="utf-8").read()
        assert "def main(" in source
        assert os.path.isfile(spec.params_file)
    for argument, (node, param) in graph.launch_arguments(mode).items():
        source = open(os.path.join(ROOT, graph.PACKAGE, "nodes", f"{node}.py"), encoding="utf-8").read()
        if node == "safety_filter_node":
            continue  # declared from SafetyParams' fields, which NODE_PARAMETERS is built from
        assert f'"{param}"' in source, f"launch argument {argument}: {node} never reads parameter {param}"
    robot = load_robot_config(config)
    for node in ("policy_node", "safety_filter_node", "demo_recorder_node"):
        unknown = set(robot.node_params(node)) - set(graph.NODE_PARAMETERS[node])
        assert not unknown, f"{config} sets {node} parameters no node reads: {unknown}"


def test_launch_arguments_override_parameters(tmp_path):
    specs = graph.build_graph("sim", "config/single_arm.yaml",
                              {"safety_max_step_rad": "0.1", "policy_device": "cpu", "policy_output": ""})
    by_name = {s.name: s for s in specs}
    assert by_name["safety_filter_node"].overrides["max_step_rad"] == 0.1
    assert by_name["policy_node"].overrides["device"] == "cpu"
    assert "output" not in by_name["policy_node"].overrides  # '' keeps the config's value
    assert by_name["policy_node"].lifecycle
    args = by_name["safety_filter_node"].ros_args(str(tmp_path))
    override_file = args[-1]
    assert "max_step_rad: 0.1" in open(override_file).read()
    with pytest.raises(ValueError):
        graph.build_graph("sim", "config/single_arm.yaml", {"safety_no_such_parameter": "1"})


def test_launch_helper_uses_the_shared_graph():
    source = open(os.path.join(ROOT, "launch", "_graph_launch.py"), encoding="utf-8").read()
    assert "build_graph" in source and "launch_arguments" in source
    assert "build_graph" in inspect.getsource(__import__("diffusion_policy_ros.cli.up", fromlist=["run"]))
