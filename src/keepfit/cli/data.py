"""`keepfit data check|snapshot|diff|list`: parsing and printing only; the work is in keepfit.data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from keepfit.cli._common import ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console
from keepfit.config import CONFIG_FILENAME, KeepfitConfig, load_config
from keepfit.data.diff import SnapshotDiff


def render_summary(report: dict, console: Console) -> None:
    """Print a data check report (see keepfit.data.summary_renderable)."""
    from keepfit.data import summary_renderable

    console.print(summary_renderable(report))


def render_diff(diff: SnapshotDiff, console: Console) -> None:
    """Print a snapshot diff (see keepfit.data.diff_renderable)."""
    from keepfit.data import diff_renderable

    console.print(diff_renderable(diff))


data_app = typer.Typer(help="Check, snapshot and compare data.", no_args_is_help=True)


def _check_config(
    file: Path,
    config: Path | None,
    overrides: list[str] | None,
    text_column: str | None,
    label_column: str | None,
) -> KeepfitConfig:
    """The named config, else ./keepfit.yaml, else one inferred from the file; explicit columns win."""
    if config is not None or Path(CONFIG_FILENAME).exists():
        cfg = resolve_config(config, overrides)
    else:
        try:
            from keepfit.data.infer import infer_config
        except ImportError:  # inference is another module's; without it the defaults apply
            cfg = load_config(None, overrides or [])
        else:
            cfg, notes = infer_config(file, text_column=text_column, label_column=label_column)
            for note in notes:
                console.print(f"[dim]  {note}[/]")
            if overrides:
                from keepfit.config import apply_overrides, config_from_mapping

                cfg = config_from_mapping(
                    apply_overrides(cfg.model_dump(mode="json"), overrides), "inferred config"
                )
            return cfg
    updates = {k: v for k, v in {"text_column": text_column, "label_column": label_column}.items() if v}
    if updates:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update=updates)})
    return cfg


@data_app.command("check")
def check_command(
    file: Path = typer.Argument(..., help="Data file (CSV/TSV/JSONL/Parquet) or a saved datasets folder."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
    text_column: str = typer.Option(None, "--text-column", help="Column holding the text."),
    label_column: str = typer.Option(None, "--label-column", help="Column holding the label."),
    out: Path = typer.Option(
        None,
        "--out",
        help="Where quarantine.csv and report.{json,html} go (default: <store>/checks/<file name>).",
    ),
    split: bool = typer.Option(False, "--split", help="Also split and check for leakage across splits."),
) -> None:
    """Validate, clean and deduplicate FILE; every row is kept or quarantined with a reason."""
    from keepfit.data import check_data, write_check_outputs

    cfg = _check_config(file, config, overrides, text_column, label_column)
    result = check_data(file, cfg, split=split)
    render_summary(result.report, console)
    folder = out or Path(cfg.store) / "checks" / file.stem
    paths = write_check_outputs(result, folder)
    console.print(f"quarantine: {paths['quarantine']}")
    console.print(f"report: {paths['report_html']}")


@data_app.command("snapshot")
def snapshot_command(config: Path = ConfigOption, overrides: list[str] = SetOption) -> None:
    """Check, split and store data.train (plus data.validation/data.test) as a content-hashed snapshot."""
    from keepfit.data import snapshot_data

    cfg = resolve_config(config, overrides)
    snap = snapshot_data(cfg)
    render_summary(snap.report, console)
    console.print(f"snapshot [bold]{snap.id}[/]")
    console.print(
        f"  train {len(snap.train):,}, validation {len(snap.validation):,}, test {len(snap.test):,}, "
        f"quarantined {len(snap.quarantine):,}"
    )
    console.print(f"report: {snap.path / 'report.html'}")


@data_app.command("diff")
def diff_command(
    a: str = typer.Argument("HEAD~1", help="Older snapshot: id, unique prefix, HEAD or HEAD~N."),
    b: str = typer.Argument("HEAD", help="Newer snapshot: id, unique prefix, HEAD or HEAD~N."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print the diff as JSON."),
) -> None:
    """Rows added, removed and relabelled, labels new and vanished, and distribution shifts from A to B."""
    from keepfit.data import diff_snapshots, diff_to_json, load_snapshot
    from keepfit.store import Store

    cfg = resolve_config(config, overrides)
    store = Store.at(cfg.store)
    diff = diff_snapshots(load_snapshot(store, a), load_snapshot(store, b))
    if as_json:
        console.print_json(diff_to_json(diff))
    else:
        render_diff(diff, console)


@data_app.command("list")
def list_command(config: Path = ConfigOption, overrides: list[str] = SetOption) -> None:
    """Every data snapshot in the store, oldest first (HEAD marked)."""
    from keepfit.data import list_snapshots
    from keepfit.store import Store

    cfg = resolve_config(config, overrides)
    store = Store.at(cfg.store)
    infos = list_snapshots(store)
    if not infos:
        console.print(f"No snapshots in {store.snapshots}. Run `keepfit data snapshot`.")
        return
    head = store.head_file.read_text().strip() if store.head_file.exists() else ""
    for i in infos:
        c = i.counts
        console.print(
            f"[bold]{i.id[:12]}[/]{' (HEAD)' if i.id == head else ''}  {i.created[:19]}  {i.task}  "
            f"train {c.get('train', 0):,} / validation {c.get('validation', 0):,} / "
            f"test {c.get('test', 0):,}, "
            f"quarantined {c.get('quarantine', 0):,}  parent {(i.parent or '-')[:12]}  {', '.join(i.sources)}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
