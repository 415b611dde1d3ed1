"""A policy that observes object poses (config/single_arm_state.yaml) through the real node graph:
sim_node publishes the cube's and the target's PoseStamped because the policy node subscribes to
them, the policy's commands reach the sim through the safety filter, and the policy's status names
no stale input. The graph's processes are the ones `dpros up` and `ros2 launch` start."""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.qos import qos_profile_sensor_data
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.graph import build_graph
from diffusion_policy_ros.msg import PolicyStatus
from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.runtime.supervisor import manage_lifecycle, start_graph, stop_graph
from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint
from graph_test_node import sim_time_test_node
from waiting import wait_for

STATE = "config/single_arm_state.yaml"


def test_a_state_policy_acts_on_the_sims_poses_through_the_graph(tmp_path, ros_env, ros_domain_id):
    from diffusion_policy_ros.sim.env import SimEnv
    robot = load_robot_config(STATE)
    checkpoint = make_untrained_checkpoint(robot, str(tmp_path / "checkpoint"), SimEnv(robot, render=False).home)
    specs = build_graph("sim", STATE, {"policy_checkpoint": checkpoint, "policy_device": "cpu"})
    procs = start_graph(specs, env=ros_env, log_dir=str(tmp_path))
    try:
        with sim_time_test_node("state_graph_test", ros_domain_id) as node:
            seen = {"poses": [], "commands": [], "status": []}
            node.create_subscription(PoseStamped, "/sim/object_pose", seen["poses"].append, qos_profile_sensor_data)
            node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", seen["commands"].append, 10)
            node.create_subscription(PolicyStatus, "policy/status", seen["status"].append, 10)
            assert manage_lifecycle(["policy_node"], start=True) == "", f"lifecycle failed; logs in {tmp_path}"
            assert wait_for(lambda: len(seen["commands"]) >= 5, 90), f"no commands reached the sim; logs in {tmp_path}"
            assert wait_for(lambda: seen["status"] and seen["status"][-1].state == PolicyStatus.STATE_RUNNING, 30)
            assert list(seen["status"][-1].stale_inputs) == []
            assert wait_for(lambda: seen["poses"], 30), "no /sim/object_pose reached this test's node"
            pose = seen["poses"][-1]
            assert pose.header.frame_id == "world"
            # the cube lies on the table inside the task's workspace
            position = np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])
            assert 0.25 < position[0] < 0.55 and abs(position[1]) < 0.2 and 0.0 < position[2] < 0.1
    finally:
        stop_graph(procs)
