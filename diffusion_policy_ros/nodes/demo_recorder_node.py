"""demo_recorder_node: record teleoperated demonstrations into the zarr dataset.

Subscribes (topics from the robot config): each arm's joint states and teleop JointTrajectory
(the action), the cameras' `<topic>/image_raw` (or `<topic>/image_raw/compressed`), depth, and
tactile pads. Episode control: service `~/episode` (EpisodeControl: START with task text, SAVE,
DISCARD); SAVE answers only after the episode is durable on disk. Status (JSON in std_msgs/String)
on `~/status` twice a second, for the keyboard node and dashboards.

Parameters (besides the shared robot config): dataset_root, dataset_name, record_rate_hz,
record_cameras (default: all), compressed_cameras, record_depth, record_tactile, max_episode_s,
sensor_reliability (best_effort | reliable), qos_depth.
"""
from __future__ import annotations

import json
import sys

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.data.dataset_path import (DatasetPathError, ensure_writable_dir,
                                                    resolve_dataset_path)
from diffusion_policy_ros.data.episode_builder import reorder_joints, streams_for_config
from diffusion_policy_ros.data.image_codec import (ImageDecodeError, depth_from_raw, rgb_from_compressed,
                                                   rgb_from_raw)
from diffusion_policy_ros.data.recorder_session import RecorderSession
from diffusion_policy_ros.robot_config import ConfigError
from diffusion_policy_ros.node_parameters import DEMO_RECORDER_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import now_seconds
from diffusion_policy_ros.nodes._ros_convert import seconds


class DemoRecorder(Node):
    def __init__(self, **kwargs):
        super().__init__("demo_recorder_node", **PARAMETER_OPTIONS, **kwargs)
        p = declare_node_parameters(self, DEMO_RECORDER_NODE)
        self.config = p.robot
        root = p["dataset_root"]
        name = p["dataset_name"] or f"{self.config.robot}_demos"
        rate = p["record_rate_hz"]
        cameras = p["record_cameras"] or [c.name for c in self.config.cameras]
        compressed = set(p["compressed_cameras"])
        depth = p["record_depth"]
        tactile = p["record_tactile"] and self._tactile_msg() is not None
        qos_depth = p["qos_depth"]

        self.dataset_path = resolve_dataset_path(root, name)   # raises on names escaping the root
        decoders = {f"rgb/{c}": rgb_from_compressed for c in compressed}
        specs = streams_for_config(self.config, cameras=cameras, depth=depth, tactile=tactile,
                                   decoders=decoders)
        self.session = RecorderSession(self.config, specs, rate_hz=rate, open_dataset=self._open_dataset,
                                       dataset_path=self.dataset_path,
                                       max_episode_s=p["max_episode_s"])
        try:
            self.session.dataset()
            self.get_logger().info(f"dataset {self.dataset_path}: {self.session.dataset().n_episodes} "
                                   "episodes already recorded")
        except Exception as e:  # noqa: BLE001 - keep running; START reports the same error
            self.get_logger().error(f"cannot open dataset: {e}")

        sensors = ReentrantCallbackGroup()
        # best_effort matches every publisher (sensor-data QoS); reliable only matches reliable
        # publishers, but then large frames are re-sent instead of lost.
        reliability = p["sensor_reliability"]
        sensor_qos = QoSProfile(depth=qos_depth, history=qos_profile_sensor_data.history,
                                reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                                else ReliabilityPolicy.BEST_EFFORT)
        self._subs = []
        for arm in self.config.arms:
            self._subs.append(self.create_subscription(
                JointState, arm.joint_states_topic, self._joint_cb(arm), sensor_qos, callback_group=sensors))
            self._subs.append(self.create_subscription(
                JointTrajectory, arm.teleop_topic, self._action_cb(arm), 10, callback_group=sensors))
        for name in cameras:
            cam = self.config.camera(name)
            if name in compressed:
                self._subs.append(self.create_subscription(
                    CompressedImage, f"{cam.rgb_topic}/compressed", self._compressed_cb(name), sensor_qos,
                    callback_group=sensors))
            else:
                self._subs.append(self.create_subscription(
                    Image, cam.rgb_topic, self._rgb_cb(name), sensor_qos, callback_group=sensors))
            if depth and cam.depth:
                self._subs.append(self.create_subscription(
                    Image, cam.depth_topic, self._depth_cb(name), sensor_qos, callback_group=sensors))
        if tactile:
            msg_type = self._tactile_msg()
            for sensor in self.config.tactile_sensors:
                self._subs.append(self.create_subscription(
                    msg_type, sensor.topic, self._tactile_cb(sensor), sensor_qos, callback_group=sensors))

        from diffusion_policy_ros.srv import EpisodeControl
        self._srv_type = EpisodeControl
        self._service = self.create_service(EpisodeControl, "~/episode", self._on_episode,
                                            callback_group=MutuallyExclusiveCallbackGroup())
        self._status_pub = self.create_publisher(String, "~/status", 10)
        self._status_timer = self.create_timer(0.5, self._publish_status,
                                               callback_group=MutuallyExclusiveCallbackGroup())
        self._warned: set[str] = set()
        self.get_logger().info(
            f"recording {len(specs)} streams at {rate:g} Hz into {self.dataset_path}; "
            f"cameras {cameras}{' (compressed: ' + str(sorted(compressed)) + ')' if compressed else ''}")

    # -- dataset -------------------------------------------------------------------------------
    def _open_dataset(self):
        from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
        ensure_writable_dir(self.dataset_path)
        return ReplayBuffer.create(self.dataset_path, exist_ok=True)

    @staticmethod
    def _tactile_msg():
        try:
            from diffusion_policy_ros.msg import TactileArray
            return TactileArray
        except ImportError:
            return None

    # -- subscriptions -------------------------------------------------------------------------
    def _add(self, stream: str, header, value) -> None:
        """Unstamped messages (stamp 0 = "now", as teleop devices send) take the receive time; under
        use_sim_time that time is 0 until the first /clock message, and such samples are dropped."""
        stamp = seconds(header.stamp)
        if stamp <= 0.0:
            stamp = now_seconds(self)
            if stamp <= 0.0:
                return self._warn_once(f"clock/{stream}", f"{stream}: dropping unstamped samples until the clock runs")
        self.session.add(stream, stamp, value)

    def _joint_cb(self, arm):
        stream = f"joints/{arm.name}"

        def cb(msg: JointState):
            try:
                values = reorder_joints(msg.name, msg.position, arm.joint_names)
            except KeyError as e:
                return self._warn_once(stream, f"ignoring {arm.joint_states_topic}: {e}")
            self._add(stream, msg.header, values)
        return cb

    def _action_cb(self, arm):
        stream = f"action/{arm.name}"

        def cb(msg: JointTrajectory):
            if not msg.points:
                return
            try:
                values = reorder_joints(msg.joint_names, msg.points[0].positions, arm.joint_names)
            except KeyError as e:
                return self._warn_once(stream, f"ignoring {arm.teleop_topic}: {e}")
            self._add(stream, msg.header, values)
        return cb

    def _rgb_cb(self, name):
        stream = f"rgb/{name}"

        def cb(msg: Image):
            try:
                rgb = rgb_from_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                   big_endian=bool(msg.is_bigendian))
            except ImageDecodeError as e:
                return self._warn_once(stream, f"ignoring camera {name}: {e}")
            self._add(stream, msg.header, rgb)
        return cb

    def _compressed_cb(self, name):
        stream = f"rgb/{name}"

        def cb(msg: CompressedImage):
            # Decoded at SAVE (only the sampled frames): keeps the callback cheap.
            self._add(stream, msg.header, bytes(msg.data))
        return cb

    def _depth_cb(self, name):
        stream = f"depth/{name}"

        def cb(msg: Image):
            try:
                depth = depth_from_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                       big_endian=bool(msg.is_bigendian))
            except ImageDecodeError as e:
                return self._warn_once(stream, f"ignoring depth of {name}: {e}")
            self._add(stream, msg.header, depth)
        return cb

    def _tactile_cb(self, sensor):
        stream = f"tactile/{sensor.name}"

        def cb(msg):
            values = list(msg.normal_force)
            if len(values) != sensor.rows * sensor.cols:
                return self._warn_once(stream, f"ignoring {sensor.topic}: {len(values)} taxels, "
                                               f"expected {sensor.rows}x{sensor.cols}")
            import numpy as np
            self._add(stream, msg.header,
                             np.asarray(values, dtype=np.float32).reshape(sensor.rows, sensor.cols))
        return cb

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    # -- episode control -----------------------------------------------------------------------
    def _on_episode(self, request, response):
        req = self._srv_type.Request
        now = now_seconds(self)
        if request.command == req.START:
            outcome = self.session.start(request.task, now)
        elif request.command == req.SAVE:
            outcome = self.session.save(now)
        elif request.command == req.DISCARD:
            outcome = self.session.discard()
        else:
            outcome = self.session._fail(f"unknown command {request.command} (START=0, SAVE=1, DISCARD=2)")
        response.success = outcome.success
        response.message = outcome.message
        response.episode_index = outcome.episode_index
        response.num_frames = outcome.num_frames
        if outcome.success:
            self.get_logger().info(outcome.message)
        else:
            self.get_logger().error(outcome.message)
        self._publish_status()
        return response

    def _publish_status(self):
        self._status_pub.publish(String(data=json.dumps(self.session.status())))


def main(args=None):
    rclpy.init(args=args)
    try:
        try:
            node = DemoRecorder()
        except (ConfigError, DatasetPathError) as e:
            print(f"demo_recorder_node: {e}", file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
