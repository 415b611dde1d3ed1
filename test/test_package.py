"""The package is a valid ROS 2 package, its core stays free of rclpy, and set-up refuses
machines it cannot work on with a message that names what is missing."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from catkin_pkg.package import parse_package

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORE_PACKAGES = ["policy", "sampling", "sync", "data", "training", "safety", "sim", "teleop", "gazebo", "evaluation",
                 "controllers", "rl"]


def test_package_xml_is_valid_format_3_ament_cmake():
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.package_format == 3
    assert package.get_build_type() == "ament_cmake"
    exec_deps = {d.name for d in package.exec_depends}
    assert {"rclpy", "sensor_msgs", "trajectory_msgs", "diagnostic_msgs"} <= exec_deps


def test_every_custom_pip_rosdep_key_is_defined_in_the_project_rosdep_file():
    import yaml
    package = parse_package(str(ROOT / "package.xml"))
    defined = yaml.safe_load((ROOT / "rosdep" / "diffusion_policy_ros.yaml").read_text())
    pip_keys = {d.name for d in package.exec_depends if d.name.endswith("-pip")}
    assert pip_keys and pip_keys <= set(defined)


def test_cmakelists_generates_every_interface_file():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    files = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("msg/*.msg"), *ROOT.glob("srv/*.srv")])
    assert files
    for f in files:
        assert f in cmake, f"{f} is not listed in rosidl_generate_interfaces"


def test_core_subpackages_import_with_rclpy_unimportable():
    code = f"""
import importlib, pkgutil, sys

class BlockRclpy:
    def find_spec(self, name, path=None, target=None):
        if name == "rclpy" or name.startswith("rclpy."):
            raise ImportError("rclpy is blocked: core code must not import it")
        return None

sys.meta_path.insert(0, BlockRclpy())
import diffusion_policy_ros
names = ["diffusion_policy_ros.robot_config", "diffusion_policy_ros.resources", "diffusion_policy_ros.cli.main",
         "diffusion_policy_ros.parameters", "diffusion_policy_ros.node_parameters", "diffusion_policy_ros.graph",
         "diffusion_policy_ros.obs_keys", "diffusion_policy_ros.reporting", "diffusion_policy_ros.runtime.supervisor"]
for sub in {CORE_PACKAGES!r}:
    pkg = importlib.import_module("diffusion_policy_ros." + sub)
    names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
for name in names:
    importlib.import_module(name)
assert "rclpy" not in sys.modules
print(len(names))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 3


def test_every_node_module_has_an_installed_executable():
    nodes = sorted(p.stem for p in (ROOT / "diffusion_policy_ros" / "nodes").glob("*_node.py"))
    lib = ROOT / "install" / "diffusion_policy_ros" / "lib" / "diffusion_policy_ros"
    assert nodes, "no nodes"
    installed = {p.name for p in lib.iterdir()} if lib.is_dir() else set()
    missing = [n for n in nodes if n not in installed]
    assert not missing, f"run `make build`: {missing} not installed under {lib}"
    assert "dpros" in installed


def test_installed_dpros_runs_and_lists_the_commands():
    dpros = shutil.which("dpros")
    assert dpros, "dpros is not on PATH: run inside ./env.sh after make setup"
    result = subprocess.run([dpros, "--help"], cwd="/", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for word in ("train", "eval", "bench", "sim", "up", "export", "dataset"):
        assert word in result.stdout


def _run_setup(env_overrides, path=None):
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_DISTRO",)}
    env.update(env_overrides)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def _other_python():
    """Some installed CPython other than 3.11 (the only one the Jazzy wheels are built for)."""
    candidates = [shutil.which(f"python3.{minor}") for minor in (12, 13, 10)]
    candidates += sorted(str(p) for p in pathlib.Path("/root/.pyenv/versions").glob("3.1[023]*/bin/python3"))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] != (3, 11))"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def test_setup_refuses_a_python_without_ros_wheels():
    other = _other_python()
    if other is None:
        pytest.skip("no CPython other than 3.11 on this machine")
    result = _run_setup({"PYTHON": other})
    assert result.returncode != 0
    assert "ROS 2 Jazzy wheels are not available for Python 3." in result.stderr


def _path_without(tmp_path, *tools):
    """A PATH holding links to everything on the real PATH except `tools`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.listdir(directory):
            target = bin_dir / entry
            if entry in tools or target.exists():
                continue
            source = os.path.join(directory, entry)
            if os.access(source, os.X_OK) and not os.path.isdir(source):
                target.symlink_to(source)
    return str(bin_dir)


def test_setup_names_missing_cmake(tmp_path):
    result = _run_setup({"PYTHON": sys.executable}, path=_path_without(tmp_path, "cmake"))
    assert result.returncode != 0
    assert "CMake is missing" in result.stderr


def test_setup_names_missing_c_compiler(tmp_path):
    result = _run_setup({"PYTHON": sys.executable}, path=_path_without(tmp_path, "cc", "gcc"))
    assert result.returncode != 0
    assert "no C compiler" in result.stderr


def test_setup_py_builds_a_core_wheel_with_the_cli(tmp_path):
    import zipfile
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("diffusion_policy_ros-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "diffusion_policy_ros/cli/main.py" in names
    assert any(n.endswith("share/diffusion_policy_ros/config/single_arm.yaml") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "dpros = diffusion_policy_ros.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
