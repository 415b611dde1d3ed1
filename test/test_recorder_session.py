"""The recorder's episode state machine on plain data (no node, no transport): serialized messages
with chosen stamps and receive times go in, SAVE's frames and message come out."""
import os

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState

from diffusion_policy_ros.data.recorder_session import RecorderSession
from diffusion_policy_ros.data.recording_plan import recording_plan
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.robot_config import load_robot_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 10.0


@pytest.fixture
def config():
    return load_robot_config(os.path.join(REPO_ROOT, "config/single_arm.yaml"))


@pytest.fixture
def session(tmp_path, config):
    plan = recording_plan(config, cameras=["scene"], depth=False, tactile=False)
    path = str(tmp_path / "demos")
    return RecorderSession(config, plan, rate_hz=RATE, dataset_path=path, start_converter=False,
                           open_dataset=lambda: ReplayBuffer.create(path, exist_ok=True))


class Robot:
    """The config's joint states and scene camera, serialized, stamped on a clock of our choice."""

    def __init__(self, config, session):
        arm, cam = config.arms[0], config.camera("scene")
        self.session, self.arm, self.cam = session, arm, cam

    def joints(self, stamp, received=None):
        msg = JointState(name=list(self.arm.joint_names), position=[0.1] * len(self.arm.joint_names))
        self._send(self.arm.joint_states_topic, msg, stamp, received)

    def image(self, stamp, received=None):
        msg = Image(height=self.cam.height, width=self.cam.width, encoding="rgb8", step=self.cam.width * 3,
                    data=bytes(self.cam.height * self.cam.width * 3))
        self._send(self.cam.rgb_topic, msg, stamp, received)

    def run(self, t0, t1, *, camera_from=None, camera_until=None, received=lambda t: t):
        """Joint states at 100 Hz and camera frames at 10 Hz stamped in [t0, t1)."""
        for k in range(int(round((t1 - t0) * 100))):
            t = t0 + k / 100
            self.joints(t, received(t))
            if k % 10 == 0 and (camera_from is None or t >= camera_from) and (camera_until is None or t <= camera_until):
                self.image(t, received(t))

    def _send(self, topic, msg, stamp, received):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(round(stamp * 1e9)), 1_000_000_000)
        self.session.receive(topic, serialize_message(msg), int(round((stamp if received is None else received) * 1e9)))


def test_start_before_the_first_clock_keeps_the_messages_that_came_before_the_clock(config, session):
    robot = Robot(config, session)
    robot.run(9.0, 10.0)
    # The recorder has messages but its (sim) clock reads 0: the clock has not ticked yet.
    assert session.start("place the cube", 0.0).success
    robot.run(10.0, 10.5, received=lambda t: 0.0)
    robot.run(10.5, 12.0)
    out = session.save(12.0)
    assert out.success, out.message
    assert out.num_frames == 20, out.message
    assert "frames begin" not in out.message


@pytest.mark.parametrize("camera, frames, note", [
    ({"camera_from": 11.0}, 10, "frames begin 1.00 s after the episode start (nothing on rgb/scene until then)"),
    ({"camera_until": 11.5}, 16, "frames end 0.50 s before SAVE (nothing newer on rgb/scene)"),
])
def test_save_says_when_a_stream_started_late_or_holds_the_end_back(config, session, camera, frames, note):
    robot = Robot(config, session)
    robot.run(9.0, 10.0)
    assert session.start("place the cube", 10.0).success
    robot.run(10.0, 12.0, **camera)
    out = session.save(12.0)
    assert out.success, out.message
    assert out.num_frames == frames and note in out.message, out.message


def test_a_full_episode_saves_without_a_note(config, session):
    robot = Robot(config, session)
    robot.run(9.0, 10.0)
    assert session.start("place the cube", 10.0).success
    robot.run(10.0, 12.05)
    out = session.save(12.0)
    assert out.success, out.message
    assert out.num_frames == 21, out.message
    assert "frames begin" not in out.message and "frames end" not in out.message
    np.testing.assert_equal(session.saved, 1)
