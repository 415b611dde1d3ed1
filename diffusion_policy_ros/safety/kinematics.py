"""Forward kinematics and link distances from the robot model, through MuJoCo.

The model is the MJCF the simulator loads (resource/mjcf/<robot>.xml) and the joint mapping is
the sim's `RobotModel` (a config `gripper` value is the finger gap, split over two slides), so
joint ranges, end-effector sites and link shapes have one source. MuJoCo does the kinematics
(`mj_kinematics`) and the geometry (`mj_geomDistance`); nothing here multiplies frames by hand.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from diffusion_policy_ros.robot_config import ConfigError, RobotConfig

_MIN_LINK_RADIUS_M = 0.01  # smaller geoms (taxels, markers) ride on links already counted


class RobotKinematics:
    """End-effector positions and inter-arm link distances for joint positions of each arm."""

    def __init__(self, config: RobotConfig, model_path: str = ""):
        import mujoco  # heavy; imported only when a filter is built

        from diffusion_policy_ros.sim.robot_model import RobotModel, scene_path
        self._mj = mujoco
        self.model_path = model_path or scene_path(config.robot)
        try:
            self.model = mujoco.MjModel.from_xml_path(self.model_path)
        except ValueError as e:
            raise ConfigError(f"cannot load robot model {self.model_path}: {e}") from e
        self.data = mujoco.MjData(self.model)
        self.robot = RobotModel(self.model, config)
        mujoco.mj_kinematics(self.model, self.data)
        self._q = self.robot.joint_positions(self.data).astype(float)
        self._slices = {arm.name: cols for arm, cols in config.arm_slices()}
        self._index = {a.config.name: a for a in self.robot.arms}
        self._geoms = {name: self._arm_geoms(index) for name, index in self._index.items()}
        self._finger = {name: self._finger_mask(index, self._geoms[name]) for name, index in self._index.items()}

    def joint_ranges(self) -> dict[str, tuple[float, float]]:
        """Config joint name -> (lower, upper); a gripper's range is its fingers' ranges summed."""
        ranges = {}
        for arm in self.robot.arms:
            hinges = iter(arm.arm_joint_ids)
            for name, gripper in zip(arm.config.joint_names, arm.is_gripper):
                if gripper:
                    fingers = [self._joint_of_qpos(adr) for adr in arm.finger_qpos_adr]
                    if all(self.model.jnt_limited[j] for j in fingers):
                        ranges[name] = tuple(float(sum(self.model.jnt_range[j][k] for j in fingers))
                                             for k in (0, 1))
                    continue
                jid = int(next(hinges))
                if self.model.jnt_limited[jid]:
                    ranges[name] = (float(self.model.jnt_range[jid][0]), float(self.model.jnt_range[jid][1]))
        return ranges

    def _joint_of_qpos(self, adr: int) -> int:
        return int(np.flatnonzero(self.model.jnt_qposadr == adr)[0])

    def _arm_geoms(self, arm) -> np.ndarray:
        """Link geoms on the bodies moved by the arm's first joint (links, hand, fingers)."""
        root = int(self.model.jnt_bodyid[arm.arm_joint_ids[0]])
        in_subtree = np.zeros(self.model.nbody, dtype=bool)
        for body in range(self.model.nbody):  # parents precede children in MuJoCo's body order
            in_subtree[body] = body == root or (body > 0 and in_subtree[self.model.body_parentid[body]])
        geoms = np.flatnonzero(in_subtree[self.model.geom_bodyid])
        return geoms[self.model.geom_rbound[geoms] >= _MIN_LINK_RADIUS_M]

    def _finger_mask(self, arm, geoms: np.ndarray) -> np.ndarray:
        """Which of `geoms` ride on the gripper's fingers (the bodies its finger slides move)."""
        fingers = {int(self.model.jnt_bodyid[self._joint_of_qpos(adr)]) for adr in arm.finger_qpos_adr}
        on_finger = np.zeros(self.model.nbody, dtype=bool)
        for body in range(self.model.nbody):
            on_finger[body] = body in fingers or (body > 0 and on_finger[self.model.body_parentid[body]])
        return on_finger[self.model.geom_bodyid[geoms]]

    def update(self, positions: Mapping[str, np.ndarray]) -> None:
        """Pose the model: arm name -> joint positions in the arm's configured order."""
        for arm, q in positions.items():
            self._q[self._slices[arm]] = q
        self.robot.set_joint_positions(self.data, self._q)
        self._mj.mj_kinematics(self.model, self.data)

    def end_effector(self, arm: str) -> np.ndarray:
        """World position of the arm's end-effector site after `update`."""
        return self.data.site_xpos[self._index[arm].tcp_site].copy()

    def arm_pose(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        """The arm's link geom poses after `update`, to be put back with `set_arm_pose`."""
        g = self._geoms[arm]
        return self.data.geom_xpos[g].copy(), self.data.geom_xmat[g].copy()

    def set_arm_pose(self, arm: str, pose: tuple[np.ndarray, np.ndarray]) -> None:
        g = self._geoms[arm]
        self.data.geom_xpos[g], self.data.geom_xmat[g] = pose

    def poses_near(self, arm_a: str, arm_b: str, poses: np.ndarray, distance: float,
                   fingers: bool = True) -> np.ndarray:
        """Which of arm_b's `poses` (stacked link positions, P x links, from `arm_pose`) may come
        closer than `distance` to arm_a as posed now: those where some pair of bounding spheres
        does. One array operation for all poses; the others cannot be that close."""
        ga, gb = self._geoms[arm_a], self._geoms[arm_b]
        keep_b = np.ones(len(gb), dtype=bool) if fingers else ~self._finger[arm_b]
        if not fingers:
            ga = ga[~self._finger[arm_a]]
        centres = np.linalg.norm(self.data.geom_xpos[ga][None, :, None] - poses[:, None, keep_b], axis=3)
        bound = centres - self.model.geom_rbound[ga][None, :, None] - self.model.geom_rbound[gb[keep_b]][None, None]
        return np.any(bound < distance, axis=(1, 2))

    def arm_distance(self, arm_a: str, arm_b: str, distmax: float, fingers: bool = True) -> float:
        """Smallest distance between the two arms' link geoms as posed now (capped at distmax);
        `fingers=False` leaves out every pair with a finger geom (each arm's other links remain)."""
        ga, gb = self._geoms[arm_a], self._geoms[arm_b]
        if not fingers:
            ga, gb = ga[~self._finger[arm_a]], gb[~self._finger[arm_b]]
        centres = np.linalg.norm(self.data.geom_xpos[ga][:, None] - self.data.geom_xpos[gb][None], axis=2)
        lower_bound = centres - self.model.geom_rbound[ga][:, None] - self.model.geom_rbound[gb][None]
        fromto = np.zeros(6)
        best = distmax
        for i, j in zip(*np.nonzero(lower_bound < distmax)):  # bounding spheres overlap the margin
            best = min(best, self._mj.mj_geomDistance(self.model, self.data, int(ga[i]), int(gb[j]),
                                                     best, fromto))
        return best
