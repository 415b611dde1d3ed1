"""sim_node: the embedded MuJoCo robot behind the topics a real robot and its drivers publish.

    python -m diffusion_policy_ros.nodes.sim_node --ros-args --params-file config/single_arm.yaml

Publishes (names from the config): per arm JointState on `joint_states_topic`; per camera
`<topic>/image_raw` (rgb8), `<topic>/depth/image_raw` (32FC1 metres, cameras with depth on) and
`<topic>/camera_info`; per fingertip TactileArray; `/clock`; `/sim/task_status` (TaskStatus, at the
control rate); the true cube pose `/sim/object_pose` and target `/sim/target_pose` (PoseStamped,
frame `world`, at the control rate; the scripted expert teleop reads them).
Accepts per arm what its ros2_control controllers would (sim/controllers.py): JointTrajectory on
`controller_topic` (the arm's joint_trajectory_controller over `controller_joint_names`, with the
JTC's acceptance checks), Float64MultiArray on `forward_topic` (forward position controller), and
the gripper per `gripper_controller`: JointTrajectory or Float64MultiArray on `gripper_topic`, or
control_msgs/GripperCommand goals to the action `gripper_topic`.
Service `/sim/reset` (ResetEpisode) re-randomizes the task from a seed. Parameter `task_variant`
(static | displaced | drifting | displaced_drifting, sim/perturbations.py) makes the cube or the
target move during each episode, drawn from the episode's seed; each move is logged.

Clock: stamps are `start wall time + simulated seconds`, so with real_time_factor 1 they track
the wall clock, and with real_time_factor 0 (as fast as possible) or any other factor nodes
should run with use_sim_time and follow `/clock`. The clock never jumps back, not even on reset.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.msg import TactileArray, TaskStatus
from diffusion_policy_ros.node_parameters import SIM_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import responsive_threads
from diffusion_policy_ros.nodes._ros_convert import jtc_message
from diffusion_policy_ros.nodes._sim_actions import SimGripperAction, SimTrajectoryAction
from diffusion_policy_ros.srv import ResetEpisode
from diffusion_policy_ros.sim.controllers import SimArmControllers
from diffusion_policy_ros.sim.env import SimEnv
from diffusion_policy_ros.sim.trajectory import TrajectoryRejected


def to_time(seconds: float) -> Time:
    sec = math.floor(seconds)
    return Time(sec=sec, nanosec=min(round((seconds - sec) * 1e9), 999_999_999))


def image_msg(array: np.ndarray, encoding: str, frame_id: str, stamp: Time) -> Image:
    msg = Image(header=Header(stamp=stamp, frame_id=frame_id), height=array.shape[0],
                width=array.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


PACING_BATCH_S = 0.005


class SimNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_node", **PARAMETER_OPTIONS, **kwargs)
        declared = declare_node_parameters(self, SIM_NODE)
        self.config = declared.robot
        self.physics_rate = declared["physics_rate_hz"]
        self.publish_rate = declared["publish_rate_hz"]
        self.joint_rate = declared["joint_state_rate_hz"]
        self.rtf = declared["real_time_factor"]
        self.seed = declared["seed"]
        self.task_variant = declared["task_variant"]
        responsive_threads()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._interfaces_ready = threading.Event()
        self._error: BaseException | None = None
        self.clock_offset = time.time()
        self.sim_seconds = 0.0          # total simulated time, never reset
        self.achieved_rtf = 0.0
        # The GL contexts must live on the thread that renders: build the sim there.
        self._thread = threading.Thread(target=self._run, name="sim_loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        self._make_interfaces()
        self._interfaces_ready.set()
        self.get_logger().info(
            f"sim {self.config.robot}/{self.env.task.name} ({self.env.variant}): physics {self.physics_rate:g} Hz, "
            f"cameras {[c.name for c in self.env.cameras]} at {self.publish_rate:g} Hz, real_time_factor {self.rtf:g}")

    # --- ROS interfaces ----------------------------------------------------------------------
    def _make_interfaces(self):
        sensor_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.joint_pubs = {a.name: self.create_publisher(JointState, a.joint_states_topic, sensor_qos)
                           for a in self.config.arms}
        self.cam_pubs = {}
        for cam in self.env.cameras:
            self.cam_pubs[cam.name] = (
                self.create_publisher(Image, cam.rgb_topic, sensor_qos),
                self.create_publisher(Image, cam.depth_topic, sensor_qos) if cam.depth else None,
                self.create_publisher(CameraInfo, cam.info_topic, sensor_qos))
        self.tactile_pubs = {t.name: self.create_publisher(TactileArray, t.topic, sensor_qos)
                             for t in self.config.tactile_sensors}
        self._camera_infos: dict[str, CameraInfo] = {}
        self.status_pub = self.create_publisher(TaskStatus, "/sim/task_status", 10)
        self.object_pub = self.create_publisher(PoseStamped, "/sim/object_pose", 10)
        self.target_pub = self.create_publisher(PoseStamped, "/sim/target_pose", 10)
        self.actions = {}   # "<arm>/<action>" -> its server (goal counts for tests and logs)
        for arm in self.config.arms:
            self.create_subscription(JointTrajectory, arm.controller_topic,
                                     lambda msg, a=arm.name: self._on_trajectory(a, "arm", msg), 10)
            self.create_subscription(Float64MultiArray, arm.forward_topic,
                                     lambda msg, a=arm.name: self._on_forward(a, "arm", msg), 10)
            if arm.gripper_controller == "joint_trajectory":
                self.create_subscription(JointTrajectory, arm.gripper_topic,
                                         lambda msg, a=arm.name: self._on_trajectory(a, "gripper", msg), 10)
            elif arm.gripper_controller == "forward_position":
                self.create_subscription(Float64MultiArray, arm.gripper_topic,
                                         lambda msg, a=arm.name: self._on_forward(a, "gripper", msg), 10)
            elif arm.gripper_controller == "gripper_action":
                self.actions[f"{arm.name}/gripper_command"] = SimGripperAction(self, arm, self.controllers[arm.name])
            if _have_control_msgs():  # FollowJointTrajectory beside the topic, as the JTC serves it
                self.actions[f"{arm.name}/follow_joint_trajectory"] = SimTrajectoryAction(
                    self, arm, self.controllers[arm.name])
        self.create_service(ResetEpisode, "/sim/reset", self._on_reset)

    def now(self) -> float:
        """The sim clock in seconds (what stamps and trajectory times refer to)."""
        return self.clock_offset + self.sim_seconds

    def _on_trajectory(self, arm: str, controller: str, msg: JointTrajectory):
        has_vel = bool(msg.points) and all(len(p.velocities) for p in msg.points)
        velocities = [list(p.velocities) for p in msg.points] if has_vel else None
        with self._lock:
            try:
                kept = self.controllers[arm].trajectory(controller, self.now(), jtc_message(msg), velocities)
            except (TrajectoryRejected, ValueError) as e:
                self.rejected_trajectories += 1
                self.get_logger().error(f"{arm} {controller} controller: trajectory rejected, holding position: {e}")
                return
        if kept < len(msg.points):
            self.get_logger().debug(f"{arm}: dropped {len(msg.points) - kept} points already in the past")

    def _on_forward(self, arm: str, controller: str, msg: Float64MultiArray):
        with self._lock:
            try:
                self.controllers[arm].forward(controller, list(msg.data))
            except TrajectoryRejected as e:
                self.get_logger().error(f"{arm} {controller} controller: command ignored, holding position: {e}")

    def _on_reset(self, request, response):
        with self._lock:
            try:
                self.env.reset(int(request.seed), observe=False)   # renders only on the sim thread
                self._events_logged = 0
            except Exception as e:  # noqa: BLE001 - report any scene failure to the caller
                response.success, response.message = False, f"reset failed: {e}"
                return response
            self._hold_current()
        response.success = True
        response.message = f"episode {self.env.episode} of {self.env.task.name}, seed {request.seed}"
        return response

    # --- simulation thread -------------------------------------------------------------------
    def _run(self):
        try:
            self.env = SimEnv(self.config, physics_rate_hz=self.physics_rate, variant=self.task_variant)
            self.env.reset(self.seed, observe=False)
            self.controllers = {}
            lo, hi = self.env.robot.position_limits()
            for arm, cols in self.config.arm_slices():
                self.controllers[arm.name] = SimArmControllers(arm, lo[cols], hi[cols])
            self._hold_current()
            self.rejected_trajectories = 0
            self._events_logged = 0
        except BaseException as e:  # noqa: BLE001 - re-raised in __init__
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001
            if self.context.ok() and not self._stop.is_set():   # not just Ctrl-C tearing ROS down
                self._error = e
                self.get_logger().fatal(f"sim loop stopped: {e!r}")
        finally:
            self.env.close()

    def _hold_current(self):
        q = self.env.joint_positions()
        for arm, cols in self.config.arm_slices():
            self.controllers[arm.name].hold(q[cols])

    def _loop(self):
        while not self._interfaces_ready.wait(0.05):
            if self._stop.is_set():
                return
        dt = self.env.model.opt.timestep
        every_joint = max(1, int(round(1.0 / (self.joint_rate * dt))))
        every_frame = max(1, int(round(1.0 / (self.publish_rate * dt))))
        every_control = max(1, int(round(1.0 / (self.config.control_rate_hz * dt))))
        step = 0
        wall_start, sim_start = time.perf_counter(), self.sim_seconds
        report_wall, report_sim = wall_start, sim_start
        while not self._stop.is_set() and self.context.ok():
            with self._lock:
                now = self.now()
                targets, rates = [], []
                for arm in self.config.arms:
                    q, qd = self.controllers[arm.name].sample(now)
                    targets.append(q)
                    rates.append(qd)
                self.env.step_physics(np.concatenate(targets), np.concatenate(rates))
                self.sim_seconds += dt
                step += 1
                stamp = to_time(self.now())
                if step % every_joint == 0:
                    self._publish_joints(stamp)
                if step % every_control == 0:
                    self._publish_task(stamp)
                if step % every_frame == 0:
                    self._publish_cameras(stamp)
            if self.rtf > 0:
                ahead = (self.sim_seconds - sim_start) / self.rtf - (time.perf_counter() - wall_start)
                # Sleep in batches of a few physics steps, not after each: every wake-up must win
                # the GIL back from the executor threads, which can take a switch interval (5 ms).
                if ahead > PACING_BATCH_S:
                    time.sleep(ahead)
                elif ahead < -0.5:
                    # Too slow to keep up: run at the speed we have instead of bursting later.
                    wall_start, sim_start = time.perf_counter(), self.sim_seconds
            wall = time.perf_counter()
            if wall - report_wall >= 2.0:
                self.achieved_rtf = (self.sim_seconds - report_sim) / (wall - report_wall)
                report_wall, report_sim = wall, self.sim_seconds

    # Publishing runs on the physics thread, 100 times a sim second: a stream nobody subscribes to
    # (tactile, depth, camera info, poses, often a whole camera) is neither read, rendered nor sent.
    # The CPU it saves is the policy's on a small machine; a subscriber that comes later gets it.
    def _publish_joints(self, stamp):
        self.clock_pub.publish(Clock(clock=stamp))
        q, v, e = self.env.joint_positions(), self.env.joint_velocities(), self.env.joint_efforts()
        for arm, cols in self.config.arm_slices():
            self.joint_pubs[arm.name].publish(JointState(
                header=Header(stamp=stamp), name=list(arm.joint_names), position=q[cols].tolist(),
                velocity=v[cols].tolist(), effort=e[cols].tolist()))
        for sensor in self.config.tactile_sensors:
            if _subscribed(self.tactile_pubs[sensor.name]):
                grid = self.env.read_tactile(sensor.name)
                self.tactile_pubs[sensor.name].publish(TactileArray(
                    header=Header(stamp=stamp, frame_id=sensor.frame_id), sensor_name=sensor.name,
                    rows=sensor.rows, cols=sensor.cols, normal_force=grid.reshape(-1).tolist()))

    def _publish_task(self, stamp):
        events = self.env.world.events
        for event in events[self._events_logged:]:
            self.get_logger().info(f"episode {self.env.episode}: {event}")
        self._events_logged = len(events)
        # The poses go out before the status that announces their tick.
        if _subscribed(self.object_pub):
            pos, quat = self.env.object_pose()
            self.object_pub.publish(_pose(stamp, pos, quat))
        if _subscribed(self.target_pub):
            self.target_pub.publish(_pose(stamp, self.env.target_position(), [1.0, 0, 0, 0]))
        self.status_pub.publish(TaskStatus(
            header=Header(stamp=stamp), task=self.env.task.name, seed=self.env.seed,
            episode=self.env.episode, episode_time=self.env.time, success=self.env.success()))

    def _publish_cameras(self, stamp):
        for cam in self.env.cameras:
            rgb_pub, depth_pub, info_pub = self.cam_pubs[cam.name]
            want_depth = depth_pub is not None and _subscribed(depth_pub)
            if _subscribed(rgb_pub) or want_depth:
                rgb, depth = self.env.render(cam.name)
                if _subscribed(rgb_pub):
                    rgb_pub.publish(image_msg(rgb, "rgb8", cam.frame_id, stamp))
                if want_depth and depth is not None:
                    depth_pub.publish(image_msg(depth, "32FC1", cam.frame_id, stamp))
            if _subscribed(info_pub):
                info_pub.publish(self._camera_info(cam, stamp))

    def _camera_info(self, cam, stamp) -> CameraInfo:
        """The camera's fixed intrinsics, built once, with this frame's stamp."""
        if cam.name not in self._camera_infos:
            k = self.env.renderers[cam.name].intrinsics(self.env.model)
            p = np.hstack([k, np.zeros((3, 1))])
            self._camera_infos[cam.name] = CameraInfo(
                header=Header(frame_id=cam.frame_id), height=cam.height, width=cam.width,
                distortion_model="plumb_bob", d=[0.0] * 5, k=k.reshape(-1).tolist(),
                r=np.eye(3).reshape(-1).tolist(), p=p.reshape(-1).tolist())
        info = self._camera_infos[cam.name]
        info.header.stamp = stamp
        return info

    def shutdown(self):
        self._stop.set()
        self._thread.join(timeout=5.0)


def _subscribed(publisher) -> bool:
    return publisher.get_subscription_count() > 0


def _have_control_msgs() -> bool:
    try:
        import control_msgs.action  # noqa: F401
    except ImportError:
        return False
    return True


def _pose(stamp, pos, quat) -> PoseStamped:
    msg = PoseStamped(header=Header(stamp=stamp, frame_id="world"))
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pos)
    msg.pose.orientation.w, msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z = (
        float(v) for v in quat)
    return msg


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        node = SimNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
