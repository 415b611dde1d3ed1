"""`dpros eval sim` argument parsing: samplers and per-sampler sim speed (plain data, no ROS)."""
import pytest

from diffusion_policy_ros.cli.arguments import parse_real_time_factors, parse_samplers
from diffusion_policy_ros.cli.errors import UsageError


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
