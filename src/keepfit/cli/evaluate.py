"""`keepfit evaluate`: metrics, per class and slice, calibration, and an HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console


def evaluate_command(
    model: str = typer.Argument("champion", help="Model folder, run folder, or registry ref (champion, 3)."),
    snapshot: str = typer.Option(None, "--snapshot", help="Snapshot id (default: from config data, else HEAD)."),
    split: str = typer.Option("test", "--split", help="train, validation or test."),
    out: Path = typer.Option(None, "--out", help="Folder for evaluation.json and report.html."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Evaluate a model on a data snapshot and write JSON + an offline HTML report."""
    from keepfit.pipeline import evaluate

    if split not in {"train", "validation", "test"}:
        raise typer.BadParameter(f"expected train, validation or test, got {split!r}", param_hint="--split")
    cfg = resolve_config(config, overrides)
    result = evaluate(cfg, model, snapshot=snapshot, split=split, out_dir=out)  # type: ignore[arg-type]
    print_metrics(result.metrics, getattr(result.result, "intervals", {}))
    console.print(f"Report: {result.report}")


def print_metrics(metrics: dict, intervals: dict | None = None) -> None:
    from rich.table import Table

    table = Table(title="Headline metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    for name, value in metrics.items():
        if not isinstance(value, (int, float)):
            continue
        lo_hi = (intervals or {}).get(name)
        ci = f"[{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]" if lo_hi else ""
        table.add_row(name, f"{value:.4f}", ci)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
