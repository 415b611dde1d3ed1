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
        self._checked = {(name, fingers): geoms if fingers else geoms[~self._finger[name]]
                         for name, geoms in self._geoms.items() for fingers in (True, False)}

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

    def sphere_close_pairs(self, arm_a: str, arm_b: str, poses_a: np.ndarray, poses_b: np.ndarray, distance: float,
                           fingers: bool = True) -> np.ndarray:
        """For every pairing of arm_a's `poses_a` (S x links x 3, link positions from `arm_pose`)
        with arm_b's `poses_b` (P x links x 3): which geom pairs have bounding spheres closer than
        `distance` (S x La x P x Lb over the geoms checked). No other pair can be that close.
        `fingers=False` leaves out every pair with a finger geom."""
        if not fingers:
            poses_a, poses_b = poses_a[:, ~self._finger[arm_a]], poses_b[:, ~self._finger[arm_b]]
        ra = self.model.geom_rbound[self._checked[arm_a, fingers]]
        rb = self.model.geom_rbound[self._checked[arm_b, fingers]]
        centres = np.linalg.norm(poses_a[:, :, None, None] - poses_b[None, None], axis=4)
        return centres - (ra[:, None, None] + rb[None, None]) < distance

    def closer_than(self, arm_a: str, pose_a, arm_b: str, pose_b, pairs: np.ndarray, distance: float,
                    fingers: bool = True) -> bool:
        """Whether the arms posed as `pose_a` and `pose_b` (from `arm_pose`) come closer than
        `distance`, checking the geom pairs marked in `pairs` (La x Lb, from `sphere_close_pairs`)."""
        self.set_arm_pose(arm_a, pose_a)
        self.set_arm_pose(arm_b, pose_b)
        ga, gb = self._checked[arm_a, fingers], self._checked[arm_b, fingers]
        fromto = np.zeros(6)
        for i, j in zip(*np.nonzero(pairs)):
            if self._mj.mj_geomDistance(self.model, self.data, int(ga[i]), int(gb[j]), distance, fromto) < distance:
                return True
        return False

    def arm_distance(self, arm_a: str, arm_b: str, distmax: float, fingers: bool = True) -> float:
        """Smallest distance between the two arms' link geoms as posed now (capped at distmax)."""
        ga, gb = self._checked[arm_a, fingers], self._checked[arm_b, fingers]
        fromto = np.zeros(6)
        return min([distmax] + [self._mj.mj_geomDistance(self.model, self.data, int(i), int(j), distmax, fromto)
                                for i in ga for j in gb])
