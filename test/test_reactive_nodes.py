"""The reactive task through ROS: sim_node with `task_variant: displaced` moves the cube during the
episode as the seed says, and expert_teleop_node in `continuous` mode follows it and places it."""
import os
import threading

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("diffusion_policy_ros.msg")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from diffusion_policy_ros.msg import TaskStatus  # noqa: E402
from diffusion_policy_ros.nodes.expert_teleop_node import ExpertTeleopNode  # noqa: E402
from diffusion_policy_ros.nodes.sim_node import SimNode  # noqa: E402
from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.runtime.spin_thread import SpinThread  # noqa: E402
from diffusion_policy_ros.sim.env import SimEnv  # noqa: E402
from diffusion_policy_ros.sim.scene_builder import CUBE_HALF  # noqa: E402
from diffusion_policy_ros.srv import ResetEpisode  # noqa: E402
from waiting import wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "config", "single_arm_reactive.yaml")
PARAMS = ["--ros-args", "--params-file", CONFIG]
SEED = 104


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def expected_displacement():
    """Where and when SimEnv (no ROS) moves the cube in episode SEED of the displaced variant."""
    with SimEnv(load_robot_config(CONFIG), render=False, variant="displaced") as env:
        env.reset(SEED, observe=False)
        hold = env.joint_positions()
        while not env.world.events:
            env.step(hold, observe=False)
        return env.world.events[0]


def test_sim_node_displaces_the_cube_and_the_continuous_expert_follows_it(rclpy_context):
    assert load_robot_config(CONFIG).node_params("sim_node")["task_variant"] == "displaced"
    expected = expected_displacement()
    sim = SimNode(context=rclpy_context, cli_args=PARAMS, parameter_overrides=[Parameter("seed", value=SEED)])
    probe = rclpy.create_node("reactive_probe", context=rclpy_context)
    lock, poses, statuses = threading.Lock(), [], []

    def keep(store):
        def callback(msg):
            with lock:
                store.append(msg)
        return callback

    probe.create_subscription(PoseStamped, "/sim/object_pose", keep(poses), 50)
    probe.create_subscription(TaskStatus, "/sim/task_status", keep(statuses), 50)
    reset = probe.create_client(ResetEpisode, "/sim/reset")
    executor = MultiThreadedExecutor(num_threads=3, context=rclpy_context)
    for node in (sim, probe):
        executor.add_node(node)
    spinner = SpinThread(executor).start()
    expert = None
    try:
        assert reset.wait_for_service(timeout_sec=10.0)
        assert wait_for(lambda: statuses, 30.0), "sim_node publishes no task status"
        with lock:
            episode = max(s.episode for s in statuses)   # the reset starts the next one
        future = reset.call_async(ResetEpisode.Request(seed=SEED))
        assert wait_for(future.done, 10.0) and future.result().success
        expert = ExpertTeleopNode(context=rclpy_context, cli_args=PARAMS,
                                  parameter_overrides=[Parameter("output", value="controller")])
        assert expert.expert_mode == "continuous"
        executor.add_node(expert)

        def solved():
            with lock:
                return any(s.success and s.seed == SEED and s.episode > episode for s in statuses)
        if not wait_for(solved, 90.0):
            with lock:
                last, cube = statuses[-1], poses[-1].pose.position
            pytest.fail(f"the continuous expert did not place the displaced cube through sim_node: episode "
                        f"{last.episode} at {last.episode_time:.2f} s, cube at ({cube.x:.3f}, {cube.y:.3f}, "
                        f"{cube.z:.3f}), sim events {sim.env.world.events}, real-time factor {sim.achieved_rtf:.2f}")
    finally:
        spinner.stop()   # before any node is destroyed: destroyed while it spins, its thread can die (rclpy#1284)
        sim.shutdown()
        for node in (sim, probe, expert):
            if node is not None:
                node.destroy_node()
    with lock:
        start = min(stamp_s(s.header.stamp) for s in statuses if s.episode > episode)
        end = min(stamp_s(s.header.stamp) for s in statuses if s.episode > episode and s.success)
        xyz = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in poses
                        if start <= stamp_s(p.header.stamp) <= end])
    # Only steps with the cube resting on the table: a carried cube covers several centimetres
    # between two poses whenever a loaded machine drops a tick's messages.
    resting = xyz[:, 2] < CUBE_HALF + 0.005
    jumps = np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1)
    displaced = np.flatnonzero((jumps > 0.03) & resting[:-1] & resting[1:])
    assert len(displaced) == 1, (f"the resting cube jumped {len(displaced)} times (expected once): "
                                 f"{[(round(float(jumps[i]), 3), xyz[i].round(3).tolist()) for i in displaced]}, "
                                 f"sim events {sim.env.world.events}")
    np.testing.assert_allclose(xyz[displaced[0] + 1, :2], expected["to"], atol=2e-3)   # as without ROS
