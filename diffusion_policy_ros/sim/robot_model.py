"""Maps the config's joint names onto the MJCF: qpos/qvel addresses, actuators, sites.

A config joint named like an MJCF hinge joint maps onto it directly. A gripper joint
(`gripper`, `left_gripper`) maps onto the two coupled finger slides `<prefix>finger_l_joint`
and `<prefix>finger_r_joint`; its value is the pad gap (sum of both slides), and a gripper
target of g drives each finger to g / 2.

Forward kinematics for other parts of the project (e.g. the safety filter), with MuJoCo alone:

    model = load_scene_model("single_arm"); data = mujoco.MjData(model)
    robot = RobotModel(model, config)
    robot.set_joint_positions(data, q)      # config joint order
    mujoco.mj_kinematics(model, data)
    data.site("tcp").xpos, data.site("tcp").xmat   # also left_tcp / right_tcp
    data.geom("link3_geom").xpos ...              # link geoms (capsules) for distance checks
"""
from __future__ import annotations

import dataclasses
import os

import mujoco
import numpy as np

from diffusion_policy_ros.robot_config import ArmConfig, ConfigError, RobotConfig


def scene_path(robot: str) -> str:
    """resource/mjcf/<robot>.xml, or `robot` itself when it is a path to an MJCF file."""
    if robot.endswith(".xml") and os.path.isfile(robot):
        return robot
    from diffusion_policy_ros.resources import _source_root, package_share_path
    try:
        path = package_share_path("resource", "mjcf", f"{robot}.xml")
    except OSError:   # a half-sourced ament environment; the source tree still has the scene
        path = os.path.join(_source_root(), "resource", "mjcf", f"{robot}.xml")
    if not os.path.isfile(path):
        raise ConfigError(f"no MuJoCo scene for robot {robot!r} (looked for {path})")
    return path


def load_scene_model(robot: str) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(scene_path(robot))


@dataclasses.dataclass
class ArmIndex:
    """Addresses of one arm's joints in the MuJoCo model, in the config's joint order."""
    config: ArmConfig
    prefix: str
    arm_joint_ids: np.ndarray      # MJCF joint ids of the hinge joints, config order
    qpos_adr: np.ndarray           # per config joint: qpos address (first finger for the gripper)
    dof_adr: np.ndarray
    actuator_ids: list             # per config joint: list of actuator ids (two for the gripper)
    is_gripper: np.ndarray         # per config joint
    finger_qpos_adr: tuple         # (left, right) finger slide qpos addresses
    finger_dof_adr: tuple
    tcp_site: int

    @property
    def arm_dof_adr(self) -> np.ndarray:
        return self.dof_adr[~self.is_gripper]

    @property
    def arm_qpos_adr(self) -> np.ndarray:
        return self.qpos_adr[~self.is_gripper]


class RobotModel:
    """Reads and commands the config's joints in a MuJoCo model/data pair."""

    def __init__(self, model: mujoco.MjModel, config: RobotConfig):
        self.model = model
        self.config = config
        self.arms = [self._index_arm(arm) for arm in config.arms]
        self.joint_names = config.joint_names
        # kv/kp per actuator: adding v * kv/kp to the position target turns the actuator's
        # damping into velocity tracking (feed-forward), so moving joints do not lag.
        kp = model.actuator_gainprm[:, 0]
        kv = -model.actuator_biasprm[:, 2]
        self.velocity_lead = np.where(kp > 0, kv / np.maximum(kp, 1e-9), 0.0)
        # Config column -> qpos address, for writing all joints in one array operation (the
        # safety filter poses the model thousands of times per command).
        is_gripper = np.concatenate([a.is_gripper for a in self.arms])
        self._hinge_columns = np.flatnonzero(~is_gripper)
        self._hinge_qpos = np.concatenate([a.qpos_adr[~a.is_gripper] for a in self.arms])
        self._gripper_columns = np.flatnonzero(is_gripper)
        self._finger_qpos = np.array([a.finger_qpos_adr for a in self.arms], dtype=int).T  # 2 x grippers

    def _index_arm(self, arm: ArmConfig) -> ArmIndex:
        m = self.model
        grippers = [j for j in arm.joint_names if j in arm.gripper_joints]
        if len(grippers) != 1:
            raise ConfigError(f"arm {arm.name}: the sim needs exactly one gripper joint, got {grippers}")
        prefix = grippers[0][: -len("gripper")] if grippers[0].endswith("gripper") else ""
        finger_joints = [f"{prefix}finger_l_joint", f"{prefix}finger_r_joint"]
        qpos, dof, acts, is_grip, hinge_ids = [], [], [], [], []
        for name in arm.joint_names:
            if name in arm.gripper_joints:
                jid = self._joint_id(finger_joints[0], arm)
                acts.append([self._actuator_for(jid, arm), self._actuator_for(
                    self._joint_id(finger_joints[1], arm), arm)])
                is_grip.append(True)
            else:
                jid = self._joint_id(name, arm)
                acts.append([self._actuator_for(jid, arm)])
                is_grip.append(False)
                hinge_ids.append(jid)
            qpos.append(m.jnt_qposadr[jid])
            dof.append(m.jnt_dofadr[jid])
        fl, fr = (self._joint_id(n, arm) for n in finger_joints)
        tcp = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, arm.end_effector)
        if tcp < 0:
            raise ConfigError(f"arm {arm.name}: end_effector site {arm.end_effector!r} is not in the scene")
        return ArmIndex(arm, prefix, np.array(hinge_ids), np.array(qpos), np.array(dof), acts,
                        np.array(is_grip), (m.jnt_qposadr[fl], m.jnt_qposadr[fr]),
                        (m.jnt_dofadr[fl], m.jnt_dofadr[fr]), tcp)

    def _joint_id(self, name: str, arm: ArmConfig) -> int:
        jid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise ConfigError(f"arm {arm.name}: joint {name!r} is not in the MuJoCo scene")
        return jid

    def _actuator_for(self, jid: int, arm: ArmConfig) -> int:
        ids = np.flatnonzero(self.model.actuator_trnid[:, 0] == jid)
        if len(ids) == 0:
            raise ConfigError(f"arm {arm.name}: joint id {jid} has no actuator in the scene")
        return int(ids[0])

    # --- reading -----------------------------------------------------------------------------
    def joint_positions(self, data: mujoco.MjData) -> np.ndarray:
        out = []
        for a in self.arms:
            for i, adr in enumerate(a.qpos_adr):
                out.append(data.qpos[a.finger_qpos_adr[0]] + data.qpos[a.finger_qpos_adr[1]]
                           if a.is_gripper[i] else data.qpos[adr])
        return np.asarray(out)

    def joint_velocities(self, data: mujoco.MjData) -> np.ndarray:
        out = []
        for a in self.arms:
            for i, adr in enumerate(a.dof_adr):
                out.append(data.qvel[a.finger_dof_adr[0]] + data.qvel[a.finger_dof_adr[1]]
                           if a.is_gripper[i] else data.qvel[adr])
        return np.asarray(out)

    def joint_efforts(self, data: mujoco.MjData) -> np.ndarray:
        """Actuator torque (N m) per arm joint; the gripper's squeeze force (N, one finger)."""
        return np.asarray([data.actuator_force[acts[0]] for a in self.arms for acts in a.actuator_ids])

    # --- writing -----------------------------------------------------------------------------
    def set_joint_positions(self, data: mujoco.MjData, q) -> None:
        """Teleport the joints (reset, FK); velocities are left alone. A gripper value is the
        finger gap, split over its two slides."""
        q = np.asarray(q, dtype=float)
        data.qpos[self._hinge_qpos] = q[self._hinge_columns]
        for finger in self._finger_qpos:
            data.qpos[finger] = q[self._gripper_columns] / 2

    def set_targets(self, data: mujoco.MjData, q, qd=None) -> None:
        """Position targets in config order, clipped to the actuators' ranges."""
        q = np.asarray(q, dtype=float)
        qd = np.zeros_like(q) if qd is None else np.asarray(qd, dtype=float)
        k = 0
        for a in self.arms:
            for i, acts in enumerate(a.actuator_ids):
                for act in acts:
                    target = q[k] / 2 if a.is_gripper[i] else q[k]
                    rate = qd[k] / 2 if a.is_gripper[i] else qd[k]
                    data.ctrl[act] = target + self.velocity_lead[act] * rate
                k += 1
        np.clip(data.ctrl, self.model.actuator_ctrlrange[:, 0], self.model.actuator_ctrlrange[:, 1],
                out=data.ctrl)

    def position_limits(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = [], []
        for a in self.arms:
            for i, acts in enumerate(a.actuator_ids):
                r = self.model.actuator_ctrlrange[acts[0]]
                scale = 2.0 if a.is_gripper[i] else 1.0
                lo.append(r[0] * scale)
                hi.append(r[1] * scale)
        return np.array(lo), np.array(hi)
