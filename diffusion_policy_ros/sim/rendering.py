"""Offscreen camera rendering tuned for software GL (EGL + llvmpipe on CPU machines).

Shadows and multisampling cost ~20x in software rendering, so both are off. Depth comes back in
metres and is clipped to the camera's configured maximum.
"""
from __future__ import annotations

import mujoco
import numpy as np

from diffusion_policy_ros.robot_config import CameraConfig, ConfigError


class CameraRenderer:
    def __init__(self, model: mujoco.MjModel, camera: CameraConfig, with_depth: bool | None = None):
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera.name) < 0:
            raise ConfigError(f"camera {camera.name!r} is not in the MuJoCo scene")
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, camera.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, camera.height)
        self.camera = camera
        self.with_depth = camera.depth if with_depth is None else with_depth
        self._renderer = mujoco.Renderer(model, height=camera.height, width=camera.width)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0

    def render(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray | None]:
        """(rgb uint8 HxWx3, depth float32 HxW metres or None)."""
        r = self._renderer
        r.update_scene(data, camera=self.camera.name)
        rgb = r.render().copy()
        depth = None
        if self.with_depth:
            r.enable_depth_rendering()
            try:
                depth = np.minimum(r.render(), self.camera.depth_max_m).astype(np.float32)
            finally:
                r.disable_depth_rendering()
        return rgb, depth

    def intrinsics(self, model: mujoco.MjModel) -> np.ndarray:
        """3x3 pinhole matrix K (pixels) from the camera's vertical field of view."""
        fovy = np.deg2rad(model.cam_fovy[model.camera(self.camera.name).id])
        f = 0.5 * self.camera.height / np.tan(fovy / 2)
        return np.array([[f, 0, (self.camera.width - 1) / 2], [0, f, (self.camera.height - 1) / 2],
                         [0, 0, 1.0]])

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
