"""Noise injected into what a scripted expert executes while its clean action is recorded (DART,
Laskey et al. 2017): the demonstrations then visit states a little off the expert's own path,
labelled with what the expert does there, which is what a policy needs once its own errors move
it off that path.

The noise is a smooth random offset on the arm joints (an Ornstein-Uhlenbeck process of standard
deviation `sigma_rad` and correlation time `tau_s`, one per joint, drawn from the episode's seed),
not white noise: a position-controlled arm filters white noise out within a tick, while a slow
offset moves the arm, and whatever it holds, by centimetres for a fraction of a second. Grippers
get none: the labels say when to close, and a closing the noise advanced or delayed would teach
nothing. With sigma 0 the executed action is the label.
"""
from __future__ import annotations

import numpy as np


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
