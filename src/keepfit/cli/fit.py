"""`keepfit fit`: split -> fine-tune -> evaluate -> register; plus a train-only entry for `accelerate launch`.

Data-parallel training on several processes (CPU or GPU)::

    accelerate launch --multi_gpu --num_processes 2 -m keepfit.cli.fit --data rows.parquet --run-dir RUN
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, QuietOption, SetOption, resolve_config
from keepfit.cli._console import console, quiet_default
from keepfit.config import KeepfitConfig
from keepfit.types import is_single_label

# The built-in names are written out rather than read from keepfit.train.presets, which imports torch
# (`keepfit --help` stays fast); a test pins them to PRESETS.
PRESET_HELP = (
    "A preset applied before the --set values: fast (a quick demo), best (the accuracy recipe), or a name "
    "under presets: in the config file (`keepfit tune` writes one there)."
)


def fit_command(
    config: Path = ConfigOption,
    snapshot: str = typer.Option(
        None, "--snapshot", help="Snapshot id (default: from config data, else HEAD)."
    ),
    overrides: list[str] = SetOption,
    resume: Path = typer.Option(
        None, "--resume", help="Continue the run in this folder from its last checkpoint."
    ),
    preset: str = typer.Option(None, "--preset", help=PRESET_HELP),
    no_register: bool = typer.Option(False, "--no-register", help="Train and evaluate without registering."),
    quiet: bool = QuietOption,
) -> None:
    """Fine-tune the configured model on a data snapshot, evaluate it and register it."""
    from keepfit.pipeline import fit
    from keepfit.train.presets import PRESET_TAG

    cfg = config_with_preset(config, preset, overrides)
    if resume is not None and not (resume / "config.yaml").exists():
        raise typer.BadParameter(
            f"{resume} is not a run folder (no config.yaml in it)", param_hint="--resume"
        )
    result = fit(
        cfg,
        snapshot=snapshot,
        resume=resume,
        register=not no_register,
        progress=not (quiet or quiet_default()),
        tags={PRESET_TAG: preset} if preset else None,  # `keepfit update` of this version reuses it
    )
    print_train_summary(result.train)
    for name, value in result.metrics.items():
        if isinstance(value, (int, float)):
            console.print(f"  test {name}: {value:.4f}")
    console.print(f"Model: {result.model_dir}")
    console.print(f"Report: {result.report}")
    if result.version:
        console.print(f"Registered version {result.version}")


def config_with_preset(config: Path | None, preset: str | None, overrides: list[str] | None) -> KeepfitConfig:
    """The resolved config with preset ``preset`` applied, a built-in one or one of the config file's
    ``presets``; the user's ``--set`` values come after it, so they win."""
    from keepfit.train.presets import preset_overrides

    user = list(overrides or [])
    base = resolve_config(config, user)
    if preset is None:
        return base
    return resolve_config(config, preset_overrides(preset, base.presets) + user)


def print_train_summary(train) -> None:
    if train is None:
        return
    best = f"{train.best_metric:.4f}" if train.best_metric is not None else "n/a"
    console.print(
        f"Trained {train.task} on {len(train.labels) or 1} outputs in {train.wall_seconds:.1f} s: "
        f"{train.samples_per_second:.1f} samples/s, padding overhead {train.padding_overhead:.2f}, "
        f"precision {train.precision}, best validation {train.metric_name} {best} (epoch {train.best_epoch})"
    )


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_command)


# ------------------------------------------------------------------ train-only entry (accelerate launch)


def snapshot_from_table(path: Path, task: str):
    """A Snapshot from one table with text, label/labels/target and split columns (for the launch entry)."""
    import pandas as pd

    from keepfit.types import Snapshot, label_column_for

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    column = label_column_for(task)  # type: ignore[arg-type]
    if task == "multi-label":
        frame[column] = frame[column].map(lambda v: list(v) if not isinstance(v, str) else v.split("|"))
    parts = {
        name: frame[frame["split"] == name].drop(columns="split").reset_index(drop=True)
        for name in ("train", "validation", "test")
    }
    if task == "regression":
        labels: list[str] = []
    elif is_single_label(task):
        labels = sorted(set(parts["train"][column].astype(str)))
    else:
        labels = sorted({x for v in parts["train"][column] for x in v})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Snapshot(
        id=digest,
        path=path,
        task=task,
        labels=labels,
        train=parts["train"],  # type: ignore[arg-type]
        validation=parts["validation"],
        test=parts["test"],
        quarantine=pd.DataFrame(),
    )


def _launch_main(argv: list[str] | None = None) -> None:
    from keepfit.config import load_config
    from keepfit.train import train_model

    parser = argparse.ArgumentParser(
        prog="python -m keepfit.cli.fit",
        description="Train only (no evaluate or registry); works under `accelerate launch`.",
    )
    parser.add_argument("--data", type=Path, required=True, help="Table with text, label and split columns.")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    result = train_model(
        snapshot_from_table(args.data, cfg.task), cfg, args.run_dir, resume=args.resume, progress=False
    )
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print_train_summary(result)
        console.print_json(
            data={
                "history": result.history,
                "samples_per_second": result.samples_per_second,
                "wall_seconds": result.wall_seconds,
                "model_dir": str(result.model_dir),
            }
        )


if __name__ == "__main__":
    _launch_main()
