"""Open-loop action error: replay recorded episodes' observations through a policy (one
select_action per recorded step) and compare its actions with the demonstrated ones."""
from __future__ import annotations

import numpy as np


def action_error(policy, buf, episodes, sampler: str | None = None) -> dict:
    """Mean |policy - demo| per joint (the joints' own units) and overall in normalized units."""
    import torch
    if sampler:
        policy.set_sampler(sampler)
    cfg = policy.config
    errors, per_joint = [], []
    for ep in episodes:
        data = buf.get_episode(ep, [*cfg.obs_shapes, "action"])
        policy.reset(seed=ep)
        chosen = np.stack([policy.select_action({k: data[k][t] for k in cfg.obs_shapes}, t / cfg.control_rate_hz)
                           for t in range(len(data["action"]))])
        diff = np.abs(chosen - data["action"])
        per_joint.append(diff.mean(0))
        norm = lambda a: policy.normalizer.normalize("action", torch.from_numpy(a).float()).numpy()  # noqa: E731
        errors.append(float(np.abs(norm(chosen) - norm(data["action"])).mean()))
    return {"episodes": list(episodes), "sampler": cfg.sampler, "nfe_per_action": policy.nfe_per_action,
            "normalized_mae": float(np.mean(errors)),
            "mae_per_joint": dict(zip(cfg.joint_names, np.mean(per_joint, 0).tolist()))}
