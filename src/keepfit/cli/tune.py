"""`keepfit tune` (a hyper-parameter study of tune.space on Optuna) and `keepfit auto` (a budgeted race of a
portfolio of recipes for someone who does not want to choose).

One machine::

    keepfit tune --trials 20

Several workers on one study (each machine with the project's data and config)::

    keepfit tune --storage postgresql://user@db-host:5432/studies --study intents-v2 --worker   # on each
    keepfit tune --storage postgresql://user@db-host:5432/studies --study intents-v2            # then once

The study is plain Optuna storage: ``optuna-dashboard sqlite:///.keepfit/tune/studies.sqlite`` reads it as is.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from keepfit.cli._common import ConfigOption, QuietOption, SetOption, resolve_config
from keepfit.cli._console import console
from keepfit.config import CONFIG_FILENAME

SnapshotOption = typer.Option(None, "--snapshot", help="Snapshot id (default: from config data, else HEAD).")


def _config_file(config: Path | None) -> Path | None:
    """The file the config came from (where the chosen preset is written), None for defaults."""
    if config is not None:
        return config
    return Path(CONFIG_FILENAME) if Path(CONFIG_FILENAME).exists() else None


def _budget_overrides(trials: int | None, timeout: str | None) -> list[str]:
    out = []
    if trials is not None:
        out.append(f"tune.trials={trials}")
    if timeout is not None:
        out.append(f"tune.timeout={timeout}")
    return out


def tune_command(
    trials: int = typer.Option(None, "--trials", min=1, help="Trials of the whole study (default tune.trials)."),
    timeout: str = typer.Option(None, "--timeout", help="Wall-time budget such as 30m or 2h (default tune.timeout)."),
    storage: str = typer.Option(
        None, "--storage", help="Optuna storage, any SQLAlchemy URL (postgresql://user@host/db to share a study "
        "between workers); default tune.storage, else SQLite in the store."
    ),
    study: str = typer.Option(None, "--study", help="Study name (default tune.study_name, else tune-<snapshot>)."),
    worker: bool = typer.Option(
        False, "--worker", help="Run trials only: no retraining, test scoring, registration or preset (run "
        "`keepfit tune` without --worker once the workers are done)."
    ),
    snapshot: str = SnapshotOption,
    no_register: bool = typer.Option(False, "--no-register", help="Score the chosen model but do not register it."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
    quiet: bool = QuietOption,
) -> None:
    """Search tune.space with Optuna (TPE, random or grid; median, halving or Hyperband pruning), resumable and
    shareable between workers; then score the best configuration once on test, register it and save it as a
    preset in keepfit.yaml."""
    from keepfit.tune.study import tune

    cfg = resolve_config(config, _budget_overrides(trials, timeout) + list(overrides or []))
    say = _say(quiet)
    result = tune(
        cfg, config_path=_config_file(config), snapshot=snapshot, storage=storage, study_name=study,
        worker=worker, register=not no_register, say=say,
    )
    counts = result.counts
    console.print(
        f"Study {escape(result.study)} on {escape(result.storage)}: {counts['COMPLETE']} complete, "
        f"{counts['PRUNED']} pruned, {counts['FAIL']} failed, {counts['RUNNING']} running, in "
        f"{result.wall_seconds:.0f} s."
    )
    if result.best_trial is not None:
        console.print(f"Best: trial {result.best_trial}, validation {result.metric} {result.best_value:.4f}, "
                      f"{escape(str(result.best_params))}")
    if worker:
        return
    shown = [m for m in dict.fromkeys([result.metric, "accuracy", "macro_f1", "micro_f1", "rmse", "r2"])
             if m in result.test]
    for name in shown:
        console.print(f"  test {name}: {result.test[name]:.4f} (scored once, for the chosen configuration)")
    if result.version:
        console.print(f"Registered version {result.version}" + (" (champion)" if _is_champion(cfg, result.version)
                                                                else "; compare it with the champion: `keepfit "
                                                                f"compare champion {result.version}`"))
    if result.preset:
        console.print(f"Preset {escape(result.preset)} written to {escape(str(_config_file(config)))}: "
                      f"`keepfit fit --preset {escape(result.preset)}`")
    console.print(f"Report: {escape(str(result.report))}")


def _say(quiet: bool):
    """Where progress lines go: the console, or nowhere with --quiet."""
    return (lambda _line: None) if quiet else (lambda line: console.print(escape(line)))


def _is_champion(cfg, version: str) -> bool:
    from keepfit.registry import Registry

    champion = Registry.open(cfg).champion()
    return champion is not None and champion.version == version


def auto_command(
    budget: str = typer.Option(..., "--budget", help="Wall-time budget such as 10m, 1h or 1h30m."),
    snapshot: str = SnapshotOption,
    no_register: bool = typer.Option(False, "--no-register", help="Score the winner but do not register it."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
    quiet: bool = QuietOption,
) -> None:
    """Pick and train a model inside a time budget: a head-only baseline on cached features, then full and LoRA
    fine-tuning raced by successive halving; the winner is scored once on test and registered with a
    leaderboard."""
    from rich.table import Table

    from keepfit.tune.auto import auto

    cfg = resolve_config(config, list(overrides or []))
    say = _say(quiet)
    result = auto(cfg, budget=budget, config_path=_config_file(config), snapshot=snapshot,
                  register=not no_register, say=say)
    table = Table(title=f"keepfit auto: {result.study}")
    columns = [c for c in result.leaderboard[0] if c != "why"]  # the report says why each candidate ran
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in result.leaderboard:
        table.add_row(*[_cell(row[c]) for c in columns])
    console.print(table)
    console.print(f"Race {result.race_seconds:.0f} s of a {result.budget_seconds:.0f} s budget; total "
                  f"{result.wall_seconds:.0f} s with the winner's test scoring and registration.")
    for name in [m for m in dict.fromkeys([result.metric, "accuracy", "macro_f1"]) if m in result.test]:
        console.print(f"  test {name}: {result.test[name]:.4f} (scored once, for the winner)")
    if result.version:
        console.print(f"Registered version {result.version}" + (" (champion)" if _is_champion(cfg, result.version)
                                                                else ""))
    if result.preset:
        console.print(f"Preset {escape(result.preset)} written: `keepfit fit --preset {escape(result.preset)}`")
    console.print(f"Report: {escape(str(result.report))}")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value <= 1 else f"{value:g}"
    return escape("" if value is None else str(value))


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)
    app.command("auto")(auto_command)
