"""Observation alignment on plain data: the policy's history is one control period apart
whatever its inference rate, padded at the start and across gaps, never stale; inputs that never
arrived, out-of-order samples, the exact tolerance and staleness boundaries, clear()."""
from diffusion_policy_ros.sync.observation_sync import AlignedObservation, ObservationSync, SyncFailure

PERIOD = 0.1


def fed(sync, stamps_by_input):
    for name, stamps in stamps_by_input.items():
        for t in stamps:
            sync.add(name, t, (name, round(t, 3)))
    return sync


def test_latest_is_the_newest_instant_all_inputs_reached():
    sync = fed(ObservationSync(["joints", "camera"], 0.02, 0.5),
               {"joints": [0.0, 0.05, 0.10, 0.15, 0.20], "camera": [0.0, 0.1, 0.19]})
    obs = sync.latest(0.2)
    assert isinstance(obs, AlignedObservation) and obs.stamp == 0.19
    assert obs.values == {"joints": ("joints", 0.2), "camera": ("camera", 0.19)}


def test_history_steps_are_one_control_period_apart():
    stamps = [round(0.05 * k, 3) for k in range(21)]           # 20 Hz for 1 s
    sync = fed(ObservationSync(["joints", "camera"], 0.02, 0.5), {"joints": stamps, "camera": stamps})
    latest = sync.latest(1.0)
    history = sync.history(latest, 3, PERIOD)
    assert [round(o.stamp, 3) for o in history] == [0.8, 0.9, 1.0]
    assert [o.values["camera"][1] for o in history] == [0.8, 0.9, 1.0]


def test_history_repeats_the_oldest_step_before_the_streams_began():
    sync = fed(ObservationSync(["joints"], 0.02, 0.5), {"joints": [0.0, 0.1]})
    history = sync.history(sync.latest(0.1), 4, PERIOD)
    assert [o.values["joints"][1] for o in history] == [0.0, 0.0, 0.0, 0.1]


def test_history_does_not_reach_across_a_gap():
    sync = fed(ObservationSync(["joints", "camera"], 0.02, 0.5),
               {"joints": [0.0, 0.1, 0.2, 0.3, 0.4], "camera": [0.0, 0.1, 0.4]})   # camera gap 0.1 -> 0.4
    history = sync.history(sync.latest(0.4), 3, PERIOD)
    assert [o.values["camera"][1] for o in history] == [0.4, 0.4, 0.4]


def test_stale_and_unaligned_inputs_are_named():
    sync = fed(ObservationSync(["joints", "camera", "tactile"], 0.02, 0.5),
               {"joints": [1.0], "camera": [0.9], "tactile": [0.2]})
    failure = sync.latest(1.0)
    assert isinstance(failure, SyncFailure) and failure.stale == ("tactile",)
    sync.add("tactile", 1.0, 0)
    failure = sync.latest(1.0)
    assert isinstance(failure, SyncFailure) and failure.unaligned == ("joints", "tactile")


def test_an_input_that_never_arrived_is_named_stale_or_missing():
    sync = fed(ObservationSync(["joints", "camera"], 0.02, 0.5), {"joints": [0.0, 0.1]})
    failure = sync.latest(0.1)
    assert isinstance(failure, SyncFailure) and failure.stale == ("camera",) and failure.unaligned == ()
    assert failure.describe() == "stale or missing: camera"
    assert sync.complete_stamp() is None and sync.newest_stamp("camera") is None


def test_out_of_order_samples_are_dropped_and_change_nothing():
    sync = fed(ObservationSync(["joints", "camera"], 0.02, 0.5), {"joints": [0.0, 0.1, 0.2], "camera": [0.0, 0.1, 0.2]})
    assert not sync.add("joints", 0.15, ("late", 0.15))         # older than the newest: dropped
    assert sync.add("joints", 0.2, ("same stamp", 0.2))          # not older: kept
    assert sync.newest_stamp("joints") == 0.2
    obs = sync.latest(0.2)
    assert obs.stamp == 0.2 and obs.values["joints"][0] != "late"
    history = sync.history(obs, 3, PERIOD)
    assert [o.values["joints"][1] for o in history] == [0.0, 0.1, 0.2]


def test_tolerance_boundary_is_inclusive():
    # stamps exactly representable in binary: the distance is exactly the tolerance
    sync = fed(ObservationSync(["joints", "camera"], 0.25, 10.0), {"joints": [1.0], "camera": [1.25]})
    obs = sync.latest(1.25)
    assert isinstance(obs, AlignedObservation) and obs.stamp == 1.0
    sync = fed(ObservationSync(["joints", "camera"], 0.25, 10.0), {"joints": [1.0], "camera": [1.25 + 2 ** -20]})
    failure = sync.latest(1.3)
    assert isinstance(failure, SyncFailure) and failure.unaligned == ("camera",)
    assert failure.describe() == "out of sync: camera"


def test_staleness_boundary_is_inclusive():
    sync = fed(ObservationSync(["joints"], 0.02, 0.5), {"joints": [1.0]})
    assert isinstance(sync.latest(1.5), AlignedObservation)      # exactly stale_after_s old: still fresh
    assert sync.stale_inputs(1.5 + 2 ** -20) == ("joints",)
    assert isinstance(sync.latest(1.5 + 2 ** -20), SyncFailure)


def test_clear_forgets_every_sample():
    sync = fed(ObservationSync(["joints", "camera"], 0.02, 0.5),
               {"joints": [0.0, 0.1, 0.2], "camera": [0.0, 0.1, 0.2]})
    assert sync.complete_stamp() == 0.2
    sync.clear()
    assert sync.complete_stamp() is None
    assert isinstance(sync.latest(0.2), SyncFailure) and sync.latest(0.2).stale == ("joints", "camera")
    fed(sync, {"joints": [0.3], "camera": [0.3]})               # a new episode: no history from the last
    history = sync.history(sync.latest(0.3), 3, PERIOD)
    assert [o.values["camera"][1] for o in history] == [0.3, 0.3, 0.3]
