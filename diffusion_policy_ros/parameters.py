"""Typed parameter schemas: every parameter a node reads, with its type, default, range and meaning.

One `NodeSchema` per node (listed in `node_parameters.py`) is the single source of what the node
declares to ROS (`ros2 param describe` shows the description and the constraints), of the launch
arguments and `graph.NODE_PARAMETERS`, and of the check that rejects an unknown or mistyped key at
start-up with the closest known one, so a typo such as `max_velocty` in the safety filter's section
stops the node instead of silently keeping a default. Plain Python (no rclpy): the node side is
`nodes/_parameters.py`, and tools without ROS validate a config file's sections with the same code.

Names may hold placeholders: `{arm}` stands for each name in the config's `arms` list (a node
declares one parameter per arm), `{name}` for any single name (e.g. `camera.{name}.topic`, only
checked when given).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

KINDS = ("bool", "int", "double", "string", "bool_array", "int_array", "double_array", "string_array")
_ELEMENT = {"bool_array": "bool", "int_array": "int", "double_array": "double", "string_array": "string"}
ARM_PLACEHOLDER = "{arm}"
ANY_PLACEHOLDER = "{name}"
# Parameters rclpy itself owns on every node: never part of a node's schema.
ROS_OWN_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_OWN_PREFIXES = ("qos_overrides.",)


class ConfigError(ValueError):
    """A config file or parameter set that cannot describe a robot or configure a node."""


class ParameterError(ConfigError):
    """A parameter a node does not know, or a value its schema does not allow."""


def is_ros_own(name: str) -> bool:
    return name in ROS_OWN_PARAMETERS or name.startswith(ROS_OWN_PREFIXES)


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    name: str
    kind: str                      # one of KINDS
    default: Any                   # None: required (no default)
    description: str
    # Read-only: the node reads it once at start-up, so a change at run time would not be applied
    # (and on the safety limits would be unsafe to pretend it was); `ros2 param set` refuses it.
    read_only: bool = True
    minimum: float | None = None   # numbers, and each element of number arrays
    maximum: float | None = None
    exclusive_minimum: bool = False  # strictly greater than `minimum` (rates, periods)
    choices: tuple = ()
    length: int | None = None      # arrays of a fixed length

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.default is not None:
            object.__setattr__(self, "default", self.coerce(self.default))

    @property
    def is_array(self) -> bool:
        return self.kind.endswith("_array")

    def constraints(self) -> str:
        """The constraints in words (for `ros2 param describe` and error messages)."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(str(c) for c in self.choices))
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        if self.length is not None:
            parts.append(f"exactly {self.length} values")
        if self.default is None:
            parts.append("required")
        return "; ".join(parts)

    def coerce(self, value: Any, owner: str = "") -> Any:
        """The value as this parameter's type (an int is a valid double), or ParameterError."""
        where = f"{owner}: " if owner else ""
        if self.is_array:
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise ParameterError(f"{where}parameter {self.name} must be a list ({self.kind}), got {value!r}")
            items = [self._scalar(_ELEMENT[self.kind], v, where) for v in value]
            if self.length is not None and len(items) != self.length:
                raise ParameterError(f"{where}parameter {self.name} must have exactly {self.length} values, "
                                     f"got {len(items)}")
            result = items
        else:
            result = self._scalar(self.kind, value, where)
        for v in (result if self.is_array else [result]):
            self._check_range(v, where)
        if self.choices and not self.is_array and result not in self.choices:
            raise ParameterError(f"{where}parameter {self.name} must be one of {list(self.choices)}, got {result!r}")
        if self.choices and self.is_array:
            bad = [v for v in result if v not in self.choices]
            if bad:
                raise ParameterError(f"{where}parameter {self.name}: {bad} not among {list(self.choices)}")
        return result

    def _scalar(self, kind: str, value: Any, where: str) -> Any:
        if hasattr(value, "item") and not isinstance(value, (list, tuple)):
            value = value.item()  # numpy scalars
        ok = {"bool": isinstance(value, bool),
              "int": isinstance(value, int) and not isinstance(value, bool),
              "double": isinstance(value, (int, float)) and not isinstance(value, bool),
              "string": isinstance(value, str)}[kind]
        if not ok:
            raise ParameterError(f"{where}parameter {self.name} must be {_KIND_WORDS[self.kind]}, got {value!r}")
        return float(value) if kind == "double" else value

    def _check_range(self, v: Any, where: str) -> None:
        if isinstance(v, (bool, str)) or (self.minimum is None and self.maximum is None):
            return
        if isinstance(v, float) and math.isnan(v):
            raise ParameterError(f"{where}parameter {self.name} must be a number, got NaN")
        low = self.minimum is not None and (v <= self.minimum if self.exclusive_minimum else v < self.minimum)
        high = self.maximum is not None and v > self.maximum
        if low or high:
            raise ParameterError(f"{where}parameter {self.name} must be {self.constraints()}, got {v!r}")


_KIND_WORDS = {"bool": "true or false", "int": "an integer", "double": "a number", "string": "a string",
               "bool_array": "a list of true/false", "int_array": "a list of integers",
               "double_array": "a list of numbers", "string_array": "a list of strings"}


def parameter(default: Any, description: str, **constraints) -> dataclasses.Field:
    """A dataclass field that is also a node parameter (`schema_from_dataclass` reads it)."""
    return dataclasses.field(default=default, metadata={"parameter": {"description": description, **constraints}})


@dataclasses.dataclass(frozen=True)
class NodeSchema:
    node: str
    parameters: tuple[ParameterSpec, ...]
    uses_robot_config: bool = True   # reads the shared `/**` robot description (config/*.yaml)

    def __post_init__(self):
        names = [p.name for p in self.parameters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{self.node}: parameters declared twice: {duplicates}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def expanded(self, arms: Sequence[str] = ()) -> dict[str, ParameterSpec]:
        """Concrete parameters: `{arm}` names once per arm (templates with `{name}` stay out)."""
        out = {}
        for spec in self.parameters:
            if ARM_PLACEHOLDER in spec.name:
                for arm in arms:
                    name = spec.name.replace(ARM_PLACEHOLDER, arm)
                    out[name] = dataclasses.replace(spec, name=name,
                                                    description=spec.description.replace(ARM_PLACEHOLDER, arm))
            elif ANY_PLACEHOLDER not in spec.name:
                out[spec.name] = spec
        return out

    def match(self, key: str, arms: Sequence[str] = ()) -> ParameterSpec | None:
        """The parameter `key` is (placeholders filled in), or None if the node has no such one."""
        parts = key.split(".")
        for spec in self.parameters:
            template = spec.name.split(".")
            if len(template) == len(parts) and all(
                    t == p or (t == ARM_PLACEHOLDER and p in arms) or (t == ANY_PLACEHOLDER and p)
                    for t, p in zip(template, parts)):
                filled = {t: p for t, p in zip(template, parts) if t in (ARM_PLACEHOLDER, ANY_PLACEHOLDER)}
                description = spec.description
                for placeholder, value in filled.items():
                    description = description.replace(placeholder, value)
                return dataclasses.replace(spec, name=key, description=description)
        return None

    def known_names(self, arms: Sequence[str] = ()) -> list[str]:
        """Every concrete name (for suggestions): placeholders filled with the arms, or left as is."""
        names = list(self.expanded(arms))
        names += [p.name for p in self.parameters if ANY_PLACEHOLDER in p.name]
        return names

    def validate(self, values: Mapping[str, Any], arms: Sequence[str] = (),
                 also_known: Sequence[str] = ()) -> dict[str, Any]:
        """Typed values for every concrete parameter: the given ones checked, defaults for the rest.
        An unknown key is an error naming the closest known one (among this schema's names and
        `also_known`, e.g. the shared robot-config keys)."""
        out = {}
        for key, value in values.items():
            spec = self.match(key, arms)
            if spec is None:
                raise ParameterError(unknown_parameter_message(self.node, key, self.known_names(arms) + list(also_known)))
            out[key] = spec.coerce(value, self.node)
        for name, spec in self.expanded(arms).items():
            if name not in out:
                if spec.default is None:
                    raise ParameterError(f"{self.node}: missing required parameter {name} ({spec.description})")
                out[name] = spec.default
        return out


def unknown_parameter_message(node: str, key: str, known: Iterable[str]) -> str:
    closest = closest_name(key, known)
    hint = f"; did you mean '{closest}'?" if closest else ""
    return f"{node}: unknown parameter '{key}'{hint}"


def closest_name(key: str, known: Iterable[str]) -> str | None:
    """The known name most like `key` (by difflib's ratio, also on the last dotted part)."""
    known = sorted(set(known))
    if not known:
        return None
    leaf = key.rsplit(".", 1)[-1]

    def likeness(name: str) -> float:
        whole = difflib.SequenceMatcher(None, key, name).ratio()
        last = difflib.SequenceMatcher(None, leaf, name.rsplit(".", 1)[-1]).ratio()
        return max(whole, 0.9 * last)

    return max(known, key=likeness)


def schema_from_dataclass(node: str, cls, extra: Sequence[ParameterSpec] = (),
                          uses_robot_config: bool = True) -> NodeSchema:
    """A schema from a dataclass whose fields are made with `parameter(...)` (plain fields are
    parameters too, typed from their default, without a description)."""
    specs = []
    for field in dataclasses.fields(cls):
        meta = dict(field.metadata.get("parameter", {}))
        description = meta.pop("description", "")
        if isinstance(field.default, tuple):
            meta.setdefault("length", len(field.default))
        specs.append(ParameterSpec(field.name, kind_of(field.default), field.default, description, **meta))
    return NodeSchema(node, tuple(specs) + tuple(extra), uses_robot_config)


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)) and value:
        element = kind_of(value[0])
        if element in ("int", "double") and any(isinstance(v, float) for v in value):
            element = "double"
        return f"{element}_array"
    raise ValueError(f"cannot tell a parameter type from the default {value!r}")
