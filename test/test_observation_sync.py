"""Observation alignment on plain data: the policy's history is one control period apart
whatever its inference rate, padded at the start and across gaps, never stale."""
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
