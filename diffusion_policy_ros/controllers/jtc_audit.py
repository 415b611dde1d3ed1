"""Counting what joint_trajectory_controllers would reject among the messages sent to them.

Each message is checked with the controller's own rules (jtc_rules.py) as if it arrived `delay`
seconds after a reference time (the rules depend on the arrival time only through "ends in the
past"): its real arrival (`from_sent=False`: what a controller on this machine would have done), or
the moment it was sent, which a stamped command carries as its stamp (`from_sent=True`: whether it
survives `delay` of delivery latency, independent of how loaded this machine is). The safety
filter's holds and stops are told apart by their last point, which repeats their rest position
long after their stamp (controllers/split.py `padded_hold`), so that no realistic delay gets them
rejected.
"""
from __future__ import annotations

import collections
import dataclasses

from diffusion_policy_ros.controllers.jtc_rules import JtcMessage, JtcSettings, rejection
from diffusion_policy_ros.controllers.split import is_padded_hold

MAX_EXAMPLES = 5


@dataclasses.dataclass
class ControllerCounts:
    messages: int = 0
    holds: int = 0                 # the safety filter's holds and stops (padded_hold)
    rejected: dict[float, int] = dataclasses.field(default_factory=dict)      # delay -> count
    examples: list[str] = dataclasses.field(default_factory=list)


class JtcAudit:
    def __init__(self, controllers: dict[str, JtcSettings], delays_s=(0.0,), from_sent: bool = False):
        self.controllers = dict(controllers)
        self.delays_s = tuple(float(d) for d in delays_s)
        self.from_sent = from_sent
        self.counts = {name: ControllerCounts(rejected={d: 0 for d in self.delays_s}) for name in self.controllers}
        self.reasons: collections.Counter[str] = collections.Counter()

    def check(self, controller: str, msg: JtcMessage, received_ns: int) -> list[tuple[float, str]]:
        """Check one message; returns (delay, reason) for each delay that gets it rejected."""
        counts = self.counts[controller]
        counts.messages += 1
        counts.holds += is_hold(msg)
        reference_ns = msg.stamp_ns if self.from_sent and msg.stamp_ns else received_ns
        found = []
        for delay in self.delays_s:
            reason = rejection(self.controllers[controller], msg, reference_ns + int(round(delay * 1e9)))
            if reason is None:
                continue
            counts.rejected[delay] += 1
            self.reasons[reason.split(" (")[0]] += 1
            text = f"{controller} (delay {delay:g} s): {reason}"
            found.append((delay, reason))
            if len(counts.examples) < MAX_EXAMPLES:
                counts.examples.append(text)
        return found

    @property
    def total_rejected(self) -> int:
        return sum(sum(c.rejected.values()) for c in self.counts.values())

    @property
    def total_messages(self) -> int:
        return sum(c.messages for c in self.counts.values())

    def report(self) -> dict:
        return {"delays_s": list(self.delays_s), "messages": self.total_messages, "rejected": self.total_rejected,
                "controllers": {name: {"joints": list(self.controllers[name].joints), "messages": c.messages,
                                       "holds": c.holds,
                                       "rejected_by_delay": {f"{d:g}": n for d, n in c.rejected.items()},
                                       "examples": c.examples}
                                for name, c in self.counts.items()},
                "reasons": dict(self.reasons)}

    def summary(self) -> str:
        parts = [f"{name}: {c.messages} messages ({c.holds} holds/stops), rejected "
                 + ", ".join(f"{n} at +{d:g} s" for d, n in c.rejected.items())
                 for name, c in self.counts.items()]
        return "; ".join(parts)


def is_hold(msg: JtcMessage) -> bool:
    return bool(msg.points) and is_padded_hold(msg.stamp_ns, msg.points[-1].time_from_start_ns)
