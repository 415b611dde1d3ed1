"""Synthetic robot sensor streams for benchmarks and tests: joint states, teleop commands,
cameras (RGB, optional depth) and tactile pads of a robot config, at one rate, with ideal header
stamps t0 + k / rate. Frame k of every camera is recognisable (`synthetic_rgb(k, ...)`), so a
recording can be checked against what was sent.
"""
from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffusion_policy_ros.node_parameters import SYNTHETIC_SENSORS
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters


def synthetic_rgb(k: int, height: int, width: int, camera_index: int = 0) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (k * 5 + camera_index * 40) % 256
    img[..., 1] = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)[None, :]
    img[..., 2] = (np.arange(height) * 255 // max(1, height - 1)).astype(np.uint8)[:, None]
    return img


def synthetic_joints(k: int, n: int, rate: float) -> np.ndarray:
    return np.sin(0.3 * k / rate + np.arange(n)).astype(np.float64)


class SyntheticSensors(Node):
    """Publishes every stream the recorder subscribes to for `robot_config`, from a thread."""

    def __init__(self, robot_config, rate_hz: float, *, distinct_frames: int | None = None,
                 reliable: bool = False, **kwargs):
        super().__init__("synthetic_sensors", **PARAMETER_OPTIONS, **kwargs)
        declare_node_parameters(self, SYNTHETIC_SENSORS)  # none of its own: refuses stray ones
        self.config = robot_config
        self.rate = float(rate_hz)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self._joint_pubs = [(arm, self.create_publisher(JointState, arm.joint_states_topic, qos))
                            for arm in robot_config.arms]
        self._teleop_pubs = [(arm, self.create_publisher(JointTrajectory, arm.teleop_topic, 10))
                             for arm in robot_config.arms]
        self._cams = []
        for i, cam in enumerate(robot_config.cameras):
            pub = self.create_publisher(Image, cam.rgb_topic, qos)
            depth_pub = self.create_publisher(Image, cam.depth_topic, qos) if cam.depth else None
            self._cams.append((i, cam, pub, depth_pub))
        self._tactile = []
        try:
            from diffusion_policy_ros.msg import TactileArray
            for sensor in robot_config.tactile_sensors:
                self._tactile.append((sensor, self.create_publisher(TactileArray, sensor.topic, qos),
                                      TactileArray))
        except ImportError:
            pass
        # Pre-built image payloads: building a large message each tick would measure us, not the
        # recorder. `distinct_frames=None`: a fresh, recognisable frame every tick.
        self._distinct = distinct_frames
        self._image_cache: dict[tuple[int, int], Image] = {}
        self.published = 0
        self.late_ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0

    def start(self, seconds: float | None = None) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _run(self, seconds):
        clock = self.get_clock()
        start_ns = clock.now().nanoseconds
        start_wall = time.monotonic()
        self.t0 = start_ns * 1e-9
        k = 0
        while not self._stop.is_set():
            due = start_wall + k / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.5 / self.rate:
                self.late_ticks += 1
            if seconds is not None and k / self.rate >= seconds:
                break
            self.publish_tick(k, start_ns + int(round(k * 1e9 / self.rate)))
            k += 1

    def publish_tick(self, k: int, stamp_ns: int) -> None:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        for arm, pub in self._joint_pubs:
            msg = JointState(name=list(arm.joint_names),
                             position=synthetic_joints(k, len(arm.joint_names), self.rate).tolist())
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
            pub.publish(msg)
        for arm, pub in self._teleop_pubs:
            msg = JointTrajectory(joint_names=list(arm.joint_names), points=[JointTrajectoryPoint(
                positions=synthetic_joints(k + 1, len(arm.joint_names), self.rate).tolist())])
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
            pub.publish(msg)
        for i, cam, pub, depth_pub in self._cams:
            msg = self._image(i, cam, k)
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
            pub.publish(msg)
            if depth_pub is not None:
                d = Image(height=cam.height, width=cam.width, encoding="32FC1", step=cam.width * 4,
                          data=np.full((cam.height, cam.width), 0.5 + 0.001 * (k % 100), np.float32).tobytes())
                d.header.stamp.sec, d.header.stamp.nanosec = sec, nanosec
                depth_pub.publish(d)
        for sensor, pub, msg_type in self._tactile:
            msg = msg_type(sensor_name=sensor.name, rows=sensor.rows, cols=sensor.cols,
                           normal_force=[float(k % 50)] * (sensor.rows * sensor.cols))
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
            pub.publish(msg)
        self.published += 1

    def _image(self, i: int, cam, k: int) -> Image:
        variant = k if self._distinct is None else k % self._distinct
        key = (i, variant)
        msg = self._image_cache.get(key)
        if msg is None:
            msg = Image(height=cam.height, width=cam.width, encoding="rgb8", step=cam.width * 3,
                        data=synthetic_rgb(variant, cam.height, cam.width, i).tobytes())
            msg.header.frame_id = cam.frame_id
            if self._distinct is not None:
                self._image_cache[key] = msg
        return msg
