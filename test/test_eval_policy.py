"""`dpros eval policy`: closed-loop evaluation of a checkpoint in the MuJoCo SimEnv, without ROS."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from diffusion_policy_ros.evaluation.sim_episodes import PolicyEpisodeRunner  # noqa: E402
from diffusion_policy_ros.cli.main import main  # noqa: E402
from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.sim.env import SimEnv  # noqa: E402
from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "config", "single_arm.yaml")
# Runs `dpros` with rclpy unimportable: the evaluation must work on a machine without ROS.
WITHOUT_RCLPY = """
import sys
class BlockRclpy:
    def find_spec(self, name, path=None, target=None):
        if name == "rclpy" or name.startswith("rclpy."):
            raise ImportError("rclpy is blocked: dpros eval policy must not import it")
sys.meta_path.insert(0, BlockRclpy())
from diffusion_policy_ros.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    robot = load_robot_config(CONFIG)
    with SimEnv(robot, render=False) as env:
        home = env.home
    return make_untrained_checkpoint(robot, str(tmp_path_factory.mktemp("eval_policy") / "checkpoint"), home)


def test_two_samplers_two_seeds_end_to_end_without_ros(checkpoint, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_RCLPY, "eval", "policy", "--checkpoint", checkpoint, "--config", CONFIG,
         "--episodes", "2", "--seed", "5", "--samplers", "streaming,ddim", "--timeout-s", "1.5",
         "--hold-s", "0.3", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "streaming" in result.stdout and "ddim" in result.stdout, result.stdout
    report = json.loads((out / "policy_eval.json").read_text())
    assert report["seeds"] == [5, 6]
    assert report["checkpoint"] == os.path.abspath(checkpoint)
    assert (report["timeout_s"], report["hold_s"]) == (1.5, 0.3)
    assert list(report["methods"]) == ["streaming", "ddim"]
    for name, method in report["methods"].items():
        assert method["episodes"] == 2
        assert 0 <= method["held_successes"] <= method["successes"] <= method["episodes"]
        assert method["success_rate"] == method["successes"] / method["episodes"]
        assert [o["seed"] for o in method["outcomes"]] == [5, 6]
        assert sum(o["success"] for o in method["outcomes"]) == method["successes"]
        assert all(0 < o["sim_seconds"] <= 1.5 + 0.01 for o in method["outcomes"])
        assert method["nfe_per_action"] > 0
        assert 0 < method["ms_per_action"] <= method["ms_per_chunk"]
        # an untrained policy does not succeed: every episode runs to the timeout, 15 control steps
        assert method["actions"] == 2 * 15
    # a chunk every 8 control steps from noise, every step when streaming (stream_execute_steps=1)
    assert report["methods"]["ddim"]["chunks"] == 2 * 2
    assert report["methods"]["streaming"]["chunks"] == 2 * 15
    assert (out / "policy_eval.png").stat().st_size > 0


def test_each_sampler_on_each_variant_with_a_strip_of_the_moving_world(checkpoint, tmp_path):
    out = tmp_path / "variants"
    assert main(["eval", "policy", "--checkpoint", checkpoint, "--config", CONFIG, "--episodes", "1", "--seed", "7",
                 "--samplers", "streaming", "--variants", "static,displaced", "--timeout-s", "1.5",
                 "--frames", "--out", str(out)]) == 0
    report = json.loads((out / "policy_eval.json").read_text())
    assert report["variants"] == ["static", "displaced"]
    assert list(report["methods"]) == ["streaming static", "streaming displaced"]
    static, displaced = report["methods"].values()
    assert (static["sampler"], static["variant"], displaced["variant"]) == ("streaming", "static", "displaced")
    assert static["outcomes"][0]["world_events"] == []
    # the untrained policy leaves the cube on the table: it is displaced within the window 0.3-1.3 s
    assert [e["event"] for e in displaced["outcomes"][0]["world_events"]] == ["cube displaced"]
    for picture in ("policy_eval.png", "strip_static.png", "strip_displaced.png"):
        assert (out / picture).stat().st_size > 0
    assert main(["eval", "policy", "--checkpoint", checkpoint, "--config", CONFIG, "--variants", "shaken",
                 "--out", str(out)]) == 2


def test_streaming_with_other_refinement_levels_than_the_checkpoints(checkpoint, tmp_path, capsys):
    out = tmp_path / "levels"
    assert main(["eval", "policy", "--checkpoint", checkpoint, "--config", CONFIG, "--episodes", "1",
                 "--samplers", "streaming,ddim", "--denoising-steps", "25", "10", "0", "--timeout-s", "1.5",
                 "--out", str(out)]) == 0
    methods = json.loads((out / "policy_eval.json").read_text())["methods"]
    streaming = methods["streaming"]
    assert streaming["denoising_steps"] == [25, 10, 0] and "denoising_steps" not in methods["ddim"]
    # one sample from noise (the checkpoint's 4 DDIM steps), then 14 refinements of 3 levels each
    assert streaming["chunks"] == 15 and streaming["nfe_per_action"] == pytest.approx((4 + 14 * 3) / 15)
    assert main(["eval", "policy", "--checkpoint", checkpoint, "--config", CONFIG, "--samplers", "streaming",
                 "--denoising-steps", "0", "10", "--out", str(out)]) == 2
    assert "strictly decreasing" in capsys.readouterr().err
    assert main(["eval", "policy", "--checkpoint", checkpoint, "--config", CONFIG, "--samplers", "ddim",
                 "--denoising-steps", "2", "0", "--out", str(out)]) == 2
    assert "add streaming to --samplers" in capsys.readouterr().err


def test_an_episode_is_a_function_of_its_seed(checkpoint):
    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    policy = load_checkpoint(checkpoint, device="cpu")
    policy.set_sampler("streaming")  # draws fresh noise at every refinement
    keys = list(policy.config.obs_shapes)
    with SimEnv(load_robot_config(CONFIG), cameras=["scene"]) as env:
        evaluator = PolicyEpisodeRunner(env, policy, keys)
        finals = []
        for seed in (5, 6, 5):
            evaluator.episode(seed, timeout_s=0.5, hold_s=1.0)
            finals.append(env.joint_positions())
    assert (finals[0] == finals[2]).all(), "the same seed must replay the same episode"
    assert not (finals[0] == finals[1]).all()


class _Scripted:
    """A stand-in policy: the scripted expert (succeeds and holds) or a frozen arm (never succeeds)."""

    def __init__(self, env, expert: bool):
        self.env, self.expert, self.last_report, self.nfe_per_action = env, expert, None, 1.0

    def reset(self, seed):
        self.hold = self.env.joint_positions()

    def select_action(self, obs, obs_time):
        assert list(obs) == ["obs/joint_pos"] and obs_time == self.env.time
        self.last_report = object()
        return self.env.expert_action() if self.expert else self.hold


def test_reached_and_held_criteria_follow_the_sim_success():
    with SimEnv(load_robot_config(CONFIG), cameras=[]) as env:
        expert = PolicyEpisodeRunner(env, _Scripted(env, expert=True), ["obs/joint_pos"])
        expert.episode(3, timeout_s=12.0, hold_s=1.0)
        frozen = PolicyEpisodeRunner(env, _Scripted(env, expert=False), ["obs/joint_pos"])
        frozen.episode(3, timeout_s=2.0, hold_s=1.0)
    done = expert.outcomes[0]
    assert done["success"] and done["held"], done
    # the episode stops once the hold is complete: 1 s (10 control steps) after first success
    assert len(expert.action_s) == round(10 * done["sim_seconds"]) + 10
    assert frozen.outcomes == [{"seed": 3, "success": False, "sim_seconds": 2.0, "held": False,
                                "world_events": []}]
    assert frozen.summary()["successes"] == 0 and frozen.summary()["actions"] == 20


def test_clear_errors(tmp_path, capsys, checkpoint):
    assert main(["eval", "policy", "--checkpoint", str(tmp_path / "nothing"), "--episodes", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    shutil.copytree(checkpoint, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 16)
    assert main(["eval", "policy", "--checkpoint", str(corrupt), "--episodes", "1"]) == 2
    assert "model.safetensors is not a safetensors file" in capsys.readouterr().err
    assert main(["eval", "policy", "--checkpoint", checkpoint, "--samplers", "streaming,dpm"]) == 2
    assert re.search("unknown samplers.*'dpm'", capsys.readouterr().err)
    wrist = load_robot_config(CONFIG)
    wrist = dataclasses.replace(wrist, cameras=(dataclasses.replace(wrist.cameras[0], name="wrist"),))
    other = make_untrained_checkpoint(wrist, str(tmp_path / "wrist"))
    assert main(["eval", "policy", "--checkpoint", other, "--config", CONFIG, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot run this policy" in err and "obs/wrist/rgb missing" in err, err
