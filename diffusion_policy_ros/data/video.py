"""MP4 writing and reading with PyAV (H.264, which every LeRobot install and browser decodes)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

DEFAULT_CODEC = "libx264"


class VideoWriter:
    """Append RGB frames of one size to an mp4; frame i is shown at i / fps seconds."""

    def __init__(self, path: str, width: int, height: int, fps: float, *, codec: str = DEFAULT_CODEC,
                 crf: int = 18, gop: int = 2):
        import av

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.path = path
        self.fps = Fraction(fps).limit_denominator(1000)
        # 4:2:0 needs even sizes; odd-sized cameras keep full chroma instead of being cropped.
        self.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self._container = av.open(path, "w")
        self._stream = self._container.add_stream(codec, rate=self.fps)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = self.pix_fmt
        self._stream.codec_context.time_base = 1 / self.fps
        # A short GOP keeps random access to any frame cheap (what training loaders do).
        self._stream.options = {"crf": str(crf), "g": str(gop), "preset": "veryfast"} \
            if "264" in codec else {"g": str(gop)}
        self.codec_name = self._stream.codec_context.name
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24")
        frame.pts = self.frames
        frame.time_base = self._stream.codec_context.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_frames(path: str) -> Iterator[tuple[float, np.ndarray]]:
    """(timestamp seconds, RGB uint8 frame) for every frame of the first video stream."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            yield float(frame.pts * stream.time_base), frame.to_ndarray(format="rgb24")
