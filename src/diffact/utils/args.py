"""Helpers the command modules share to declare their argparse options."""

from __future__ import annotations

import argparse
import dataclasses


def positive_int(text: str) -> int:
    """argparse type of a count ≥ 1 (argparse's error names the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def default_of(settings: type, name: str):
    """The default of field ``name`` of the settings dataclass ``settings``. An option that sets a field takes its
    default from here, so a protocol's number (the paper's lr, epochs, ...) is written once, in the dataclass."""
    for field in dataclasses.fields(settings):
        if field.name != name:
            continue
        if field.default is not dataclasses.MISSING:
            return field.default
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        raise TypeError(f"{settings.__name__}.{name} has no default")
    raise AttributeError(f"{settings.__name__} has no field {name!r}")
