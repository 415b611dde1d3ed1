"""The policy node's inputs: one subscription per stream the checkpoint observes, converted on
arrival into the stamp-aligned ObservationSync (diffusion_policy_ros.sync), then assembled into the
policy's observation history. Input names are the topics (what `policy/status` names as stale).

Joint states become the arm's joints in config order through an index cached per name list (no
per-joint Python loop); images in the policy's size and encoding stay views of the message buffer.
A sample with NaN/Inf, missing joints, a wrong-size tactile grid, or an object pose in another
frame than the config's or with a non-unit quaternion is dropped with a warning: its input then
goes stale and the node holds, naming it.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.msg import TactileArray
from diffusion_policy_ros.nodes._image_convert import depth_from_msg, rgb_from_msg
from diffusion_policy_ros.nodes._ros_convert import seconds
from diffusion_policy_ros.pose_observation import pose_vector
from diffusion_policy_ros.sync.observation_sync import AlignedObservation, ObservationSync, SyncFailure

WARN_EVERY_S = 5.0


class PolicyInputs:
    """Subscribes for `observed_keys`; calls `on_observation()` whenever a newer synchronized
    observation is complete (from the subscription callback that completed it)."""

    def __init__(self, node, config, observed_keys, image_transport: str, tolerance_s: float,
                 stale_after_s: float, on_observation: Callable[[], None]):
        if image_transport not in ("raw", "compressed"):
            raise ValueError(f"image_transport must be raw or compressed, got {image_transport!r}")
        self._node = node
        self._on_observation = on_observation
        self._lock = threading.Lock()
        self._builders: dict[str, Callable[[dict], np.ndarray]] = {}   # obs key -> values by topic -> array
        self._joint_index: dict[tuple[str, tuple[str, ...]], np.ndarray | None] = {}
        self._subs = []
        self.conversion_s: dict[str, float] = {}   # topic -> seconds its newest sample took to convert
        keys = set(observed_keys)
        streams = []   # (message type, topic, conversion); subscribed once the sync exists

        def subscribe(msg_type, topic, convert):
            streams.append((msg_type, topic, convert))

        if obs_keys.JOINT_POS in keys:
            for arm in config.arms:
                subscribe(JointState, arm.joint_states_topic, lambda m, a=arm: self._joint_positions(a, m))
            arm_topics = [a.joint_states_topic for a in config.arms]
            self._builders[obs_keys.JOINT_POS] = lambda v: np.concatenate([v[t] for t in arm_topics])
        compressed = image_transport == "compressed"
        for cam in config.cameras:
            if obs_keys.rgb(cam.name) in keys:
                topic = cam.rgb_topic + ("/compressed" if compressed else "")
                subscribe(CompressedImage if compressed else Image, topic,
                          lambda m, c=cam: rgb_from_msg(m, c.width, c.height, compressed))
                self._builders[obs_keys.rgb(cam.name)] = lambda v, t=topic: v[t]
            if obs_keys.depth(cam.name) in keys:
                subscribe(Image, cam.depth_topic, lambda m, c=cam: depth_from_msg(m, c.width, c.height))
                self._builders[obs_keys.depth(cam.name)] = lambda v, t=cam.depth_topic: v[t]
        for pad in config.tactile_sensors:
            if obs_keys.tactile(pad.name) in keys:
                subscribe(TactileArray, pad.topic, lambda m, p=pad: self._tactile(p, m))
                self._builders[obs_keys.tactile(pad.name)] = lambda v, t=pad.topic: v[t]
        for obj in config.object_poses:
            if obs_keys.pose(obj.name) in keys:
                subscribe(PoseStamped, obj.topic, lambda m, o=obj: self._pose(o, m))
                self._builders[obs_keys.pose(obj.name)] = lambda v, t=obj.topic: v[t]
        self.sync = ObservationSync([topic for _, topic, _ in streams], tolerance_s, stale_after_s)
        self._complete: float | None = None
        for msg_type, topic, convert in streams:
            self._subs.append(node.create_subscription(
                msg_type, topic, lambda m, t=topic, c=convert: self._add(t, m, c), qos_profile_sensor_data))

    # ---- what the node asks ------------------------------------------------------------------
    def latest(self, now: float) -> AlignedObservation | SyncFailure:
        with self._lock:
            return self.sync.latest(now)

    def history(self, latest: AlignedObservation, n_steps: int, period_s: float) -> dict[str, np.ndarray]:
        """The policy's input: per observation key, `n_steps` samples `period_s` apart ending with
        `latest`, stacked oldest first."""
        with self._lock:
            steps = self.sync.history(latest, n_steps, period_s)
        return {key: np.stack([build(step.values) for step in steps]) for key, build in self._builders.items()}

    def complete_stamp(self) -> float | None:
        with self._lock:
            return self._complete

    def clear(self) -> None:
        """Forget every sample (a new episode's history holds none of the last one's)."""
        with self._lock:
            self.sync.clear()
            self._complete = None

    def destroy(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []

    # ---- subscription callbacks ------------------------------------------------------------------
    def _add(self, topic: str, msg, convert) -> None:
        started = time.perf_counter()
        try:
            value = convert(msg)
        except ValueError as e:   # an image this node cannot decode: say so, the input goes stale
            value = None
            self._warn(f"{topic}: {e}")
        if value is None:
            return
        elapsed = time.perf_counter() - started
        with self._lock:
            if not self.sync.add(topic, seconds(msg.header.stamp), value):
                return   # older than this input's newest sample
            self.conversion_s[topic] = elapsed
            complete = self.sync.complete_stamp()
            newer = complete is not None and (self._complete is None or complete > self._complete)
            if newer:
                self._complete = complete
        if newer:
            self._on_observation()

    def _joint_positions(self, arm, msg: JointState) -> np.ndarray | None:
        key = (arm.name, tuple(msg.name))
        index = self._joint_index.get(key, False)
        if index is False:
            names = {n: i for i, n in enumerate(msg.name)}
            missing = [n for n in arm.joint_names if n not in names]
            index = None if missing else np.array([names[n] for n in arm.joint_names])
            self._joint_index[key] = index
            if missing:
                self._warn(f"{arm.joint_states_topic}: no {', '.join(missing)} in the joint state")
        if index is None or len(msg.position) != len(msg.name):
            return None
        values = np.asarray(msg.position, dtype=np.float64)[index].astype(np.float32)
        if not np.isfinite(values).all():
            self._warn(f"{arm.joint_states_topic}: NaN or Inf in the joint positions; sample dropped")
            return None
        return values

    def _pose(self, obj, msg: PoseStamped) -> np.ndarray | None:
        if msg.header.frame_id != obj.frame_id:
            self._warn(f"{obj.topic}: pose in frame {msg.header.frame_id!r}, expected {obj.frame_id!r}; sample dropped")
            return None
        p, o = msg.pose.position, msg.pose.orientation
        vector = pose_vector([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])
        if vector is None:
            self._warn(f"{obj.topic}: NaN, Inf or a quaternion that is not unit length; sample dropped")
        return vector

    def _tactile(self, pad, msg: TactileArray) -> np.ndarray | None:
        if len(msg.normal_force) != pad.rows * pad.cols:
            self._warn(f"{pad.topic}: {len(msg.normal_force)} taxels, expected {pad.rows}x{pad.cols}")
            return None
        values = np.asarray(msg.normal_force, dtype=np.float32).reshape(pad.rows, pad.cols)
        if not np.isfinite(values).all():
            self._warn(f"{pad.topic}: NaN or Inf in the tactile grid; sample dropped")
            return None
        return values

    def _warn(self, text: str) -> None:
        self._node.get_logger().warn(text, throttle_duration_sec=WARN_EVERY_S)
