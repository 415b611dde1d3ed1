"""The operator console's text, from what the recorder and the safety filter report.

The recorder publishes a JSON status (state, elapsed_s, frames, dropped, duplicated,
safety_affected_frames, last_safety_event, episode_index, message); any of them may be missing
(an older recorder, or none yet) and is then shown as "-".
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

KEYS_HELP = "[c] start  [s] save  [d/Backspace] discard  [r] reset scene  [t] task text  [q] quit"
SAFETY_ACTIONS = {1: "clamp", 2: "reject", 3: "hold"}   # SafetyEvent.msg


def parse_status(text: str) -> dict | None:
    """The recorder's JSON status, or None if it is not a JSON object."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _value(status: Mapping, key: str, fmt: str = "{}") -> str:
    value = status.get(key)
    if value is None or value == "":
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def _episode(status: Mapping) -> str:
    value = status.get("episode_index")
    # The recorder says -1 before its first episode.
    return "-" if isinstance(value, int) and not isinstance(value, bool) and value < 0 else _value(status, "episode_index")


def _elapsed(status: Mapping) -> str:
    value = status.get("elapsed_s")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    minutes, secs = divmod(max(0.0, float(value)), 60.0)
    return f"{int(minutes):02d}:{secs:04.1f}"


@dataclasses.dataclass(frozen=True)
class SafetyNote:
    """A safety event as the console shows it."""
    arm: str
    reason: str
    action: int
    stamp: float          # seconds, the event's own clock

    def describe(self, now: float | None = None) -> str:
        action = SAFETY_ACTIONS.get(self.action, str(self.action))
        age = f", {max(0.0, now - self.stamp):.0f} s ago" if now is not None and self.stamp > 0 else ""
        return f"{self.arm}: {self.reason} ({action}{age})"


def _recorder_safety(status: Mapping) -> str:
    event = status.get("last_safety_event")
    if isinstance(event, Mapping):
        parts = [str(event[k]) for k in ("arm", "reason") if event.get(k)]
        return ": ".join(parts) if parts else "-"
    return str(event) if event else "-"


def status_line(status: Mapping | None, safety: SafetyNote | None = None, now: float | None = None) -> str:
    """One line: recorder state, episode, elapsed time, frames, drops, safety."""
    if status is None:
        return "recorder: no status yet"
    state = _value(status, "state").upper()
    last = safety.describe(now) if safety is not None else _recorder_safety(status)
    return (f"{state:<10} episode {_episode(status)}  {_elapsed(status)}  "
            f"frames {_value(status, 'frames')}  dropped {_value(status, 'dropped')}  "
            f"duplicated {_value(status, 'duplicated')}  safety-affected {_value(status, 'safety_affected_frames')}"
            f"  | last safety event: {last}")


def changed(before: Mapping | None, after: Mapping | None) -> bool:
    """Whether a status differs in what is worth a new line when the console cannot redraw
    (a pipe): the state, the episode, or the recorder's message."""
    keys = ("state", "episode_index", "message")
    return (before is None) != (after is None) or (
        after is not None and any(before.get(k) != after.get(k) for k in keys))
