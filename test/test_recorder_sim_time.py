"""demo_recorder_node under use_sim_time, as `dpros up record` runs it with the sim: a command
without a stamp (placed in time by its arrival) that arrives before the first /clock message
cannot be placed in time; it is dropped instead of spoiling the episode started next (the
recorder used to stamp it 0 s, start the episode at 0 s and then refuse to save: "the streams do
not overlap"). An episode STARTed before the first /clock starts with its first message."""
import os
import re
import threading
import time

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float64MultiArray

from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors
from diffusion_policy_ros.robot_config import load_robot_config
from recorder_helpers import REPO_ROOT, Operator, start_recorder, stop, wait_for_dataset
from waiting import wait_for

RATE = 10.0
SIM_START_S = 1000.0


class SimClock:
    """/clock from SIM_START_S at real-time speed, with the synthetic sensors stamped on it;
    `clock_after_s`: /clock itself goes out only that long after the sensors start."""

    def __init__(self, node, sensors, clock_after_s=0.0):
        self.pub = node.create_publisher(Clock, "/clock", 10)
        self.sensors = sensors
        self.clock_after_s = clock_after_s
        self.sim_now = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def _run(self):
        start, k = time.monotonic(), 0
        while not self._stop.is_set():
            now_ns = int((SIM_START_S + (time.monotonic() - start)) * 1e9)
            self.sim_now = now_ns * 1e-9
            if now_ns >= int((SIM_START_S + self.clock_after_s) * 1e9):
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = divmod(now_ns, 1_000_000_000)
                self.pub.publish(msg)
            if now_ns >= int((SIM_START_S + k / RATE) * 1e9):
                self.sensors.publish_tick(k, now_ns)
                k += 1
            time.sleep(0.005)

    def stop(self):
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()


def test_unstamped_command_before_the_first_clock_is_dropped(tmp_path, ros_env, rclpy_context):
    config = load_robot_config(os.path.join(REPO_ROOT, "config/single_arm.yaml"))
    arm = config.arms[0]
    operator = Operator(rclpy_context)
    sensors = SyntheticSensors(config, RATE, context=rclpy_context)
    clock_node = Node("test_sim_clock", context=rclpy_context)
    operator.add_node(sensors)
    operator.add_node(clock_node)
    # A forward position controller's command: no header, placed in time by its arrival.
    forward = clock_node.create_publisher(Float64MultiArray, arm.forward_topic, 10)
    log_path = tmp_path / "recorder.log"
    proc = start_recorder(dict(ros_env, RCUTILS_LOGGING_BUFFERED_STREAM="0"), "config/single_arm.yaml",
                          {"dataset_root": str(tmp_path), "dataset_name": "demos", "use_sim_time": True},
                          log_path=log_path)
    clock = SimClock(clock_node, sensors)
    warning = "dropping unstamped messages until the clock runs"
    try:
        assert wait_for(lambda: forward.get_subscription_count() >= 1 or proc.poll() is not None, 60)
        assert proc.poll() is None, "recorder exited"
        # Until the recorder says it dropped one (a message can take a while to match).
        assert wait_for(lambda: forward.publish(Float64MultiArray(data=[0.0] * len(arm.joint_names))) or
                        warning in log_path.read_text(), 60, poll_s=0.1), log_path.read_text()
        # The episode starts before the recorder has heard any /clock (its clock reads 0).
        operator.wait_for_recorder(proc=proc)
        assert operator.call("START", "place the cube").success
        clock.start()
        operator.record_frames(8)
        res = operator.call("SAVE")
        assert res.success, res.message
        assert res.num_frames >= 8
        dataset = wait_for_dataset(tmp_path / "demos", 1)
        episode, meta = dataset.get_episode(0), dataset.episode_meta(0)
    finally:
        clock.stop()
        stop(proc)
        operator.close()
    assert np.all(episode["timestamp"] >= SIM_START_S)
    # START found no clock: the episode starts with the first message on the sim clock, so the
    # commands the conversion keeps are the episode's own.
    assert meta["episode_start"] is not None and SIM_START_S <= meta["episode_start"] <= episode["timestamp"][0]
    assert np.all(np.isfinite(episode["action"]))


def test_an_episode_started_before_the_first_clock_keeps_what_came_before_it(tmp_path, ros_env, rclpy_context):
    """Stamped sensor messages but no /clock yet at START (the recorder's clock reads 0): the
    episode starts with the first message after START, not at the first one after the clock
    (that lost the episode's first seconds)."""
    operator = Operator(rclpy_context)
    sensors = SyntheticSensors(load_robot_config(os.path.join(REPO_ROOT, "config/single_arm.yaml")), RATE,
                               context=rclpy_context)
    clock_node = Node("test_late_sim_clock", context=rclpy_context)
    operator.add_node(sensors)
    operator.add_node(clock_node)
    proc = start_recorder(ros_env, "config/single_arm.yaml",
                          {"dataset_root": str(tmp_path), "dataset_name": "demos", "use_sim_time": True},
                          log_path=tmp_path / "recorder.log")
    clock_after_s = 3.0
    clock = SimClock(clock_node, sensors, clock_after_s=clock_after_s)
    try:
        operator.wait_for_recorder(proc=proc)
        clock.start()
        assert wait_for(lambda: clock.sim_now is not None and clock.sim_now >= SIM_START_S + 1.0, 30)
        started_at = clock.sim_now
        assert operator.call("START", "place the cube").success
        assert wait_for(lambda: clock.sim_now >= SIM_START_S + clock_after_s + 1.0, 30)
        operator.record_frames(int(clock_after_s * RATE) - 2)   # START at 1 s, SAVE from 4 s: ~30 frames
        res = operator.call("SAVE")
        saved_at = clock.sim_now
        assert res.success, res.message
        # A stream may begin a message or two late on a loaded machine (SAVE says so); the defect
        # this guards against began every stream at the clock, 3 s late.
        late = re.search(r"frames begin ([0-9.]+) s after", res.message)
        assert late is None or float(late.group(1)) < 1.0, res.message
        dataset = wait_for_dataset(tmp_path / "demos", 1)
        meta = dataset.episode_meta(0)
    finally:
        clock.stop()
        stop(proc)
        operator.close()
    # From (about) START on: the messages of the 2 s before the clock ran are in the episode.
    assert started_at - 0.5 <= meta["episode_start"] <= started_at + 2.0 / RATE, (meta["episode_start"], started_at)
    assert res.num_frames >= 0.8 * (saved_at - started_at) * RATE, res.message
