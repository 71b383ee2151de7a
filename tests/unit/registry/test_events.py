"""The event log and the undo stack that decides where a rollback goes (pure functions, no MLflow)."""

from __future__ import annotations

import json

from keepfit.registry.events import champion_stack, events_from_tags, new_event_key, previous_champion


def _promote(version: str, previous: str | None) -> dict:
    return {"action": "promote", "version": version, "previous": previous}


def _rollback(version: str, previous: str) -> dict:
    return {"action": "rollback", "version": version, "previous": previous}


def test_promotions_stack_and_rollbacks_unwind():
    events = [_promote("1", None), _promote("2", "1"), _promote("3", "2")]
    assert champion_stack(events, "3") == ["1", "2", "3"]
    assert previous_champion(events, "3") == "2"
    events.append(_rollback("2", "3"))
    assert champion_stack(events, "2") == ["1", "2"]
    events.append(_rollback("1", "2"))
    assert previous_champion(events, "1") is None


def test_rollback_to_a_version_never_champion_can_itself_be_undone():
    events = [_promote("1", None), _promote("2", "1"), _rollback("1", "2"), _rollback("3", "1")]
    assert champion_stack(events, "3") == ["1", "3"]
    assert previous_champion(events, "3") == "1"


def test_alias_moved_outside_keepfit_still_counts():
    events = [_promote("1", None)]
    # someone pointed champion at version 4 in the MLflow UI: rolling back returns to 1
    assert previous_champion(events, "4") == "1"
    # and a later promotion whose "previous" is 4 keeps 4 on the stack
    assert champion_stack([*events, _promote("5", "4")], "5") == ["1", "4", "5"]


def test_challenger_events_do_not_move_the_champion():
    events = [_promote("1", None), {"action": "challenger", "version": "2", "previous": None}]
    assert champion_stack(events, "1") == ["1"]
    assert previous_champion([], None) is None


def test_event_keys_sort_in_creation_order_and_junk_is_skipped():
    keys = [new_event_key() for _ in range(200)]
    assert keys == sorted(keys) and len(set(keys)) == 200
    tags = {keys[1]: json.dumps(_promote("2", "1")), keys[0]: json.dumps(_promote("1", None)),
            keys[2]: "{not json", keys[3]: "[1, 2]", "keepfit.status": "champion"}
    assert [e["version"] for e in events_from_tags(tags)] == ["1", "2"]


def test_code_version_names_the_package_version_and_commit():
    import re
    from importlib import metadata

    from keepfit.registry import code_version

    version = code_version()
    assert re.fullmatch(r"[0-9][^+]*(\+g[0-9a-f]{7,40})?", version), version
    assert version.split("+")[0] == metadata.version("keepfit")
