"""Synthetic robot sensor streams for benchmarks and tests: joint states, the commands a safety
filter forwards to the controllers, cameras (RGB, optional depth) and tactile pads of a robot
config, with ideal header stamps t0 + k / rate. Frame k of every camera is recognisable
(`synthetic_rgb(k, ...)`), so a recording can be checked against what was sent.

Every stream publishes at `rate_hz` unless it has a rate of its own (`joint_rate_hz`,
`tactile_rate_hz`); each rate runs on its own thread and counts the ticks it published late.
"""
from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffusion_policy_ros.node_parameters import SYNTHETIC_SENSORS
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import responsive_threads


def synthetic_rgb(k: int, height: int, width: int, camera_index: int = 0) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (k * 5 + camera_index * 40) % 256
    img[..., 1] = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)[None, :]
    img[..., 2] = (np.arange(height) * 255 // max(1, height - 1)).astype(np.uint8)[:, None]
    return img


def synthetic_depth_m(k: int) -> float:
    """Depth of frame k, metres (a multiple of 1 mm: 16UC1 carries it exactly)."""
    return 0.5 + 0.001 * (k % 100)


def synthetic_joints(k: int, n: int, rate: float) -> np.ndarray:
    return np.sin(0.3 * k / rate + np.arange(n)).astype(np.float64)


STREAMS = ("cameras", "commands", "joints", "tactile")


class _Clocked:
    """One publishing rate: its streams, published counts and late ticks."""

    def __init__(self, name: str, rate: float, publish):
        self.name, self.rate, self.publish = name, float(rate), publish
        self.published = 0
        self.late: list[tuple[float, float]] = []   # (tick time from start, seconds behind it)
        self.realtime = ""     # why its thread is not real-time ("" when it is or was not asked to be)


def _make_thread_realtime(priority: int) -> str:
    """SCHED_FIFO for the calling thread (Linux: pid 0 is the thread); '' or why not."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return ""
    except (AttributeError, OSError) as e:
        return f"SCHED_FIFO {priority} refused ({e}); raise the user's rtprio limit as ros2_control documents"


class SyntheticSensors(Node):
    """Publishes every stream the recorder subscribes to for `robot_config`, from threads."""

    def __init__(self, robot_config, rate_hz: float, *, distinct_frames: int | None = None,
                 reliable: bool = False, joint_rate_hz: float | None = None,
                 tactile_rate_hz: float | None = None, depth_encoding: str = "32FC1",
                 streams=STREAMS, realtime_priority: int = 0, **kwargs):
        """`streams`: which of STREAMS this node publishes (a rig runs each driver in a process of
        its own: `dpros bench record` starts joints, tactile and commands in a second one).
        `realtime_priority` > 0: each publishing thread asks for SCHED_FIFO at that priority, as
        ros2_control's update thread does (`thread_priority`, 50); a clock's `realtime` says why
        when the system refused (no rtprio limit for this user)."""
        super().__init__("synthetic_sensors", **PARAMETER_OPTIONS, **kwargs)
        responsive_threads()  # each publishing thread gets the GIL within 0.5 ms of its tick
        declare_node_parameters(self, SYNTHETIC_SENSORS)  # none of its own: refuses stray ones
        if depth_encoding not in ("32FC1", "16UC1"):
            raise ValueError(f"depth encoding must be 32FC1 or 16UC1, got {depth_encoding!r}")
        unknown = set(streams) - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown streams {sorted(unknown)}; choose from {STREAMS}")
        self.config = robot_config
        self.rate = float(rate_hz)
        self.depth_encoding = depth_encoding
        self.realtime_priority = int(realtime_priority)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self._joint_pubs = [(arm, self.create_publisher(JointState, arm.joint_states_topic, qos))
                            for arm in robot_config.arms if "joints" in streams]
        # What a safety filter forwards: one point a control period ahead, as teleop sends it.
        self._command_pubs = [(arm, self.create_publisher(JointTrajectory, arm.controller_topic, 10))
                              for arm in robot_config.arms if "commands" in streams]
        self._cams = []
        for i, cam in enumerate(robot_config.cameras if "cameras" in streams else ()):
            pub = self.create_publisher(Image, cam.rgb_topic, qos)
            depth_pub = self.create_publisher(Image, cam.depth_topic, qos) if cam.depth else None
            self._cams.append((i, cam, pub, depth_pub))
        self._tactile = []
        try:
            from diffusion_policy_ros.msg import TactileArray
            for sensor in robot_config.tactile_sensors if "tactile" in streams else ():
                self._tactile.append((sensor, self.create_publisher(TactileArray, sensor.topic, qos),
                                      TactileArray))
        except ImportError:
            pass
        # Pre-built image payloads: building a large message each tick would measure us, not the
        # recorder. `distinct_frames=None`: a fresh, recognisable frame every tick.
        self._distinct = distinct_frames
        self._image_cache: dict[tuple, Image] = {}
        joint_rate = joint_rate_hz or self.rate
        tactile_rate = tactile_rate_hz or self.rate
        self.clocks = [_Clocked("cameras", self.rate, self._publish_cameras),
                       _Clocked("commands", self.rate, self._publish_commands),
                       _Clocked("joints", joint_rate, self._publish_joints)]
        if self._tactile:
            self.clocks.append(_Clocked("tactile", tactile_rate, self._publish_tactile))
        self.clocks = [c for c in self.clocks if c.name in streams]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.t0 = 0.0

    @property
    def published(self) -> int:
        """Ticks of the first rate (cameras, unless not published here) published."""
        return self.clocks[0].published

    def start(self, seconds: float | None = None, start_ns: int | None = None,
              start_wall: float | None = None) -> None:
        """Tick k of each stream is due at start_wall + k / rate (time.monotonic(), the same in every
        process) and stamped start_ns + k / rate (default: now): publishers in several processes
        given the same pair keep one time grid."""
        # A full garbage collection over this process's objects (rclpy, messages, caches) holds the
        # GIL for ~20 ms every few seconds: every publishing thread misses its tick (seen at 200 Hz).
        # A camera driver has no such pauses; move what exists now out of the collector's way.
        gc.collect()
        gc.freeze()
        self._stop.clear()
        start_ns = self.get_clock().now().nanoseconds if start_ns is None else int(start_ns)
        start_wall = time.monotonic() if start_wall is None else float(start_wall)
        self.t0 = start_ns * 1e-9
        self._threads = [threading.Thread(target=self._run, args=(c, start_ns, start_wall, seconds), daemon=True)
                         for c in self.clocks]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self) -> None:
        for t in self._threads:
            t.join()

    def _run(self, clock: _Clocked, start_ns: int, start_wall: float, seconds):
        if self.realtime_priority > 0:
            clock.realtime = _make_thread_realtime(self.realtime_priority)
        k = 0
        while not self._stop.is_set():
            due = start_wall + k / clock.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.5 / clock.rate:
                clock.late.append((k / clock.rate, -delay))
            if seconds is not None and k / clock.rate >= seconds:
                break
            clock.publish(k, start_ns + int(round(k * 1e9 / clock.rate)))
            clock.published += 1
            k += 1

    def publish_tick(self, k: int, stamp_ns: int) -> None:
        """Every stream's message k, stamped stamp_ns (for a caller that keeps its own clock)."""
        for clock in self.clocks:
            clock.publish(k, stamp_ns)
            clock.published += 1

    @staticmethod
    def _stamp(msg, stamp_ns: int):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return msg

    def _publish_joints(self, k: int, stamp_ns: int) -> None:
        rate = self._rate_of("joints")
        for arm, pub in self._joint_pubs:
            pub.publish(self._stamp(JointState(name=list(arm.joint_names), position=synthetic_joints(
                k, len(arm.joint_names), rate).tolist()), stamp_ns))

    def _publish_commands(self, k: int, stamp_ns: int) -> None:
        period_ns = int(round(1e9 / self.rate))
        for arm, pub in self._command_pubs:
            point = JointTrajectoryPoint(positions=synthetic_joints(k + 1, len(arm.joint_names), self.rate).tolist(),
                                         time_from_start=Duration(sec=0, nanosec=period_ns))
            pub.publish(self._stamp(JointTrajectory(joint_names=list(arm.joint_names), points=[point]), stamp_ns))

    def _publish_cameras(self, k: int, stamp_ns: int) -> None:
        # rclpy holds the GIL while it converts and writes a message (~1-2 ms for 640x480): after
        # each image the other streams' threads get their turn, or four images back to back would
        # hold a 200 Hz joint tick for longer than half its period.
        for i, cam, pub, depth_pub in self._cams:
            pub.publish(self._stamp(self._image(i, cam, k), stamp_ns))
            time.sleep(0)
            if depth_pub is not None:
                depth_pub.publish(self._stamp(self._depth(i, cam, k), stamp_ns))
                time.sleep(0)

    def _publish_tactile(self, k: int, stamp_ns: int) -> None:
        for sensor, pub, msg_type in self._tactile:
            pub.publish(self._stamp(msg_type(sensor_name=sensor.name, rows=sensor.rows, cols=sensor.cols,
                                             normal_force=[float(k % 50)] * (sensor.rows * sensor.cols)), stamp_ns))

    def _rate_of(self, name: str) -> float:
        return next(c.rate for c in self.clocks if c.name == name)

    def _variant(self, k: int) -> int:
        return k if self._distinct is None else k % self._distinct

    def _image(self, i: int, cam, k: int) -> Image:
        variant = self._variant(k)
        msg = self._image_cache.get(("rgb", i, variant))
        if msg is None:
            msg = Image(height=cam.height, width=cam.width, encoding="rgb8", step=cam.width * 3,
                        data=synthetic_rgb(variant, cam.height, cam.width, i).tobytes())
            msg.header.frame_id = cam.frame_id
            if self._distinct is not None:
                self._image_cache[("rgb", i, variant)] = msg
        return msg

    def _depth(self, i: int, cam, k: int) -> Image:
        variant = self._variant(k)
        msg = self._image_cache.get(("depth", i, variant))
        if msg is None:
            metres = np.full((cam.height, cam.width), synthetic_depth_m(variant), np.float32)
            if self.depth_encoding == "16UC1":
                data, step = np.round(metres * 1000).astype("<u2").tobytes(), cam.width * 2
            else:
                data, step = metres.astype("<f4").tobytes(), cam.width * 4
            msg = Image(height=cam.height, width=cam.width, encoding=self.depth_encoding, step=step, data=data)
            msg.header.frame_id = cam.frame_id
            if self._distinct is not None:
                self._image_cache[("depth", i, variant)] = msg
        return msg
