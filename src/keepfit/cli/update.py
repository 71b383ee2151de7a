"""`keepfit update` (new data -> candidate -> gate -> promote or reject) and `keepfit compare A B`."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, QuietOption, SetOption, resolve_config
from keepfit.cli._console import console, quiet_default


def print_decision(decision) -> None:
    from rich.table import Table

    table = Table(title="Gate")
    table.add_column("rule")
    table.add_column("result")
    table.add_column("detail")
    for rule in decision.rules:
        if getattr(rule, "skipped", False):
            mark = "[dim]skipped[/]"
        else:
            mark = "[green]pass[/]" if rule.passed else "[red]FAIL[/]"
        table.add_row(rule.name, mark, rule.detail)
    console.print(table)


def update_command(
    data: Path = typer.Option(..., "--data", "-d", help="The new labelled data file."),
    strategy: str = typer.Option(None, "--strategy", help="warm (default: warm start + replay + distillation) "
                                 "or retrain (from scratch on all data)."),
    force: bool = typer.Option(False, "--force", help="Promote even if the gate rejects (recorded)."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
    quiet: bool = QuietOption,
) -> None:
    """Check new data, train a candidate from the champion, gate it, and promote it only if every rule passes."""
    from keepfit.pipeline import update

    cfg = resolve_config(config, overrides)
    if strategy is not None:
        if strategy not in {"warm", "retrain"}:
            raise typer.BadParameter(f"expected warm or retrain, got {strategy!r}", param_hint="--strategy")
        cfg.update.strategy = strategy  # type: ignore[assignment]
    result = update(cfg, data, force=force, progress=not (quiet or quiet_default()), on_diff=_print_diff)
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
    console.print(f"Comparison report: {result.report}")


def _print_diff(diff) -> None:
    from keepfit.data import diff_renderable

    console.print(diff_renderable(diff))


def compare_command(
    a: str = typer.Argument("champion", help="The old model: folder, run folder or registry ref."),
    b: str = typer.Argument("challenger", help="The new model: folder, run folder or registry ref."),
    snapshot: str = typer.Option(None, "--snapshot", help="Snapshot whose test split both are scored on."),
    out: Path = typer.Option(None, "--out", help="Folder for compare.json and compare.html."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Paired comparison of two models on the same examples: deltas with intervals, flips, the gate's verdict."""
    from keepfit.pipeline import compare

    cfg = resolve_config(config, overrides)
    result = compare(cfg, a, b, snapshot=snapshot, out_dir=out)
    print_decision(result.decision)
    verdict = "[green]would pass[/]" if result.decision.passed else "[red]would be rejected[/]"
    console.print(f"The gate {verdict}. Report: {result.report}")


def register(app: typer.Typer) -> None:
    app.command("update")(update_command)
    app.command("compare")(compare_command)
