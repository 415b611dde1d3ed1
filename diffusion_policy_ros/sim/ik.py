"""Damped least-squares inverse kinematics of one arm's tcp site, on a private MjData.

Small and deterministic: the experts call it once per control step, warm-started from the
previous solution, so a few iterations converge.
"""
from __future__ import annotations

import mujoco
import numpy as np


def rotation_error(current: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """World-frame rotation vector (small-angle) that turns `current` towards `desired`."""
    return 0.5 * sum(np.cross(current[:, i], desired[:, i]) for i in range(3))


class ArmIK:
    def __init__(self, model: mujoco.MjModel, qpos_adr, dof_adr, site_id: int, joint_ranges):
        self.model = model
        self.data = mujoco.MjData(model)
        self.qpos_adr = np.asarray(qpos_adr)
        self.dof_adr = np.asarray(dof_adr)
        self.site = site_id
        self.lo, self.hi = np.asarray(joint_ranges, dtype=float).T
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def fk(self, q) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def set_base_pose(self, qpos_full: np.ndarray) -> None:
        """Copy the rest of the world (other arm, objects) so FK matches the sim."""
        self.data.qpos[:] = qpos_full

    def solve(self, q0, pos, rot, iterations: int = 30, rot_weight: float = 0.4,
              damping: float = 0.02, tol: float = 1e-4):
        q = np.array(q0, dtype=float)
        for _ in range(iterations):
            self.data.qpos[self.qpos_adr] = q
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            x = self.data.site_xpos[self.site]
            r = self.data.site_xmat[self.site].reshape(3, 3)
            err = np.concatenate([pos - x, rot_weight * rotation_error(r, rot)])
            if np.linalg.norm(err) < tol:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dof_adr], rot_weight * self._jacr[:, self.dof_adr]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + damping ** 2 * np.eye(6), err)
            step = np.linalg.norm(dq)
            if step > 0.3:
                dq *= 0.3 / step
            q = np.clip(q + dq, self.lo, self.hi)
        return q, float(np.linalg.norm(err[:3]))
