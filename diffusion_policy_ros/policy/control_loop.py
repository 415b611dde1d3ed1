"""What the policy node does with each synchronized observation, without ROS.

`ControlLoop.step()` runs on the node's inference thread whenever a newer observation is complete
(and once a control period without one, to notice stale inputs):
- a stale or unaligned input: no commands, the output stops, the state says HOLDING and names it;
- streaming without a usable warm start after START or RESET: a sample from noise is computed
  from this observation and nothing of it is executed ("priming"), so the running loop only runs
  the few-step refinement. A gap longer than the horizon while running (inputs stale for that
  long, an overloaded machine) is bridged by a sample from noise that is sent: priming there
  could take longer than the horizon again and never send anything;
- otherwise, once the standing chunk has run its steps (`ChunkSchedule`), a new chunk: its actions
  still in the future go to the output, the chunk and the time each stage took to `on_chunk`;
  an observation before that which the new chunk will see is encoded as it comes (`encode_ahead`);
  with `stream_ahead_levels`, the one right before the due observation also runs the first levels
  of the coming refinement (`refine_ahead`), whose report counts them.
`inputs` provides latest(now), history(observation, n, period) and conversion_s; `output`
provides write(obs_time, times, rows) and clear(); `now()` is the node's clock in seconds.
"""
from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable

import numpy as np

from diffusion_policy_ros.sync.observation_sync import SyncFailure
from diffusion_policy_ros.sync.ticker import DUE_EARLY_PERIODS, ChunkSchedule


class LoopState(enum.IntEnum):   # the values of PolicyStatus.STATE_*
    UNCONFIGURED = 0
    IDLE = 1
    RUNNING = 2
    HOLDING = 3
    ERROR = 4


class ControlLoop:
    def __init__(self, policy, inputs, output, control_rate_hz: float, now: Callable[[], float],
                 on_chunk: Callable[[float, np.ndarray, object, dict], None]):
        self.policy, self.inputs, self.output, self.now, self.on_chunk = policy, inputs, output, now, on_chunk
        self.period = 1.0 / control_rate_hz
        self.schedule = ChunkSchedule(control_rate_hz, policy.steps_per_inference, policy.config.n_action_steps)
        self.state, self.message = LoopState.IDLE, "configured and warmed up"
        self.stale: tuple[str, ...] = ()
        self.running = False
        self.prime_pending = False
        self.encoded_ahead_at: float | None = None
        self.chunks = self.nfe_total = self.steps_total = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=100)

    # ---- commands ----------------------------------------------------------------------------
    def start(self) -> None:
        self.schedule.reset()   # nothing stands (the safety filter holds): act on the next observation
        self.running = True
        self.prime_pending = True   # if the warm start is too old to refine

    def stop(self) -> None:
        self.running = False
        self.output.clear()
        self.state = LoopState.IDLE

    def reset(self) -> None:
        """A new episode: no warm start, no schedule; prime from its first observation."""
        self.policy.reset()
        self.schedule.reset()
        self.prime_pending = True

    def fail(self, error: BaseException) -> None:
        """Inference raised: no commands until the next START."""
        self.running = False
        self.output.clear()
        self.state, self.message = LoopState.ERROR, f"inference failed: {error}"

    # ---- one observation ---------------------------------------------------------------------
    def step(self, started: float | None = None, observed_at: float | None = None) -> bool:
        """`started`: when the thread began this step, `observed_at`: when the newest observation
        was complete (time.perf_counter seconds; they time the wait between the two). True when it
        primed: look again at once, a newer observation may have come meanwhile."""
        started = time.perf_counter() if started is None else started
        now = self.now()
        result = self.inputs.latest(now)
        if isinstance(result, SyncFailure):
            self.stale = result.inputs
            if self.running:
                self.state, self.message = LoopState.HOLDING, f"holding: {result.describe()}"
            self.output.clear()
            return False
        self.stale = ()
        if self.prime_pending and self.policy.config.sampler == "streaming" \
                and not self.policy.can_refine(result.stamp):
            self._prime(result)
            return True
        if self.running and self.schedule.due(result.stamp):
            waited = 0.0 if observed_at is None else max(0.0, started - observed_at)
            self._infer(result, now, started, waited)
        elif self.running:
            self._encode_ahead(result)
        elif self.state != LoopState.ERROR:
            self.state = LoopState.IDLE
        return False

    def _encode_ahead(self, observation) -> None:
        """An observation the next inference will see is encoded now, while nothing is due: that
        inference then encodes only what arrives after it. At most one per control period (the
        history's spacing): a camera faster than the control rate would otherwise fill the
        policy's step cache with frames no history uses."""
        ahead = self.schedule.periods_until_due(observation.stamp)
        n = self.policy.config.n_obs_steps
        if ahead is None or ahead <= 0.0:
            return
        # The next observation is due: the first levels of its refinement run now, on this one.
        refine = bool(self.policy.config.stream_ahead_levels) and ahead <= 1.0 + 1e-6
        if not refine and ahead > n - 1 + 1e-6:
            return
        if self.encoded_ahead_at is not None and \
                observation.stamp - self.encoded_ahead_at < (1.0 - DUE_EARLY_PERIODS) * self.period:
            return
        if refine:
            self.policy.refine_ahead(self.inputs.history(observation, n, self.period), observation.stamp,
                                     self.schedule.due_stamp())
        else:
            self.policy.encode_ahead({k: v[-1] for k, v in self.inputs.history(observation, 1, self.period).items()})
        self.encoded_ahead_at = observation.stamp

    def _prime(self, observation) -> None:
        obs = self.inputs.history(observation, self.policy.config.n_obs_steps, self.period)
        self.policy.predict_action_chunk(obs, observation.stamp)
        self.nfe_total += self.policy.last_report.nfe
        self.prime_pending = False
        self.schedule.primed(observation.stamp)

    def _infer(self, observation, now: float, started: float, waited: float) -> None:
        stamp = observation.stamp
        obs = self.inputs.history(observation, self.policy.config.n_obs_steps, self.period)
        synced = time.perf_counter()
        rows = np.asarray(self.policy.predict_action_chunk(obs, stamp), dtype=np.float64)
        ready = self.now()
        if not self.running:
            return  # stopped while sampling: nothing goes out
        latency = ready - stamp
        self.latencies.append(latency)
        self.steps_total += self.schedule.chunk_computed(stamp, float(np.median(self.latencies)))
        self.encoded_ahead_at = stamp
        self.chunks += 1
        self.nfe_total += self.policy.last_report.nfe
        times = stamp + self.period * np.arange(1, len(rows) + 1)
        future = times > ready
        publishing = time.perf_counter()
        self.prime_pending = False
        if future.any():
            self.output.write(stamp, times[future], rows[future])
            self.state, self.message = LoopState.RUNNING, "commanding"
        else:
            self.message = f"chunk late: inference took {latency:.3f} s, all actions past"
        timing = self.policy.last_timing
        stages = {"inference_latency": latency, "observation_age": now - stamp,
                  "conversion_time": max(self.inputs.conversion_s.values(), default=0.0), "wait_time": waited,
                  "sync_time": synced - started, "encode_time": timing.encode_s, "denoise_time": timing.denoise_s,
                  "publish_time": time.perf_counter() - publishing}
        self.on_chunk(stamp, rows, self.policy.last_report, stages)

    # ---- statistics --------------------------------------------------------------------------
    @property
    def nfe_per_action(self) -> float:
        """Denoiser evaluations (priming included) per executed action: each chunk runs until the next."""
        return self.nfe_total / self.steps_total if self.steps_total else 0.0

    def latency_percentiles(self) -> tuple[float, float, float]:
        """p50, p99 and max of the recent observation -> chunk latencies (zeros before any)."""
        lat = np.array(self.latencies) if self.latencies else np.zeros(1)
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max())
