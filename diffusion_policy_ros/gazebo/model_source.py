"""Everything the Gazebo files are written from, read where the sim and the safety filter read it.

The MuJoCo model is the one the safety filter loads (its `robot_model` parameter, by default the
sim's resource/mjcf/<robot>.xml); joint limits are the filter's `JointLimits`; the task, its
seeded cube and target poses and the home pose are the sim's own `Task` and scripted expert.
"""
from __future__ import annotations

import dataclasses
import os

import mujoco
import numpy as np

from diffusion_policy_ros.gazebo.frames import Transform
from diffusion_policy_ros.robot_config import ArmConfig, ConfigError, RobotConfig
from diffusion_policy_ros.safety.build import build_safety_filter
from diffusion_policy_ros.safety.limits import JointLimits
from diffusion_policy_ros.sim.expert import make_expert
from diffusion_policy_ros.sim.robot_model import ArmIndex
from diffusion_policy_ros.sim.tasks import TaskState, make_task

# sim_node's defaults, for configs that leave its section out.
SIM_DEFAULTS = {"physics_rate_hz": 500.0, "publish_rate_hz": 30.0, "joint_state_rate_hz": 100.0, "seed": 0}


@dataclasses.dataclass(frozen=True)
class ArmSource:
    """One arm: its config, its joints in the MuJoCo model, the limits the filter enforces."""
    config: ArmConfig
    index: ArmIndex
    limits: JointLimits
    home: dict[str, float]          # config joint -> the sim's home position (task start)

    @property
    def prefix(self) -> str:
        return self.index.prefix


class ModelSource:
    """A robot config and the MuJoCo model, task and limits that go with it."""

    def __init__(self, config: RobotConfig):
        self.config = config
        self.name = _config_name(config)
        safety = build_safety_filter(config)
        self.model_path = safety.kinematics.model_path
        self.model: mujoco.MjModel = safety.kinematics.model
        robot = safety.kinematics.robot
        self.task = make_task(config.task, self.model, [a.prefix for a in robot.arms])
        home = make_expert(self.task.name, robot).home_joints(self.task.home_tcp)
        start = 0
        self.arms = []
        for index in robot.arms:
            names = index.config.joint_names
            values = home[start:start + len(names)]
            start += len(names)
            self.arms.append(ArmSource(index.config, index, safety.limits[index.config.name],
                                       dict(zip(names, map(float, values)))))
        sim = {**SIM_DEFAULTS, **config.node_params("sim_node")}
        self.physics_rate_hz = float(sim["physics_rate_hz"])
        self.camera_rate_hz = float(sim["publish_rate_hz"])
        self.joint_state_rate_hz = float(sim["joint_state_rate_hz"])
        self.default_seed = int(sim["seed"])

    # --- the task ----------------------------------------------------------------------------
    def task_state(self, seed: int) -> TaskState:
        """Cube and target of the episode `seed`, drawn exactly as SimEnv.reset(seed) draws them."""
        return self.task.sample(np.random.default_rng(int(seed)))

    # --- MuJoCo model queries ----------------------------------------------------------------
    def body_id(self, name: str) -> int:
        body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)
        if body < 0:
            raise ConfigError(f"body {name!r} is not in {self.model_path}")
        return body

    def geom_id(self, name: str) -> int:
        geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, name)
        if geom < 0:
            raise ConfigError(f"geom {name!r} is not in {self.model_path}")
        return geom

    def body_in_parent(self, body: int) -> Transform:
        return Transform.from_mujoco(self.model.body_pos[body], self.model.body_quat[body])

    def body_in_world(self, body: int) -> Transform:
        pose = Transform()
        chain = []
        while body > 0:
            chain.append(body)
            body = int(self.model.body_parentid[body])
        for b in reversed(chain):
            pose = pose @ self.body_in_parent(b)
        return pose

    def geom_in_body(self, geom: int) -> Transform:
        return Transform.from_mujoco(self.model.geom_pos[geom], self.model.geom_quat[geom])

    def subtree(self, root: int) -> list[int]:
        """Bodies under `root` (itself first), parents before children as MuJoCo orders them."""
        inside = {root}
        for body in range(root + 1, self.model.nbody):
            if int(self.model.body_parentid[body]) in inside:
                inside.add(body)
        return sorted(inside)

    def camera_name(self, cam: int) -> str:
        return mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_CAMERA, cam)

    def camera_in_body(self, cam: int) -> Transform:
        return Transform.from_mujoco(self.model.cam_pos[cam], self.model.cam_quat[cam])

    def camera_clip(self) -> tuple[float, float]:
        """MuJoCo's near and far planes, in metres (the model stores them relative to its size)."""
        extent = float(self.model.stat.extent)
        return float(self.model.vis.map.znear) * extent, float(self.model.vis.map.zfar) * extent

    def horizontal_fov(self, cam: int, width: int, height: int) -> float:
        """Gazebo takes the horizontal field of view; MuJoCo's `fovy` is the vertical one."""
        fovy = np.deg2rad(float(self.model.cam_fovy[cam]))
        return float(2 * np.arctan(np.tan(fovy / 2) * width / height))


def _config_name(config: RobotConfig) -> str:
    if config.source_path:
        return os.path.splitext(os.path.basename(config.source_path))[0]
    return config.robot
