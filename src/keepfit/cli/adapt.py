"""`keepfit adapt`: continued masked-language-model pre-training of the encoder on unlabelled in-domain text."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, QuietOption, SetOption, resolve_config
from keepfit.cli._console import console, quiet_default


def adapt_command(
    text: Path = typer.Option(
        None, "--text", help="Unlabelled in-domain text: a plain text file (one text per line) or a "
        "CSV/TSV/JSONL/Parquet table with data.text_column. Optional with --resume (the run's own file)."
    ),
    out: Path = typer.Option(
        None, "--out", help="The adapted model folder (default: <store>/adapted/<run id>/model); must not exist."
    ),
    resume: Path = typer.Option(
        None, "--resume", help="Continue the adapt run in this folder (<store>/adapted/<run id>) from its last "
        "checkpoint."
    ),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
    quiet: bool = QuietOption,
) -> None:
    """Adapt the encoder (model.name) to your domain by masked-language-model training on unlabelled text; then
    `keepfit fit` starts from the adapted folder."""
    from keepfit.train.adapt import adapt

    cfg = resolve_config(config, overrides)
    result = adapt(cfg, text, out=out, resume=resume, progress=not (quiet or quiet_default()))
    console.print(
        f"Adapted {result.base_model} on {result.train_rows} texts ({result.held_out_rows} held out, "
        f"{result.skipped_rows} empty skipped) in {result.wall_seconds:.1f} s: {result.steps} steps, "
        f"{result.samples_per_second:.1f} samples/s, precision {result.precision}"
    )
    if result.held_out_loss_before is not None and result.held_out_loss_after is not None:
        console.print(
            f"Held-out MLM loss {result.held_out_loss_before:.4f} -> {result.held_out_loss_after:.4f} "
            f"(perplexity {result.perplexity_before:.1f} -> {result.perplexity_after:.1f})"
        )
    console.print(f"Run: {result.run_dir}")
    if result.model_dir is None:
        console.print(f"Paused; continue with: keepfit adapt --resume {result.run_dir}")
        return
    console.print(f"Model: {result.model_dir}")
    console.print(f"Next: keepfit fit --set {result.next_setting}")


def register(app: typer.Typer) -> None:
    app.command("adapt")(adapt_command)
