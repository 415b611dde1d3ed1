"""The sim's tasks: randomized initial conditions and a success check computed from the physics.

pick_place (single arm): a red cube and a green target disc at random, non-overlapping places
  on the table; success = cube resting on the target (centre within 3.5 cm) and let go. Its
  reactive variants move the cube or the target during the episode (sim/perturbations.py).
handover (bimanual): a cube on the left half of the table; success = the right gripper holds
  it in the air (>= 8 cm above the table) and the left gripper does not touch it.
"""
from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from diffusion_policy_ros.sim.perturbations import VARIANTS
from diffusion_policy_ros.sim.scene_builder import CUBE_HALF

CUBE_BODY = "cube"
TARGET_BODY = "target"


def yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def quat_yaw(q) -> float:
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


class ContactReader:
    """Which arms' fingers touch the cube, and whether the cube touches the table."""

    def __init__(self, model: mujoco.MjModel, prefixes):
        self.cube_geom = model.geom(CUBE_BODY).id
        self.table_geom = model.geom("table").id
        self.finger_geoms = {}
        for p in prefixes:
            bodies = {model.body(f"{p}finger_l").id, model.body(f"{p}finger_r").id}
            self.finger_geoms[p] = {g for g in range(model.ngeom) if model.geom_bodyid[g] in bodies}

    def fingers_touching_cube(self, data: mujoco.MjData) -> set:
        touching = set()
        for i in range(data.ncon):
            c = data.contact[i]
            pair = (c.geom1, c.geom2)
            if self.cube_geom not in pair:
                continue
            other = pair[1] if pair[0] == self.cube_geom else pair[0]
            for p, geoms in self.finger_geoms.items():
                if other in geoms:
                    touching.add(p)
        return touching

    def cube_on_table(self, data: mujoco.MjData) -> bool:
        return any({data.contact[i].geom1, data.contact[i].geom2} == {self.cube_geom, self.table_geom}
                   for i in range(data.ncon))


@dataclasses.dataclass
class TaskState:
    cube_pos: np.ndarray
    cube_yaw: float
    target_pos: np.ndarray


class Task:
    name = ""
    episode_seconds = 10.0
    home_tcp = {}          # arm prefix -> tcp position in the arm base frame, gripper pointing down
    home_noise_rad = 0.05
    variants = ("static",)  # what may move during an episode (sim/perturbations.py)

    def __init__(self, model: mujoco.MjModel, prefixes):
        self.model = model
        self.prefixes = list(prefixes)
        self.contacts = ContactReader(model, self.prefixes)
        self.cube_body = model.body(CUBE_BODY).id
        cube_joint = model.joint("cube_joint")
        self.cube_qpos = cube_joint.qposadr[0]
        self.cube_dof = cube_joint.dofadr[0]
        self.target_mocap = model.body_mocapid[model.body(TARGET_BODY).id]

    def sample(self, rng: np.random.Generator) -> TaskState:
        raise NotImplementedError

    def apply(self, data: mujoco.MjData, state: TaskState) -> None:
        data.qpos[self.cube_qpos:self.cube_qpos + 3] = state.cube_pos
        data.qpos[self.cube_qpos + 3:self.cube_qpos + 7] = yaw_quat(state.cube_yaw)
        data.qvel[self.cube_dof:self.cube_dof + 6] = 0
        data.mocap_pos[self.target_mocap] = state.target_pos

    def cube_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        return (data.qpos[self.cube_qpos:self.cube_qpos + 3].copy(),
                data.qpos[self.cube_qpos + 3:self.cube_qpos + 7].copy())

    def target_pos(self, data: mujoco.MjData) -> np.ndarray:
        return data.mocap_pos[self.target_mocap].copy()

    def success(self, data: mujoco.MjData) -> bool:
        raise NotImplementedError


class PickPlace(Task):
    name = "pick_place"
    instruction = "pick up the red cube and place it on the green target"
    episode_seconds = 8.0
    home_tcp = {"": (0.25, 0.0, 0.25)}
    workspace = ((0.30, 0.50), (-0.15, 0.15))
    min_separation = 0.12
    success_radius = 0.035
    variants = VARIANTS

    def sample(self, rng):
        (x0, x1), (y0, y1) = self.workspace
        cube = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), CUBE_HALF])
        while True:
            target = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), 0.0])
            if np.linalg.norm(target[:2] - cube[:2]) >= self.min_separation:
                break
        return TaskState(cube, float(rng.uniform(-np.pi / 4, np.pi / 4)), target)

    def success(self, data):
        cube, _ = self.cube_pose(data)
        target = self.target_pos(data)
        on_target = np.linalg.norm(cube[:2] - target[:2]) < self.success_radius
        resting = cube[2] < CUBE_HALF + 0.01
        return bool(on_target and resting and not self.contacts.fingers_touching_cube(data))


class Handover(Task):
    name = "handover"
    instruction = "lift the cube with the left arm and hand it to the right arm"
    # The expert lets go around 8.5 s: its big turns keep within the safety filter's joint
    # speed limits (sim/expert.py), which a faster plan would not.
    episode_seconds = 12.0
    home_tcp = {"left_": (0.2, 0.0, 0.25), "right_": (0.2, 0.0, 0.25)}
    workspace = ((-0.22, -0.12), (-0.08, 0.08))
    lift_height = 0.08

    def sample(self, rng):
        (x0, x1), (y0, y1) = self.workspace
        cube = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), CUBE_HALF])
        # No target in this task: park the disc out of the way, under the table top.
        return TaskState(cube, float(rng.uniform(-0.6, 0.6)), np.array([0.0, 0.0, -0.5]))

    def success(self, data):
        cube, _ = self.cube_pose(data)
        touching = self.contacts.fingers_touching_cube(data)
        return bool(cube[2] > CUBE_HALF + self.lift_height and "right_" in touching
                    and "left_" not in touching)


TASKS = {t.name: t for t in (PickPlace, Handover)}
# What a recorded demonstration of each task is labelled with (the dataset's task text).
TASK_INSTRUCTIONS = {name: task.instruction for name, task in TASKS.items()}


def make_task(name: str, model: mujoco.MjModel, prefixes) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown sim task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name](model, prefixes)
