"""Observation keys as datasets, policies and nodes name them.

`obs/joint_pos` (all arms' joints, config order), `obs/<camera>/rgb` (uint8 HxWx3),
`obs/<camera>/depth` (float32 HxW metres), `obs/<sensor>/tactile` (float32 rows x cols newtons),
`obs/<object>_pose` (float32 [x, y, z, qx, qy, qz, qw], pose_observation.py).
Any other `obs/<name>` is a low-dimensional (proprio) vector; object poses are such vectors too.
"""
from __future__ import annotations

import dataclasses

PREFIX = "obs/"
JOINT_POS = "obs/joint_pos"
IMAGE_MODALITIES = ("rgb", "depth")
MODALITIES = ("proprio", "rgb", "depth", "tactile")


class ObsKeyError(ValueError):
    """A string that is not an observation key."""


@dataclasses.dataclass(frozen=True)
class ObsKey:
    name: str          # camera or sensor name; for proprio keys the vector's name (joint_pos)
    modality: str      # one of MODALITIES

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}" if self.modality == "proprio" else f"{PREFIX}{self.name}/{self.modality}"


def rgb(camera: str) -> str:
    return str(ObsKey(camera, "rgb"))


def depth(camera: str) -> str:
    return str(ObsKey(camera, "depth"))


def tactile(sensor: str) -> str:
    return str(ObsKey(sensor, "tactile"))


def pose(obj: str) -> str:
    return f"{PREFIX}{obj}_pose"


def is_pose(key: str) -> bool:
    return is_obs(key) and key.endswith("_pose") and parse(key).modality == "proprio"


def parse(key: str) -> ObsKey:
    """'obs/scene/rgb' -> ObsKey('scene', 'rgb'); 'obs/joint_pos' -> ObsKey('joint_pos', 'proprio')."""
    if not key.startswith(PREFIX) or len(key) == len(PREFIX):
        raise ObsKeyError(f"{key!r} is not an observation key (obs/joint_pos, obs/<camera>/rgb, "
                          "obs/<camera>/depth or obs/<sensor>/tactile)")
    name, sep, modality = key[len(PREFIX):].rpartition("/")
    if sep and modality in MODALITIES[1:] and name:
        return ObsKey(name, modality)
    return ObsKey(key[len(PREFIX):], "proprio")


def is_obs(key: str) -> bool:
    return key.startswith(PREFIX) and len(key) > len(PREFIX)


def is_image(key: str) -> bool:
    """rgb or depth: stored one chunk per frame, encoded by the image encoder, not normalized."""
    return is_obs(key) and parse(key).modality in IMAGE_MODALITIES


def cameras(keys) -> list[str]:
    """Sorted names of the cameras the keys' images come from."""
    return sorted({parse(k).name for k in keys if is_image(k)})
