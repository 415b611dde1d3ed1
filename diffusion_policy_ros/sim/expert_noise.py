"""Noise injected into what a scripted expert executes while its clean action is recorded (DART,
Laskey et al. 2017): the demonstrations then visit states a little off the expert's own path,
labelled with what the expert does there, which is what a policy needs once its own errors move
it off that path.

The noise is a smooth random offset on the arm joints (an Ornstein-Uhlenbeck process of standard
deviation `sigma_rad` and correlation time `tau_s`, one per joint, drawn from the episode's seed),
not white noise: a position-controlled arm filters white noise out within a tick, while a slow
offset moves the arm, and whatever it holds, by centimetres for a fraction of a second. Grippers
get none of it. With sigma 0 the executed action is the label.

`EarlyClose` perturbs the gripper instead, once per episode: when the tcp comes within a few
centimetres of the grasp, the gripper is held closed for a fraction of a second though the
expert's label says open. A policy whose plan closed before a displaced cube came back under its
fingers is in that state, with nothing between its fingers; the expert, which decides from where
the arm and the cube are, labels it with what recovers from it: open, go to the cube, close there.
"""
from __future__ import annotations

import numpy as np

from diffusion_policy_ros.sim.expert import CLOSED


class SmoothJointNoise:
    def __init__(self, sigma_rad: float, tau_s: float, control_rate_hz: float, arm_joints, seed: int):
        if sigma_rad < 0 or tau_s <= 0 or control_rate_hz <= 0:
            raise ValueError(f"need sigma_rad >= 0, tau_s > 0 and a positive rate, got "
                             f"{sigma_rad}, {tau_s}, {control_rate_hz}")
        self.sigma = float(sigma_rad)
        self.keep = float(np.exp(-1.0 / (tau_s * control_rate_hz)))
        self.mask = np.asarray(arm_joints, bool)
        self.rng = np.random.default_rng([int(seed), 0xDA27])
        # Stationary from the first tick: the offset's spread does not depend on the episode's age.
        self.offset = self.sigma * self.rng.standard_normal(self.mask.shape) * self.mask

    def __call__(self, label: np.ndarray) -> np.ndarray:
        """The action to execute for the expert's `label`; advances the noise by one tick."""
        executed = np.asarray(label, float) + self.offset
        fresh = self.rng.standard_normal(self.mask.shape) * self.mask
        self.offset = self.keep * self.offset + self.sigma * np.sqrt(1.0 - self.keep ** 2) * fresh
        return executed


class EarlyClose:
    """Holds the executed gripper closed for `hold_s` (drawn from the seed) from the first step the
    expert's commanded tcp comes within a distance drawn from `within_m` of the grasp, if that is
    before the expert's own first close."""

    def __init__(self, expert, gripper_indices, control_rate_hz: float, within_m: tuple[float, float],
                 hold_s: tuple[float, float], seed: int):
        if not (0.0 < within_m[0] <= within_m[1] and 0.0 < hold_s[0] <= hold_s[1] and control_rate_hz > 0):
            raise ValueError(f"need 0 < low <= high for within_m {within_m} and hold_s {hold_s}, and a positive rate")
        if not hasattr(expert, "distance_to_grasp"):
            raise ValueError("an early close needs the expert that re-decides every step (continuous)")
        rng = np.random.default_rng([int(seed), 0xC105E])
        self.expert, self.gripper = expert, list(gripper_indices)
        self.within = float(rng.uniform(*within_m))
        self.ticks_left = max(1, round(float(rng.uniform(*hold_s)) * control_rate_hz))
        self.started = self.expert_closed = False

    def __call__(self, label: np.ndarray) -> np.ndarray:
        executed = np.asarray(label, float).copy()
        if not self.started and not self.expert_closed:
            self.expert_closed = self.expert.grip == CLOSED
            self.started = not self.expert_closed and self.expert.distance_to_grasp() < self.within
        if self.started and self.ticks_left > 0:
            executed[self.gripper] = CLOSED
            self.ticks_left -= 1
        return executed
