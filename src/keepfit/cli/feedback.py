"""`keepfit feedback import FILE`: true labels for served predictions, in bulk."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console, err_console
from keepfit.errors import DataError

feedback_app = typer.Typer(
    name="feedback", help="True labels for served predictions (the next update's data).", no_args_is_help=True
)


@feedback_app.command("import")
def import_command(
    path: Path = typer.Argument(..., help="CSV, TSV, JSONL or Parquet with a request id and a label column."),
    id_column: str = typer.Option("request_id", "--id-column", help="Column with the ids /predict returned."),
    label_column: str = typer.Option("label", "--label-column", help="Column with the true label."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Add true labels to the prediction log. Rows naming an unknown request id or label are written to a file
    with the reason (exit 3 when any was rejected; the accepted rows are kept either way)."""
    from keepfit.serve.feedback import import_feedback
    from keepfit.serve.log import PredictionLog, log_path_for
    from keepfit.store import Store

    cfg = resolve_config(config, overrides)
    log_file = log_path_for(cfg)
    if not log_file.exists():
        raise DataError(
            f"No prediction log at {log_file}: nothing was served in this project yet, so no request id can be "
            "known. Run `keepfit serve` first (or set serve.log_path)."
        )
    with PredictionLog(log_file) as log:
        report = import_feedback(
            log, path, Store.at(cfg.store).serve / "feedback-rejected", id_column=id_column,
            label_column=label_column, declared=cfg.labels or (),
        )
    result = report.result
    replaced = f" ({result.replaced} replaced an earlier label)" if result.replaced else ""
    console.print(f"Feedback: {result.accepted} of {report.rows} rows accepted{replaced}.")
    if result.rejected:
        for number, rid, reason in result.rejected[:5]:
            err_console.print(f"  row {number} ({rid!r}): {reason}", markup=False)
        raise DataError(
            f"{len(result.rejected)} of {report.rows} rows were rejected (unknown request id or label); they are in "
            f"{report.rejected_file} with the reason. Correct them and import that file again."
        )


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")
