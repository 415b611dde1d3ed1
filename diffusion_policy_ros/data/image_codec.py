"""sensor_msgs/Image and CompressedImage payloads <-> numpy, without cv_bridge.

Works on the message fields (encoding, height, width, step, data) so the same code serves rclpy
messages, rosbags messages and tests. Colour images come out as RGB uint8 (H, W, 3), depth as
float32 metres (H, W).
"""
from __future__ import annotations

import numpy as np

_COLOUR = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True),
           "mono8": (1, False)}
_DEPTH = {"32FC1": np.dtype("<f4"), "16UC1": np.dtype("<u2")}


class ImageDecodeError(ValueError):
    """A message that is not an image this recorder understands."""


def rgb_from_raw(encoding: str, height: int, width: int, step: int, data, *,
                 big_endian: bool = False) -> np.ndarray:
    """Raw colour image fields -> (H, W, 3) uint8 RGB (a copy, safe to keep)."""
    if encoding not in _COLOUR:
        raise ImageDecodeError(f"unsupported colour encoding {encoding!r} (use one of {sorted(_COLOUR)})")
    channels, is_bgr = _COLOUR[encoding]
    rows = _rows(data, height, width * channels, step, np.uint8)
    img = rows.reshape(height, width, channels)
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    img = img[..., :3]
    return np.ascontiguousarray(img[..., ::-1] if is_bgr else img)


def depth_from_raw(encoding: str, height: int, width: int, step: int, data, *,
                   big_endian: bool = False) -> np.ndarray:
    """Raw depth image -> (H, W) float32 metres. 16UC1 is millimetres (the ROS convention)."""
    if encoding not in _DEPTH:
        raise ImageDecodeError(f"unsupported depth encoding {encoding!r} (use 32FC1 or 16UC1)")
    dtype = _DEPTH[encoding].newbyteorder(">" if big_endian else "<")
    rows = _rows(data, height, width * dtype.itemsize, step, np.uint8)
    depth = rows.reshape(-1).view(dtype).reshape(height, width).astype(np.float32)
    if encoding == "16UC1":
        depth *= 0.001
    return depth


def rgb_from_compressed(data) -> np.ndarray:
    """CompressedImage payload (JPEG/PNG) -> (H, W, 3) uint8 RGB."""
    import cv2  # only compressed streams pay for OpenCV

    buf = np.frombuffer(bytes(data) if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray))
                        else data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError("compressed image payload could not be decoded (not JPEG/PNG?)")
    return np.ascontiguousarray(bgr[..., ::-1])


def compress_rgb(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """(H, W, 3) RGB -> JPEG/PNG bytes (for publishing CompressedImage)."""
    import cv2

    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}[fmt]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, out = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ImageDecodeError(f"could not encode image as {fmt}")
    return out.tobytes()


def _rows(data, height: int, row_bytes: int, step: int, dtype) -> np.ndarray:
    """Strip row padding (`step` > row bytes) and check the payload size."""
    buf = np.frombuffer(_as_buffer(data), dtype=dtype)
    step = step or row_bytes
    if step < row_bytes or buf.size < step * (height - 1) + row_bytes:
        raise ImageDecodeError(
            f"image payload of {buf.size} bytes does not hold {height} rows of {row_bytes} bytes "
            f"(step {step})")
    if step == row_bytes:
        return buf[:height * row_bytes].copy()
    return np.lib.stride_tricks.as_strided(buf, (height, row_bytes), (step, 1)).copy()


def _as_buffer(data):
    # rclpy gives array.array('B') or bytes; rosbags gives numpy uint8 arrays.
    if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        return data
    try:
        return memoryview(data)
    except TypeError:
        return bytes(data)
