"""What the demo recorder subscribes to for a robot config, and where each stream goes in the
dataset (plain data: the recorder node subscribes to it, the conversion reads it back from the
saved episode)."""
from __future__ import annotations

from collections.abc import Sequence

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.data.raw_episode import Topic
from diffusion_policy_ros.data.recorder_session import RecordingPlan
from diffusion_policy_ros.pose_observation import SIZE as POSE_SIZE

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
TACTILE = "diffusion_policy_ros/msg/TactileArray"
POSE = "geometry_msgs/msg/PoseStamped"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
FORWARD = "std_msgs/msg/Float64MultiArray"


def recording_plan(robot_config, *, cameras: Sequence[str] | None = None, compressed: Sequence[str] = (),
                   depth: bool = True, tactile: bool = True, safety_topic: str = "/safety/events",
                   sim_status_topic: str = "/sim/task_status") -> RecordingPlan:
    streams = []
    for arm in robot_config.arms:
        streams.append({"name": f"joints/{arm.name}", "key": "obs/joint_pos", "kind": "joints",
                        "topic": arm.joint_states_topic, "msgtype": JOINT_STATE, "dtype": "float32",
                        "shape": [len(arm.joint_names)], "joint_names": list(arm.joint_names)})
    for name in [c.name for c in robot_config.cameras] if cameras is None else list(cameras):
        cam = robot_config.camera(name)   # raises ConfigError for an unknown camera
        if name in compressed:
            streams.append({"name": f"rgb/{name}", "key": f"obs/{name}/rgb", "kind": "rgb_compressed",
                            "topic": f"{cam.rgb_topic}/compressed", "msgtype": COMPRESSED_IMAGE,
                            "dtype": "uint8", "shape": [cam.height, cam.width, 3]})
        else:
            streams.append({"name": f"rgb/{name}", "key": f"obs/{name}/rgb", "kind": "rgb", "topic": cam.rgb_topic,
                            "msgtype": IMAGE, "dtype": "uint8", "shape": [cam.height, cam.width, 3]})
        if depth and cam.depth:
            streams.append({"name": f"depth/{name}", "key": f"obs/{name}/depth", "kind": "depth",
                            "topic": cam.depth_topic, "msgtype": IMAGE, "dtype": "float32",
                            "shape": [cam.height, cam.width]})
    if tactile:
        for sensor in robot_config.tactile_sensors:
            streams.append({"name": f"tactile/{sensor.name}", "key": f"obs/{sensor.name}/tactile", "kind": "tactile",
                            "topic": sensor.topic, "msgtype": TACTILE, "dtype": "float32",
                            "shape": [sensor.rows, sensor.cols]})
    for pose in robot_config.object_poses:
        streams.append({"name": f"pose/{pose.name}", "key": obs_keys.pose(pose.name), "kind": "pose",
                        "topic": pose.topic, "msgtype": POSE, "dtype": "float32", "shape": [POSE_SIZE],
                        "frame_id": pose.frame_id})
    commands = []
    for arm in robot_config.arms:
        topics = [{"topic": arm.controller_topic, "msgtype": TRAJECTORY},
                  {"topic": arm.forward_topic, "msgtype": FORWARD, "joint_names": list(arm.joint_names)}]
        grippers = list(arm.gripper_joints)
        if arm.gripper_controller == "joint_trajectory":
            topics.append({"topic": arm.gripper_topic, "msgtype": TRAJECTORY})
        elif arm.gripper_controller == "forward_position":
            topics.append({"topic": arm.gripper_topic, "msgtype": FORWARD, "joint_names": grippers})
        commands.append({"arm": arm.name, "joint_names": list(arm.joint_names), "topics": topics})
    extra = [Topic(arm.teleop_topic, TRAJECTORY, True) for arm in robot_config.arms]
    return RecordingPlan(streams=streams, commands=commands, extra=extra, safety_topic=safety_topic,
                         sim_status_topic=sim_status_topic)
