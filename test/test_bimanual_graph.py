"""The bimanual multi-sensor policy in miniature (issue 17): scripted handover demonstrations
recorded with every sensor of config/bimanual.yaml (scene RGB, both wrist cameras with depth, four
fingertip taxel grids, both arms' joints), a small policy trained on them for a few steps with
`dpros train`, then run through the real node graph (sim_node -> policy_node ->
safety_filter_node -> sim_node) for one episode driven like `dpros eval sim` drives it.

What is asserted is plumbing, not skill: the policy is configured with every observation the
robot has, subscribes to each one's topic, and computes chunks while it names none of them stale
(each input present and fresh in the observations it acts on); its chunks cover both arms; the
safety filter sends both arms' controllers commands; the episode's report counts the filter's
interventions."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros import obs_keys, reporting
from diffusion_policy_ros.cli.main import main
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.evaluation.graph_episodes import SAFETY_ACTIONS, GraphEpisodeClient
from diffusion_policy_ros.graph import build_graph
from diffusion_policy_ros.msg import ActionChunk, PolicyStatus
from diffusion_policy_ros.policy.checkpoint import load_checkpoint
from diffusion_policy_ros.policy.configuration import robot_obs_shapes
from diffusion_policy_ros.robot_config import load_robot_config
from diffusion_policy_ros.runtime.supervisor import manage_lifecycle, start_graph, stop_graph
from graph_test_node import sim_time_test_node
from waiting import wait_for

CONFIG = "config/bimanual.yaml"
# Small enough to train 150 steps in ~20 s on one core; every encoder kind is still there.
TINY_POLICY = {"down_dims": [32, 64], "horizon": 16, "n_obs_steps": 2, "n_action_steps": 8,
               "image_crop_fraction": 0.875, "rgb_channels": [8, 16], "rgb_keypoints": 8,
               "image_feature_dim": 32, "tactile_feature_dim": 16, "step_embed_dim": 32,
               "full_sample_steps": 4, "ddim_steps": 4}


@pytest.fixture(scope="module")
def robot():
    return load_robot_config(CONFIG)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    demos = str(tmp_path_factory.mktemp("bimanual") / "demos")
    assert main(["sim", "record", "--task", "handover", "--config", CONFIG, "--episodes", "3",
                 "--first-seed", "0", "--out", demos]) == 0
    return demos


@pytest.fixture(scope="module")
def checkpoint(demos, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bimanual") / "checkpoint")
    assert main(["train", "--dataset", demos, "--out", out, "--config", CONFIG, "--steps", "150",
                 "--batch-size", "16", "--lr", "1e-3", "--warmup-steps", "20", "--val-episodes", "1",
                 "--checkpoint-every", "0", "--device", "cpu", "--threads", "1", "--policy", json.dumps(TINY_POLICY)]) == 0
    return out


def input_topics(robot, keys) -> dict[str, list[str]]:
    """Observation key -> the topics policy_node reads it from."""
    topics = {}
    for key in keys:
        parsed = obs_keys.parse(key)
        if key == obs_keys.JOINT_POS:
            topics[key] = [arm.joint_states_topic for arm in robot.arms]
        elif parsed.modality == "rgb":
            topics[key] = [robot.camera(parsed.name).rgb_topic]
        elif parsed.modality == "depth":
            topics[key] = [robot.camera(parsed.name).depth_topic]
        else:
            topics[key] = [next(t.topic for t in robot.tactile_sensors if t.name == parsed.name)]
    return topics


def test_the_policy_observes_every_sensor_and_acts_on_both_arms(checkpoint, robot):
    policy = load_checkpoint(checkpoint, device="cpu")
    assert set(policy.config.obs_shapes) == set(robot_obs_shapes(robot))
    kinds = {obs_keys.parse(k).modality for k in policy.config.obs_shapes}
    assert kinds == {"proprio", "rgb", "depth", "tactile"}
    assert list(policy.config.joint_names) == list(robot.joint_names)   # 14: both arms, grippers included


def test_sensor_timeline_of_a_recorded_handover(demos, robot, tmp_path):
    episode = ReplayBuffer.open(demos).get_episode(0)
    tactile = [k for k in episode if obs_keys.is_obs(k) and obs_keys.parse(k).modality == "tactile"]
    arms = reporting.sensor_timeline_arms(robot, tactile)
    assert arms == {"left": {"gripper": 6, "tactile": ["obs/left_finger_l/tactile", "obs/left_finger_r/tactile"]},
                    "right": {"gripper": 13, "tactile": ["obs/right_finger_l/tactile", "obs/right_finger_r/tactile"]}}
    path = str(tmp_path / "sensors.png")
    size = reporting.save_sensor_timeline(episode, arms, path, "handover, seed 0", n_frames=6)
    assert size == reporting.sensor_timeline_size(n_images=5, n_arms=2, n_frames=6)   # 3 rgb + 2 depth rows
    assert Image.open(path).size == size


def test_eval_policy_runs_the_handover_and_draws_its_sensors(checkpoint, tmp_path):
    out = str(tmp_path / "eval")
    assert main(["eval", "policy", "--checkpoint", checkpoint, "--config", CONFIG, "--episodes", "1",
                 "--samplers", "streaming", "--timeout-s", "1.0", "--out", out, "--sensors"]) == 0
    with open(os.path.join(out, "policy_eval.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["methods"]["streaming"]["episodes"] == 1 and report["methods"]["streaming"]["actions"] == 10
    assert Image.open(os.path.join(out, "sensors_static.png")).size == \
        reporting.sensor_timeline_size(n_images=5, n_arms=2, n_frames=8)


@pytest.fixture(scope="module")
def graph(checkpoint, robot, tmp_path_factory, ros_env, ros_domain_id):
    logs = tmp_path_factory.mktemp("logs")
    specs = build_graph("sim", CONFIG, {"policy_checkpoint": checkpoint, "policy_device": "cpu"})
    procs = start_graph(specs, env=ros_env, log_dir=str(logs))
    try:
        with sim_time_test_node("bimanual_graph_test", ros_domain_id) as node:
            assert manage_lifecycle(["policy_node"], start=False) == "", f"lifecycle failed; logs in {logs}"
            seen = {"status": [], "chunks": [], "controllers": {}}
            node.create_subscription(PolicyStatus, "policy/status", seen["status"].append, 50)
            node.create_subscription(ActionChunk, "policy/action_chunk", seen["chunks"].append, 50)
            for arm in robot.arms:
                for topic in (arm.controller_topic, arm.gripper_topic):
                    seen["controllers"][topic] = []
                    node.create_subscription(JointTrajectory, topic, seen["controllers"][topic].append, 50)
            yield node, seen, logs
    finally:
        stop_graph(procs)


def test_every_input_reaches_the_policy_and_both_arms_get_commands(graph, robot, checkpoint):
    node, seen, logs = graph
    keys = list(load_checkpoint(checkpoint, device="cpu").config.obs_shapes)
    topics = input_topics(robot, keys)

    def readers(topic):
        return {info.node_name for info in node.get_subscriptions_info_by_topic(topic)}
    every_topic = [t for ts in topics.values() for t in ts]
    assert wait_for(lambda: all("policy_node" in readers(t) for t in every_topic), 30), \
        {t: sorted(readers(t)) for t in every_topic}

    client = GraphEpisodeClient(node, robot, record_frames=False)
    statuses, chunks = len(seen["status"]), len(seen["chunks"])
    commands = {topic: len(msgs) for topic, msgs in seen["controllers"].items()}
    client.episode(seed=0, timeout_s=3.0)

    # the policy acted on complete, fresh observations: running, chunks computed, nothing stale
    running = [s for s in seen["status"][statuses:] if s.state == PolicyStatus.STATE_RUNNING]
    assert len(running) >= 2, f"policy never ran; statuses {[s.message for s in seen['status'][statuses:]]}; logs {logs}"
    assert all(not s.stale_inputs for s in running)
    assert running[-1].chunks_computed > running[0].chunks_computed
    episode_chunks = seen["chunks"][chunks:]
    assert len(episode_chunks) >= 2
    for chunk in episode_chunks:
        assert list(chunk.joint_names) == list(robot.joint_names)
        rows = np.array(chunk.positions).reshape(chunk.num_steps, len(chunk.joint_names))
        assert np.isfinite(rows).all()
    # the safety filter commanded each arm's joints and gripper
    for arm in robot.arms:
        for topic, joints in ((arm.controller_topic, arm.controller_joint_names), (arm.gripper_topic, arm.gripper_joints)):
            new = seen["controllers"][topic][commands[topic]:]
            assert new, f"{topic}: no command from the safety filter during the episode; logs {logs}"
            assert all(list(m.joint_names) == list(joints) for m in new)
    # the episode's report counts the safety filter's interventions by action and reason
    outcome = client.outcomes[-1]
    assert all(key.split(" ", 1)[0] in SAFETY_ACTIONS.values() for key in outcome["safety_events"])
    summary = client.summary()["safety"]
    assert summary["clearance_clamps"] == outcome["safety_events"].get("clamp arm_clearance", 0)
