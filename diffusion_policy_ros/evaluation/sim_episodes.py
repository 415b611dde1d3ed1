"""Closed-loop episodes of the policy alone in a SimEnv: no ROS, no latency, one seed per episode.

Each control step the policy's `select_action` on the current observation gives the joint targets
the sim holds for the next control period; the sim waits for the policy. Two criteria per episode:
success reached (the task's success test true at some control step within the time-out) and success
held (true without a break for `hold_s` sim seconds, the hold complete within the time-out). An
episode ends when the hold is complete or at the time-out.
"""
from __future__ import annotations

import time

import numpy as np

from diffusion_policy_ros.evaluation import metrics

_EPS = 1e-9  # sim times are sums of physics steps: compare with a little slack


class PolicyEpisodeRunner:
    """Closed-loop episodes of one policy (with its current sampler) in one SimEnv."""

    def __init__(self, env, policy, keys: list[str], record_frames: bool = False, record_steps: bool = False):
        """`record_frames`: keep the first camera's image of every step of the first episode, and
        what moved in it (`frames`: [(sim time, image)], `frame_events`). `record_steps`: keep every
        observation and action of the first episode (`steps`: key -> stacked array, with `time`
        and `action`), for reporting.save_sensor_timeline."""
        self.env, self.policy, self.keys = env, policy, keys
        self.record_steps = record_steps
        self.steps: dict[str, np.ndarray] = {}
        self.camera_key = next((k for k in keys if k.endswith("/rgb")), None) if record_frames else None
        self.frames: list[tuple[float, np.ndarray]] = []
        self.frame_events: list[dict] = []
        self.outcomes: list[dict] = []
        self.action_s: list[float] = []  # wall time of every select_action call
        self.chunk_s: list[float] = []   # ... of those that computed a chunk

    def episode(self, seed: int, timeout_s: float, hold_s: float) -> None:
        env, policy = self.env, self.policy
        obs = env.reset(seed)
        policy.reset(seed)
        reached_at = streak_since = None
        held = False
        filming = self.camera_key is not None and not self.outcomes
        logging = self.record_steps and not self.outcomes
        log: dict[str, list] = {}
        while env.time < timeout_s - _EPS and not held:
            if filming:
                self.frames.append((env.time, obs[self.camera_key]))
            report = policy.last_report
            start = time.perf_counter()
            action = policy.select_action({k: obs[k] for k in self.keys}, env.time)
            elapsed = time.perf_counter() - start
            if logging:
                for key, value in {**obs, "time": env.time, "action": action}.items():
                    log.setdefault(key, []).append(value)
            self.action_s.append(elapsed)
            if policy.last_report is not report:
                self.chunk_s.append(elapsed)
            obs = env.step(action)
            if env.success():
                reached_at = env.time if reached_at is None else reached_at
                streak_since = env.time if streak_since is None else streak_since
                held = env.time - streak_since >= hold_s - _EPS
            else:
                streak_since = None
        if filming:
            self.frames.append((env.time, obs[self.camera_key]))
            self.frame_events = list(env.world.events)
        if logging:
            self.steps = {key: np.stack(values) for key, values in log.items()}
        self.outcomes.append({"seed": seed, "success": reached_at is not None,
                              "sim_seconds": round(reached_at if reached_at is not None else env.time, 2),
                              "held": held, "world_events": list(env.world.events)})

    def rate(self, criterion: str) -> float:
        return metrics.rate(self.outcomes, criterion)

    def summary(self) -> dict:
        def mean_ms(values):
            return round(1000.0 * float(np.mean(values)), 3) if values else None

        return {"success_rate": self.rate("success"), "episodes": len(self.outcomes),
                "successes": metrics.count(self.outcomes, "success"),
                "held_success_rate": self.rate("held"),
                "held_successes": metrics.count(self.outcomes, "held"),
                "nfe_per_action": float(self.policy.nfe_per_action),
                "ms_per_action": mean_ms(self.action_s), "ms_per_chunk": mean_ms(self.chunk_s),
                "chunks": len(self.chunk_s), "actions": len(self.action_s),
                "outcomes": self.outcomes}
