"""Reactive pick-and-place: the world moves while the arm works.

Task variants (the sim's `task_variant` parameter, `--variant` of the sim and eval commands):
  static               nothing moves once the episode starts (the original task)
  displaced            the cube is picked up by "someone" and set down 4-8 cm away, once, at a
                       random time during the approach or the grasp (0.3-1.3 s into the episode)
  drifting             the target drifts at 2-5 cm/s in a straight line, bouncing inside a
                       square of +-4 cm around its start, until the cube rests on it
  displaced_drifting   both

Everything is drawn from the episode's seed (its own random stream, so a seed's cube, target and
start pose are the same in every variant) when the episode starts, never from what the arm does:
every policy meets the same displacement at the same time. Only the choice among the seed's
candidate displacements depends on the arm: the first one that does not put the cube into the
fingers is used. The cube is displaced only while it rests on the table; a cube already lifted
at that time stays where it is (the event log says so).
"""
from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from diffusion_policy_ros.sim.scene_builder import CUBE_HALF

VARIANTS = ("static", "displaced", "drifting", "displaced_drifting")
STREAM = 14            # the perturbations' random stream of an episode: default_rng((seed, STREAM))
DISPLACE_WINDOW_S = (0.3, 1.3)
DISPLACE_DISTANCE_M = (0.04, 0.08)
DRIFT_SPEED_MPS = (0.02, 0.05)
DRIFT_RANGE_M = 0.04
# A displaced cube stays this far from the target's start, so that it can never land on the
# target, or the drifting target pass under it, without being carried there.
TARGET_CLEARANCE_M = 0.10
CANDIDATES = 8


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown task variant {variant!r}; known: {', '.join(VARIANTS)}")
    return variant


@dataclasses.dataclass
class Perturbations:
    """One episode's plan of what moves."""
    displace_at_s: float | None = None
    displacements: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))
    drift_velocity: np.ndarray | None = None     # m/s in the table plane

    @property
    def static(self) -> bool:
        return self.displace_at_s is None and self.drift_velocity is None


def sample_perturbations(variant: str, seed: int, cube_xy, target_xy, workspace) -> Perturbations:
    """The variant's perturbations of the episode `seed` of a pick_place scene."""
    check_variant(variant)
    rng = np.random.default_rng((int(seed), STREAM))
    plan = Perturbations()
    if "displaced" in variant:
        plan.displace_at_s = float(rng.uniform(*DISPLACE_WINDOW_S))
        angles = rng.uniform(-np.pi, np.pi, 64)
        distances = rng.uniform(*DISPLACE_DISTANCE_M, 64)
        offsets = np.column_stack([np.cos(angles), np.sin(angles)]) * distances[:, None]
        (x0, x1), (y0, y1) = workspace
        ends = np.asarray(cube_xy)[:2] + offsets
        inside = (ends[:, 0] >= x0) & (ends[:, 0] <= x1) & (ends[:, 1] >= y0) & (ends[:, 1] <= y1)
        clear = np.linalg.norm(ends - np.asarray(target_xy)[:2], axis=1) >= TARGET_CLEARANCE_M
        plan.displacements = offsets[inside & clear][:CANDIDATES]
    if "drifting" in variant:
        heading = rng.uniform(-np.pi, np.pi)
        plan.drift_velocity = rng.uniform(*DRIFT_SPEED_MPS) * np.array([np.cos(heading), np.sin(heading)])
    return plan


def bounce(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Position of a point moving freely along x, reflected at the walls lo and hi."""
    span = hi - lo
    u = np.mod(x - lo, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


class MovingWorld:
    """Applies an episode's Perturbations to the MuJoCo data as sim time passes (after every
    physics step), and keeps a log of what happened for evaluations and pictures."""

    def __init__(self, task):
        self.task = task
        self.plan = Perturbations()
        self.events: list[dict] = []

    def start(self, plan: Perturbations, data: mujoco.MjData) -> None:
        self.plan = plan
        self.events = []
        self._pending_displacement = plan.displace_at_s is not None
        self._drifting = plan.drift_velocity is not None
        if self._drifting:
            self._target_start = self.task.target_pos(data)
            (x0, x1), (y0, y1) = self.task.workspace
            self._drift_lo = np.maximum(self._target_start[:2] - DRIFT_RANGE_M, [x0, y0])
            self._drift_hi = np.minimum(self._target_start[:2] + DRIFT_RANGE_M, [x1, y1])

    @property
    def displaced(self) -> bool:
        return any(e["event"] == "cube displaced" for e in self.events)

    def advance(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        t = float(data.time)
        if self._drifting:
            self._drift(data, t)
        if self._pending_displacement and t >= self.plan.displace_at_s:
            self._pending_displacement = False
            self._displace(model, data, t)

    def _drift(self, data, t: float) -> None:
        # The drift ends for good once the cube rests on the target: success can then be held.
        cube, _ = self.task.cube_pose(data)
        target = self.task.target_pos(data)
        if np.linalg.norm(cube[:2] - target[:2]) < self.task.success_radius and self.task.success(data):
            self._drifting = False
            self.events.append({"event": "target stopped", "t": round(t, 3), "at": target[:2].round(4).tolist()})
            return
        xy = bounce(self._target_start[:2] + self.plan.drift_velocity * t, self._drift_lo, self._drift_hi)
        data.mocap_pos[self.task.target_mocap, :2] = xy

    def _displace(self, model, data, t: float) -> None:
        cube, quat = self.task.cube_pose(data)
        if cube[2] > CUBE_HALF + 0.005:
            self.events.append({"event": "cube not displaced: lifted", "t": round(t, 3)})
            return
        adr, dof = self.task.cube_qpos, self.task.cube_dof
        for offset in self.plan.displacements:
            data.qpos[adr:adr + 2] = cube[:2] + offset
            data.qpos[adr + 2] = CUBE_HALF
            data.qvel[dof:dof + 6] = 0
            mujoco.mj_forward(model, data)
            if not self.task.contacts.fingers_touching_cube(data):
                self.events.append({"event": "cube displaced", "t": round(t, 3),
                                    "from": cube[:2].round(4).tolist(),
                                    "to": (cube[:2] + offset).round(4).tolist()})
                return
        data.qpos[adr:adr + 3] = cube
        data.qpos[adr + 3:adr + 7] = quat
        mujoco.mj_forward(model, data)
        self.events.append({"event": "cube not displaced: no free place", "t": round(t, 3)})
