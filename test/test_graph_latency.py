"""The bench graph's bookkeeping on plain data (no ROS): each policy command is paired with the
safety filter's answer, the stages come from the chunk timings and the arrival times, and the
setpoint rate counts control periods covered, not messages."""
import numpy as np
import pytest

from diffusion_policy_ros.evaluation.graph_latency import CHUNK_FIELDS, STAGES, LatencyRecords

PERIOD = 0.1


def timing(**values):
    return {key: values.get(key, 0.0) for key in CHUNK_FIELDS}


def test_stages_pair_each_command_with_the_filter_answer():
    records = LatencyRecords()
    # a chunk every 0.7 s: stamp t, its command arrives 40 ms later, the filter answers 8 ms after
    for k in range(10):
        stamp = 100.0 + 0.7 * k
        records.chunk(stamp, timing(observation_age=0.004, denoise_time=0.020 + 0.001 * k, encode_time=0.005))
        records.policy_command(stamp, stamp + 0.040, stamp + PERIOD * np.arange(1, 9))
        records.controller_command(stamp + 0.048, stamp + 0.045)
        records.controller_command(stamp + 0.5, stamp + 0.5)   # a hold on its own: not an answer
    result = records.breakdown(100.0, 107.0)
    ms = result["stages_ms"]
    assert ms["end_to_end"]["p50"] == pytest.approx(48.0) and ms["to_controller"]["max"] == pytest.approx(8.0)
    assert ms["denoise_time"]["p50"] == pytest.approx(24.5) and ms["denoise_time"]["max"] == pytest.approx(29.0)
    assert ms["observation_age"]["p50"] == pytest.approx(4.0) and ms["at_filter_stamp"]["p50"] == pytest.approx(45.0)
    assert set(ms) >= {key for key, _ in STAGES}
    assert result["answered_commands"] == 10 and result["policy_trajectories_per_s"] == pytest.approx(10 / 7.0)
    assert result["controller_messages_per_s"] == pytest.approx(20 / 7.0)
    # every 0.1 s of the window had a setpoint from some chunk: 10 per second, from 1.4 messages
    assert result["setpoints_per_s"] == pytest.approx(70 / 7.0)


def test_an_unanswered_command_has_no_end_to_end_sample():
    records = LatencyRecords()
    records.chunk(1.0, timing())
    records.policy_command(1.0, 1.03, np.array([1.1, 1.2]))
    records.policy_command(1.5, 1.53, np.array([1.6, 1.7]))   # the filter answered only this one
    records.controller_command(1.56, 1.55)
    result = records.breakdown(1.0, 2.0)
    assert result["answered_commands"] == 1
    assert result["stages_ms"]["end_to_end"]["max"] == pytest.approx(60.0)
    assert result["setpoints_per_s"] == pytest.approx(2.0)
