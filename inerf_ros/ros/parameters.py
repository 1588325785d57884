"""ROS parameters from a config dataclass: one declaration per field, validated, live updates.

Every node parameter maps to one field of the component's config dataclass (see
:mod:`inerf_ros.config`): its type, default, description, choices and range come from there.
Fields with ``read_only=True`` (model paths, device, topics) cannot change while the node runs.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.parameter import Parameter

from inerf_ros import config as config_tools


def _descriptor(cls, f: dataclasses.Field) -> ParameterDescriptor:
    meta = f.metadata
    text = meta.get("help", "")
    if meta.get("choices"):
        text += f" One of: {', '.join(map(str, meta['choices']))}."
    descriptor = ParameterDescriptor(description=text, read_only=bool(meta.get("read_only")))
    value_range = meta.get("range")
    tp = config_tools.field_type(cls, f)
    if value_range and tp is int:
        descriptor.integer_range = [IntegerRange(from_value=int(value_range[0]), to_value=int(value_range[1]), step=0)]
    elif value_range and tp is float:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(value_range[0]), to_value=float(value_range[1]), step=0.0)]
    return descriptor


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def declare_config(node, cls, prefix: str = ""):
    """Declare one parameter per field of ``cls`` and return the validated config read back.

    Lists of strings become string arrays; an empty list default is declared as a string array.
    Raises ValueError (with the field's name) when a value given by the user is out of range.
    """
    values = {}
    for f in config_tools.fields(cls):
        name = prefix + f.name
        try:
            values[f.name] = _declare(node, cls, f, name)
        except ParameterException as error:  # `-p num_rays:=abc`, `-p num_rays:=0`: one line, not a traceback
            raise ValueError(f"parameter {name}: {error}") from None
    try:
        config = cls(**values)
        config_tools.validate(config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{cls.__name__} parameters: {error}") from None
    return config


def _declare(node, cls, f: dataclasses.Field, name: str):
    default = _default(f)
    tp = config_tools.field_type(cls, f)
    if tp is list and not default:
        # An empty list has no ROS type: declare the annotated array type (``list[float]``: a double
        # array, else a string array), left unset until a user sets it.
        element = typing.get_args(typing.get_type_hints(cls)[f.name])
        kind = Parameter.Type.DOUBLE_ARRAY if element[:1] == (float,) else Parameter.Type.STRING_ARRAY
        node.declare_parameter(name, kind, _descriptor(cls, f))
        try:
            value = node.get_parameter(name).value
        except ParameterUninitializedException:
            value = None
        return list(value) if value is not None else []
    node.declare_parameter(name, default, _descriptor(cls, f))
    value = node.get_parameter(name).value
    return list(value) if tp is list else value


def on_parameters_updated(node, cls, get_config: Callable[[], object], apply: Callable[[object], None],
                          prefix: str = "", check: Callable[[object], None] | None = None) -> None:
    """Register a callback that validates changed parameters and applies them as a new config.

    An invalid value is refused with the reason (``ros2 param set`` prints it) and nothing changes.
    ``check(candidate)``: a further test that needs the node (raises ValueError), e.g. class names
    against the loaded model's.
    """
    names = {prefix + f.name: f.name for f in config_tools.fields(cls)}

    def on_set_parameters(parameters) -> SetParametersResult:
        updates = {names[p.name]: p.value for p in parameters if p.name in names}
        if not updates:
            return SetParametersResult(successful=True)
        try:
            candidate = dataclasses.replace(get_config(), **updates)
            config_tools.validate(candidate)
            if check is not None:
                check(candidate)
        except (ValueError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        apply(candidate)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set_parameters)
