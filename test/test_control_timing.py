"""The policy's timing on plain data, no ROS: when an observation starts an inference
(ChunkSchedule), the control tick on a clock that stalls and jumps (Ticker), and the two command
rates a controller sees (CommandRates)."""
import pytest

from diffusion_policy_ros.sync.rates import CommandRates
from diffusion_policy_ros.sync.ticker import ChunkSchedule, Ticker

RATE = 10.0
PERIOD = 0.1


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def test_first_observation_is_due_then_every_steps_periods():
    schedule = ChunkSchedule(RATE, steps_per_inference=8, n_action_steps=8)
    assert schedule.due(5.0)
    assert schedule.chunk_computed(5.0, latency_s=0.0) == 8
    # camera frames at 30 Hz: the first one at least 8 control periods (less a quarter) later is due
    frames = [5.0 + k / 30 for k in range(1, 30)]
    first_due = next(t for t in frames if schedule.due(t))
    assert first_due == pytest.approx(5.0 + 24 / 30)       # 0.8 s (0.767 s is too early)
    # one-step chunks beside a 30 Hz camera: every 3rd frame (0.1 s), not every 2nd (0.067 s)
    schedule = ChunkSchedule(RATE, steps_per_inference=1, n_action_steps=8)
    schedule.chunk_computed(5.0, latency_s=0.0)
    assert [schedule.due(t) for t in frames[:3]] == [False, False, True]
    # a camera at the control rate with jittery stamps: a frame a little early is due all the same
    assert schedule.due(5.0 + 0.08)
    assert not schedule.due(5.0)


def test_latency_shortens_the_steps_so_the_next_chunk_is_ready_in_time():
    schedule = ChunkSchedule(RATE, steps_per_inference=8, n_action_steps=8)
    assert schedule.chunk_computed(0.0, latency_s=0.025) == 7    # ready within the first period
    assert schedule.chunk_computed(1.0, latency_s=0.1) == 7      # exactly one period: still one
    assert schedule.chunk_computed(2.0, latency_s=0.35) == 4
    assert schedule.chunk_computed(3.0, latency_s=5.0) == 1      # never fewer than one step
    assert not schedule.due(3.0) and schedule.due(3.1)


def test_a_primed_warm_start_makes_the_next_newer_observation_due():
    schedule = ChunkSchedule(RATE, steps_per_inference=8, n_action_steps=8)
    schedule.primed(2.0)
    assert not schedule.due(2.0) and not schedule.due(1.9)
    assert schedule.due(2.0 + 1 / 30)
    schedule.reset()
    assert schedule.due(1.0)


@pytest.mark.parametrize("bad", [dict(control_rate_hz=0.0), dict(steps_per_inference=0), dict(n_action_steps=0)])
def test_schedule_rejects_nonsense(bad):
    args = dict(control_rate_hz=RATE, steps_per_inference=8, n_action_steps=8) | bad
    with pytest.raises(ValueError):
        ChunkSchedule(**args)


def test_ticker_ticks_once_per_period_of_its_clock():
    clock = FakeClock(100.0)
    ticker = Ticker(clock, PERIOD)
    ticks = []
    for k in range(1, 101):                     # 1 s of a clock read every 10 ms
        clock.t = 100.0 + k * 0.01
        if ticker.poll():
            ticks.append(round(clock.t, 6))
    assert ticks == [round(100.0 + k * PERIOD, 6) for k in range(1, 11)]
    assert ticker.remaining() == pytest.approx(PERIOD)


def test_a_stalled_clock_gives_no_ticks_and_a_late_one_no_burst():
    clock = FakeClock(0.0)
    ticker = Ticker(clock, PERIOD)
    assert not any(ticker.poll() for _ in range(50))   # simulated time does not move: no ticks
    clock.t = 0.55                                    # five periods at once (a slow sim step)
    assert ticker.poll()
    assert not ticker.poll()                          # no catching up on the four missed ticks
    clock.t = 0.649
    assert not ticker.poll()
    clock.t = 0.65
    assert ticker.poll()


def test_a_clock_that_jumps_back_restarts_the_ticks():
    clock = FakeClock(50.0)
    ticker = Ticker(clock, PERIOD)
    clock.t = 50.1
    assert ticker.poll()
    clock.t = 10.0                                    # a new simulation
    assert not ticker.poll()
    clock.t = 10.1 - 1e-9
    assert ticker.poll()                              # one period after the jump (within the slack)


def test_setpoint_and_message_rates_of_trajectories():
    rates = CommandRates(window_s=2.0)
    # a chunk every 0.7 s with 8 points 0.1 s apart: the next replaces the last one's tail
    for k in range(5):
        t0 = 10.0 + 0.7 * k
        rates.published(t0 + 0.03, [t0 + 0.1 * (i + 1) for i in range(8)])
    now = 10.0 + 0.7 * 4 + 0.05
    assert rates.message_rate(now) == pytest.approx(3 / 2.0)         # sent at 11.43, 12.13, 12.83
    # setpoints due in (now - 2, now]: one per 0.1 s of the window, whichever chunk gave it
    assert rates.setpoint_rate(now) == pytest.approx(20 / 2.0)
    # the chunks stop: the setpoints run out with the last one, then the rate falls to zero
    assert rates.setpoint_rate(now + 0.75) == pytest.approx(20 / 2.0)
    assert rates.setpoint_rate(now + 3.0) == 0.0 and rates.message_rate(now + 3.0) == 0.0


def test_forward_setpoints_count_once_each():
    rates = CommandRates(window_s=1.0)
    for k in range(1, 21):
        rates.published(k * 0.1, [k * 0.1])
    assert rates.setpoint_rate(2.0) == pytest.approx(10.0) == rates.message_rate(2.0)
    rates.clear()
    assert rates.setpoint_rate(2.0) == 0.0
