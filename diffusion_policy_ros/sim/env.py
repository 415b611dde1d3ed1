"""SimEnv: one MuJoCo scene + task + scripted expert, used by sim_node, the sim CLI, eval and CI.

    env = SimEnv(load_robot_config("config/single_arm.yaml"))
    obs = env.reset(seed=3)
    while not env.done:
        obs = env.step(env.expert_action())      # joint targets held for one control period
    env.success()

`variant` (default: the config's sim_node `task_variant`, else static) makes the world move during
an episode (sim/perturbations.py); `expert_mode` (default: the config's expert_teleop_node
`expert_mode`, else keyframes) picks the scripted expert (sim/expert.py).

Observation keys follow the dataset: `obs/joint_pos`, `obs/<camera>/rgb` (HxWx3 uint8),
`obs/<camera>/depth` (HxW float32 metres, clipped; only for cameras with depth on),
`obs/<sensor>/tactile` (rows x cols float32 newtons), `obs/<object>_pose` for the config's
`object_poses` among SIM_OBJECTS (the cube, the place target; pose_observation.py).
"""
from __future__ import annotations

import mujoco
import numpy as np

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.pose_observation import pose_vector, wxyz_to_xyzw
from diffusion_policy_ros.robot_config import ConfigError, RobotConfig
from diffusion_policy_ros.sim.expert import make_expert
from diffusion_policy_ros.sim.perturbations import MovingWorld, Perturbations, check_variant, sample_perturbations
from diffusion_policy_ros.sim.rendering import CameraRenderer
from diffusion_policy_ros.sim.robot_model import RobotModel, load_scene_model
from diffusion_policy_ros.sim.tactile import TactileReader
from diffusion_policy_ros.sim.tasks import make_task

SIM_OBJECTS = ("object", "target")   # poses the sim publishes (/sim/<name>_pose) and can observe


class SimEnv:
    def __init__(self, config: RobotConfig, *, task: str | None = None, cameras=None,
                 render: bool = True, physics_rate_hz: float | None = None, variant: str | None = None,
                 expert_mode: str | None = None):
        """`cameras`: names to render (default: the config's); `render=False` skips all cameras."""
        self.config = config
        self.model = load_scene_model(config.robot)
        sim_params = config.node_params("sim_node")
        rate = physics_rate_hz or float(sim_params.get("physics_rate_hz", 500.0))
        self.model.opt.timestep = 1.0 / rate
        self.data = mujoco.MjData(self.model)
        self.robot = RobotModel(self.model, config)
        self.task = make_task(task or config.task, self.model, [a.prefix for a in self.robot.arms])
        self.variant = variant or str(sim_params.get("task_variant", "static"))
        self.expert_mode = expert_mode or str(config.node_params("expert_teleop_node").get("expert_mode",
                                                                                          "keyframes"))
        self.expert = make_expert(self.task.name, self.robot, self.expert_mode)
        self.world = MovingWorld(self.task)
        self.control_period = 1.0 / config.control_rate_hz
        self.home = self.expert.home_joints(self.task.home_tcp)
        names = [c.name for c in config.cameras] if cameras is None else list(cameras)
        self.cameras = [config.camera(n) for n in names] if render else []
        self.renderers = {c.name: CameraRenderer(self.model, c) for c in self.cameras}
        self.tactile = {t.name: TactileReader(self.model, t) for t in config.tactile_sensors}
        unknown = [o.name for o in config.object_poses if o.name not in SIM_OBJECTS]
        if unknown:
            raise ConfigError(f"the sim observes the poses of {', '.join(SIM_OBJECTS)}, not {unknown} "
                              "(robot config object_poses)")
        self.seed = 0
        self.episode = 0
        self._target = self.home.copy()
        self.reset(0, observe=False)
        self.episode = 0

    # --- episode -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None, observe: bool = True) -> dict | None:
        """Randomize the task from `seed`, put the arms near home (gripper open), settle.

        `observe=False` skips rendering (callers on a thread without the GL contexts)."""
        self.seed = int(self.seed + 1 if seed is None else seed)
        rng = np.random.default_rng(self.seed)
        mujoco.mj_resetData(self.model, self.data)
        state = self.task.sample(rng)
        self.task.apply(self.data, state)
        q0 = self.home.copy()
        grip = np.zeros(len(q0), bool)
        grip[list(self.config.gripper_indices)] = True
        q0[~grip] += rng.uniform(-self.task.home_noise_rad, self.task.home_noise_rad, (~grip).sum())
        self.robot.set_joint_positions(self.data, q0)
        self._target = q0.copy()
        self.robot.set_targets(self.data, q0)
        mujoco.mj_forward(self.model, self.data)
        # Let the cube come to rest on the table before the clock starts.
        for _ in range(int(0.1 / self.model.opt.timestep)):
            mujoco.mj_step(self.model, self.data)
        self.data.time = 0.0
        self.episode += 1
        plan = Perturbations() if self.variant == "static" else sample_perturbations(
            self.variant, self.seed, state.cube_pos, state.target_pos, self.task.workspace)
        self.world.start(plan, self.data)
        self.expert.reset(self.joint_positions(), self.data.qpos.copy(), *self.task.cube_pose(self.data),
                          self.task.target_pos(self.data))
        return self.observation() if observe else None

    @property
    def variant(self) -> str:
        """What moves during an episode (sim/perturbations.py); a change applies from the next reset."""
        return self._variant

    @variant.setter
    def variant(self, name: str) -> None:
        if check_variant(name) not in self.task.variants:
            raise ConfigError(f"task {self.task.name} has only the variants {', '.join(self.task.variants)}, "
                              f"not {name}")
        self._variant = name

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def episode_steps(self) -> int:
        return int(round(self.task.episode_seconds * self.config.control_rate_hz))

    @property
    def done(self) -> bool:
        return self.time >= self.task.episode_seconds - 1e-9

    def success(self) -> bool:
        return self.task.success(self.data)

    def expert_action(self) -> np.ndarray:
        """The scripted expert's joint targets for the next control period (config order)."""
        self.expert.observe(self.joint_positions(), *self.task.cube_pose(self.data), self.task.target_pos(self.data))
        return self.expert.action(self.time + self.control_period)

    # --- stepping ----------------------------------------------------------------------------
    def step(self, action, duration: float | None = None, observe: bool = True):
        """Hold joint targets `action` for one control period (or `duration` s).

        The target ramps linearly from the previous one over the period, like a trajectory
        controller given one point per period, so 10 Hz targets do not jerk the arm.
        """
        action = self._check_action(action)
        duration = self.control_period if duration is None else duration
        n = max(1, int(round(duration / self.model.opt.timestep)))
        start = self._target
        rate = (action - start) / (n * self.model.opt.timestep)
        for i in range(1, n + 1):
            self.robot.set_targets(self.data, start + (action - start) * i / n, rate)
            mujoco.mj_step(self.model, self.data)
            self.world.advance(self.model, self.data)
        self.robot.set_targets(self.data, action)
        self._target = action
        return self.observation() if observe else None

    def step_physics(self, targets, velocities=None, n: int = 1) -> None:
        """Low level (sim_node): set targets (+ feed-forward velocities) and step n times."""
        self.robot.set_targets(self.data, targets, velocities)
        self._target = np.asarray(targets, float)
        for _ in range(n):
            mujoco.mj_step(self.model, self.data)
            self.world.advance(self.model, self.data)

    def _check_action(self, action) -> np.ndarray:
        action = np.asarray(action, dtype=float).reshape(-1)
        if action.shape != (self.config.action_dim,):
            raise ValueError(f"action has {action.size} values; this robot takes {self.config.action_dim} "
                             f"({', '.join(self.config.joint_names)})")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or infinity")
        return action

    # --- sensors -----------------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        return self.robot.joint_positions(self.data)

    def joint_velocities(self) -> np.ndarray:
        return self.robot.joint_velocities(self.data)

    def joint_efforts(self) -> np.ndarray:
        return self.robot.joint_efforts(self.data)

    def render(self, camera: str) -> tuple[np.ndarray, np.ndarray | None]:
        if camera not in self.renderers:
            raise ConfigError(f"camera {camera!r} is not rendered by this SimEnv "
                              f"(rendering: {sorted(self.renderers)})")
        return self.renderers[camera].render(self.data)

    def read_tactile(self, sensor: str) -> np.ndarray:
        return self.tactile[sensor].read(self.data)

    def observation(self) -> dict:
        obs = {obs_keys.JOINT_POS: self.joint_positions().astype(np.float32)}
        for name, renderer in self.renderers.items():
            rgb, depth = renderer.render(self.data)
            obs[obs_keys.rgb(name)] = rgb
            if depth is not None:
                obs[obs_keys.depth(name)] = depth
        for name, reader in self.tactile.items():
            obs[obs_keys.tactile(name)] = reader.read(self.data)
        for pose in self.config.object_poses:
            obs[obs_keys.pose(pose.name)] = pose_vector(*self.pose_of(pose.name))
        return obs

    def pose_of(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Position and ROS-order quaternion (x, y, z, w) of a SIM_OBJECTS entry, world frame:
        what /sim/<name>_pose carries."""
        if name == "object":
            position, quat_wxyz = self.object_pose()
            return position, wxyz_to_xyzw(quat_wxyz)
        if name == "target":
            return self.target_position(), np.array([0.0, 0.0, 0.0, 1.0])
        raise ConfigError(f"the sim has no object {name!r}; it has {', '.join(SIM_OBJECTS)}")

    def object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Cube position (m) and orientation quaternion (w, x, y, z) in the world frame."""
        return self.task.cube_pose(self.data)

    def target_position(self) -> np.ndarray:
        return self.task.target_pos(self.data)

    def close(self) -> None:
        for r in self.renderers.values():
            r.close()
        self.renderers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_expert_episode(env: SimEnv, seed: int, observe: bool = False) -> bool:
    """One expert episode from `seed`; True if the task succeeded at the end."""
    env.reset(seed, observe=observe)
    while not env.done:
        env.step(env.expert_action(), observe=observe)
    return env.success()
