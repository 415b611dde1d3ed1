"""sim_node, policy_node and safety_filter_node as real processes on real topics: the policy's
trajectories (one action per control period) flow through the safety filter into the sim and the
arm moves; when the camera stops, the policy names it as stale, commands stop and the arm holds
(the last test of the module: it unplugs the camera). How many commands per second a machine keeps
up with is measured by `dpros bench graph`, not asserted here: under load the rate says more about
the machine than about the graph."""
from __future__ import annotations


import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.runtime.supervisor import manage_lifecycle, start_graph, stop_graph
from diffusion_policy_ros.graph import build_graph
from diffusion_policy_ros.msg import PolicyStatus
from diffusion_policy_ros.nodes._ros_convert import seconds
from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint
from graph_test_node import sim_time_test_node
from waiting import wait_for

CAMERA = "/camera/scene/image_raw"


@pytest.fixture(scope="module")
def running_graph(tmp_path_factory, ros_env, ros_domain_id):
    import os

    from diffusion_policy_ros.sim.env import SimEnv
    work = tmp_path_factory.mktemp("graph")
    robot = load_robot_config("config/single_arm.yaml")
    checkpoint = make_untrained_checkpoint(robot, str(work / "checkpoint"), SimEnv(robot, render=False).home)
    specs = build_graph("sim", "config/single_arm.yaml", {"policy_checkpoint": checkpoint, "policy_device": "cpu"})
    # The sim's camera goes to a private topic; this test relays it, so it can "unplug" the camera.
    sim = next(s for s in specs if s.name == "sim_node")
    specs[specs.index(sim)] = type(sim)(sim.name, sim.params_file, {"camera": {"scene": {"topic": "/raw/scene"}}})
    procs = start_graph(specs, env=ros_env, log_dir=str(work))
    try:
        with sim_time_test_node("graph_test", ros_domain_id) as node:
            # The graph runs on sim time (use_sim_time), and under load the sim runs slower than the wall
            # clock: this node keeps sim time too, and rates and durations below are in simulated seconds.
            clock = node.get_clock()
            state = {"relay": True, "commands": [], "policy": [], "status": [], "joints": [],
                     "sim_now": lambda: clock.now().nanoseconds * 1e-9}
            camera = node.create_publisher(Image, CAMERA, qos_profile_sensor_data)
            node.create_subscription(Image, "/raw/scene/image_raw",
                                     lambda m: state["relay"] and camera.publish(m), qos_profile_sensor_data)
            node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                                     lambda m: state["commands"].append((state["sim_now"](), m)), 10)
            node.create_subscription(JointTrajectory, "/policy/joint_trajectory",
                                     lambda m: state["policy"].append((state["sim_now"](), m)), 10)
            node.create_subscription(PolicyStatus, "policy/status", state["status"].append, 10)

            def on_joint_state(msg):
                state["joint_names"] = list(msg.name)
                state["joints"].append((state["sim_now"](), np.array(msg.position)))
            node.create_subscription(JointState, "/joint_states", on_joint_state, qos_profile_sensor_data)
            assert manage_lifecycle(["policy_node"], start=True) == "", f"lifecycle failed; logs in {work}"
            yield state, work
    finally:
        stop_graph(procs)


def sim_sleep(state, duration, timeout=120.0):
    """Wait `duration` simulated seconds (the wall timeout only guards against a stuck sim)."""
    until = state["sim_now"]() + duration
    assert wait_for(lambda: state["sim_now"]() >= until, timeout), f"sim time stuck at {state['sim_now']():.3f}"


def wait_for_commands(state, work):
    assert wait_for(lambda: len(state["commands"]) >= 5, 60), f"no commands reached the sim; logs in {work}"


def test_policy_trajectories_reach_the_sim_through_the_filter_and_the_arm_moves(running_graph):
    state, work = running_graph
    wait_for_commands(state, work)
    robot = load_robot_config("config/single_arm.yaml")
    arm = robot.arms[0]
    period = 1.0 / robot.control_rate_hz
    for _, msg in state["policy"][:5]:
        # one action per control period after the observation (past ones dropped): (k + 1) / rate,
        # to 1 us (epoch seconds in float64 carry about 0.1 us of rounding)
        steps = np.array([seconds(p.time_from_start) for p in msg.points]) / period
        np.testing.assert_allclose(steps, np.arange(round(steps[0]), round(steps[0]) + len(steps)), atol=1e-5)
        assert steps[0] >= 1 - 1e-6 and list(msg.joint_names) == list(arm.joint_names)
    # the filter's plans go to the arm's controller over its joints
    assert all(list(m.joint_names) == list(arm.controller_joint_names) for _, m in state["commands"][:5])
    # the untrained policy's actions wander +-0.05 rad around home: the arm follows them (the
    # holding test below bounds the drift of a held arm by 0.01)
    moving_since, joints = state["commands"][0][0], arm.controller_joint_names
    assert wait_for(lambda: joint_spread(state, moving_since, joints) > 0.01, 60), \
        f"the arm did not move under the commands (spread {joint_spread(state, moving_since, joints):.4f} rad)"


def joint_spread(state, since, joints):
    """Largest range one of `joints` covered in the joint states from sim time `since` on."""
    window = [q for t, q in list(state["joints"]) if t >= since]
    if len(window) < 2:
        return 0.0
    columns = [state["joint_names"].index(name) for name in joints]
    return float(np.ptp(np.array(window)[:, columns], axis=0).max())


def test_a_stale_camera_stops_the_commands_and_the_arm_holds(running_graph):
    state, work = running_graph
    wait_for_commands(state, work)
    assert wait_for(lambda: state["status"] and state["status"][-1].state == PolicyStatus.STATE_RUNNING, 30)
    state["relay"] = False  # the camera stops publishing
    assert wait_for(lambda: state["status"] and CAMERA in state["status"][-1].stale_inputs, 60)
    assert state["status"][-1].state == PolicyStatus.STATE_HOLDING
    assert "camera/scene" in state["status"][-1].message
    sim_sleep(state, 2.0)  # the last chunk runs out (<= max_horizon_s, 1 s) and the watchdog holds
    n_policy, n_cmd, n_status = len(state["policy"]), len(state["commands"]), len(state["status"])
    hold_start = state["sim_now"]()
    sim_sleep(state, 1.5)
    # the window is the policy node's too: it kept reporting (so it ran), holding all along
    assert wait_for(lambda: len(state["status"]) >= n_status + 3, 30), "the policy node stopped reporting"
    assert all(s.state == PolicyStatus.STATE_HOLDING for s in state["status"][n_status:])
    assert len(state["policy"]) == n_policy, "policy kept publishing with a stale camera"
    assert len(state["commands"]) == n_cmd, "commands still reach the controller"
    window = [q for t, q in state["joints"] if t >= hold_start]
    assert len(window) > 10
    drift = np.abs(np.array(window) - window[0]).max()
    assert drift < 0.01, f"arm moved {drift:.4f} while holding"
