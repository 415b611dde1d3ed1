"""The parameters of every node, one schema each (the mechanism is `parameters.py`).

A node declares exactly these (plus the shared robot description, `robot_config.SHARED_PARAMETERS`)
through `nodes/_parameters.declare_node_parameters`; the launch arguments and
`graph.NODE_PARAMETERS` come from here too. Add a parameter here, not in the node.
Read-only (the default) means the node reads it once at start-up; the policy's settings are
writable because every configure transition reads them again.
"""
from __future__ import annotations

import dataclasses

from diffusion_policy_ros.parameters import NodeSchema, ParameterSpec as P
from diffusion_policy_ros.policy.configuration import SAMPLERS
from diffusion_policy_ros.safety.limits import SafetyParams
from diffusion_policy_ros.teleop.cartesian_jog import DEFAULT_LAYOUT, JOY_LAYOUTS

POSITIVE = {"minimum": 0.0, "exclusive_minimum": True}
NON_NEGATIVE = {"minimum": 0.0}

SIM_NODE = NodeSchema("sim_node", (
    P("physics_rate_hz", "double", 500.0, "MuJoCo steps per simulated second", **POSITIVE),
    P("publish_rate_hz", "double", 30.0, "camera frames per simulated second", **POSITIVE),
    P("joint_state_rate_hz", "double", 100.0, "joint states, tactile and /clock per simulated second", **POSITIVE),
    P("real_time_factor", "double", 1.0, "simulated seconds per wall second; 0 = as fast as possible "
      "(nodes then follow /clock with use_sim_time)", **NON_NEGATIVE),
    P("seed", "int", 0, "seed of the first episode's randomization (later ones: /sim/reset)"),
    P("task_variant", "string", "static", "what moves during each episode, drawn from its seed "
      "(sim/perturbations.py)", choices=("static", "displaced", "drifting", "displaced_drifting")),
))

POLICY_NODE = NodeSchema("policy_node", (
    P("checkpoint", "string", "", "folder with model.safetensors + config.json (read on configure)",
      read_only=False),
    P("output", "string", "joint_trajectory", "JointTrajectory on each arm's policy_topic, or "
      "Float64MultiArray per control tick on <policy_topic's namespace>/commands", read_only=False,
      choices=("joint_trajectory", "float64_multi_array")),
    P("sync_tolerance_s", "double", 0.05, "inputs whose stamps differ by more are not one observation (s)",
      read_only=False, **NON_NEGATIVE),
    P("stale_after_s", "double", 0.5, "an input older than this stops the commands (s)", read_only=False,
      **POSITIVE),
    P("sampler", "string", "streaming", "streaming (warm-started) or ddim / ddpm (every chunk from noise)",
      read_only=False, choices=SAMPLERS),
    P("denoising_steps", "int_array", [], "streaming refinement levels, e.g. [2, 1, 0]; empty: the "
      "checkpoint's own", read_only=False, **NON_NEGATIVE),
    P("ahead_levels", "int", -1, "streaming: how many of the refinement levels run one control step early, "
      "on the observation before the refinement's own (one step's worst-case cost falls); -1: the "
      "checkpoint's own", read_only=False, minimum=-1.0),
    P("device", "string", "auto", "torch device: auto, cpu, cuda, cuda:1, ...", read_only=False),
    P("image_transport", "string", "raw", "camera images as raw Image or <topic>/image_raw/compressed",
      read_only=False, choices=("raw", "compressed")),
    P("torch_threads", "int", 1, "torch CPU threads; 0 = torch's default. One: the U-Net's small convolutions "
      "gain nothing from more, and beside the sim and the safety filter on a few cores extra threads only wait "
      "for each other", read_only=False, minimum=0),
    P("compile", "bool", True, "on CPU, run the U-Net traced and optimized for inference (TorchScript; the same "
      "outputs to 1e-5, ~2.5x faster per evaluation); false: the eager module", read_only=False),
    P("start_on_activate", "bool", False, "command at once on activate, without policy/command START"),
    P("status_rate_hz", "double", 5.0, "policy/status and /diagnostics messages per second", **POSITIVE),
    P("executor", "string", "events", "events: rclpy's EventsExecutor (callbacks queued in C++, no Python wait "
      "set rebuilt per message); single_threaded where it is missing or misbehaves",
      choices=("events", "single_threaded")),
))

SAFETY_FILTER_NODE = SafetyParams.schema()

# Teleop nodes keep their targets inside what the safety filter accepts: they read its limits from
# the running filter, or, with safety_filter_node '', from these parameters of their own.
FILTER_FEEDBACK = (P("safety_filter_node", "string", "/safety_filter_node",
                     "the safety filter whose limits the targets respect; '' = this node's own copies of them"),) \
    + tuple(dataclasses.replace(p, description=f"with safety_filter_node '': the filter's {p.name} ({p.description})")
            for p in SAFETY_FILTER_NODE.parameters)

DEMO_RECORDER_NODE = NodeSchema("demo_recorder_node", (
    P("dataset_root", "string", "data", "folder that holds the datasets"),
    P("dataset_name", "string", "", "dataset folder under dataset_root; '' = <robot>_demos"),
    P("record_rate_hz", "double", 10.0, "frames per second in the dataset", **POSITIVE),
    P("record_cameras", "string_array", [], "cameras to record; empty: every configured camera"),
    P("compressed_cameras", "string_array", [], "cameras read from <topic>/image_raw/compressed"),
    P("record_depth", "bool", True, "record the depth images of cameras that have them"),
    P("record_tactile", "bool", True, "record the tactile pads"),
    P("sensor_reliability", "string", "best_effort", "QoS reliability of the sensor subscriptions",
      choices=("best_effort", "reliable")),
    P("qos_depth", "int", 30, "queue depth of each camera subscription at least (a camera queue holds up "
      "to 64 MB, at most 300 frames; small, fast streams keep 500 messages)", minimum=1),
    P("max_episode_s", "double", 900.0, "an episode is stopped (and kept) after this long (s)", **POSITIVE),
    P("safety_events_topic", "string", "/safety/events", "the safety filter's SafetyEvent topic (recorded "
      "with the episode)"),
    P("sim_status_topic", "string", "/sim/task_status", "the sim's TaskStatus topic; '' without a sim "
      "(episodes then start at START)"),
    P("keep_raw_episodes", "bool", False, "keep each episode's raw received messages beside the dataset"),
    P("receive_threads", "int", 1, "executor threads receiving messages (1: a single-threaded executor)",
      minimum=1),
))

EXPERT_TELEOP_NODE = NodeSchema("expert_teleop_node", (
    P("output", "string", "teleop", "publish on each arm's teleop_topic, or straight to controller_topic "
      "(skipping the safety filter)", choices=("teleop", "controller")),
    P("expert_mode", "string", "keyframes", "keyframes: a rest-to-rest plan made at the episode's start; "
      "continuous: re-decides every tick from the newest poses (pick_place)", choices=("keyframes", "continuous")),
))

LEADER_FOLLOWER_TELEOP_NODE = NodeSchema("leader_follower_teleop_node", (
    P("leader.{arm}.topic", "string", "", "leader arm's JointState topic for the {arm} arm; '' = "
      "/<namespace>/leader/joint_states"),
    P("leader.{arm}.joint_names", "string_array", [], "leader joints mapped to the {arm} arm's joints, in order; "
      "empty: the same names"),
    P("leader.{arm}.scale", "double_array", [], "per-joint scale leader -> {arm} arm; empty: 1"),
    P("leader.{arm}.offset", "double_array", [], "per-joint offset leader -> {arm} arm (after scale); empty: 0"),
    P("leader.gripper_range", "double_array", [0.0, 1.0], "leader gripper reading [closed, open]", length=2),
    P("max_velocity", "double", 1.0, "follower joint speed limit while tracking (rad/s)", **POSITIVE),
    P("stale_after_s", "double", 0.5, "leader data older than this stops the commands (s)", **POSITIVE),
) + FILTER_FEEDBACK)

JOY_TELEOP_NODE = NodeSchema("joy_teleop_node", (
    P("arm", "string", "", "the jogged arm; '' = the first configured arm"),
    P("joy_topic", "string", "/joy", "sensor_msgs/Joy input"),
    P("joy_layout", "string", DEFAULT_LAYOUT, "gamepad layout the axes and buttons come from "
      "(teleop/cartesian_jog.py)", choices=tuple(sorted(JOY_LAYOUTS))),
    P("axes", "int_array", [], "Joy axis for vx vy vz wx wy wz (-1: unused); empty: the layout's", minimum=-1),
    P("signs", "double_array", [1.0] * 6, "sign per Cartesian direction", length=6),
    P("twist_buttons", "int_array", [], "(+, -) button pair per twist component, 12 values (-1: none); empty: "
      "the layout's", minimum=-1),
    P("deadzone", "double", 0.1, "stick deflection ignored around zero", minimum=0.0, maximum=0.99),
    P("linear_speed", "double", 0.15, "tool speed at full stick (m/s)", **POSITIVE),
    P("angular_speed", "double", 0.8, "tool rotation speed at full stick (rad/s)", **POSITIVE),
    P("gripper_open_button", "int", -1, "Joy button that opens the gripper; -1: the layout's", minimum=-1),
    P("gripper_close_button", "int", -1, "Joy button that closes the gripper; -1: the layout's", minimum=-1),
    P("gripper_speed", "double", 0.05, "finger opening speed while a button is held (m/s)", **POSITIVE),
    P("stale_after_s", "double", 0.5, "no Joy message (or joint state) for this long -> the arm holds (s)",
      **POSITIVE),
) + FILTER_FEEDBACK)

KEYBOARD_EPISODE_NODE = NodeSchema("keyboard_episode_node", (
    P("task", "string", "", "task text of the episodes started (the t key changes it)"),
    P("recorder", "string", "/demo_recorder_node", "the recorder node whose ~/episode service is called"),
    P("reset_service", "string", "/sim/reset", "the sim's ResetEpisode service (the reset key)"),
    P("reset_seed", "int", 0, "seed of the first reset (each reset then takes the next one)"),
), uses_robot_config=False)

SYNTHETIC_SENSORS = NodeSchema("synthetic_sensors", (), uses_robot_config=False)

JTC_CHECK_NODE = NodeSchema("jtc_check_node", (
    P("delays_s", "double_array", [0.0, 0.1], "check each message also as if it arrived this much later (s)",
      **NON_NEGATIVE),
    P("report", "string", "", "JSON report written on exit; '' = none"),
    P("summary_period_s", "double", 10.0, "seconds between summary log lines", **POSITIVE),
))

NODE_SCHEMAS: dict[str, NodeSchema] = {s.node: s for s in (
    SIM_NODE, POLICY_NODE, SAFETY_FILTER_NODE, DEMO_RECORDER_NODE, EXPERT_TELEOP_NODE,
    LEADER_FOLLOWER_TELEOP_NODE, JOY_TELEOP_NODE, KEYBOARD_EPISODE_NODE, SYNTHETIC_SENSORS, JTC_CHECK_NODE)}
