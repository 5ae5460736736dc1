"""The one error base of the package: an error the user can fix, with a message that says how.

`fsmde` prints an `FsmdeError` as one line and exits 2, and the node logs it and exits 2 at
start; any other exception is a bug in fsmde_ros and keeps its traceback (exit 1). Each
subclass also derives from the builtin it refines, so `except ValueError` keeps working.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


class FsmdeError(Exception):
    """A mistake in what the user gave (a path, a parameter, a file, a model); the message says what to change."""


class ConfigError(FsmdeError, ValueError):
    """A parameter, option or configuration value outside what is accepted; names it and the valid values."""


class MissingFileError(FsmdeError, FileNotFoundError):
    """A file or directory the user named (or the install should hold) does not exist."""


class MessageError(FsmdeError, ValueError):
    """A ROS message that cannot be used (image encoding, size or buffer; unusable intrinsics); says why."""


def dataclass_from_dict(cls: type[T], d: Mapping[str, Any] | None, what: str) -> T:
    """`cls(**d)` for a config dataclass, strictly: unknown keys are a ConfigError naming them and the valid ones."""
    d = dict(d or {})
    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; valid: {known}")
    return cls(**d)
