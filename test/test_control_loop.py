"""The policy node's control loop on plain data (a real policy, a real ObservationSync, no ROS):
START primes the warm start from noise and the loop then only refines, chunks go out when due,
stale inputs and failures hold, a STOP during sampling sends nothing, late chunks are not sent."""
import numpy as np
import pytest
import torch

from diffusion_policy_ros.policy.configuration import PolicyConfig
from diffusion_policy_ros.policy.control_loop import ControlLoop, LoopState
from diffusion_policy_ros.policy.modeling import DiffusionPolicy
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer
from diffusion_policy_ros.sync.observation_sync import ObservationSync

RATE, FRAME = 10.0, 1 / 30
torch.set_num_threads(1)   # small ops: more threads only add contention


def make_policy(n_obs_steps=2, **overrides):
    cfg = PolicyConfig(obs_shapes={"obs/joint_pos": [3]}, joint_names=["a", "b", "gripper"], gripper_dims=[2],
                       down_dims=[16, 32], step_embed_dim=16, horizon=8, n_action_steps=4, device="cpu",
                       sampler="streaming", stream_denoising_steps=[2, 1, 0], full_sample_steps=8,
                       stream_execute_steps=4, n_obs_steps=n_obs_steps, **overrides)
    data = np.stack([np.linspace(-1, 1, 50), np.linspace(0, 2, 50), np.r_[np.zeros(25), np.full(25, 0.04)]], 1)
    policy = DiffusionPolicy(cfg, MinMaxNormalizer.fit({"action": data, "obs/joint_pos": data})).to_device("cpu")
    policy.denoiser_calls = 0

    def count(*_):
        policy.denoiser_calls += 1
    policy.unet.register_forward_hook(count)
    return policy


class Inputs:
    """What the node's PolicyInputs provide, over one joint-state stream."""

    def __init__(self, stale_after_s=0.5, moving=False):
        self.sync = ObservationSync(["joints"], 0.02, stale_after_s)
        self.conversion_s = {"joints": 1e-5}
        self.moving = moving

    def feed(self, stamp):
        first = 0.1 + (stamp % 1.0 if self.moving else 0.0)   # moving: every frame differs
        self.sync.add("joints", stamp, np.array([first, 0.2, 0.0], np.float32))

    def latest(self, now):
        return self.sync.latest(now)

    def history(self, observation, n_steps, period):
        return {"obs/joint_pos": np.stack([s.values["joints"] for s in self.sync.history(observation, n_steps, period)])}


class Output:
    def __init__(self):
        self.writes, self.cleared = [], 0

    def write(self, obs_time, times, rows):
        self.writes.append((obs_time, times, rows))

    def clear(self):
        self.cleared += 1


class Rig:
    def __init__(self, stale_after_s=0.5, n_obs_steps=2, moving=False, **policy_overrides):
        self.frames, self.t = 0, 100.0
        self.policy, self.inputs = make_policy(n_obs_steps, **policy_overrides), Inputs(stale_after_s, moving)
        self.output, self.chunks = Output(), []
        self.loop = ControlLoop(self.policy, self.inputs, self.output, RATE, lambda: self.t,
                                lambda *chunk: self.chunks.append(chunk))

    def frame(self, latency=0.005):
        """The next camera-rate observation arrives `latency` after its stamp; the loop looks at it."""
        self.frames += 1
        stamp = 100.0 + self.frames * FRAME
        self.inputs.feed(stamp)
        self.t = stamp + latency
        return self.loop.step()


def test_start_primes_from_noise_then_the_loop_only_refines():
    rig = Rig()
    rig.frame()
    rig.loop.start()
    assert rig.loop.step() is True                  # primed from the current observation ...
    assert rig.policy.denoiser_calls == 8 and not rig.output.writes and not rig.chunks   # ... sending nothing
    rig.frame()
    assert len(rig.output.writes) == 1 and rig.policy.denoiser_calls == 8 + 3
    stamp, report, stages = rig.chunks[0][0], rig.chunks[0][2], rig.chunks[0][3]
    assert report.warm_started and report.nfe == 3 and stamp == pytest.approx(rig.t - 0.005)
    assert stages["inference_latency"] == pytest.approx(0.005) and stages["denoise_time"] > 0
    assert rig.loop.state == LoopState.RUNNING
    # the chunk's 4 actions are executed before the next inference; frames in between send nothing
    for _ in range(30):
        rig.frame()
    sent = [w[0] for w in rig.output.writes]
    # 4 steps per inference, shortened by one for the latency lead: due 0.3 s on, the 9th frame
    assert np.allclose(np.diff(sent), 9 * FRAME) and len(sent) == 4
    assert rig.policy.denoiser_calls == 8 + 3 * len(sent)   # no sample from noise inside the loop
    times, rows = rig.output.writes[-1][1], rig.output.writes[-1][2]
    np.testing.assert_allclose(times, sent[-1] + 0.1 * np.arange(1, 5))
    assert rows.shape == (4, 3)


def test_a_stale_input_holds_and_names_it():
    rig = Rig()
    rig.frame()
    rig.loop.start()
    rig.loop.step()
    rig.frame()
    writes = len(rig.output.writes)
    rig.t += 0.6                                     # the stream stops for longer than stale_after_s
    rig.loop.step()
    assert rig.loop.state == LoopState.HOLDING and rig.loop.stale == ("joints",)
    assert "stale or missing: joints" in rig.loop.message
    assert rig.output.cleared and len(rig.output.writes) == writes


def test_a_stop_during_sampling_sends_nothing():
    rig = Rig()
    rig.frame()
    rig.loop.start()
    rig.loop.step()
    predict = rig.policy.predict_action_chunk

    def stopped_meanwhile(*args):
        rows = predict(*args)
        rig.loop.stop()                               # STOP arrives while the chunk is computed
        return rows
    rig.policy.predict_action_chunk = stopped_meanwhile
    rig.frame()
    assert not rig.output.writes and not rig.chunks and rig.loop.state == LoopState.IDLE


def test_a_late_chunk_is_not_sent():
    rig = Rig(stale_after_s=2.0)
    rig.frame()
    rig.loop.start()
    rig.loop.step()
    rig.frame(latency=1.0)                            # every action of the chunk is already past
    assert not rig.output.writes and len(rig.chunks) == 1
    assert "chunk late" in rig.loop.message and "all actions past" in rig.loop.message


def test_reset_primes_before_start_and_failure_holds_until_start():
    rig = Rig()
    rig.loop.reset()
    rig.frame()                                       # not running: primed all the same
    assert rig.policy.denoiser_calls == 8 and not rig.loop.prime_pending
    rig.loop.start()
    rig.frame()
    assert rig.chunks[-1][2].warm_started and rig.policy.denoiser_calls == 11
    rig.loop.fail(RuntimeError("boom"))
    assert rig.loop.state == LoopState.ERROR and not rig.loop.running and rig.output.cleared
    assert rig.loop.message == "inference failed: boom"
    for _ in range(10):
        rig.frame()
    assert len(rig.output.writes) == 1 and rig.loop.state == LoopState.ERROR
    rig.loop.start()
    rig.frame()
    assert len(rig.output.writes) == 2 and rig.loop.state == LoopState.RUNNING


def test_a_gap_longer_than_the_horizon_while_running_sends_a_sample_from_noise():
    rig = Rig(stale_after_s=5.0)
    rig.frame()
    rig.loop.start()
    rig.loop.step()                                   # primed at START
    rig.frame()
    assert rig.chunks[-1][2].warm_started
    rig.frames += 30                                  # 1 s without observations: beyond the 0.8 s horizon
    calls = rig.policy.denoiser_calls
    rig.frame()
    assert not rig.chunks[-1][2].warm_started and len(rig.output.writes) == 2   # sent, not primed
    assert rig.policy.denoiser_calls == calls + 8
    rig.frame()
    rig.frames += 8
    rig.frame()
    assert rig.chunks[-1][2].warm_started             # and refined from again


def test_frames_the_next_chunk_sees_are_encoded_before_it_is_due_one_per_control_period():
    rig = Rig(n_obs_steps=3, moving=True)            # a 30 Hz camera, 10 Hz control, every frame new
    rig.frame()
    rig.loop.start()
    rig.loop.step()
    cache = rig.policy._step_features
    predict = rig.policy.predict_action_chunk
    encoded_by_inference = []

    def counted(*args):
        before = cache.encoded_steps
        rows = predict(*args)
        encoded_by_inference.append(cache.encoded_steps - before)
        return rows
    rig.policy.predict_action_chunk = counted
    rig.frame()
    encoded_at_start = cache.encoded_steps
    for _ in range(60):
        rig.frame()
    # from the second chunk on, its older steps were encoded ahead: only the due frame is new
    assert len(encoded_by_inference) >= 6 and encoded_by_inference[1:] == [1] * (len(encoded_by_inference) - 1)
    # ahead: the n_obs_steps - 1 steps of each history, not the 2 frames between them
    steps_run = 3 * (len(encoded_by_inference) - 1)
    assert cache.encoded_steps - encoded_at_start <= steps_run + 3


@pytest.mark.parametrize("n_obs_steps", [1, 2])
def test_levels_run_ahead_a_control_period_before_the_due_frame_and_the_rest_on_it(n_obs_steps):
    # levels [2, 1, 0], the first two run ahead: no frame pays for all three
    rig = Rig(n_obs_steps=n_obs_steps, moving=True, stream_ahead_levels=2)
    rig.frame()
    rig.loop.start()
    rig.loop.step()
    rig.frame()                       # the first chunk after priming: nothing could run ahead
    calls = []
    for _ in range(40):
        before = rig.policy.denoiser_calls
        rig.frame()
        calls.append(rig.policy.denoiser_calls - before)
    reports = [chunk[2] for chunk in rig.chunks]
    assert len(reports) >= 4 and all(r.warm_started and r.nfe == 3 for r in reports)
    due = [i for i, n in enumerate(calls) if n == 1]
    assert max(calls) == 2 and len(due) == len(reports) - 1
    # the levels ran ahead on the frame a control period before (3 camera frames)
    assert all(calls[i - round(1 / (RATE * FRAME))] == 2 for i in due)
    assert sum(calls[:due[-1] + 1]) == sum(r.nfe for r in reports[1:])
