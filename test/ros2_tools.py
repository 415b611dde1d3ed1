"""The ROS 2 tools a user with a system ROS 2 has (ros2 CLI, launch, control_msgs): tests that need
them skip when they are absent, unless DPROS_REQUIRE_ROS2_TOOLS=1 (CI) turns the skip into a
failure so that CI cannot pass without running them."""
import importlib.util
import os
import shutil

import pytest

REQUIRED = os.environ.get("DPROS_REQUIRE_ROS2_TOOLS") == "1"
HOW = "`make setup` installs them when ../shared/vendor/ros2-python-tools exists (or source a system ROS 2)"


def _missing(modules=(), commands=()) -> list[str]:
    absent = [m for m in modules if importlib.util.find_spec(m.split(".")[0]) is None]
    absent += [m for m in modules if m not in absent and _no_submodule(m)]
    return absent + [c for c in commands if shutil.which(c) is None]


def _no_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True


def need(*, modules=(), commands=()) -> None:
    """Skip (or fail, in CI) this test when a module or command is not installed."""
    absent = _missing(modules, commands)
    if absent:
        message = f"needs {', '.join(absent)}: {HOW}"
        if REQUIRED:
            pytest.fail(f"DPROS_REQUIRE_ROS2_TOOLS=1 but this test {message}")
        pytest.skip(message)
