"""Validation of setting values: one clear ConfigurationError naming the setting."""

from __future__ import annotations

from valuation.errors import ConfigurationError


def check(value, allowed: tuple, name: str) -> None:
    if value not in allowed:
        raise ConfigurationError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, allowed))}")


def positive(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")


def number(name: str, value: float, strict: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (strict and value == 0):
        raise ConfigurationError(f"{name} must be a number {'>' if strict else '>='} 0, got {value!r}")
