"""One typed dataclass per component feeds both CLI flags and ROS parameters.

A config is a ``@dataclass`` whose fields have a type, a default and a docstring-like description in
``field(metadata={"help": ...})`` (use :func:`option`). Optional ``choices`` and ``range`` metadata
become argparse choices and ROS parameter ranges. No second list of names or defaults exists
anywhere: the CLI (:func:`add_arguments` / :func:`from_args`) and the nodes
(``inerf_ros.ros.parameters``) both read the dataclass.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_SCALARS = (bool, int, float, str)


def option(default: Any, help: str, *, choices: tuple | None = None,  # noqa: A002 - argparse's name
           range: tuple[float, float] | None = None, read_only: bool = False) -> Any:  # noqa: A002
    """A config field: its default, one line of help, optional choices / numeric range.

    ``read_only`` marks fields that a running node cannot change (model paths, device, ...).
    """
    meta = {"help": help, "choices": choices, "range": range, "read_only": read_only}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def fields(cls) -> list[dataclasses.Field]:
    """The dataclass fields of config class ``cls``, in declaration order."""
    return list(dataclasses.fields(cls))


def field_type(cls, f: dataclasses.Field) -> type:
    """The concrete Python type of a field (resolving ``from __future__ import annotations``)."""
    hints = typing.get_type_hints(cls)
    tp = hints[f.name]
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return list
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def validate(config) -> None:
    """Check choices and ranges of every field; raise ``ValueError`` naming the field."""
    for f in fields(type(config)):
        value = getattr(config, f.name)
        choices, value_range = f.metadata.get("choices"), f.metadata.get("range")
        if choices and value not in choices:
            raise ValueError(f"{f.name}={value!r} is not one of {list(choices)}")
        if value_range and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = value_range
            if not (low <= value <= high):
                raise ValueError(f"{f.name}={value!r} is outside [{low}, {high}]")
    post = getattr(config, "check", None)
    if callable(post):
        post()


def add_arguments(parser: argparse.ArgumentParser, cls, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per dataclass field (underscores become dashes)."""
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        tp = field_type(cls, f)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        dest = prefix + f.name
        if tp is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif tp is list:
            group.add_argument(flag, dest=dest, nargs="*", default=default, help=help_text)
        else:
            group.add_argument(flag, dest=dest, type=tp, default=default, choices=f.metadata.get("choices"),
                               help=help_text)


def from_args(cls: type[T], args: argparse.Namespace, prefix: str = "", **overrides) -> T:
    """Build (and validate) a config from parsed flags added by :func:`add_arguments`."""
    values = {f.name: getattr(args, prefix + f.name) for f in fields(cls) if hasattr(args, prefix + f.name)}
    values.update(overrides)
    config = cls(**values)
    validate(config)
    return config


def from_dict(cls: type[T], values: dict, *, strict: bool = True) -> T:
    """Build (and validate) a config from a mapping (e.g. a YAML section); unknown keys raise."""
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown and strict:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}; known: {sorted(names)}")
    config = cls(**{k: v for k, v in values.items() if k in names})
    validate(config)
    return config
