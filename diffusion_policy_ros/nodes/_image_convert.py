"""sensor_msgs Image / CompressedImage -> numpy, through cv_bridge when the ROS 2 one is installed,
otherwise a small built-in converter for the encodings cameras and the sim publish."""
from __future__ import annotations

import numpy as np

try:  # the ROS 2 cv_bridge (apt ros-<distro>-cv-bridge); PyPI's cv-bridge is the ROS 1 one
    from cv_bridge import CvBridge
    _BRIDGE = CvBridge()
    _BRIDGE.imgmsg_to_cv2  # noqa: B018 - fail here, not per image, if it is something else
except Exception:  # pragma: no cover - depends on the machine
    _BRIDGE = None

_CHANNELS = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
             "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3),
             "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1)}


def image_to_array(msg) -> np.ndarray:
    """An Image as (H, W, C) or (H, W) in its own encoding."""
    if _BRIDGE is not None:
        return np.asarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
    if msg.encoding not in _CHANNELS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}")
    dtype, channels = _CHANNELS[msg.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = row[:, :msg.width * channels * dtype.itemsize].copy().view(dtype)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return pixels.reshape(shape).astype(dtype.newbyteorder("="))


def rgb_from_msg(msg, width: int, height: int, compressed: bool = False) -> np.ndarray:
    """uint8 (height, width, 3) RGB from an Image or CompressedImage, resized if needed."""
    import cv2
    if compressed:
        if _BRIDGE is not None:
            bgr = _BRIDGE.compressed_imgmsg_to_cv2(msg, desired_encoding="bgr8")
        else:
            bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot decode compressed image ({msg.format!r})")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        image = image_to_array(msg)
        if msg.encoding in ("bgr8", "bgra8"):
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if msg.encoding == "bgra8" else cv2.COLOR_BGR2RGB)
        elif msg.encoding == "rgba8":
            image = image[..., :3]
        elif image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = image.astype(np.uint8, copy=False)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def depth_from_msg(msg, width: int, height: int) -> np.ndarray:
    """float32 (height, width) metres from a 32FC1 (m) or 16UC1 (mm) depth Image (NaN kept: the
    policy's depth encoder treats invalid readings as far)."""
    import cv2
    depth = image_to_array(msg)
    depth = depth.astype(np.float32) / 1000.0 if depth.dtype == np.uint16 else depth.astype(np.float32)
    if depth.shape[:2] != (height, width):
        depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)
    return depth
