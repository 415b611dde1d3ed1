"""The stamp resampler: latest-at-or-before selection, drop/duplicate counting, grid phase."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from diffusion_policy_ros.data.resample import ResampleError, make_grid, resample


def test_same_rate_streams_map_one_to_one():
    stamps = np.arange(20) * 0.1 + 0.03
    r = resample({"a": stamps, "b": stamps + 0.01}, 10.0)
    assert r.num_frames == 20
    np.testing.assert_array_equal(r.indices["a"], np.arange(20))
    assert r.stats["a"].dropped == r.stats["a"].duplicated == 0


def test_faster_stream_is_downsampled_without_drops():
    r = resample({"cam": np.arange(90) / 30.0, "joints": np.arange(30) / 10.0}, 10.0)
    # 30 ticks (0.0 .. 2.9 s) take frames 0, 3, ..., 87: the 2 frames between consecutive ticks are
    # skipped, 29 x 2; frames 88 and 89 come after the last tick and lie outside the episode window.
    np.testing.assert_array_equal(r.indices["cam"], np.arange(30) * 3)
    assert r.stats["cam"].received == 88
    assert r.stats["cam"].skipped == 29 * 2 and r.stats["cam"].dropped == 0
    assert r.stats["cam"].duplicated == 0


def test_lost_message_is_a_duplicate_and_jitter_is_a_drop():
    base = np.arange(10) * 0.1
    lost = np.delete(base, 4)                     # message 4 never arrived
    jitter = base.copy()
    jitter[5] = 0.58                              # message 5 late: two in one interval, none in the one before
    r = resample({"ref": base, "lost": lost, "jitter": jitter}, 10.0)
    assert r.stats["lost"].duplicated == 1 and r.stats["lost"].dropped == 0
    assert r.stats["jitter"].duplicated == 1 and r.stats["jitter"].dropped == 1
    assert r.stats["ref"].duplicated == 0


def test_stalled_stream_repeats_its_last_message():
    r = resample({"ref": np.arange(10) * 0.1, "stall": [0.0, 0.1]}, 10.0)
    assert r.stats["stall"].duplicated == 8
    assert r.indices["stall"][-1] == 1


def test_grid_starts_when_every_stream_has_data_and_keeps_the_start_phase():
    r = resample({"a": np.arange(30) * 0.05, "b": [0.37, 0.9, 1.2]}, 10.0, start=0.0, stop=1.2)
    assert r.ticks[0] == pytest.approx(0.4)
    assert r.ticks[-1] == pytest.approx(1.2)
    assert np.all(r.ticks[:, None] >= np.asarray([0.37, 0.9, 1.2])[r.indices["b"]][:, None])


def test_unsorted_stamps_index_the_original_order():
    r = resample({"a": [0.2, 0.0, 0.1]}, 10.0)
    np.testing.assert_array_equal(r.indices["a"], [1, 2, 0])


def test_errors_are_clear():
    with pytest.raises(ResampleError, match="no messages"):
        resample({"a": [0.0], "b": []}, 10.0)
    with pytest.raises(ResampleError, match="do not overlap"):
        resample({"a": [0.0, 0.1], "b": [5.0]}, 10.0, stop=1.0)
    with pytest.raises(ResampleError, match="positive"):
        make_grid(0, 1, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=60),
       st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=60),
       st.sampled_from([5.0, 10.0, 30.0]))
def test_properties(a, b, rate):
    # Non-empty finite stamps always overlap on [latest first stamp, latest last stamp]: no error.
    r = resample({"a": a, "b": b}, rate)
    assert np.all(np.diff(r.ticks) > 0)
    # (the grid takes a stop within 1e-9 s of a tick as that tick)
    assert r.ticks[0] == max(min(a), min(b)) and r.ticks[-1] <= max(max(a), max(b)) + 1e-9
    tolerance = 1e-6
    for name, stamps in (("a", np.asarray(a)), ("b", np.asarray(b))):
        chosen = stamps[r.indices[name]]
        assert np.all(chosen <= r.ticks + tolerance)                   # never from the future
        later = stamps[None, :] <= r.ticks[:, None] + tolerance
        assert np.allclose(chosen, np.where(later, stamps[None, :], -np.inf).max(1))   # the latest one
        s = r.stats[name]
        # A duplicate is a tick with no message since the tick before, repeated stamps or not.
        arrived = [np.any((stamps > r.ticks[i - 1] + tolerance) & (stamps <= r.ticks[i] + tolerance))
                   for i in range(1, r.num_frames)]
        assert s.duplicated == arrived.count(False)
        assert 0 <= s.dropped <= s.skipped
