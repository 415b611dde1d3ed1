"""sim_node and expert_teleop_node as real rclpy nodes, talked to over real topics."""
import os
import threading

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("diffusion_policy_ros.msg")

from builtin_interfaces.msg import Duration, Time  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from diffusion_policy_ros.msg import TactileArray, TaskStatus  # noqa: E402
from diffusion_policy_ros.nodes.expert_teleop_node import ExpertTeleopNode  # noqa: E402
from diffusion_policy_ros.nodes.sim_node import SimNode  # noqa: E402
from diffusion_policy_ros.runtime.spin_thread import SpinThread  # noqa: E402
from diffusion_policy_ros.srv import ResetEpisode  # noqa: E402
from waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS = ["--ros-args", "--params-file", os.path.join(ROOT, "config", "single_arm.yaml")]
JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
ARM_TOL_RAD = 0.03       # tracking tolerance at a trajectory point's time
GRIPPER_TOL_M = 0.005
HOLD_TOL = 0.01          # after the trajectory has ended


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class Probe:
    """A test node that records every message of the sim's topics."""

    TOPICS = [(JointState, "/joint_states"), (Image, "/camera/scene/image_raw"),
              (Image, "/camera/scene/depth/image_raw"), (CameraInfo, "/camera/scene/camera_info"),
              (TactileArray, "/tactile/finger_l"), (TactileArray, "/tactile/finger_r"),
              (Clock, "/clock"), (TaskStatus, "/sim/task_status"), (PoseStamped, "/sim/object_pose")]

    def __init__(self, context):
        self.node = rclpy.create_node("sim_test_probe", context=context)
        self.lock = threading.Lock()
        self.msgs = {topic: [] for _, topic in self.TOPICS}
        for kind, topic in self.TOPICS:
            self.node.create_subscription(kind, topic, lambda m, t=topic: self._store(t, m), 50)
        # single_arm.yaml: a JTC over the six arm joints and one over the gripper (as a robot has)
        self.traj = self.node.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", 10)
        self.gripper = self.node.create_publisher(JointTrajectory, "/gripper_controller/joint_trajectory", 10)
        self.forward = self.node.create_publisher(Float64MultiArray, "/forward_position_controller/commands", 10)
        self.reset = self.node.create_client(ResetEpisode, "/sim/reset")

    def _store(self, topic, msg):
        with self.lock:
            self.msgs[topic].append(msg)

    def take(self, topic):
        with self.lock:
            return list(self.msgs[topic])

    def clear(self):
        with self.lock:
            for v in self.msgs.values():
                v.clear()

    def wait_for(self, predicate, timeout=15.0):
        return wait_for(predicate, timeout)

    def latest_joints(self):
        assert self.wait_for(lambda: self.take("/joint_states")), "no joint states"
        msg = self.take("/joint_states")[-1]
        return stamp_s(msg.header.stamp), np.array(msg.position)

    def sim_time_reaches(self, t, timeout=15.0):
        return self.wait_for(lambda: (js := self.take("/joint_states")) and stamp_s(js[-1].header.stamp) >= t,
                             timeout)

    def call_reset(self, seed):
        assert self.reset.wait_for_service(timeout_sec=5.0)
        future = self.reset.call_async(ResetEpisode.Request(seed=seed))
        assert self.wait_for(future.done, 10.0)
        return future.result()


@pytest.fixture(scope="module")
def graph(rclpy_context):
    sim = SimNode(context=rclpy_context, cli_args=PARAMS, parameter_overrides=[
        Parameter("camera.scene.depth", value=True), Parameter("real_time_factor", value=1.0)])
    probe = Probe(rclpy_context)
    executor = MultiThreadedExecutor(num_threads=3, context=rclpy_context)
    executor.add_node(sim)
    executor.add_node(probe.node)
    spinner = SpinThread(executor).start()
    assert probe.wait_for(lambda: len(probe.take("/joint_states")) > 5), "sim_node publishes nothing"
    retired = []   # nodes a test took off the executor: destroyed once it no longer spins (rclpy#1284)
    yield sim, probe, executor, retired
    spinner.stop()
    sim.shutdown()
    for node in (sim, probe.node, *retired):
        node.destroy_node()


def test_sensor_topics_have_right_encodings_shapes_frames_and_increasing_stamps(graph):
    sim, probe, *_ = graph
    probe.clear()
    t0, _ = probe.latest_joints()
    assert probe.sim_time_reaches(t0 + 1.0)
    joints = probe.take("/joint_states")
    rgb = probe.take("/camera/scene/image_raw")
    depth = probe.take("/camera/scene/depth/image_raw")
    info = probe.take("/camera/scene/camera_info")
    tactile = probe.take("/tactile/finger_l")
    assert len(joints) >= 50 and len(rgb) >= 15 and len(depth) >= 15 and len(info) >= 15 and len(tactile) >= 50
    assert joints[-1].name == JOINTS and len(joints[-1].position) == len(joints[-1].velocity) == 7
    assert len(joints[-1].effort) == 7
    for img in rgb:
        assert (img.encoding, img.height, img.width, img.step) == ("rgb8", 96, 96, 96 * 3)
        assert len(img.data) == 96 * 96 * 3 and img.header.frame_id == "scene_camera_optical_frame"
    for img in depth:
        assert (img.encoding, img.height, img.width, img.step) == ("32FC1", 96, 96, 96 * 4)
        d = np.frombuffer(bytes(img.data), dtype=np.float32)
        assert d.size == 96 * 96 and 0.0 < d.min() and d.max() <= 2.0
        assert img.header.frame_id == "scene_camera_optical_frame"
    assert info[-1].k[0] > 0 and (info[-1].width, info[-1].height) == (96, 96)
    assert info[-1].header.frame_id == "scene_camera_optical_frame"
    t = tactile[-1]
    assert (t.rows, t.cols, len(t.normal_force), t.sensor_name) == (4, 4, 16, "finger_l")
    assert t.header.frame_id == "finger_l_tactile_frame"
    for topic in ["/joint_states", "/camera/scene/image_raw", "/camera/scene/depth/image_raw",
                  "/tactile/finger_l", "/clock", "/sim/task_status"]:
        msgs = probe.take(topic)
        stamps = [stamp_s(m.clock if topic == "/clock" else m.header.stamp) for m in msgs]
        assert len(stamps) > 5 and np.all(np.diff(stamps) > 0), f"{topic} stamps not strictly increasing"


def _trajectory(start: float, times, positions, joints=JOINTS[:6]):
    msg = JointTrajectory(joint_names=joints)
    sec = int(start)
    msg.header.stamp = Time(sec=sec, nanosec=int((start - sec) * 1e9))
    for t, q in zip(times, positions):
        msg.points.append(JointTrajectoryPoint(
            positions=[float(v) for v in q], time_from_start=Duration(sec=int(t), nanosec=int((t % 1) * 1e9))))
    return msg


def _position_at(msgs, t):
    best = min(msgs, key=lambda m: abs(stamp_s(m.header.stamp) - t))
    assert abs(stamp_s(best.header.stamp) - t) < 0.011
    return np.array(best.position)


def test_joint_trajectory_reaches_targets_at_their_times(graph):
    sim, probe, *_ = graph
    t_now, q0 = probe.latest_joints()
    delta = np.array([0.3, 0.1, -0.2, 0.3, -0.2, 0.5, 0.0])
    p1 = q0 + delta
    p1[6] = 0.05
    p2 = q0 + 2 * delta
    p2[6] = 0.03
    start = t_now + 0.3
    times = [0.8, 1.6]
    probe.clear()
    probe.traj.publish(_trajectory(start, times, [p1[:6], p2[:6]]))
    probe.gripper.publish(_trajectory(start, times, [p1[6:], p2[6:]], joints=JOINTS[6:]))
    assert probe.sim_time_reaches(start + 2.4)
    msgs = probe.take("/joint_states")
    tol = np.array([ARM_TOL_RAD] * 6 + [GRIPPER_TOL_M])
    for t, target in zip(times, [p1, p2]):
        err = np.abs(_position_at(msgs, start + t) - target)
        assert np.all(err < tol), f"at {t} s: error {np.round(err, 4)}"
    final = np.abs(np.array(msgs[-1].position) - p2)
    assert np.all(final < HOLD_TOL), f"not holding the last point: {np.round(final, 4)}"


def test_trajectory_stamped_in_the_past_is_rejected(graph):
    sim, probe, *_ = graph
    t_now, q0 = probe.latest_joints()
    rejected = sim.rejected_trajectories
    probe.traj.publish(_trajectory(t_now - 5.0, [1.0, 2.0], [q0[:6] + 0.2, q0[:6] + 0.3]))
    assert probe.wait_for(lambda: sim.rejected_trajectories == rejected + 1, 5.0)
    # the arm JTC has six joints: all seven on its topic are rejected, as the real one does
    probe.traj.publish(_trajectory(t_now + 0.5, [1.0], [q0 + 0.2], joints=JOINTS))
    assert probe.wait_for(lambda: sim.rejected_trajectories == rejected + 2, 5.0)
    assert probe.sim_time_reaches(t_now + 1.0)
    _, q1 = probe.latest_joints()
    np.testing.assert_allclose(q1, q0, atol=HOLD_TOL)


def test_forward_position_command_moves_and_holds(graph):
    sim, probe, *_ = graph
    t_now, q0 = probe.latest_joints()
    target = q0.copy()
    target[0] -= 0.2
    probe.forward.publish(Float64MultiArray(data=target[:6].tolist()))  # the arm joints: the gripper has its JTC
    assert probe.sim_time_reaches(t_now + 1.5)
    _, q1 = probe.latest_joints()
    np.testing.assert_allclose(q1, target, atol=HOLD_TOL)


def test_reset_then_expert_teleop_solves_the_task_and_tactile_tracks_contact(graph, rclpy_context):
    sim, probe, executor, retired = graph
    result = probe.call_reset(5)
    assert result.success, result.message
    expert = ExpertTeleopNode(context=rclpy_context, cli_args=PARAMS,
                              parameter_overrides=[Parameter("output", value="controller")])
    executor.add_node(expert)
    try:
        probe.clear()
        ok = probe.wait_for(lambda: any(s.success and s.seed == 5 for s in probe.take("/sim/task_status")), 20.0)
        assert probe.sim_time_reaches(stamp_s(probe.take("/joint_states")[-1].header.stamp) + 0.5)
    finally:
        executor.remove_node(expert)
        retired.append(expert)
    assert ok, "expert teleop did not solve pick_place through sim_node"
    statuses = probe.take("/sim/task_status")
    assert statuses[0].episode_time < 1.0 and statuses[0].seed == 5
    force = {stamp_s(m.header.stamp): sum(m.normal_force) for m in probe.take("/tactile/finger_l")}
    cube_z = {stamp_s(m.header.stamp): m.pose.position.z for m in probe.take("/sim/object_pose")}
    episode = {stamp_s(s.header.stamp): (s.episode_time, s.success) for s in statuses}
    lifted = [force[t] for t, z in cube_z.items() if z > 0.05 and t in force]
    approach = [force[t] for t, (et, _) in episode.items() if et < 1.5 and t in force]
    released = [force[t] for t, (_, success) in episode.items() if success and t in force]
    assert len(lifted) >= 5 and min(lifted) > 0.1, "no tactile force while the cube is carried"
    assert approach and max(approach) == 0.0, "tactile force before anything was touched"
    assert released and max(released) == 0.0, "tactile force after the cube was let go"
