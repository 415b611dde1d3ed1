"""demo_recorder_node: record teleoperated demonstrations into the zarr dataset.

Subscribes (topics from the robot config), without deserializing: each arm's joint states, the
cameras' `<topic>/image_raw` (or `<topic>/image_raw/compressed`), depth, tactile pads; what the
safety filter forwards to the controllers (`controller_topic`, `forward_topic`, and the gripper
controller's topic), which becomes the dataset's `action`; `safety/events` (marked per frame in
`action_safety`); the teleop requests and the sim's task status (kept in the raw episode). Each
subscription has a callback group of its own: a camera never waits behind another. A callback
takes every message already queued on its subscription (`DRAIN_LIMIT`): rclpy's executors take
one message per subscription per wait, so a 200 Hz stream fell seconds behind (and lost
messages once its queue was full) whenever the wait loop, shared with four cameras, ran at under
200 cycles per second.

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
import time

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.task import Future

try:
    from rclpy.exceptions import InvalidHandle
except ImportError:  # Humble
    from rclpy.handle import InvalidHandle
from std_msgs.msg import String

from diffusion_policy_ros.data.dataset_path import DatasetPathError, ensure_writable_dir, resolve_dataset_path
from diffusion_policy_ros.data.raw_episode import header_stamp_ns
from diffusion_policy_ros.data.recording_plan import recording_plan
from diffusion_policy_ros.data.recorder_session import RecorderSession
from diffusion_policy_ros.node_parameters import DEMO_RECORDER_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import now_seconds
from diffusion_policy_ros.robot_config import ConfigError

SMALL_MESSAGE_DEPTH = 500
DRAIN_LIMIT = 1000   # messages one callback takes beyond the one it was called with: the executor still comes round
SAVE_CATCH_UP_S = 3.0
IMAGE_QUEUE_BYTES = 64 << 20
MAX_IMAGE_DEPTH = 300


def _message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    import importlib
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class DemoRecorder(Node):
    def __init__(self, **kwargs):
        super().__init__("demo_recorder_node", **PARAMETER_OPTIONS, **kwargs)
        self.parameters = p = declare_node_parameters(self, DEMO_RECORDER_NODE)
        self.config = p.robot
        rate = p["record_rate_hz"]
        qos_depth = p["qos_depth"]
        # raises on names escaping the root
        self.dataset_path = resolve_dataset_path(p["dataset_root"], p["dataset_name"] or f"{self.config.robot}_demos")
        plan = recording_plan(
            self.config, cameras=p["record_cameras"] or None, compressed=p["compressed_cameras"],
            depth=p["record_depth"], tactile=p["record_tactile"], safety_topic=p["safety_events_topic"],
            sim_status_topic=p["sim_status_topic"])
        self._warned: set[str] = set()
        self.session = RecorderSession(self.config, plan, rate_hz=rate, dataset_path=self.dataset_path,
                                       open_dataset=self._open_dataset, max_episode_s=p["max_episode_s"],
                                       keep_raw=p["keep_raw_episodes"], warn=self._warn_once)
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
        reliability = p["sensor_reliability"]
        sensor_reliability = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        image_bytes = {s["topic"]: int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize for s in plan.streams
                       if s["kind"] in ("rgb", "rgb_compressed", "depth")}
        sensor_topics = {s["topic"] for s in plan.streams}
        self._subs = []
        for topic in self.session.topics:
            # Queues that ride out the recorder being descheduled for a few seconds on a busy
            # machine: at least qos_depth frames of a camera, more of small ones (up to
            # IMAGE_QUEUE_BYTES each), SMALL_MESSAGE_DEPTH of each small, fast stream.
            if topic.name in image_bytes:
                depth = min(MAX_IMAGE_DEPTH, max(qos_depth, IMAGE_QUEUE_BYTES // max(1, image_bytes[topic.name])))
            else:
                depth = max(qos_depth, SMALL_MESSAGE_DEPTH)
            qos = QoSProfile(depth=depth, reliability=sensor_reliability) if topic.name in sensor_topics \
                else QoSProfile(depth=depth)
            callback = _Draining(self._receiver(topic))
            callback.subscription = self.create_subscription(
                _message_class(topic.msgtype), topic.name, callback, qos, raw=True,
                callback_group=MutuallyExclusiveCallbackGroup())
            self._subs.append(callback.subscription)

        from diffusion_policy_ros.srv import EpisodeControl
        self._srv_type = EpisodeControl
        self._service = self.create_service(EpisodeControl, "~/episode", self._on_episode,
                                            callback_group=MutuallyExclusiveCallbackGroup())
        self._status_pub = self.create_publisher(String, "~/status", 10)
        # On the steady clock: the operator sees the status before a sim publishes /clock.
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._status_timer = self.create_timer(0.5, self._publish_status, clock=self._steady,
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
                now_ns = clock.now().nanoseconds
                session.receive(name, data, now_ns)
                m = deserialize_message(data, SafetyEvent)
                # The stamp exactly as the conversion reads it back from the raw episode.
                stamp = (header_stamp_ns(data) or now_ns) * 1e-9
                session.safety_event(stamp, int(m.action), f"{m.arm}: {m.reason}" if m.arm else m.reason)
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
    async def _on_episode(self, request, response):
        req = self._srv_type.Request
        now = now_seconds(self)
        if request.command == req.START:
            outcome = self.session.start(request.task, now)
        elif request.command == req.SAVE:
            # Messages stamped before SAVE may still be queued on a busy machine: receive them
            # first (the executor goes on meanwhile), for at most SAVE_CATCH_UP_S.
            deadline = time.monotonic() + SAVE_CATCH_UP_S
            while not self.session.caught_up(now) and time.monotonic() < deadline:
                await self._sleep(0.01)
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

    async def _sleep(self, seconds: float) -> None:
        """Yield to the executor for `seconds` (steady clock)."""
        done = Future()
        timer = None

        def wake():
            timer.cancel()
            done.set_result(None)
        timer = self.create_timer(seconds, wake, clock=self._steady)
        try:
            await done
        finally:
            self.destroy_timer(timer)

    def _publish_status(self):
        self._status_pub.publish(String(data=json.dumps(self.session.status(now_seconds(self)))))


class _Draining:
    """A raw subscription's callback that hands `receive` its message, then every message queued
    behind it, serialized (`Subscription.handle.take_message`, as rclpy's executors and
    wait_for_message take them, Humble to Kilted)."""

    def __init__(self, receive):
        self.receive = receive
        self.subscription = None

    def __call__(self, data: bytes) -> None:
        self.receive(data)
        subscription = self.subscription
        for _ in range(DRAIN_LIMIT):
            try:
                with subscription.handle:
                    taken = subscription.handle.take_message(subscription.msg_type, True)
            except InvalidHandle:   # destroyed while shutting down
                return
            if taken is None:
                return
            self.receive(taken[0])


def main(args=None):
    rclpy.init(args=args)
    try:
        try:
            node = DemoRecorder()
        except (ConfigError, DatasetPathError) as e:
            print(f"demo_recorder_node: {e}", file=sys.stderr)
            return 2
        threads = node.parameters["receive_threads"]
        executor = SingleThreadedExecutor() if threads <= 1 else MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
