"""Declaring a node's parameters from its schema (`node_parameters.py`), with ROS descriptors.

    class SimNode(Node):
        def __init__(self, **kwargs):
            super().__init__("sim_node", **PARAMETER_OPTIONS, **kwargs)
            declared = declare_node_parameters(self, SIM_NODE)
            self.config, rate = declared.robot, declared["physics_rate_hz"]

The keys the node was given (params files, `-p`, `parameter_overrides`) are checked first: one
that neither the node's schema nor the shared robot description has stops the node with a message
naming the node, the key and the closest known key. Then every parameter is declared typed, with
its description, range and read-only flag, so `ros2 param describe` documents it and `ros2 param
set` refuses values the schema does not allow.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from diffusion_policy_ros.parameters import (ConfigError, NodeSchema, ParameterError, ParameterSpec,
                                             is_ros_own)
from diffusion_policy_ros.robot_config import SHARED_PARAMETERS, RobotConfig, shared_arms

# The given keys must be visible to be checked; rclpy lists them only once declared. Undeclared
# parameters stay disallowed: they are re-declared from the schema, and anything else is refused.
PARAMETER_OPTIONS = {"automatically_declare_parameters_from_overrides": True}

_TYPES = {"bool": Parameter.Type.BOOL, "int": Parameter.Type.INTEGER, "double": Parameter.Type.DOUBLE,
          "string": Parameter.Type.STRING, "bool_array": Parameter.Type.BOOL_ARRAY,
          "int_array": Parameter.Type.INTEGER_ARRAY, "double_array": Parameter.Type.DOUBLE_ARRAY,
          "string_array": Parameter.Type.STRING_ARRAY}


@dataclasses.dataclass(frozen=True)
class DeclaredParameters:
    values: dict[str, Any]           # the node's own parameters, typed (defaults filled in)
    robot: RobotConfig | None        # the shared robot description (schemas that use it)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def declare_node_parameters(node: Node, schema: NodeSchema) -> DeclaredParameters:
    """Check the node's given parameters against `schema`, declare them all, return the values."""
    given = {name: plain(p.value) for name, p in node.get_parameters_by_prefix("").items() if not is_ros_own(name)}
    arms = shared_arms(given)
    own, shared = {}, {}
    for key, value in given.items():
        is_own = schema.match(key, arms) is not None or SHARED_PARAMETERS.match(key, arms) is None
        (own if is_own else shared)[key] = value
    try:
        values = schema.validate(own, arms, also_known=SHARED_PARAMETERS.known_names(arms))
        robot = RobotConfig.from_parameters(shared) if schema.uses_robot_config else None
        shared = {key: SHARED_PARAMETERS.match(key, arms).coerce(value, schema.node) for key, value in shared.items()}
    except ConfigError as e:
        message = str(e) if str(e).startswith(f"{schema.node}:") else f"{schema.node}: {e}"
        node.get_logger().fatal(message)
        raise ParameterError(message) from None
    for name in given:
        node.undeclare_parameter(name)
    for name, value in values.items():
        _declare(node, schema.match(name, arms), value)
    for name, value in shared.items():
        _declare(node, SHARED_PARAMETERS.match(name, arms), value)
    node.add_on_set_parameters_callback(lambda params: _check_change(schema, arms, params))
    return DeclaredParameters(values, robot)


def parameter_values(node: Node, schema: NodeSchema, arms=()) -> dict[str, Any]:
    """The node's own parameters now (after `ros2 param set`; for settings applied on configure)."""
    return {name: plain(node.get_parameter(name).value) for name in schema.expanded(arms)}


def plain(value: Any) -> Any:
    """rclpy hands number arrays over as array.array: make them lists."""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return list(value.tolist() if hasattr(value, "tolist") else value)
    return value


def descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(name=spec.name, type=_TYPES[spec.kind].value, description=spec.description,
                            additional_constraints=spec.constraints(), read_only=spec.read_only)
    numeric = spec.kind in ("double", "double_array", "int", "int_array")
    if numeric and (spec.minimum is not None or spec.maximum is not None):
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        if spec.kind == "double":
            d.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        elif spec.kind == "int" and math.isfinite(low) and math.isfinite(high):
            d.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return d


def _declare(node: Node, spec: ParameterSpec, value: Any) -> None:
    desc = descriptor(spec)
    if spec.is_array and not value:
        # rclpy infers an empty list's type as a byte array: declare the type, then set the value.
        writable = descriptor(dataclasses.replace(spec, read_only=False))
        node.declare_parameter(spec.name, _TYPES[spec.kind], writable, ignore_override=True)
        node.set_parameters([Parameter(spec.name, _TYPES[spec.kind], [])])
        if spec.read_only:
            node.set_descriptor(spec.name, desc)
        return
    node.declare_parameter(spec.name, value, desc, ignore_override=True)


def _check_change(schema: NodeSchema, arms, params) -> SetParametersResult:
    """`ros2 param set` gets the schema's answer (choices, exclusive bounds, array lengths)."""
    for p in params:
        if is_ros_own(p.name):
            continue
        spec = schema.match(p.name, arms) or SHARED_PARAMETERS.match(p.name, arms)
        if spec is None:
            return SetParametersResult(successful=False, reason=f"{schema.node} has no parameter {p.name}")
        try:
            spec.coerce(plain(p.value), schema.node)
        except ParameterError as e:
            return SetParametersResult(successful=False, reason=str(e))
    return SetParametersResult(successful=True)
