"""Fingertip taxel grids read from the scene's touch sensors (one per taxel, newtons)."""
from __future__ import annotations

import mujoco
import numpy as np

from diffusion_policy_ros.robot_config import ConfigError, TactileConfig


class TactileReader:
    """Sensor `<name>_taxel_<row>_<col>` in the MJCF for every taxel of a configured pad."""

    def __init__(self, model: mujoco.MjModel, sensor: TactileConfig):
        self.sensor = sensor
        adr = np.zeros((sensor.rows, sensor.cols), dtype=int)
        for r in range(sensor.rows):
            for c in range(sensor.cols):
                name = f"{sensor.name}_taxel_{r}_{c}"
                sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
                if sid < 0:
                    raise ConfigError(f"tactile sensor {sensor.name!r}: the scene has no touch sensor "
                                      f"{name!r} (grid {sensor.rows}x{sensor.cols} configured)")
                adr[r, c] = model.sensor_adr[sid]
        self._adr = adr

    def read(self, data: mujoco.MjData) -> np.ndarray:
        return data.sensordata[self._adr].astype(np.float32)
