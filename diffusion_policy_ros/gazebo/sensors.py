"""Gazebo camera sensors for the config's cameras, and the Gazebo topics they publish on.

Every camera is an `rgbd_camera`: Gazebo renders a stream only while someone subscribes (the
bridge subscribes lazily), so a depth image nobody asked for costs nothing. An rgbd camera with
`<topic>T</topic>` publishes T/image (RGB8), T/depth_image (32-bit float metres), T/camera_info.
"""
from __future__ import annotations

import dataclasses

from diffusion_policy_ros.gazebo.frames import fmt
from diffusion_policy_ros.robot_config import CameraConfig


@dataclasses.dataclass(frozen=True)
class GzCameraTopics:
    rgb: str
    depth: str
    info: str


def gz_camera_topics(camera: CameraConfig) -> GzCameraTopics:
    """The sensor publishes under the camera's ROS topic prefix, so the two are easy to pair up."""
    return GzCameraTopics(f"{camera.topic}/image", f"{camera.topic}/depth_image", f"{camera.topic}/camera_info")


def rgbd_camera_sensor(camera: CameraConfig, horizontal_fov: float, clip: tuple[float, float],
                       rate_hz: float, pose: str = "", indent: int = 0) -> str:
    """SDF `<sensor>`: the camera's size from the config, its optics and clip planes from the
    MuJoCo camera, depth cut at the config's `depth_max_m` (Gazebo reports +inf beyond it where
    the MuJoCo sim reports depth_max_m)."""
    near, far = clip
    lines = [
        f'<sensor name="{camera.name}" type="rgbd_camera">',
        *([f"  {pose}"] if pose else []),
        "  <always_on>true</always_on>",
        f"  <update_rate>{fmt(rate_hz)}</update_rate>",
        f"  <topic>{camera.topic}</topic>",
        "  <camera>",
        f"    <horizontal_fov>{fmt(horizontal_fov)}</horizontal_fov>",
        f"    <image><width>{camera.width}</width><height>{camera.height}</height><format>R8G8B8</format></image>",
        f"    <clip><near>{fmt(near)}</near><far>{fmt(far)}</far></clip>",
        f"    <depth_camera><clip><near>{fmt(near)}</near><far>{fmt(camera.depth_max_m)}</far></clip></depth_camera>",
        "  </camera>",
        "</sensor>",
    ]
    return "\n".join(" " * indent + line for line in lines)
