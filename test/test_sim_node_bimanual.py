"""The bimanual sim_node: one namespace per arm, prefixed joints, wrist cameras with depth."""
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("diffusion_policy_ros.msg")

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from diffusion_policy_ros.msg import TactileArray  # noqa: E402
from diffusion_policy_ros.nodes.sim_node import SimNode  # noqa: E402
from diffusion_policy_ros.runtime.spin_thread import SpinThread  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS = ["--ros-args", "--params-file", os.path.join(ROOT, "config", "bimanual.yaml")]


def test_each_arm_has_its_own_namespace_and_controller(rclpy_context):
    sim = SimNode(context=rclpy_context, cli_args=PARAMS)
    probe = rclpy.create_node("bimanual_probe", context=rclpy_context)
    got = {k: [] for k in ["left", "right", "lwrist", "ldepth", "rtactile"]}
    probe.create_subscription(JointState, "/left/joint_states", got["left"].append, 50)
    probe.create_subscription(JointState, "/right/joint_states", got["right"].append, 50)
    probe.create_subscription(Image, "/left/camera/wrist/image_raw", got["lwrist"].append, 10)
    probe.create_subscription(Image, "/left/camera/wrist/depth/image_raw", got["ldepth"].append, 10)
    probe.create_subscription(TactileArray, "/right/tactile/finger_l", got["rtactile"].append, 50)
    forward = probe.create_publisher(Float64MultiArray, "/right/forward_position_controller/commands", 10)
    executor = MultiThreadedExecutor(num_threads=2, context=rclpy_context)
    executor.add_node(sim)
    executor.add_node(probe)
    spinner = SpinThread(executor).start()
    try:
        end = time.monotonic() + 15
        while time.monotonic() < end and not (all(got.values()) and len(got["left"]) > 20):
            time.sleep(0.05)
        assert all(got.values()), {k: len(v) for k, v in got.items()}
        assert got["left"][-1].name == [f"left_joint_{i}" for i in range(1, 7)] + ["left_gripper"]
        assert got["right"][-1].name == [f"right_joint_{i}" for i in range(1, 7)] + ["right_gripper"]
        img, depth = got["lwrist"][-1], got["ldepth"][-1]
        assert (img.encoding, img.width, img.height) == ("rgb8", 64, 64)
        assert img.header.frame_id == "left_wrist_camera_optical_frame"
        assert (depth.encoding, depth.width, depth.height) == ("32FC1", 64, 64)
        assert got["rtactile"][-1].sensor_name == "right_finger_l"
        left0, right0 = np.array(got["left"][-1].position), np.array(got["right"][-1].position)
        target = right0.copy()
        target[0] += 0.2
        forward.publish(Float64MultiArray(data=target[:6].tolist()))  # arm joints; grippers have their JTCs
        t0 = got["right"][-1].header.stamp.sec + got["right"][-1].header.stamp.nanosec * 1e-9
        end = time.monotonic() + 15
        while time.monotonic() < end:
            last = got["right"][-1]
            if last.header.stamp.sec + last.header.stamp.nanosec * 1e-9 > t0 + 1.5:
                break
            time.sleep(0.05)
        np.testing.assert_allclose(got["right"][-1].position, target, atol=0.01)
        np.testing.assert_allclose(got["left"][-1].position, left0, atol=0.01)   # the other arm holds
    finally:
        spinner.stop()
        sim.shutdown()
        sim.destroy_node()
        probe.destroy_node()
