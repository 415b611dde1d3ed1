"""sensor_msgs Image / CompressedImage -> numpy for the policy. An image already in the policy's
encoding and size (rgb8, 32FC1) becomes a view of the message's buffer, without a copy; other
encodings and sizes go through cv_bridge when the ROS 2 one is installed, otherwise the package's
own codec (diffusion_policy_ros.data.image_codec, which the recorder and the bag importer use too)."""
from __future__ import annotations

import sys

import numpy as np

from diffusion_policy_ros.data.image_codec import depth_from_raw, rgb_from_compressed, rgb_from_raw

try:  # the ROS 2 cv_bridge (apt ros-<distro>-cv-bridge); PyPI's cv-bridge is the ROS 1 one
    from cv_bridge import CvBridge
    _BRIDGE = CvBridge()
    _BRIDGE.imgmsg_to_cv2  # noqa: B018 - fail here, not per image, if it is something else
except Exception:  # pragma: no cover - depends on the machine
    _BRIDGE = None

_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


def rgb_from_msg(msg, width: int, height: int, compressed: bool = False) -> np.ndarray:
    """uint8 (height, width, 3) RGB from an Image or CompressedImage, resized if needed."""
    if not compressed and msg.encoding == "rgb8":
        view = _view(msg, width, height, np.uint8, 3)
        if view is not None:
            return view
    if compressed:
        if _BRIDGE is not None:
            image = _BRIDGE.compressed_imgmsg_to_cv2(msg, desired_encoding="rgb8")
        else:
            image = rgb_from_compressed(msg.data)
    elif _BRIDGE is not None:
        image = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    else:
        image = rgb_from_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                             big_endian=bool(msg.is_bigendian))
    return _resized(np.asarray(image, dtype=np.uint8), width, height, nearest=False)


def depth_from_msg(msg, width: int, height: int) -> np.ndarray:
    """float32 (height, width) metres from a 32FC1 (m) or 16UC1 (mm) depth Image (NaN kept: the
    policy's depth encoder treats invalid readings as far)."""
    if msg.encoding == "32FC1":
        view = _view(msg, width, height, np.float32, 1)
        if view is not None:
            return view
    if _BRIDGE is not None:
        depth = np.asarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
        depth = depth.astype(np.float32) / 1000.0 if depth.dtype == np.uint16 else depth.astype(np.float32)
    else:
        depth = depth_from_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                               big_endian=bool(msg.is_bigendian))
    return _resized(depth, width, height, nearest=True)


def _view(msg, width: int, height: int, dtype, channels: int) -> np.ndarray | None:
    """The payload as a read-only (height, width[, channels]) array sharing the message's memory,
    or None when its size, row padding or byte order needs a conversion."""
    row_bytes = width * channels * np.dtype(dtype).itemsize
    if (msg.width, msg.height) != (width, height) or msg.step != row_bytes \
            or bool(msg.is_bigendian) != _NATIVE_BIG_ENDIAN or len(msg.data) != row_bytes * height:
        return None
    shape = (height, width, channels) if channels > 1 else (height, width)
    view = np.frombuffer(msg.data, dtype=dtype).reshape(shape)
    view.flags.writeable = False
    return view


def _resized(image: np.ndarray, width: int, height: int, nearest: bool) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    import cv2
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=interpolation))
