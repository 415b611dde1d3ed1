"""The pictures people look at say what they show: success bars carry their counts (a 0 % bar is
not empty axes), the scene strip is labelled, a thumbnail sheet says when episodes are left out."""
import numpy as np
from PIL import Image

from diffusion_policy_ros import reporting
from diffusion_policy_ros.data.dataset_summary import thumbnail_strip
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer


def graph_result(successes, episodes):
    return {"success_rate": successes / episodes, "successes": successes, "episodes": episodes,
            "inference_latency_ms": {"p50": 10.0, "p99": 20.0, "max": 25.0}}


def policy_result(successes, held, episodes):
    return {"success_rate": successes / episodes, "successes": successes, "episodes": episodes,
            "held_success_rate": held / episodes, "held_successes": held, "ms_per_chunk": 5.0}


def test_success_bars_are_labelled_even_at_zero():
    fig = reporting.graph_eval_figure({"streaming": graph_result(0, 3), "ddim": graph_result(3, 3)},
                                      {"streaming": 1.0, "ddim": 0.5})
    assert [t.get_text() for t in fig.axes[0].texts] == ["0/3", "3/3"]
    fig = reporting.policy_eval_figure({"streaming": policy_result(0, 0, 4), "ddpm": policy_result(2, 1, 4)}, 1.0)
    assert [t.get_text() for t in fig.axes[0].texts] == ["0/4", "2/4", "0/4", "1/4"]


def test_time_bars_use_a_log_scale_only_across_orders_of_magnitude():
    close = {"full": policy_result(9, 9, 10) | {"ms_per_chunk": 128.0},
             "no depth": policy_result(9, 9, 10) | {"ms_per_chunk": 99.0}}
    axis = reporting.policy_eval_figure(close, 1.0).axes[1]
    assert axis.get_yscale() == "linear" and axis.get_ylim()[0] == 0
    apart = {"streaming": policy_result(9, 9, 10) | {"ms_per_chunk": 12.0},
             "ddpm": policy_result(9, 9, 10) | {"ms_per_chunk": 500.0}}
    assert reporting.policy_eval_figure(apart, 1.0).axes[1].get_yscale() == "log"
    latency = {"streaming": graph_result(3, 3), "ddpm": graph_result(3, 3)}
    latency["ddpm"]["inference_latency_ms"] = {"p50": 900.0, "p99": 1200.0, "max": 1300.0}
    assert reporting.graph_eval_figure(latency, {"streaming": 1.0, "ddpm": 0.1}).axes[1].get_yscale() == "log"


def test_scene_strip_has_a_title_and_times(tmp_path):
    frames = [(float(t), np.full((64, 64, 3), 40, np.uint8)) for t in range(14)]
    path = tmp_path / "strip.png"
    reporting.save_frame_strip(frames, str(path), title="streaming, seed 7")
    image = np.asarray(Image.open(path).convert("RGB"))
    scale = 256 // 64
    assert image.shape == (64 * scale + reporting._CAPTION_PX, 12 * 64 * scale, 3)   # 12 of 14 frames
    caption = image[:reporting._CAPTION_PX]
    assert (caption.sum(axis=2) < 200).any(), "no title text"
    yellow = (image[..., 0] > 200) & (image[..., 1] > 200) & (image[..., 2] < 100)
    first, last = yellow[:, :64 * scale], yellow[:, 11 * 64 * scale:]
    assert first.any() and last.any(), "a frame without its time label"


def test_thumbnail_sheet_says_how_many_episodes_it_leaves_out(tmp_path):
    dataset = ReplayBuffer.create(str(tmp_path / "ds"))
    for i in range(5):
        dataset.add_episode({"obs/scene/rgb": np.full((4, 32, 32, 3), 30 * i, np.uint8),
                             "timestamp": np.arange(4) / 10.0}, {"task": "t"})
    key, shown = thumbnail_strip(dataset, str(tmp_path / "some.png"), max_episodes=3, height=32)
    assert (key, shown) == ("obs/scene/rgb", 3)
    image = np.asarray(Image.open(tmp_path / "some.png").convert("RGB"))
    assert image.shape[0] == 3 * 32 + 16
    assert (image[3 * 32:].sum(axis=2) < 200).any(), "no note under the rows"
    key, shown = thumbnail_strip(dataset, str(tmp_path / "all.png"), max_episodes=0, height=32)
    assert shown == 5 and Image.open(tmp_path / "all.png").height == 5 * 32


def test_safety_summary_counts_clearance_events_and_names_the_episodes_they_stopped():
    from diffusion_policy_ros.evaluation.graph_episodes import safety_summary
    outcomes = [{"seed": 1, "success": True, "safety_events": {"clamp arm_clearance": 3, "clamp max_step": 1}},
                {"seed": 2, "success": False, "safety_events": {"reject arm_clearance": 1, "hold stale_command": 2}},
                {"seed": 3, "success": True, "safety_events": {"reject arm_clearance": 2}},
                {"seed": 4, "success": False, "safety_events": {}}]
    summary = safety_summary(outcomes)
    assert summary["events"] == {"clamp arm_clearance": 3, "clamp max_step": 1, "hold stale_command": 2,
                                 "reject arm_clearance": 3}
    assert (summary["clearance_clamps"], summary["clearance_rejects"]) == (3, 3)
    assert summary["episodes_with_clearance_reject"] == [2, 3]
    assert summary["failed_episodes_with_clearance_reject"] == [2]
    line = reporting.safety_line(summary)
    assert "3 clamps, 3 rejects (in 2 episodes; failed episodes with one: [2])" in line
