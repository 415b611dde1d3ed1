"""The shipped Gazebo files pass the parsers ROS and Gazebo load them with: urdfdom's `check_urdf`
(Debian liburdfdom-tools) and libsdformat (Debian libsdformat-dev, through test/sdformat_loader.cpp
compiled here), and what SDFormat reads from them is the config's robot and task.

Without the Debian packages these tests skip and say why; with DPROS_REQUIRE_GAZEBO_TOOLS=1 (set by
.ci/run) a missing package fails them instead, so CI cannot skip them silently."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from diffusion_policy_ros.gazebo import shipped
from diffusion_policy_ros.gazebo.model_source import ModelSource
from diffusion_policy_ros.robot_config import load_robot_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URDFS = sorted(glob.glob(os.path.join(ROOT, "resource", "urdf", "*", "*.urdf")))
WORLDS = sorted(glob.glob(os.path.join(ROOT, "resource", "worlds", "*.sdf")))
LOADER_SOURCE = os.path.join(ROOT, "test", "sdformat_loader.cpp")
SDFORMAT_PKG = "sdformat12"   # Debian bookworm's libsdformat-dev
REQUIRED = os.environ.get("DPROS_REQUIRE_GAZEBO_TOOLS") == "1"


def require(available: bool, what: str, debian_package: str) -> None:
    if available:
        return
    message = f"{what} is missing (apt-get install {debian_package})"
    if REQUIRED:
        pytest.fail(f"{message}; DPROS_REQUIRE_GAZEBO_TOOLS=1 says this machine must run the check")
    pytest.skip(message)


@pytest.fixture(scope="module")
def sources():
    return {name: ModelSource(load_robot_config(os.path.join(ROOT, "config", f"{name}.yaml")))
            for name in shipped.SHIPPED_CONFIGS}


def test_the_checked_files_are_all_the_shipped_ones(sources):
    generated = {os.path.join(ROOT, path) for source in sources.values() for path in shipped.generated_files(source)}
    assert set(URDFS) | set(WORLDS) == {p for p in generated if p.endswith((".urdf", ".sdf"))}


# --- check_urdf ---------------------------------------------------------------------------------
def check_urdf(path: str) -> subprocess.CompletedProcess:
    require(shutil.which("check_urdf") is not None, "check_urdf", "liburdfdom-tools")
    return subprocess.run(["check_urdf", path], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", URDFS, ids=lambda p: os.path.relpath(p, ROOT))
def test_check_urdf_accepts_every_shipped_urdf(path):
    result = check_urdf(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Successfully Parsed XML" in result.stdout
    # check_urdf prints the link tree from the root: every link must hang in it.
    printed = set(re.findall(r"(?:root Link|child\(\d+\)):\s+(\S+)", result.stdout))
    links = {link.get("name") for link in ET.parse(path).getroot().iter("link")}
    assert printed == links


def test_check_urdf_rejects_a_broken_copy(tmp_path):
    broken = tmp_path / "arm.urdf"
    text = open(os.path.join(ROOT, "resource", "urdf", "single_arm", "arm.urdf"), encoding="utf-8").read()
    broken.write_text(text.replace('<parent link="link5"/>', '<parent link="link9"/>'))
    result = check_urdf(str(broken))
    assert result.returncode != 0 and "link9" in result.stdout + result.stderr


# --- libsdformat --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loader():
    """test/sdformat_loader.cpp compiled against libsdformat (cached by source hash in build/)."""
    has_pkg = shutil.which("pkg-config") is not None and subprocess.run(
        ["pkg-config", "--exists", SDFORMAT_PKG]).returncode == 0
    require(has_pkg and shutil.which("g++") is not None, "libsdformat (pkg-config sdformat12) or g++",
            "libsdformat-dev pkg-config g++")
    with open(LOADER_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    binary = os.path.join(ROOT, "build", "gazebo_checks", f"sdformat_loader_{digest}")
    if not os.path.isfile(binary):
        os.makedirs(os.path.dirname(binary), exist_ok=True)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", SDFORMAT_PKG], capture_output=True, text=True,
                               check=True).stdout.split()
        compiled = subprocess.run(["g++", "-std=c++17", "-O1", "-o", binary + ".tmp", LOADER_SOURCE, *flags],
                                  capture_output=True, text=True, timeout=600)
        assert compiled.returncode == 0, compiled.stderr
        os.replace(binary + ".tmp", binary)
    return binary


def load(loader: str, *paths: str) -> tuple[int, dict[str, dict]]:
    result = subprocess.run([loader, *paths], capture_output=True, text=True, timeout=120)
    parsed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, {entry["file"]: entry for entry in parsed}


@pytest.fixture(scope="module")
def loaded(loader):
    code, entries = load(loader, *URDFS, *WORLDS)
    return code, entries


def test_sdformat_loads_every_world_and_urdf_without_errors(loaded):
    code, entries = loaded
    assert set(entries) == set(URDFS) | set(WORLDS)
    assert {path: entry["errors"] for path, entry in entries.items() if entry["errors"]} == {}
    assert code == 0


def test_sdformat_reports_errors_in_a_broken_world(loader, tmp_path):
    broken = tmp_path / "pick_place.sdf"
    text = open(os.path.join(ROOT, "resource", "worlds", "pick_place.sdf"), encoding="utf-8").read()
    broken.write_text(text.replace('<model name="target">', '<model name="cube">'))
    code, entries = load(loader, str(broken))
    assert code == 1 and any("cube" in error for error in entries[str(broken)]["errors"])


@pytest.mark.parametrize("name", shipped.SHIPPED_CONFIGS)
def test_worlds_as_sdformat_reads_them_hold_the_task_and_the_scene_camera(loaded, sources, name):
    source = sources[name]
    world = loaded[1][os.path.join(ROOT, shipped.world_path(source))]["worlds"][0]
    models = {m["name"]: m for m in world["models"]}
    state = source.task_state(source.default_seed)
    expected = {"floor", "table", "cube", "scene_camera"} | ({"target"} if state.target_pos[2] >= 0 else set())
    assert world["name"] == source.task.name and set(models) == expected and world["lights"] >= 1
    np.testing.assert_allclose(models["cube"]["pose"][:3], state.cube_pos, atol=1e-6)
    sensor = models["scene_camera"]["links"][0]["sensors"][0]
    camera = source.config.camera("scene")
    assert (sensor["type"], sensor["topic"], sensor["width"], sensor["height"], sensor["rate"]) == (
        "rgbd_camera", camera.topic, camera.width, camera.height, source.camera_rate_hz)


@pytest.mark.parametrize("name", shipped.SHIPPED_CONFIGS)
def test_urdfs_as_sdformat_reads_them_carry_the_filters_limits_and_the_configs_cameras(loaded, sources, name):
    source = sources[name]
    for arm in source.arms:
        model = loaded[1][os.path.join(ROOT, shipped.description_path(source, arm.config.name))]["model"]
        joints = {j["name"]: j for j in model["joints"]}
        limits = arm.limits
        for i, joint in enumerate(limits.names):
            got = [joints[joint][k] for k in ("lower", "upper", "velocity")]
            np.testing.assert_allclose(got, [limits.lower[i], limits.upper[i], limits.max_velocity[i]], rtol=1e-6)
        links = {link["name"]: link for link in model["links"]}
        # MuJoCo compensates the arm links' weight (gravcomp); Gazebo turns their gravity off.
        assert [n for n, link in links.items() if not link["gravity"]] == [f"{arm.prefix}link{i}" for i in range(1, 7)]
        sensors = {s["name"]: s for link in links.values() for s in link["sensors"]}
        on_arm = {c.name for c in source.config.cameras if c.name.startswith(f"{arm.prefix}wrist")}
        assert set(sensors) == on_arm
        for camera in on_arm:
            config = source.config.camera(camera)
            assert (sensors[camera]["topic"], sensors[camera]["width"]) == (config.topic, config.width)
