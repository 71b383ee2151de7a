"""`keepfit update` (new data -> candidate -> gate -> promote or reject) and `keepfit compare A B`.

Exit codes (see `keepfit --help`): update exits 0 when the candidate was promoted, 6 (GateRejected) when the
gate rejected it, 7 (RegistryError) when the gate passed but the champion moved meanwhile; compare decides
nothing and exits 0. With ``--json`` stdout carries one JSON document and nothing else; the diff, the tables
and the progress go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from keepfit.cli._common import ConfigOption, QuietOption, SetOption, resolve_config
from keepfit.cli._console import console, quiet_default
from keepfit.cli.fit import PRESET_HELP
from keepfit.config import KeepfitConfig
from keepfit.errors import GateRejected, KeepfitError, RegistryError

JsonOption = typer.Option(
    False, "--json", help="Print only a JSON summary to stdout (decision, rules, versions); the rest to stderr."
)
JSON_SCHEMA_VERSION = 1


def print_decision(decision) -> None:
    from rich.table import Table

    table = Table(title="Gate")
    table.add_column("rule")
    table.add_column("group")
    table.add_column("result")
    table.add_column("failed for")
    table.add_column("detail")
    for rule in decision.rules:
        if getattr(rule, "skipped", False):
            mark = "[dim]skipped[/]"
        else:
            mark = "[green]pass[/]" if rule.passed else "[red]FAIL[/]"
        failed = getattr(rule, "failed", None) or []
        shown = ", ".join(failed[:5]) + (f" (+{len(failed) - 5})" if len(failed) > 5 else "")
        table.add_row(rule.name, _rule_group(rule, decision), mark, shown, rule.detail)
    console.print(table)


def _rule_group(rule: Any, decision: Any) -> str:
    return str(getattr(rule, "group", None) or getattr(decision, "group", "") or "")


def rules_document(decision: Any) -> list[dict[str, Any]]:
    """Each rule as a JSON object: name, group, passed, skipped, value, threshold, detail."""
    return [
        {
            "name": rule.name,
            "group": _rule_group(rule, decision),
            "passed": bool(rule.passed),
            "skipped": bool(getattr(rule, "skipped", False)),
            "value": getattr(rule, "value", None),
            "threshold": getattr(rule, "threshold", None),
            "detail": rule.detail,
        }
        for rule in decision.rules
    ]


def update_exit_code(result: Any) -> int:
    """0 promoted; 6 rejected by the gate; 7 passed the gate but not promoted (the champion moved)."""
    if result.promoted:
        return 0
    return GateRejected.exit_code if not result.decision.passed else RegistryError.exit_code


def update_document(result: Any) -> dict[str, Any]:
    """The machine-readable summary of an update (``keepfit update --json``)."""
    from keepfit.evaluation._json import jsonable

    decision = result.decision
    return jsonable({
        "schema": JSON_SCHEMA_VERSION,
        "command": "update",
        "decision": "passed" if decision.passed else "rejected",
        "promoted": bool(result.promoted),
        "forced": bool(result.forced),
        "candidate_version": result.candidate_version,
        "champion_version": result.champion_version,
        "judged_against": getattr(result, "judged_against", None)
        or (None if result.promoted else result.champion_version),
        "rules": rules_document(decision),
        "reasons": list(result.reasons),
        "warnings": list(getattr(result, "warnings", None) or []),
        "snapshot_id": result.snapshot_id,
        "pending": bool(getattr(result, "pending", False)),
        "batch": dict(getattr(result, "batch", None) or {}),
        "interpolation": getattr(result, "interpolation", None).to_dict()
        if getattr(result, "interpolation", None) is not None else None,
        "report": str(result.report),
        "run_dir": str(result.run_dir),
        "timings": dict(result.timings or {}),
        "exit_code": update_exit_code(result),
    })


def _error_document(command: str, err: KeepfitError) -> dict[str, Any]:
    return {
        "schema": JSON_SCHEMA_VERSION,
        "command": command,
        "error": {"type": type(err).__name__, "message": str(err), "exit_code": err.exit_code},
        "exit_code": err.exit_code,
    }


@contextlib.contextmanager
def _json_output(command: str, enabled: bool) -> Iterator[list[dict[str, Any]]]:
    """With ``--json``: whatever the block prints goes to stderr, and the one document it puts in the yielded
    list is written to stdout afterwards. A KeepfitError is reported as an error document, then re-raised so
    the exit code and the message on stderr are the usual ones."""
    out: list[dict[str, Any]] = []
    if not enabled:
        yield out
        return
    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield out
    except KeepfitError as err:
        out[:] = [_error_document(command, err)]
        raise
    finally:
        if out:
            stdout.write(json.dumps(out[0], indent=2, allow_nan=False) + "\n")
            stdout.flush()


def update_command(
    data: Path = typer.Option(None, "--data", "-d", help="The new labelled data file."),
    from_feedback: bool = typer.Option(
        False, "--from-feedback", help="Make the batch from the feedback the server received since the last "
        "such update (POST /feedback, `keepfit feedback import`): checked like any data, then gated as usual."
    ),
    strategy: str = typer.Option(None, "--strategy", help="warm (default: warm start + replay + distillation) "
                                 "or retrain (from scratch on all data)."),
    force: bool = typer.Option(False, "--force", help="Promote even if the gate rejects (recorded)."),
    drop_pending: bool = typer.Option(
        False, "--drop-pending", help="Start from the champion's data, leaving out batches whose candidates were "
        "rejected (by default they stay in the history and this update trains on them too)."
    ),
    preset: str = typer.Option(
        None, "--preset", help=PRESET_HELP + " Default: the preset the champion was trained with (its registry tag "
        "keepfit.preset) when the config file has it; none: the config as it is."
    ),
    as_json: bool = JsonOption,
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
    quiet: bool = QuietOption,
) -> None:
    """Check new data, train a candidate from the champion, gate it, and promote it only if every rule passes.

    Exits 0 when the candidate was promoted, 6 when the gate rejected it (it stays challenger)."""
    from keepfit.pipeline import update, update_from_feedback

    if (data is None) == (not from_feedback):
        raise typer.BadParameter(
            "give either --data FILE (a new labelled batch) or --from-feedback (the batch from served feedback), "
            f"got {'both' if data is not None else 'neither'}", param_hint="--data / --from-feedback"
        )
    cfg, preset_line = update_config(config, preset, overrides)
    if strategy is not None:
        if strategy not in {"warm", "retrain"}:
            raise typer.BadParameter(f"expected warm or retrain, got {strategy!r}", param_hint="--strategy")
        cfg.update.strategy = strategy  # type: ignore[assignment]
    with _json_output("update", as_json) as document:
        if preset_line:
            console.print(preset_line, markup=False)
        # Under --json the console writes to stderr here, so progress shows only when stderr is a terminal.
        options = dict(force=force, drop_pending=drop_pending, progress=not (quiet or quiet_default()),
                       on_diff=_print_diff)
        if from_feedback:
            result, batch = update_from_feedback(cfg, **options)
            redacted = f" ({batch.redacted} more had only a text hash)" if batch.redacted else ""
            console.print(f"Feedback batch: {batch.rows} rows{redacted} -> {batch.path}")
        else:
            result = update(cfg, data, **options)
        _print_update(result)
        document.append(update_document(result))
    code = update_exit_code(result)
    if code:
        raise typer.Exit(code)


def update_config(
    config: Path | None, preset: str | None, overrides: list[str] | None
) -> tuple[KeepfitConfig, str | None]:
    """The config an update trains with, and the line saying which preset it applied (None when none).

    ``preset`` None applies the champion's own preset (:func:`keepfit.train.presets.champion_preset`) when the
    config file still defines it, "none" applies none, a name applies that preset; the user's ``--set`` values
    come after it, so they win."""
    from keepfit.train.presets import PRESETS, champion_preset, preset_overrides

    user = list(overrides or [])
    base = resolve_config(config, user)
    if preset == "none":
        return base, None
    if preset is not None:
        name, lead = preset, f"update applies preset {preset}"
    else:
        found = champion_preset(base)
        if found is None:
            return base, None
        if found.name not in base.presets and found.name not in PRESETS:
            return base, (f"warning: champion v{found.version} was trained with preset {found.name}, which the "
                          "config file no longer defines; update uses the config as it is (--preset NAME picks one).")
        name = found.name
        lead = f"update reuses the tuned configuration of champion v{found.version}: preset {name}"
    applied = preset_overrides(name, base.presets)
    return resolve_config(config, applied + user), f"{lead} ({', '.join(applied)})"


def print_batch(result: Any) -> None:
    """What happened to the batch's rows: new, repeated, quarantined, screened out, leaked, relabelled."""
    batch = getattr(result, "batch", None) or {}
    if not batch:
        return
    by_split = batch.get("new_by_split", {})
    console.print(
        f"Batch: {batch.get('rows_in', 0)} rows in; {batch.get('new_rows', 0)} new (train "
        f"{by_split.get('train', 0)}, validation {by_split.get('validation', 0)}, test {by_split.get('test', 0)}), "
        f"{batch.get('duplicates_of_earlier', 0)} repeat earlier rows, {batch.get('quarantined_by_check', 0)} "
        f"quarantined by the data check, {batch.get('screened_out', 0)} set aside by the champion's screen, "
        f"{batch.get('leaked_into_earlier_splits', 0)} would leak into earlier splits."
    )
    relabels = batch.get("relabels") or {}
    if relabels.get("count"):
        console.print(f"Relabels: {relabels['summary']}.")
        for ex in relabels.get("examples", [])[:3]:
            console.print(f"  - {ex['text']!r} ({ex['split']}): {ex['old']} -> {ex['new']}", markup=False)
    screen = getattr(result, "screen", None)
    if screen is not None and (screen.blocks or len(screen.flagged)):
        console.print(f"Screen: {screen.summary}")
        console.print("  Review the flagged rows with `keepfit data review`; accept corrections with "
                      "`keepfit data accept FILE`.")
    interpolation = getattr(result, "interpolation", None)
    if interpolation is not None and interpolation.curve:
        point = next(p for p in interpolation.curve if p["alpha"] == interpolation.alpha)
        how = getattr(interpolation, "method", "uniform")
        candidates = getattr(interpolation, "candidates", 1)
        how += f", soup of {candidates} candidates" if candidates > 1 else ""
        console.print(
            f"Interpolation (BCWI, {how}): champion weight {interpolation.alpha:.1f} chosen on "
            f"{interpolation.n_validation} "
            f"validation rows (flips of champion-right rows {point['negative_flip_rate']:.1%}, accuracy "
            f"{point['accuracy']:.1%}; at 0: {interpolation.curve[0]['negative_flip_rate']:.1%}, "
            f"{interpolation.curve[0]['accuracy']:.1%})."
        )
    if batch.get("pending_rows"):
        console.print(f"Pending: this update also trained on {batch['pending_rows']} rows of earlier batches "
                      "whose candidates were rejected (--drop-pending leaves them out).")


TIMING_NAMES = {
    "data_s": "data", "screen_s": "screen", "teacher_s": "teacher pass", "train_s": "training",
    "interpolate_s": "interpolation", "evaluate_s": "evaluation", "compare_s": "comparison",
    "register_s": "registration",
}


def timing_line(timings: dict[str, float]) -> str:
    """Where an update's time went, in one line: each step's seconds and share of the total."""
    total = float(timings.get("total_s") or sum(v for k, v in timings.items() if k in TIMING_NAMES))
    parts = [
        f"{TIMING_NAMES[k]} {v:.1f} s ({v / total:.0%})" for k, v in timings.items() if k in TIMING_NAMES and total
    ]
    return f"Time: {total:.1f} s in all: " + ", ".join(parts) + "." if parts else ""


def _print_update(result: Any) -> None:
    print_batch(result)
    line = timing_line(dict(result.timings or {}))
    if line:
        console.print(line)
    print_decision(result.decision)
    if result.promoted:
        how = " (forced past the gate)" if result.forced else ""
        console.print(f"[green]Promoted[/] version {result.candidate_version} to champion{how}.")
    else:
        console.print(
            f"[red]Rejected[/]: version {result.candidate_version} stays challenger; "
            f"champion is still version {result.champion_version}."
        )
        for reason in result.reasons:
            console.print(f"  - {reason}")
        if getattr(result, "pending", False):
            console.print(
                f"The batch stays in the data history (snapshot {str(result.snapshot_id)[:12]}, now HEAD): the next "
                "`keepfit update` trains on it too; `keepfit update --drop-pending` leaves it out."
            )
    for warning in getattr(result, "warnings", None) or []:
        console.print(f"[yellow]warning[/]: {warning}")
    console.print(f"Comparison report: {result.report}")


def _print_diff(diff) -> None:
    from keepfit.data import diff_renderable

    console.print(diff_renderable(diff))


def compare_document(result: Any, a: str, b: str) -> dict[str, Any]:
    """The machine-readable summary of a comparison (``keepfit compare --json``)."""
    from keepfit.evaluation._json import jsonable

    decision = result.decision
    return jsonable({
        "schema": JSON_SCHEMA_VERSION,
        "command": "compare",
        "a": a,
        "b": b,
        "decision": "passed" if decision.passed else "rejected",
        "rules": rules_document(decision),
        "reasons": list(decision.reasons),
        "warnings": list(getattr(decision, "warnings", None) or []),
        "report": str(result.report),
    })


def compare_command(
    a: str = typer.Argument("champion", help="The old model: folder, run folder or registry ref."),
    b: str = typer.Argument("challenger", help="The new model: folder, run folder or registry ref."),
    snapshot: str = typer.Option(None, "--snapshot", help="Snapshot whose test split both are scored on."),
    out: Path = typer.Option(None, "--out", help="Folder for compare.json and compare.html."),
    as_json: bool = JsonOption,
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Paired comparison of two models on the same examples: deltas with intervals, flips, the gate's verdict.

    Decides nothing, so it exits 0 whatever the verdict."""
    from keepfit.pipeline import compare

    cfg = resolve_config(config, overrides)
    with _json_output("compare", as_json) as document:
        result = compare(cfg, a, b, snapshot=snapshot, out_dir=out)
        print_decision(result.decision)
        verdict = "[green]would pass[/]" if result.decision.passed else "[red]would be rejected[/]"
        console.print(f"The gate {verdict}. Report: {result.report}")
        document.append(compare_document(result, a, b))


def register(app: typer.Typer) -> None:
    app.command("update")(update_command)
    app.command("compare")(compare_command)
