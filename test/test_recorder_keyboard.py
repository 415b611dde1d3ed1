"""The operator console: its status text on plain data, and the keyboard node driving a real
recorder (start / save / discard / reset / task text / quit), after which `dpros dataset info`
reports the result with a thumbnail PNG."""
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors
from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.teleop.console import SafetyNote, changed, parse_status, status_line
from recorder_helpers import REPO_ROOT, Operator, start_recorder, stop, wait_for_dataset
from waiting import wait_for


FULL_STATUS = {"state": "recording", "elapsed_s": 72.46, "frames": 724, "dropped": 0, "duplicated": 1,
               "safety_affected_frames": 12, "last_safety_event": {"arm": "arm", "reason": "workspace"},
               "episode_index": 3, "message": "recording episode 3"}


def test_status_line_shows_every_key_and_dashes_for_missing_ones():
    line = status_line(FULL_STATUS)
    for text in ("RECORDING", "episode 3", "01:12.5", "frames 724", "dropped 0", "duplicated 1",
                 "safety-affected 12", "last safety event: arm: workspace"):
        assert text in line, line
    old = status_line({"state": "idle", "saved_episodes": 2})   # a recorder without the new keys
    assert "IDLE" in old and "frames -" in old and "episode -" in old and "last safety event: -" in old
    assert status_line(None) == "recorder: no status yet"
    assert "episode -  " in status_line({"state": "idle", "episode_index": -1})   # none recorded yet
    ours = status_line(FULL_STATUS, SafetyNote("arm", "max_step", 2, stamp=10.0), now=13.0)
    assert "arm: max_step (reject, 3 s ago)" in ours              # the console's own event wins


def test_status_parsing_and_change_detection_are_tolerant():
    assert parse_status("not json") is None and parse_status("[1, 2]") is None
    assert parse_status('{"state": "saving"}') == {"state": "saving"}
    assert changed(None, {"state": "idle"}) and not changed({"state": "idle"}, {"state": "idle", "frames": 5})
    assert changed({"state": "recording"}, {"state": "saving"})
    assert "episode -  -  frames -" in status_line({"elapsed_s": "soon"})   # elapsed: not a number


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
    lines: list[str] = []
    statuses = operator.statuses  # the recorder's status messages (a reliable topic: in order)
    try:
        operator.wait_for_recorder(proc=recorder)
        keyboard = subprocess.Popen(
            [sys.executable, "-m", "diffusion_policy_ros.nodes.keyboard_episode_node", "--ros-args",
             "-p", "task:=wipe the table"], env=ros_env, cwd=REPO_ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reader = threading.Thread(target=lambda: lines.extend(iter(keyboard.stdout.readline, "")), daemon=True)
        reader.start()

        def printed(text):
            return sum(text in line for line in list(lines))

        def press(keys, answer=None):
            """Type keys; wait until the keyboard node prints the recorder's answer."""
            before = printed(answer) if answer else 0
            keyboard.stdin.write(keys + "\n")
            keyboard.stdin.flush()
            if answer:
                assert wait_for(lambda: printed(answer) > before, 60), "".join(lines)

        def record(frames, since):
            """Let the recorder take `frames` messages of the episode started after statuses[since]
            (statuses before the last 'idle' one still describe the previous episode)."""
            def enough():
                new = statuses[since:]
                idle = [i for i, st in enumerate(new) if st["state"] == "idle"]
                new = new[idle[-1] + 1:] if idle else new
                return any(st["state"] == "recording" and st["episode_messages"] >= frames for st in new)
            assert wait_for(enough, 60), (statuses[since:], "".join(lines))

        # The node says when it has discovered the recorder: keys pressed before that would only
        # wait for discovery, and the session below is about what the recorder does with them.
        assert wait_for(lambda: printed("recorder ready"), 60), "".join(lines)
        since = len(statuses)
        press("c", "ok: recording episode")
        record(15, since)
        assert wait_for(lambda: printed("status: RECORDING"), 30), "".join(lines)
        press("r", "before resetting the scene")      # no reset in the middle of an episode
        press("s", "ok: saved episode")
        since = len(statuses)
        press("c", "ok: recording episode")
        record(10, since)
        press("d", "ok: discarded")
        press("tstack the cups;", "task: stack the cups")
        since = len(statuses)
        press("c", "ok: recording episode")
        record(12, since)
        press("s", "ok: saved episode")
        press("r", "no /sim/reset service")            # no sim here: what to do on a real robot
        press("q")
        keyboard.wait(timeout=30)
        reader.join(timeout=10)
        out = "".join(lines)
    finally:
        if keyboard is not None and keyboard.poll() is None:
            keyboard.kill()
        stop(recorder)
        sensors.stop()
    assert keyboard.returncode == 0, out
    assert "terminate called" not in out, out                   # the node exits cleanly
    assert "[c] start" in out and "[r] reset scene" in out     # keys are shown
    assert out.count("saving...") == 2 and out.index("saving...") < out.index("ok: saved episode"), out
    # the console redraws on every state change (idle before the first episode or after the
    # background conversion; which of them is printed depends on when q arrives)
    assert "status: RECORDING" in out and ("status: IDLE" in out or "status: CONVERTING" in out), out
    assert out.count("ok: saved episode") == 2 and "ok: discarded" in out, out
    dataset = wait_for_dataset(tmp_path / "kb", 2)
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


def test_dpros_up_record_gives_the_terminal_to_the_console(tmp_path, ros_env):
    """`dpros up record --teleop joy` in the foreground: the nodes log to files, the terminal shows
    only the console; the reset key resets the sim through the graph."""
    logs = tmp_path / "logs"
    up = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.cli.main", "up", "record", "--teleop", "joy",
                           "--config", "config/single_arm.yaml", "--log-dir", str(logs),
                           "--set", f"record_dataset_root:={tmp_path}", "--set", "sim_publish_rate_hz:=5"],
                          env=ros_env, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(up.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any("recorder ready" in line for line in lines), 180), "".join(lines)
        up.stdin.write("r\n")
        up.stdin.flush()
        assert wait_for(lambda: any("ok: reset" in line for line in lines), 120), "".join(lines)
        joy_log = logs / "joy_teleop_node.log"
        assert wait_for(lambda: "limits from /safety_filter_node" in joy_log.read_text(), 120), joy_log.read_text()
        up.stdin.write("q\n")
        up.stdin.flush()
        assert up.wait(timeout=60) == 0, "".join(lines)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)   # the graph's nodes too, not only the supervisor
        reader.join(timeout=10)
    out = "".join(lines)
    assert f"node logs in {logs}" in out and "[c] start" in out
    assert not any(level in out for level in ("[INFO]", "[WARN]", "[ERROR]")), out   # no node log in the console
    for node in ("sim_node", "joy_teleop_node", "safety_filter_node", "demo_recorder_node"):
        assert f"[{node}]" in (logs / f"{node}.log").read_text(), node
