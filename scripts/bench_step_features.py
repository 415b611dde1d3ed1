"""What encoding each observation step once saves: the encoder time of `predict_action_chunk`
with the step-feature cache on, and with it cleared before every call, alternating in one run.

    ./env.sh python scripts/bench_step_features.py [--checkpoint DIR] [--calls 150] [--rounds 2]

Each call slides the history by one step of random observations (images uint8, the rest uniform),
as a control loop does. Prints encoder ms p50 / p99 per mode and round; what else runs on the
machine changes the answer: say it.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/single_arm_pick_place")
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    torch.set_num_threads(args.threads)
    policy = load_checkpoint(args.checkpoint, device="cpu")
    policy.compile_for_inference()
    cfg = policy.config
    rng = np.random.default_rng(0)

    def observation_step():
        return {k: (rng.integers(0, 256, s, dtype=np.uint8) if k.endswith("/rgb")
                    else rng.uniform(0, 1, s).astype(np.float32)) for k, s in cfg.obs_shapes.items()}

    print(f"{args.checkpoint}: n_obs_steps {cfg.n_obs_steps}, observations {sorted(cfg.obs_shapes)}, "
          f"{args.threads} torch thread(s)")
    for round_ in range(args.rounds):
        for cleared in (False, True):
            policy.reset(seed=0)
            window = [observation_step()] * cfg.n_obs_steps
            encode_ms = []
            for i in range(args.calls):
                window = window[1:] + [observation_step()]
                if cleared:
                    policy._step_features.clear()
                history = {k: np.stack([s[k] for s in window]) for k in window[0]}
                policy.predict_action_chunk(history, i * cfg.stream_execute_steps / cfg.control_rate_hz)
                if i >= 5:
                    encode_ms.append(policy.last_timing.encode_s * 1e3)
            mode = "every step encoded" if cleared else "cached steps reused"
            print(f"round {round_ + 1}, {mode:20s}: encoder ms p50 {np.median(encode_ms):.2f} "
                  f"p99 {np.percentile(encode_ms, 99):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
