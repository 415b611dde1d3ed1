"""The keyboard node drives a real recorder (start / save / discard / task text / quit), and
`dpros dataset info` reports the result with a thumbnail PNG."""
import json
import os
import subprocess
import sys
import time

import pytest

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors
from diffusion_policy_ros.robot_config import load_robot_config
from recorder_helpers import REPO_ROOT, Operator, start_recorder, stop


@pytest.fixture(scope="module")
def operator(rclpy_context):
    op = Operator(rclpy_context)
    yield op
    op.close()


def test_keyboard_session_and_dataset_info(tmp_path, ros_env, rclpy_context, operator):
    config = load_robot_config(os.path.join(REPO_ROOT, "config/single_arm.yaml"))
    sensors = SyntheticSensors(config, 10.0, context=rclpy_context)
    operator.add_node(sensors)
    sensors.start()
    recorder = start_recorder(ros_env, "config/single_arm.yaml",
                              {"dataset_root": str(tmp_path), "dataset_name": "kb"})
    keyboard = None
    try:
        operator.wait_for_recorder(proc=recorder)
        keyboard = subprocess.Popen(
            [sys.executable, "-m", "diffusion_policy_ros.nodes.keyboard_episode_node", "--ros-args",
             "-p", "task:=wipe the table"], env=ros_env, cwd=REPO_ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def press(keys, wait):
            keyboard.stdin.write(keys + "\n")
            keyboard.stdin.flush()
            time.sleep(wait)

        press("c", 1.5)        # start, record 1.5 s
        press("s", 1.0)        # save
        press("c", 1.0)
        press("d", 0.5)        # discard
        press("tstack the cups;", 0.2)
        press("c", 1.2)
        press("s", 1.0)
        press("q", 0)
        out, _ = keyboard.communicate(timeout=30)
    finally:
        if keyboard is not None and keyboard.poll() is None:
            keyboard.kill()
        stop(recorder)
        sensors.stop()
    assert "[c] start" in out                                   # keys are shown
    assert out.count("ok: saved episode") == 2 and "ok: discarded" in out, out
    dataset = ReplayBuffer.open(str(tmp_path / "kb"))
    assert [dataset.episode_meta(i)["task"] for i in range(dataset.n_episodes)] == ["wipe the table", "stack the cups"]

    png, js = tmp_path / "thumbs.png", tmp_path / "info.json"
    res = subprocess.run([sys.executable, "-m", "diffusion_policy_ros.cli.main", "dataset", "info",
                          str(tmp_path / "kb"), "--png", str(png), "--json", str(js)],
                         capture_output=True, text=True, cwd=REPO_ROOT, env=ros_env)
    assert res.returncode == 0, res.stderr
    assert "2 episodes" in res.stdout and "stack the cups" in res.stdout
    summary = json.loads(js.read_text())
    assert [e["measured_hz"] for e in summary["per_episode"]] == pytest.approx([10.0, 10.0], rel=1e-3)
    from PIL import Image
    with Image.open(png) as img:
        assert img.height == 2 * 96 and img.width >= 6 * 96 - 6
