"""`keepfit init DATA`: infer the task and columns from a data file and write a commented keepfit.yaml."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from keepfit.cli._console import console
from keepfit.config import CONFIG_FILENAME, DataConfig
from keepfit.types import is_generation, is_image

TASKS = ("single-label", "multi-label", "regression", "text-generation", "image-classification")


def init(
    data: Path = typer.Argument(
        ..., help="Data file (CSV/TSV/JSONL/Parquet), a saved datasets folder, or a folder of images in class "
        "subfolders."
    ),
    out: Path = typer.Option(Path(CONFIG_FILENAME), "--out", "-o", help="Where to write the config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config file."),
    text_column: str | None = typer.Option(None, "--text-column", help="Use this column as the text."),
    label_column: str | None = typer.Option(None, "--label-column", help="Use this column as the label(s)."),
    target_column: str | None = typer.Option(None, "--target-column", help="Regression: the numeric target."),
    task: str | None = typer.Option(None, "--task", help=" | ".join(TASKS) + "."),
) -> None:
    """Infer the task (single-label, multi-label, regression, text-generation or image-classification) and the
    columns, and write a config to review."""
    from keepfit.data.infer import infer, with_model_name, write_config_file
    from keepfit.errors import ConfigError

    if task is not None and task not in TASKS:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)}; got {task!r}.")
    if out.exists() and not force:
        raise ConfigError(
            f"{out} already exists; expected a new path. Pass --force to overwrite it, or --out OTHER."
        )
    found = infer(
        data, text_column=text_column, label_column=label_column, target_column=target_column, task=task
    )
    path = write_config_file(found.config, found.notes, out, force=force, label_names=found.labels)
    console.print(f"[bold]task[/]: {found.config.task}   {_columns_line(found.config.task, found.config.data)}")
    for note in found.notes:
        console.print(escape(f"  - {note if len(note) <= 300 else note[:297] + '...'}"))
    name = with_model_name(found.config, out).registry.model_name
    console.print(f"  - model versions are registered as [bold]{name}[/] (registry.model_name).")
    console.print(f"Wrote [bold]{path}[/]. Review it, then run [bold]keepfit data check[/].")


def _columns_line(task: str, d: DataConfig) -> str:
    """The columns the config reads, as one line: text and answer, or for text-generation the chat column
    (messages) or the prompt and completion columns, and the system column when the data has one."""
    if is_image(task):
        if "image_column" not in d.model_fields_set:
            return "[bold]images[/]: a folder, one subfolder per class"
        return f"[bold]images[/]: {escape(d.image_column)}   [bold]label[/]: {escape(str(d.label_column))}"
    if is_generation(task):
        chosen = d.model_fields_set
        if "messages_column" in chosen or "prompt_column" not in chosen:
            line = f"[bold]messages[/]: {escape(d.messages_column)}"
        else:
            line = f"[bold]prompt[/]: {escape(d.prompt_column)}   [bold]completion[/]: {escape(d.completion_column)}"
        if "system_column" in chosen and d.system_column:
            line += f"   [bold]system[/]: {escape(d.system_column)}"
        return line
    answer = d.target_column or d.label_column or ", ".join(d.label_columns or [])
    return f"[bold]text[/]: {escape(str(d.text_column))}   [bold]answer[/]: {escape(answer)}"


def register(app: typer.Typer) -> None:
    app.command("init")(init)
