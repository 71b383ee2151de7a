"""`keepfit predict`: a file in, a file out (label, score, top-k probabilities), with throughput."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console


def predict_command(
    model: str = typer.Argument(..., help="Model folder, run folder, or registry ref (champion, 3)."),
    in_path: Path = typer.Argument(
        ..., help="CSV, TSV, JSONL or Parquet file with a text column; for an image model, a folder of images or "
        "a table of image paths (data.image_column)."
    ),
    out_path: Path = typer.Argument(..., help="Output file; its suffix picks the format."),
    text_column: str = typer.Option(
        None, "--text-column", help="Column holding the text (default: data.text_column)."
    ),
    top_k: int = typer.Option(None, "--top-k", min=1, help="Labels with probabilities per row (default 5)."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Predict every row of a file with a model; rows keep their order."""
    from keepfit.pipeline import predict

    cfg = resolve_config(config, overrides)
    report = predict(cfg, model, in_path, out_path, text_column=text_column, top_k=top_k)
    unit = "images" if report.task == "image-classification" else "texts"
    console.print(
        f"Predicted {report.rows} rows ({report.task}) in {report.seconds:.2f} s "
        f"({report.texts_per_second:.0f} {unit}/s): {report.out_path}"
    )


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
