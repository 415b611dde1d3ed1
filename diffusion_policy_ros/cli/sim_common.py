"""Shared bits of the `dpros sim ...` commands."""
from __future__ import annotations

import json
import os

from diffusion_policy_ros.cli.errors import UsageError
from diffusion_policy_ros.robot_config import config_path, load_robot_config

TASK_ROBOT = {"pick_place": "single_arm", "handover": "bimanual"}


def config_for(task: str | None, config: str | None):
    """The robot config for a task (pick_place -> single_arm, handover -> bimanual) or a given file."""
    name = config or TASK_ROBOT.get(task or "", None)
    if name is None:
        raise UsageError(f"unknown task {task!r}; choose one of {sorted(TASK_ROBOT)} or pass --config")
    return load_robot_config(config_path(name))


def write_json(path: str | None, result: dict) -> None:
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
