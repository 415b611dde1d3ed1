"""Acceptance: record sim-expert demonstrations through real topics, discard one, SIGKILL the
recorder mid-episode, reopen: exactly the saved episodes, consistent arrays, task text kept.
Then the dataset exports to LeRobot v3 and reads back."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from rosgraph_msgs.msg import Clock

pytest.importorskip("diffusion_policy_ros.msg")

from diffusion_policy_ros.srv import ResetEpisode  # noqa: E402
from recorder_helpers import (REPO_ROOT, Operator, call_idempotent, start_recorder, stop,  # noqa: E402
                              wait_for_dataset)

CONFIG = "config/single_arm.yaml"
EPISODE_S = 2.5


def start_node(module, env, *args, log=None):
    cmd = [sys.executable, "-m", f"diffusion_policy_ros.nodes.{module}", "--ros-args",
           "--params-file", os.path.join(REPO_ROOT, CONFIG), *args]
    return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=log or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)


def teleop_to_robot(env, log):
    """What moves the robot while the expert teleoperates: the safety filter reading the teleop
    topic, as in `dpros up record`. Without it the recorded actions (what the filter forwards)
    would not exist: a missing filter node fails here instead of being worked around."""
    return start_node("safety_filter_node", env, "-p", "input:=teleop", "-p", "use_sim_time:=true", log=log)


@pytest.fixture(scope="module")
def operator(rclpy_context):
    op = Operator(rclpy_context)
    yield op
    op.close()


def test_sim_expert_recording_survives_sigkill_and_exports(tmp_path, ros_env, operator):
    logs = open(tmp_path / "nodes.log", "w")
    procs = [start_node("sim_node", ros_env, log=logs),
             start_node("expert_teleop_node", ros_env, log=logs),
             teleop_to_robot(ros_env, logs)]
    recorder = start_recorder(ros_env, CONFIG, {"dataset_root": str(tmp_path), "dataset_name": "sim_demos",
                                                "use_sim_time": True}, log_path=tmp_path / "recorder.log")
    reset = operator.node.create_client(ResetEpisode, "/sim/reset")
    # The nodes run on sim time, and under load the sim runs slower than the wall clock: episode
    # lengths are waited for in sim time.
    clock = {"t": None}
    operator.subscribe(Clock, "/clock", lambda m: clock.update(t=m.clock.sec + m.clock.nanosec * 1e-9))

    def sim_sleep(duration, timeout=120.0):
        deadline = time.monotonic() + timeout
        while clock["t"] is None:
            assert time.monotonic() < deadline, "no /clock from the sim"
            time.sleep(0.01)
        until = clock["t"] + duration
        while clock["t"] < until:
            assert time.monotonic() < deadline, f"sim time stuck at {clock['t']:.3f} (waiting for {until:.3f})"
            time.sleep(0.01)

    saved = []
    try:
        operator.wait_for_recorder(proc=recorder)
        assert reset.wait_for_service(timeout_sec=60)
        dead = [p.args[2] for p in procs if p.poll() is not None]
        assert not dead, f"{dead} exited (see {tmp_path / 'nodes.log'})"
        for i in range(6):
            # same seed: same reset
            assert call_idempotent(reset, ResetEpisode.Request(seed=100 + i), check=operator.check_spinning).success
            sim_sleep(0.5)
            task = f"pick the cube and place it on the target (seed {100 + i})"
            res = operator.call("START", task)
            assert res.success, res.message
            sim_sleep(EPISODE_S if i < 5 else EPISODE_S / 2)
            if i == 5:
                recorder.send_signal(signal.SIGKILL)       # crash in the middle of episode 6
                recorder.wait(10)
                break
            if i == 2:
                assert operator.call("DISCARD").success
                continue
            res = operator.call("SAVE")
            assert res.success, res.message
            saved.append((task, res.num_frames, res.message))
    finally:
        for p in [recorder, *procs]:
            stop(p)
        logs.close()

    dataset = wait_for_dataset(tmp_path / "sim_demos", 4)
    assert dataset.n_episodes == 4
    for i, (task, n, message) in enumerate(saved):
        ep, meta = dataset.get_episode(i), dataset.episode_meta(i)
        assert meta["task"] == task
        lengths = {k: len(v) for k, v in ep.items()}
        assert set(lengths.values()) == {n}, lengths
        assert n >= 0.8 * EPISODE_S * 10, f"episode {i}: {message} (recorder log {tmp_path / 'recorder.log'})"
        assert np.all(np.diff(ep["timestamp"]) > 0)
        assert ep["obs/scene/rgb"].shape[1:] == (96, 96, 3) and ep["obs/scene/rgb"].std() > 1.0
        assert ep["obs/finger_l/tactile"].shape[1:] == (4, 4)
        # The expert's commands change over the episode and the arm moves.
        assert np.ptp(ep["action"][:, :6], axis=0).max() > 0.05
        assert np.ptp(ep["obs/joint_pos"][:, :6], axis=0).max() > 0.05
    # The recording is usable by the ecosystem: LeRobot v3 export reads back.
    out = tmp_path / "lerobot"
    assert subprocess.run([sys.executable, "-m", "diffusion_policy_ros.cli.main", "export", "lerobot",
                           str(tmp_path / "sim_demos"), str(out)], cwd=REPO_ROOT, env=ros_env).returncode == 0
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 4 and info["total_frames"] == sum(n for _, n, _ in saved)
    # ... and by diffusion_policy: zarr 2, its replay-buffer layout, values equal to the recording.
    from diffusion_policy_reader import read_with_zarr2

    from diffusion_policy_ros.data.diffusion_policy_export import flat_key
    store = tmp_path / "demos.zarr"
    assert subprocess.run([sys.executable, "-m", "diffusion_policy_ros.cli.main", "export", "diffusion-policy",
                           str(tmp_path / "sim_demos"), str(store)], cwd=REPO_ROOT, env=ros_env).returncode == 0
    read = read_with_zarr2(str(store), str(tmp_path))
    if read is not None:
        values, _ = read
        np.testing.assert_array_equal(values["meta/episode_ends"], dataset.episode_ends)
        for key in dataset.keys:
            np.testing.assert_array_equal(values[f"data/{flat_key(key)}"], dataset.get_array(key)[:dataset.n_steps])
