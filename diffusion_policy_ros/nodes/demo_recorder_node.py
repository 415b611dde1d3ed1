"""demo_recorder_node: record teleoperated demonstrations into the zarr dataset.

Subscribes (topics from the robot config), without deserializing: each arm's joint states, the
cameras' `<topic>/image_raw` (or `<topic>/image_raw/compressed`), depth, tactile pads; what the
safety filter forwards to the controllers (`controller_topic`, `forward_topic`, and the gripper
controller's topic), which becomes the dataset's `action`; `safety/events` (marked per frame in
`action_safety`); the teleop requests and the sim's task status (kept in the raw episode). Each
subscription has a callback group of its own: a camera never waits behind another.

Episode control: service `~/episode` (EpisodeControl: START with task text, SAVE, DISCARD). SAVE
answers once the raw episode (MCAP, under `<dataset>/episodes_raw/`) is durable on disk; a
separate process converts it into the dataset. Status (JSON in std_msgs/String) on `~/status`
twice a second: state (idle | recording | saving | converting | error), elapsed_s, frames,
dropped, duplicated, safety_affected_frames, last_safety_event, episode_index, message, ...

Parameters (besides the shared robot config): dataset_root, dataset_name, record_rate_hz,
record_cameras (default: all), compressed_cameras, record_depth, record_tactile, max_episode_s,
sensor_reliability (best_effort | reliable), qos_depth, keep_raw_episodes, safety_events_topic,
sim_status_topic ("" when there is no sim: episodes then start at START).
"""
from __future__ import annotations

import json
import sys

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from std_msgs.msg import String

from diffusion_policy_ros.data.dataset_path import DatasetPathError, ensure_writable_dir, resolve_dataset_path
from diffusion_policy_ros.data.recording_plan import recording_plan
from diffusion_policy_ros.data.recorder_session import RecorderSession
from diffusion_policy_ros.nodes._robot_params import node_kwargs, now_seconds, param, robot_config_from_node
from diffusion_policy_ros.robot_config import ConfigError


def _message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    import importlib
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class DemoRecorder(Node):
    def __init__(self, **kwargs):
        super().__init__("demo_recorder_node", **node_kwargs(), **kwargs)
        self.config = robot_config_from_node(self)
        root = param(self, "dataset_root", "data")
        name = param(self, "dataset_name", f"{self.config.robot}_demos")
        rate = float(param(self, "record_rate_hz", 10.0))
        qos_depth = int(param(self, "qos_depth", 20))
        self.dataset_path = resolve_dataset_path(root, name)   # raises on names escaping the root
        plan = recording_plan(
            self.config, cameras=param(self, "record_cameras", []) or None,
            compressed=param(self, "compressed_cameras", []), depth=bool(param(self, "record_depth", True)),
            tactile=bool(param(self, "record_tactile", True)),
            safety_topic=str(param(self, "safety_events_topic", "/safety/events")),
            sim_status_topic=str(param(self, "sim_status_topic", "/sim/task_status")))
        self._warned: set[str] = set()
        self.session = RecorderSession(self.config, plan, rate_hz=rate, dataset_path=self.dataset_path,
                                       open_dataset=self._open_dataset,
                                       max_episode_s=float(param(self, "max_episode_s", 900.0)),
                                       keep_raw=bool(param(self, "keep_raw_episodes", False)),
                                       warn=self._warn_once)
        try:
            dataset = self.session.dataset()
            self.get_logger().info(f"dataset {self.dataset_path}: {dataset.n_episodes} episodes already recorded")
            recovered = self.session.recover()
            if recovered:
                self.get_logger().warning(recovered)
        except Exception as e:  # noqa: BLE001 - keep running; START reports the same error
            self.get_logger().error(f"cannot open dataset: {e}")

        # best_effort matches every publisher (sensor-data QoS); reliable only matches reliable
        # publishers, but then large frames are re-sent instead of lost.
        reliability = str(param(self, "sensor_reliability", "best_effort"))
        if reliability not in ("best_effort", "reliable"):
            raise ConfigError(f"sensor_reliability must be best_effort or reliable, got {reliability!r}")
        sensor_qos = QoSProfile(depth=qos_depth, history=qos_profile_sensor_data.history,
                                reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                                else ReliabilityPolicy.BEST_EFFORT)
        sensor_topics = {s["topic"] for s in plan.streams}
        self._subs = []
        for topic in self.session.topics:
            qos = sensor_qos if topic.name in sensor_topics else QoSProfile(depth=qos_depth)
            self._subs.append(self.create_subscription(
                _message_class(topic.msgtype), topic.name, self._receiver(topic), qos, raw=True,
                callback_group=MutuallyExclusiveCallbackGroup()))

        from diffusion_policy_ros.srv import EpisodeControl
        self._srv_type = EpisodeControl
        self._service = self.create_service(EpisodeControl, "~/episode", self._on_episode,
                                            callback_group=MutuallyExclusiveCallbackGroup())
        self._status_pub = self.create_publisher(String, "~/status", 10)
        self._status_timer = self.create_timer(0.5, self._publish_status,
                                               callback_group=MutuallyExclusiveCallbackGroup())
        cameras = sorted({s["name"].split("/", 1)[1] for s in plan.streams if s["kind"].startswith("rgb")})
        self.get_logger().info(
            f"recording {len(plan.streams)} sensor streams at {rate:g} Hz into {self.dataset_path}; cameras "
            f"{cameras}; action: what the safety filter forwards on "
            f"{sorted({c['topic'] for arm in plan.commands for c in arm['topics']})}")

    def _open_dataset(self):
        from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
        ensure_writable_dir(self.dataset_path)
        return ReplayBuffer.create(self.dataset_path, exist_ok=True)

    # -- subscriptions -------------------------------------------------------------------------
    def _receiver(self, topic):
        session, clock, name = self.session, self.get_clock(), topic.name
        if topic.msgtype.endswith("/SafetyEvent"):
            from diffusion_policy_ros.msg import SafetyEvent

            def on_event(data: bytes):
                session.receive(name, data, clock.now().nanoseconds)
                m = deserialize_message(data, SafetyEvent)
                session.safety_event(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, int(m.action),
                                     f"{m.arm}: {m.reason}" if m.arm else m.reason)
            return on_event
        if topic.msgtype.endswith("/TaskStatus"):
            from diffusion_policy_ros.msg import TaskStatus

            def on_status(data: bytes):
                session.receive(name, data, clock.now().nanoseconds)
                m = deserialize_message(data, TaskStatus)
                session.sim_status(int(m.episode), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 - m.episode_time)
            return on_status
        return lambda data: session.receive(name, data, clock.now().nanoseconds)

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
        self._status_pub.publish(String(data=json.dumps(self.session.status(now_seconds(self)))))


def main(args=None):
    rclpy.init(args=args)
    try:
        try:
            node = DemoRecorder()
        except (ConfigError, DatasetPathError) as e:
            print(f"demo_recorder_node: {e}", file=sys.stderr)
            return 2
        # A thread per subscription (up to 8): a large frame being written never holds up others.
        executor = MultiThreadedExecutor(num_threads=min(8, len(node._subs) + 2))
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
