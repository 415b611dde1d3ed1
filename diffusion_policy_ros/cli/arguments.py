"""Arguments several `dpros` commands share, and their parsing into plain values."""
from __future__ import annotations

from diffusion_policy_ros.cli.errors import UsageError
from diffusion_policy_ros.policy.configuration import SAMPLERS

DEFAULT_SAMPLERS = "streaming,ddpm,ddim"


def add_set_argument(parser, help_text: str = "a launch argument, e.g. policy_checkpoint:=runs/x/checkpoint "
                                              "(repeatable)") -> None:
    parser.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE", help=help_text)


def parse_sets(items) -> dict[str, str]:
    """['policy_device:=cpu', ...] -> {'policy_device': 'cpu', ...}"""
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep:
            raise UsageError(f"--set expects NAME:=VALUE, got {item!r}")
        out[name] = value
    return out


def add_episode_arguments(parser):
    """What every sampler evaluation takes (eval sim, eval policy): checkpoint, seeds, samplers."""
    parser.add_argument("--checkpoint", required=True, help="policy checkpoint folder")
    parser.add_argument("--config", default="config/single_arm.yaml")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000, help="first seed (held out from the demos)")
    parser.add_argument("--samplers", default=DEFAULT_SAMPLERS, help=f"comma-separated: {DEFAULT_SAMPLERS}")
    parser.add_argument("--timeout-s", type=float, default=12.0, help="sim seconds an episode may take")


def parse_samplers(text: str) -> list[str]:
    """'streaming,ddpm' -> ['streaming', 'ddpm'], each a sampler the policy has."""
    samplers = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(samplers) - set(SAMPLERS))
    if unknown or not samplers:
        raise UsageError(f"unknown samplers {unknown or [text]}; choose from {list(SAMPLERS)}")
    return samplers


def parse_real_time_factors(text: str, samplers: list[str]) -> dict[str, float]:
    """'0.5' -> the same factor for every sampler; 'ddpm=0.2,streaming=1' -> per sampler (1 when
    not named)."""
    def number(value: str) -> float:
        try:
            factor = float(value)
        except ValueError:
            raise UsageError(f"--real-time-factor: {value!r} is not a number") from None
        if not factor > 0:
            raise UsageError(f"--real-time-factor must be > 0, got {value}")
        return factor

    if "=" not in text:
        return {s: number(text) for s in samplers}
    factors = {s: 1.0 for s in samplers}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name.strip() not in SAMPLERS:
            raise UsageError(f"--real-time-factor: unknown sampler {name.strip()!r}; choose from {SAMPLERS}")
        factors[name.strip()] = number(value)
    return {s: factors[s] for s in samplers}
