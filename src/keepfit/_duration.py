"""Durations as people write them (``90m``, ``36h``, ``7d``): monitor windows, tuning budgets."""

from __future__ import annotations

import re

from keepfit.errors import ConfigError

__all__ = ["parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90m``, ``36h``, ``7d``, ``2w``, ``30s`` or ``1h30m``."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", str(text).lower())
    joined = "".join(f"{n}{u}" for n, u in parts)
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not parts or joined != re.sub(r"\s+", "", str(text).lower()) or seconds <= 0:
        raise ConfigError(
            f"Duration {text!r} not understood: expected a positive number and a unit s, m, h, d or w "
            "(e.g. 90m, 36h, 7d, 1h30m)."
        )
    return seconds
