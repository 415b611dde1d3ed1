"""demo_recorder_node under use_sim_time, as `dpros up record` runs it with the sim: a teleop
command without a stamp ("now") that arrives before the first /clock message cannot be placed in
time; it is dropped instead of spoiling the episode started next (the recorder used to stamp it
0 s, start the episode at 0 s and then refuse to save: "the streams do not overlap")."""
import os
import threading
import time

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors
from diffusion_policy_ros.robot_config import load_robot_config
from recorder_helpers import REPO_ROOT, Operator, answer, start_recorder, stop

RATE = 10.0
SIM_START_S = 1000.0


class SimClock:
    """/clock from SIM_START_S at real-time speed, with the synthetic sensors stamped on it."""

    def __init__(self, node, sensors):
        self.pub = node.create_publisher(Clock, "/clock", 10)
        self.sensors = sensors
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def _run(self):
        start, k = time.monotonic(), 0
        while not self._stop.is_set():
            now_ns = int((SIM_START_S + (time.monotonic() - start)) * 1e9)
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(now_ns, 1_000_000_000)
            self.pub.publish(msg)
            if now_ns >= int((SIM_START_S + k / RATE) * 1e9):
                self.sensors.publish_tick(k, now_ns)
                k += 1
            time.sleep(0.005)

    def stop(self):
        self._stop.set()
        self._thread.join()


def test_unstamped_command_before_the_first_clock_is_dropped(tmp_path, ros_env, rclpy_context):
    config = load_robot_config(os.path.join(REPO_ROOT, "config/single_arm.yaml"))
    operator = Operator(rclpy_context)
    sensors = SyntheticSensors(config, RATE, context=rclpy_context)
    clock_node = Node("test_sim_clock", context=rclpy_context)
    operator.add_node(sensors)
    operator.add_node(clock_node)
    arm, teleop = sensors._teleop_pubs[0]
    proc = start_recorder(ros_env, "config/single_arm.yaml",
                          {"dataset_root": str(tmp_path), "dataset_name": "demos", "use_sim_time": True},
                          log_path=tmp_path / "recorder.log")
    clock = SimClock(clock_node, sensors)
    try:
        deadline = time.monotonic() + 30
        while teleop.get_subscription_count() < 1:
            assert time.monotonic() < deadline and proc.poll() is None, "recorder never subscribed"
            time.sleep(0.05)
        unstamped = JointTrajectory(joint_names=list(arm.joint_names),
                                    points=[JointTrajectoryPoint(positions=[0.0] * len(arm.joint_names))])
        for _ in range(3):
            teleop.publish(unstamped)
            time.sleep(0.1)
        time.sleep(0.5)
        # The episode starts before the recorder has heard any /clock (its clock reads 0).
        idle = operator.srv.Request(command=operator.srv.Request.DISCARD)
        while not (operator.client.wait_for_service(timeout_sec=1.0) and answer(operator.client, idle, 5.0)):
            assert time.monotonic() < deadline and proc.poll() is None, "recorder service never answered"
        assert operator.call("START", "place the cube").success
        clock.start()
        time.sleep(1.5)
        res = operator.call("SAVE")
        assert res.success, res.message
        assert res.num_frames >= 8
    finally:
        clock.stop()
        stop(proc)
        operator.close()
    log = (tmp_path / "recorder.log").read_text()
    assert "dropping unstamped samples until the clock runs" in log
    episode = ReplayBuffer.open(str(tmp_path / "demos")).get_episode(0)
    assert np.all(episode["timestamp"] >= SIM_START_S)
    assert np.all(np.isfinite(episode["action"]))
