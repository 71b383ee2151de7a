"""The append-only log of alias events (promote, rollback, challenger), and who the previous champion was.

Each event is one tag on the registered model, ``keepfit.event.<time in ns>-<random>`` holding JSON, so the
log is readable in MLflow's UI, appending never rewrites earlier events, and keys sort by time.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

__all__ = ["EVENT_TAG_PREFIX", "new_event_key", "events_from_tags", "champion_stack", "previous_champion"]

EVENT_TAG_PREFIX = "keepfit.event."
_last_ns = 0


def new_event_key() -> str:
    """A tag key that sorts after every key this process made before (20-digit ns clock, then 4 hex)."""
    global _last_ns
    _last_ns = max(time.time_ns(), _last_ns + 1)
    return f"{EVENT_TAG_PREFIX}{_last_ns:020d}-{secrets.token_hex(2)}"


def events_from_tags(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The events stored in registered-model tags, oldest first. Unreadable values are skipped."""
    events = []
    for key in sorted(k for k in tags if k.startswith(EVENT_TAG_PREFIX)):
        try:
            event = json.loads(tags[key])
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def champion_stack(events: list[dict[str, Any]], current: str | None) -> list[str]:
    """The champions in the order they took over, with rolled-back ones removed (an undo stack).

    A promotion pushes its version; a rollback drops every champion after its target (or pushes the
    target when it was never champion here).
    ``current`` (the version the ``champion`` alias points to now) ends the stack even if the alias was
    moved outside keepfit, so the previous champion is always ``stack[-2]``.
    """
    stack: list[str] = []
    for event in events:
        action, version, before = event.get("action"), event.get("version"), event.get("previous")
        if action not in ("promote", "rollback") or version is None:
            continue
        version = str(version)
        if before and (not stack or stack[-1] != str(before)):
            stack.append(str(before))  # the alias was moved without an event; that champion still counts
        if action == "promote":
            if not stack or stack[-1] != version:
                stack.append(version)
            continue
        if version in stack:  # back to an earlier champion: forget the ones after it
            del stack[len(stack) - stack[::-1].index(version):]
        else:  # "back" to a version that never was champion here: undoing it returns to ``before``
            stack.append(version)
    if current is not None and (not stack or stack[-1] != current):
        stack.append(current)
    return stack


def previous_champion(events: list[dict[str, Any]], current: str | None) -> str | None:
    """The version a rollback goes back to, or None when no earlier champion is recorded."""
    stack = champion_stack(events, current)
    return stack[-2] if len(stack) >= 2 else None
