"""`dpros eval sim` argument parsing: samplers, per-sampler sim speed and task variants (plain
data, no ROS)."""
import os

import pytest

from diffusion_policy_ros.cli.arguments import method_label, parse_real_time_factors, parse_samplers, parse_variants
from diffusion_policy_ros.cli.errors import UsageError
from diffusion_policy_ros.robot_config import load_robot_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_samplers_are_checked_and_keep_their_order():
    assert parse_samplers(" ddpm, streaming ") == ["ddpm", "streaming"]
    with pytest.raises(UsageError, match=r"unknown samplers \['dpm'\]"):
        parse_samplers("streaming,dpm")
    with pytest.raises(UsageError, match="unknown samplers"):
        parse_samplers(" , ")


def test_real_time_factor_is_one_number_or_per_sampler():
    samplers = ["streaming", "ddim", "ddpm"]
    assert parse_real_time_factors("0.5", samplers) == {"streaming": 0.5, "ddim": 0.5, "ddpm": 0.5}
    assert parse_real_time_factors("ddpm=0.1, ddim=0.5", samplers) == {"streaming": 1.0, "ddim": 0.5, "ddpm": 0.1}
    with pytest.raises(UsageError, match="unknown sampler 'dpm'"):
        parse_real_time_factors("dpm=0.1", samplers)
    with pytest.raises(UsageError, match="must be > 0"):
        parse_real_time_factors("ddpm=0", samplers)
    with pytest.raises(UsageError, match="is not a number"):
        parse_real_time_factors("ddpm=slow", samplers)


def test_variants_default_to_the_config_s_and_must_be_the_task_s():
    static = load_robot_config(os.path.join(ROOT, "config", "single_arm.yaml"))
    reactive = load_robot_config(os.path.join(ROOT, "config", "single_arm_reactive.yaml"))
    bimanual = load_robot_config(os.path.join(ROOT, "config", "bimanual.yaml"))
    assert parse_variants(None, static) == ["static"]
    assert parse_variants(None, reactive) == ["displaced"]
    assert parse_variants("static, displaced,static", reactive) == ["static", "displaced"]
    with pytest.raises(UsageError, match=r"task pick_place has no variants \['shaken'\]"):
        parse_variants("static,shaken", static)
    with pytest.raises(UsageError, match=r"task handover has no variants \['displaced'\]"):
        parse_variants("displaced", bimanual)
    assert method_label("ddpm", "displaced", ["displaced"]) == "ddpm"
    assert method_label("ddpm", "displaced", ["static", "displaced"]) == "ddpm displaced"
