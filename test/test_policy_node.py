"""policy_node as a real rclpy lifecycle node on real topics, fed synthetic sensor messages from a
test node (faster than the sim): checkpoint and parameter validation on configure, JointTrajectory
timing anchored to the observation, Float64MultiArray at the control rate, CompressedImage input,
the bimanual config through the safety filter, PolicyCommand start/stop/reset (START while
inactive, deactivate and activate again) and the ActionChunk fields, stale depth/tactile inputs
named in the status, late chunks and a failing inference holding the robot.

"Nothing was published" is checked over a window bounded by the node's own status: it reports the
newest observation it has (`observation_stamp`), so once that passed a sensor stamp the node had
the observations to act on and would have sent their commands."""
from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np
import pytest
import rclpy
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.msg import ActionChunk, PolicyStatus, SafetyEvent, TactileArray
from diffusion_policy_ros.nodes._ros_convert import seconds
from diffusion_policy_ros.nodes.policy_node import PolicyNode
from diffusion_policy_ros.parameters import ParameterError
from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.runtime.spin_thread import SpinThread
from diffusion_policy_ros.srv import PolicyCommand
from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint
from waiting import wait_for

SINGLE, BIMANUAL, STATE = "config/single_arm.yaml", "config/bimanual.yaml", "config/single_arm_state.yaml"
ARM_HOME = [0.0, 0.03, 0.81, 0.0, -1.31, 0.0, 0.04]  # a pose well inside every safety limit
SENSOR_RATE_HZ = 30.0


def home(robot):
    return np.array(ARM_HOME * len(robot.arms))


class Sensors(Node):
    """Stands in for the robot's drivers: joint states, cameras (raw or compressed, with depth)
    and tactile pads of a robot config at one rate, all stamped with the same instant.
    `stamp_delay_s` makes every stamp that much older; names in `muted` stop publishing."""

    def __init__(self, robot, context, compressed=False, stamp_delay_s=0.0):
        super().__init__("test_sensors", context=context)
        self.robot, self.compressed, self.stamp_delay_s = robot, compressed, stamp_delay_s
        self.muted: set[str] = set()
        self.stamps: list[float] = []
        qos = qos_profile_sensor_data
        self._joints = [(a, self.create_publisher(JointState, a.joint_states_topic, qos)) for a in robot.arms]
        self._cams = []
        for i, cam in enumerate(robot.cameras):
            rgb = np.zeros((cam.height, cam.width, 3), np.uint8)
            rgb[..., 0], rgb[..., 1] = 40 * i, np.arange(cam.width, dtype=np.uint8)[None, :]
            if compressed:
                msg = CompressedImage(format="png", data=cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
                pub = self.create_publisher(CompressedImage, cam.rgb_topic + "/compressed", qos)
            else:
                msg = Image(height=cam.height, width=cam.width, encoding="rgb8", step=cam.width * 3,
                            data=rgb.tobytes())
                pub = self.create_publisher(Image, cam.rgb_topic, qos)
            depth = None
            if cam.depth:
                depth = (Image(height=cam.height, width=cam.width, encoding="32FC1", step=cam.width * 4,
                               data=np.full((cam.height, cam.width), 0.5, np.float32).tobytes()),
                         self.create_publisher(Image, cam.depth_topic, qos))
            self._cams.append((cam, msg, pub, depth))
        self._tactile = [(t, self.create_publisher(TactileArray, t.topic, qos)) for t in robot.tactile_sensors]
        self._poses = [(o, self.create_publisher(PoseStamped, o.topic, qos)) for o in robot.object_poses]
        self.pose_frame = "world"
        self.pose_quaternion = (0.0, 0.0, 0.0, 1.0)
        self.create_timer(1.0 / SENSOR_RATE_HZ, self._tick)

    def _tick(self):
        now = self.get_clock().now().nanoseconds * 1e-9 - self.stamp_delay_s
        stamp = rclpy.time.Time(nanoseconds=int(round(now * 1e9))).to_msg()
        self.stamps.append(seconds(stamp))
        q = iter(home(self.robot))
        for arm, pub in self._joints:
            values = [next(q) for _ in arm.joint_names]
            if arm.joint_states_topic not in self.muted:
                msg = JointState(name=list(arm.joint_names), position=values)
                msg.header.stamp = stamp
                pub.publish(msg)
        for cam, msg, pub, depth in self._cams:
            if cam.rgb_topic not in self.muted:
                msg.header.stamp = stamp
                pub.publish(msg)
            if depth is not None and cam.depth_topic not in self.muted:
                depth[0].header.stamp = stamp
                depth[1].publish(depth[0])
        for pad, pub in self._tactile:
            if pad.topic not in self.muted:
                msg = TactileArray(sensor_name=pad.name, rows=pad.rows, cols=pad.cols,
                                   normal_force=[0.5] * (pad.rows * pad.cols))
                msg.header.stamp = stamp
                pub.publish(msg)
        for obj, pub in self._poses:
            if obj.topic not in self.muted:
                msg = PoseStamped()
                msg.header.stamp, msg.header.frame_id = stamp, self.pose_frame
                msg.pose.position.x, msg.pose.position.z = 0.4, 0.02
                o = msg.pose.orientation
                o.x, o.y, o.z, o.w = self.pose_quaternion
                pub.publish(msg)


class Listener(Node):
    """Records what the policy (and the safety filter) publish, with the receive time."""

    def __init__(self, context, robot):
        super().__init__("test_listener", context=context)
        self.trajectories = {a.name: [] for a in robot.arms}
        self.controller = {a.name: [] for a in robot.arms}
        self.arrays: dict[str, list] = {a.name: [] for a in robot.arms}
        self.chunks: list[tuple[float, ActionChunk]] = []
        self.status: list[PolicyStatus] = []
        self.safety_events: list[SafetyEvent] = []
        self.create_subscription(SafetyEvent, "safety/events", self.safety_events.append, 10)
        for arm in robot.arms:
            ns = arm.policy_topic.rsplit("/", 1)[0]
            self.create_subscription(JointTrajectory, arm.policy_topic,
                                     lambda m, a=arm.name: self.trajectories[a].append((self.now(), m)), 10)
            self.create_subscription(JointTrajectory, arm.controller_topic,
                                     lambda m, a=arm.name: self.controller[a].append((self.now(), m)), 10)
            self.create_subscription(Float64MultiArray, f"{ns}/commands",
                                     lambda m, a=arm.name: self.arrays[a].append((self.now(), m)), 10)
        self.create_subscription(ActionChunk, "policy/action_chunk", lambda m: self.chunks.append((self.now(), m)), 10)
        self.create_subscription(PolicyStatus, "policy/status", self.status.append, 10)
        self.command = self.create_client(PolicyCommand, "policy/command")
        self.get_state = self.create_client(GetState, "policy_node/get_state")

    def now(self):
        return self.get_clock().now().nanoseconds * 1e-9

    def call(self, client, request, timeout=10.0):
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        future = client.call_async(request)
        assert wait_for(future.done, timeout), f"no answer from {client.srv_name}"
        return future.result()

    def policy_command(self, command):
        return self.call(self.command, PolicyCommand.Request(command=command))

    def lifecycle_state(self) -> int:
        return self.call(self.get_state, GetState.Request()).current_state.id

    def observed(self) -> float:
        return seconds(self.status[-1].observation_stamp) if self.status else 0.0

    def wait_observed(self, stamp: float, timeout: float = 10.0) -> bool:
        """Until the node's status says it has every input up to `stamp`."""
        return wait_for(lambda: self.observed() >= stamp - 1e-6, timeout)

    def explain(self) -> str:
        """What the node last said of itself: for the message of a wait that timed out."""
        if not self.status:
            return "no PolicyStatus received"
        st = self.status[-1]
        return (f"state {st.state} '{st.message}', stale {list(st.stale_inputs)}, {st.chunks_computed} chunks "
                f"computed, latency p99 {st.latency_p99:.3f} s; received {len(self.chunks)} chunks, "
                f"{sum(map(len, self.trajectories.values()))} trajectories, {sum(map(len, self.arrays.values()))} arrays")

    def sent_after(self, stamp: float, arm: str = "arm") -> list:
        """Trajectories and chunks computed from observations newer than `stamp`."""
        return [m for _, m in self.trajectories[arm] + self.chunks if seconds(m.header.stamp) > stamp + 1e-6]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    work = tmp_path_factory.mktemp("policy_node")
    single, bimanual = load_robot_config(SINGLE), load_robot_config(BIMANUAL)
    cam = single.cameras[0]
    small_camera = dataclasses.replace(single, cameras=(dataclasses.replace(cam, width=64, height=64),)
                                       + tuple(single.cameras[1:]))
    fast = dataclasses.replace(single, control_rate_hz=20.0)
    return {"single": make_untrained_checkpoint(single, str(work / "single"), home(single)),
            "bimanual": make_untrained_checkpoint(bimanual, str(work / "bimanual"), home(bimanual)),
            "small_camera": make_untrained_checkpoint(small_camera, str(work / "small"), home(single)),
            "20hz": make_untrained_checkpoint(fast, str(work / "fast"), home(single)),
            "state": make_untrained_checkpoint(load_robot_config(STATE), str(work / "state"), home(single))}


class Graph:
    """The nodes of one test on an executor of their own, stopped before any node is destroyed:
    destroying entities while an executor spins can end its thread (InvalidHandle in
    add_to_wait_set, ros2/rclpy#1284), and with one executor for the module every later test of
    it then waited for answers that never came."""

    def __init__(self, context, config_file, sensors=True, **sensor_kwargs):
        self.context, self.config_file = context, config_file
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        self.thread = SpinThread(self.executor).start()
        self.robot = load_robot_config(config_file)
        self.nodes = []
        self.listener = self.add(Listener(context, self.robot))
        self.sensors = self.add(Sensors(self.robot, context, **sensor_kwargs)) if sensors else None
        self.policy = None

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def args(self):
        return ["--ros-args", "--params-file", self.config_file]

    def make_policy(self, checkpoint, **params) -> PolicyNode:
        overrides = [Parameter("checkpoint", value=checkpoint), Parameter("device", value="cpu")]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.policy = self.add(PolicyNode(context=self.context, cli_args=self.args(),
                                          parameter_overrides=overrides))
        return self.policy

    def start_policy(self, checkpoint, command=True, **params) -> PolicyNode:
        policy = self.make_policy(checkpoint, **params)
        assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS, policy.message
        assert policy.trigger_activate() == TransitionCallbackReturn.SUCCESS
        if command:
            assert self.listener.policy_command(PolicyCommand.Request.START).success
        return policy

    def close(self):
        if self.policy is not None:
            self.policy._halt()
        self.thread.stop()
        for node in reversed(self.nodes):
            node.destroy_node()


@pytest.fixture
def make_graph(rclpy_context):
    graphs = []

    def make(config_file=SINGLE, **kwargs):
        graphs.append(Graph(rclpy_context, config_file, **kwargs))
        return graphs[-1]
    yield make
    for g in graphs:
        g.close()


# ---- (a) configure validates the checkpoint and the parameters ---------------------------------------
@pytest.mark.parametrize("which, params, expected", [
    ("bimanual", {}, ["joints", "left_joint_1", "joint_1"]),                  # other robot's joints
    ("small_camera", {}, ["obs/scene/rgb", "[96, 96, 3]", "[64, 64, 3]"]),   # image size
    ("20hz", {}, ["control rate 20.0 Hz", "control_rate_hz 10.0"]),          # trained at another rate
    ("single", {"denoising_steps": [3, 0], "ahead_levels": 2}, ["stream_ahead_levels", "the last level"]),
])
def test_configure_rejects_what_does_not_fit(make_graph, checkpoints, which, params, expected):
    g = make_graph(SINGLE, sensors=False)
    policy = g.make_policy(checkpoints[which], **params)
    assert policy.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert all(word in policy.message for word in expected), policy.message
    assert g.listener.lifecycle_state() == State.PRIMARY_STATE_UNCONFIGURED
    assert policy.policy is None and policy.inputs is None
    assert wait_for(lambda: g.listener.status and g.listener.status[-1].message == policy.message, 3.0)
    assert g.listener.status[-1].state == PolicyStatus.STATE_ERROR
    # and it cannot be told to command the robot
    assert not g.listener.policy_command(PolicyCommand.Request.START).success


@pytest.mark.parametrize("name, value", [("output", "effort"), ("image_transport", "theora")])
def test_a_bad_output_or_image_transport_is_refused(make_graph, checkpoints, name, value):
    g = make_graph(SINGLE, sensors=False)
    with pytest.raises(ParameterError, match=f"{name} must be one of .*'{value}'"):
        PolicyNode(context=g.context, cli_args=g.args(), parameter_overrides=[Parameter(name, value=value)])
    policy = g.make_policy(checkpoints["single"])
    result = policy.set_parameters([Parameter(name, value=value)])[0]   # ros2 param set, before a configure
    assert not result.successful and value in result.reason
    assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS, policy.message   # with its old value
    assert policy.output_kind == "joint_trajectory" and policy.image_transport == "raw"


def test_cleanup_then_configure_again_applies_new_parameters(make_graph, checkpoints):
    g = make_graph(SINGLE)
    policy = g.make_policy(checkpoints["single"])
    assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert policy.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert g.listener.lifecycle_state() == State.PRIMARY_STATE_UNCONFIGURED
    assert wait_for(lambda: g.listener.count_publishers("/policy/joint_trajectory") == 0, 3), \
        "cleanup left the trajectory publisher behind"
    policy.set_parameters([Parameter("output", value="float64_multi_array")])
    assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert policy.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert g.listener.policy_command(PolicyCommand.Request.START).success
    assert wait_for(lambda: len(g.listener.arrays["arm"]) >= 3, 20), g.listener.explain()
    assert g.listener.count_publishers("/policy/commands") == 1
    assert not g.listener.trajectories["arm"]


# ---- (b) JointTrajectory anchored to the observation time -------------------------------------------
def test_trajectory_is_anchored_to_the_observation_and_drops_past_points(make_graph, checkpoints):
    delay = 0.25  # observations arrive 0.25 s old: the first two or three actions are already past
    g = make_graph(SINGLE, stamp_delay_s=delay)
    policy = g.start_policy(checkpoints["single"])
    lis = g.listener
    assert wait_for(lambda: len(lis.trajectories["arm"]) >= 5, 20), lis.explain()
    period = 1.0 / g.robot.control_rate_hz
    # Each trajectory's ActionChunk comes on a topic of its own: on a loaded machine it can arrive after it.
    stamps = [seconds(msg.header.stamp) for _, msg in lis.trajectories["arm"][:5]]
    assert wait_for(lambda: set(stamps) <= {seconds(c.header.stamp) for _, c in lis.chunks}, 20), \
        "no ActionChunk published for the observation of a trajectory"
    chunks = {seconds(c.header.stamp): (t, c) for t, c in lis.chunks}
    sent = set(round(s, 6) for s in g.sensors.stamps)
    for _, msg in lis.trajectories["arm"][:5]:
        stamp = seconds(msg.header.stamp)
        assert round(stamp, 6) in sent, "header.stamp is not an observation stamp"
        assert list(msg.joint_names) == list(g.robot.joint_names)
        _, chunk = chunks[stamp]  # the ActionChunk of the same observation
        tfs = np.array([seconds(p.time_from_start) for p in msg.points])
        steps = tfs / period
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)  # on the (i + 1) / rate grid
        first = int(round(steps[0])) - 1
        np.testing.assert_allclose(steps, np.arange(first + 1, chunk.num_steps + 1), atol=1e-6)
        assert first >= int(delay / period) - 1 >= 1, "actions already past were not dropped"
        # the first point kept is the first one after the chunk was ready; none in the past
        assert tfs[0] > chunk.inference_latency >= tfs[0] - period - 1e-6
        rows = np.array(chunk.positions).reshape(chunk.num_steps, -1)[first:]
        np.testing.assert_allclose([p.positions for p in msg.points], rows, atol=1e-9)
    # the stamps of successive trajectories follow the observations forward
    stamps = [seconds(m.header.stamp) for _, m in lis.trajectories["arm"]]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


# ---- (c) Float64MultiArray at the control rate -------------------------------------------------------
def test_float64_output_one_setpoint_per_control_period(make_graph, checkpoints):
    g = make_graph(SINGLE)
    g.start_policy(checkpoints["single"], output="float64_multi_array")
    lis = g.listener
    assert wait_for(lambda: len(lis.arrays["arm"]) >= 3, 20), lis.explain()
    first = len(lis.arrays["arm"])
    assert wait_for(lambda: len(lis.arrays["arm"]) >= first + 12, 30), lis.explain()
    window = lis.arrays["arm"][first:]
    # paced by the node's clock, never in bursts (how fast a loaded machine keeps up is the
    # benchmark's business, and the tick itself is tested on plain data in test_control_timing)
    rate = (len(window) - 1) / (window[-1][0] - window[0][0])
    assert rate <= 1.3 * g.robot.control_rate_hz, f"{rate:.1f} Hz: more than one setpoint per period"
    assert not lis.trajectories["arm"], "JointTrajectory published in float64_multi_array mode"
    assert all(len(msg.data) == len(g.robot.joint_names) for _, msg in window)

    def every_setpoint_is_a_computed_action():   # (the one due next); its ActionChunk may come later
        if not lis.chunks:
            return False
        rows = np.array([c.positions for _, c in lis.chunks]).reshape(-1, len(g.robot.joint_names))
        return all(np.min(np.abs(rows - np.array(msg.data)).max(axis=1)) < 1e-9 for _, msg in window)
    assert wait_for(every_setpoint_is_a_computed_action, 20), "a setpoint that is none of the computed actions"
    # the status counts one setpoint per message for a forward controller
    assert wait_for(lambda: lis.status and lis.status[-1].control_rate > 0, 3), lis.explain()
    assert lis.status[-1].control_rate == pytest.approx(lis.status[-1].trajectory_rate)


# ---- (d) CompressedImage input -----------------------------------------------------------------------
def test_compressed_image_input(make_graph, checkpoints):
    g = make_graph(SINGLE, compressed=True)
    policy = g.start_policy(checkpoints["single"], image_transport="compressed")
    lis = g.listener
    assert wait_for(lambda: len(lis.trajectories["arm"]) >= 3, 20), lis.explain()
    assert wait_for(lambda: lis.status and lis.status[-1].state == PolicyStatus.STATE_RUNNING, 3), lis.explain()
    assert not lis.status[-1].stale_inputs
    # the decoded image is the one sent (png: lossless), resized to nothing, in RGB order
    image = policy.inputs.sync._values["/camera/scene/image_raw/compressed"][-1]
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert image[0, :, 1].tolist() == list(range(96)) and not image[..., 0].any()


# ---- (e) bimanual: one policy, one trajectory per arm, through the safety filter ---------------------
def test_bimanual_policy_through_the_safety_filter(make_graph, checkpoints):
    from diffusion_policy_ros.nodes.safety_filter_node import SafetyFilterNode
    g = make_graph(BIMANUAL)
    safety = g.add(SafetyFilterNode(context=g.context, cli_args=g.args()))
    assert wait_for(lambda: safety.filter.ready("left") and safety.filter.ready("right"), 10)
    g.start_policy(checkpoints["bimanual"])
    lis = g.listener
    assert wait_for(lambda: all(len(lis.controller[a]) >= 3 for a in ("left", "right")), 30), lis.explain()
    for arm in g.robot.arms:   # the policy commands the arm's joints, the filter its controller's
        assert all(list(m.joint_names) == list(arm.joint_names) for _, m in lis.trajectories[arm.name])
        assert all(list(m.joint_names) == list(arm.controller_joint_names) for _, m in lis.controller[arm.name])
    # the policy's two trajectories of one chunk share the observation stamp
    left = {seconds(m.header.stamp) for _, m in lis.trajectories["left"]}
    right = {seconds(m.header.stamp) for _, m in lis.trajectories["right"]}
    assert len(left & right) >= 2
    # both arms move (forwarded), the untrained policy stays near home: nothing in its commands is
    # rejected. Rejects for timing are not about the commands: a chunk that reached the filter after
    # its last point, one the filter could not get to in time, sensor stamps lagging (this one
    # process, GIL and all, on a busy CPU)
    timing = ("past_trajectory", "late", "stale_joint_state")
    rejects = [(e.arm, e.reason, e.message) for e in lis.safety_events
               if e.action == SafetyEvent.ACTION_REJECT and e.reason not in timing]
    assert not rejects, f"safety filter rejected the policy's commands: {rejects}"
    at_home = dict(zip(g.robot.joint_names, home(g.robot)))
    for arm in g.robot.arms:
        q = np.array(lis.controller[arm.name][-1][1].points[0].positions)
        # actions are random within +-0.05 of home, chunk to chunk; the acceleration-limited path
        # following them may overshoot a little
        np.testing.assert_allclose(q, [at_home[n] for n in arm.controller_joint_names], atol=0.3)


# ---- (f) PolicyCommand and ActionChunk -----------------------------------------------------------------
def test_start_stop_reset_and_action_chunk_fields(make_graph, checkpoints):
    g = make_graph(SINGLE)
    policy = g.start_policy(checkpoints["single"], command=False, denoising_steps=[3, 1, 0])
    lis = g.listener
    # active but not started: half a second of observations comes in, nothing goes out
    assert wait_for(lambda: g.sensors.stamps, 5)
    assert lis.wait_observed(g.sensors.stamps[0] + 0.5), "the node reports no observations"
    assert not lis.trajectories["arm"] and not lis.chunks
    assert wait_for(lambda: lis.status and lis.status[-1].state == PolicyStatus.STATE_IDLE, 3), lis.explain()

    answer = lis.policy_command(PolicyCommand.Request.START)
    assert answer.success
    assert wait_for(lambda: len(lis.chunks) >= 4, 20), lis.explain()
    assert wait_for(lambda: lis.status[-1].state == PolicyStatus.STATE_RUNNING, 3), lis.explain()
    config = policy.policy.config
    chunks = [c for _, c in lis.chunks[:4]]
    # START primed the warm start from noise without sending it: every chunk sent is a refinement
    for c in chunks:
        assert c.warm_started and c.sampler == "streaming"
        assert list(c.denoising_steps) == config.stream_denoising_steps == [3, 1, 0]
        assert c.num_steps == config.n_action_steps
        assert len(c.positions) == c.num_steps * len(c.joint_names)
        assert abs(seconds(c.step_period) - 0.1) < 1e-9
        assert c.inference_latency >= c.observation_age >= 0 and c.denoise_time > 0 and c.encode_time > 0
    # each later one shifted by the control steps the one before it ran
    assert all(c.shift_steps >= 1 for c in chunks[1:])
    assert wait_for(lambda: lis.status[-1].nfe_per_action > 0, 3), lis.explain()

    answer = lis.policy_command(PolicyCommand.Request.STOP)
    assert answer.success and answer.state == PolicyStatus.STATE_IDLE
    stopped_at = g.sensors.stamps[-1]
    assert lis.wait_observed(stopped_at + 0.5)
    assert not lis.sent_after(stopped_at), "commands computed after STOP"
    assert lis.status[-1].state == PolicyStatus.STATE_IDLE

    assert lis.policy_command(PolicyCommand.Request.RESET).success
    reset_at = g.sensors.stamps[-1]
    assert lis.policy_command(PolicyCommand.Request.START).success
    assert wait_for(lambda: any(seconds(c.header.stamp) > reset_at for _, c in lis.chunks), 10)
    restarted = next(c for _, c in lis.chunks if seconds(c.header.stamp) > reset_at)
    # its warm start comes from an observation after the reset, not from before STOP
    warm_start_stamp = seconds(restarted.header.stamp) - restarted.shift_steps * 0.1
    assert restarted.warm_started and warm_start_stamp > stopped_at + 0.25, "RESET kept the warm start"
    assert not lis.policy_command(99).success

    assert policy.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    deactivated_at = g.sensors.stamps[-1]
    assert lis.wait_observed(deactivated_at + 0.5)
    assert not lis.sent_after(deactivated_at), "published after deactivate"


def test_start_needs_an_active_node_and_activate_again_resumes(make_graph, checkpoints):
    g = make_graph(SINGLE)
    policy = g.make_policy(checkpoints["single"])
    lis = g.listener
    assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS
    answer = lis.policy_command(PolicyCommand.Request.START)
    assert not answer.success and "not active" in answer.message
    assert policy.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert lis.policy_command(PolicyCommand.Request.START).success
    assert wait_for(lambda: len(lis.trajectories["arm"]) >= 2, 20), lis.explain()

    assert policy.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    deactivated_at = g.sensors.stamps[-1]
    assert lis.wait_observed(deactivated_at + 0.5)
    assert not lis.sent_after(deactivated_at)
    assert not lis.policy_command(PolicyCommand.Request.START).success   # inactive again
    assert policy.trigger_activate() == TransitionCallbackReturn.SUCCESS
    activated_at = g.sensors.stamps[-1]
    assert lis.wait_observed(activated_at + 0.3)
    assert not lis.sent_after(activated_at), "activate alone must not command (no START yet)"
    assert lis.policy_command(PolicyCommand.Request.START).success
    assert wait_for(lambda: len(lis.sent_after(activated_at)) >= 4, 20), lis.explain()
    assert wait_for(lambda: lis.status[-1].state == PolicyStatus.STATE_RUNNING, 3), lis.explain()


# ---- failures hold the robot ------------------------------------------------------------------------
@pytest.mark.parametrize("output", ["joint_trajectory", "float64_multi_array"])
def test_an_exception_during_inference_stops_the_commands(make_graph, checkpoints, output):
    g = make_graph(SINGLE)
    policy = g.start_policy(checkpoints["single"], output=output)
    lis = g.listener
    sent = lis.trajectories["arm"] if output == "joint_trajectory" else lis.arrays["arm"]
    assert wait_for(lambda: len(sent) >= 2, 20), lis.explain()

    def broken(*_):
        raise RuntimeError("injected fault")
    policy.policy.predict_action_chunk = broken
    assert wait_for(lambda: lis.status and lis.status[-1].state == PolicyStatus.STATE_ERROR, 10), lis.explain()
    assert lis.status[-1].message == "inference failed: injected fault"
    failed_at, n = g.sensors.stamps[-1], len(sent)
    assert lis.wait_observed(failed_at + 0.5)
    assert len(sent) <= n + 1, "commands kept going out after the inference failed"   # one in flight
    assert not lis.sent_after(failed_at)
    assert lis.status[-1].state == PolicyStatus.STATE_ERROR
    del policy.policy.predict_action_chunk              # the fault is gone: START again commands
    assert lis.policy_command(PolicyCommand.Request.START).success
    assert wait_for(lambda: lis.status[-1].state == PolicyStatus.STATE_RUNNING, 10), lis.explain()
    assert wait_for(lambda: len(sent) >= n + 3, 10)


def test_a_chunk_whose_actions_are_all_past_is_not_sent(make_graph, checkpoints):
    # observations arrive 0.95 s old (not stale: stale_after_s 2): all 8 actions (up to 0.8 s
    # after the observation) are past when the chunk is ready
    g = make_graph(SINGLE, stamp_delay_s=0.95)
    policy = g.start_policy(checkpoints["single"], stale_after_s=2.0)
    lis = g.listener
    assert wait_for(lambda: len(lis.chunks) >= 3, 20), lis.explain()
    assert wait_for(lambda: "all actions past" in lis.status[-1].message, 5), lis.status[-1].message
    assert "chunk late" in policy.message
    assert not lis.trajectories["arm"], "a trajectory of past points was sent"


# ---- stale inputs other than the camera ----------------------------------------------------------------
@pytest.mark.parametrize("config_file, checkpoint, muted", [
    (SINGLE, "single", "/tactile/finger_l"),
    (BIMANUAL, "bimanual", "/left/camera/wrist/depth/image_raw"),
])
def test_stale_tactile_or_depth_input_holds_and_is_named(make_graph, checkpoints, config_file, checkpoint, muted):
    g = make_graph(config_file)
    policy = g.start_policy(checkpoints[checkpoint])
    lis = g.listener
    first_arm = g.robot.arms[0].name
    assert wait_for(lambda: len(lis.trajectories[first_arm]) >= 2, 30), lis.explain()
    g.sensors.muted.add(muted)
    # (on a loaded machine the test's own sensors can lag for a moment: wait for the muted one alone)
    assert wait_for(lambda: lis.status and list(lis.status[-1].stale_inputs) == [muted], 10), lis.status[-1]
    assert lis.status[-1].state == PolicyStatus.STATE_HOLDING and muted in lis.status[-1].message
    # the window: the other inputs run on for half a second of stamps, the status keeps holding
    held, n = len(lis.status), len(lis.trajectories[first_arm])
    later = g.sensors.stamps[-1] + 0.5
    assert wait_for(lambda: g.sensors.stamps[-1] >= later and len(lis.status) >= held + 3, 10)
    assert all(s.state == PolicyStatus.STATE_HOLDING for s in lis.status[held:])
    assert len(lis.trajectories[first_arm]) == n, "commands went out with a stale input"


# ---- object poses (a state policy): a malformed pose is an input gone stale ---------------------------
@pytest.mark.parametrize("frame, quaternion", [
    ("camera_link", (0.0, 0.0, 0.0, 1.0)),      # another frame than the config's
    ("world", (0.0, 0.0, 0.0, 0.0)),            # a default-constructed orientation, not a rotation
    ("world", (0.0, 0.0, float("nan"), 1.0)),
])
def test_a_pose_in_another_frame_or_malformed_holds_and_is_named(make_graph, checkpoints, frame, quaternion):
    g = make_graph(STATE)
    g.start_policy(checkpoints["state"])
    lis = g.listener
    assert wait_for(lambda: len(lis.trajectories["arm"]) >= 2, 30), lis.explain()
    g.sensors.pose_frame, g.sensors.pose_quaternion = frame, quaternion   # both poses go bad at once
    assert wait_for(lambda: lis.status and sorted(lis.status[-1].stale_inputs) == ["/sim/object_pose",
                                                                                 "/sim/target_pose"], 10), \
        lis.explain()
    assert lis.status[-1].state == PolicyStatus.STATE_HOLDING
    held, n = len(lis.status), len(lis.trajectories["arm"])
    later = g.sensors.stamps[-1] + 0.5
    assert wait_for(lambda: g.sensors.stamps[-1] >= later and len(lis.status) >= held + 3, 10)
    assert all(s.state == PolicyStatus.STATE_HOLDING for s in lis.status[held:])
    assert len(lis.trajectories["arm"]) == n, "commands went out from a malformed pose"
    # a good pose again: the node acts again
    g.sensors.pose_frame, g.sensors.pose_quaternion = "world", (0.0, 0.0, 0.0, 1.0)
    assert wait_for(lambda: len(lis.trajectories["arm"]) > n, 30), lis.explain()
