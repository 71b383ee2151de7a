"""`keepfit data check|snapshot|diff|list|review|accept`: parsing and printing only; the work is in keepfit.data."""

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


_REVIEW_ROWS = 40  # rows shown in the terminal; --csv and --html hold all of them


@data_app.command("review")
def review_command(
    csv: Path = typer.Option(None, "--csv", help="Write every flagged row to this CSV (fill in accept, then "
                             "run `keepfit data accept FILE`)."),
    html: Path = typer.Option(None, "--html", help="Write every flagged row to this HTML page."),
    show_all: bool = typer.Option(False, "--all", help="Also list rows already decided."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Label issues of the whole project: found in the training data at fit time and in each screened batch."""
    import pandas as pd
    from rich.table import Table

    from keepfit._io import atomic_write_text
    from keepfit.data.review import collect_label_issues, render_review_html, write_review_csv

    cfg = resolve_config(config, overrides)
    issues = collect_label_issues(Path(cfg.store))
    shown = issues if show_all else issues[issues["status"] == "open"]
    n_open = int((issues["status"] == "open").sum())
    console.print(f"{len(issues):,} label issue(s) in {cfg.store}, {n_open:,} open.")
    if len(shown):
        for block, n in shown.loc[shown["block"] != "", "block"].value_counts().items():
            console.print(f"  block [bold]{block}[/]: {n} row(s) (given label -> the champion's)")
        table = Table(show_lines=False)
        for column in ("issue", "label -> suspected", "p", "text", "found in"):
            table.add_column(column, overflow="fold")
        for r in shown.head(_REVIEW_ROWS).itertuples(index=False):
            p = "" if pd.isna(r.confidence) else f"{r.confidence:.2f}"
            table.add_row(r.issue, f"{r.label} -> {r.suspected_label or '?'}", p, r.text[:80],
                          f"{r.origin}: {r.source}:{r.row}", style="yellow" if r.block else None)
        console.print(table)
        if len(shown) > _REVIEW_ROWS:
            console.print(f"... and {len(shown) - _REVIEW_ROWS:,} more; --csv FILE or --html FILE lists them all.")
    if csv is not None:
        console.print(f"review CSV: {write_review_csv(shown, csv)} (fill in accept: yes/no and corrected_label, "
                      f"then run `keepfit data accept {csv}`)")
    if html is not None:
        console.print(f"review page: {atomic_write_text(html, render_review_html(shown))}")


@data_app.command("accept")
def accept_command(
    file: Path = typer.Argument(..., help="A review CSV from `keepfit data review --csv` with accept filled in."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Re-admit checked rows: write the accepted (or corrected) rows as a data file for `keepfit update --data`."""
    from keepfit.data.review import accept_reviewed

    cfg = resolve_config(config, overrides)
    result = accept_reviewed(file, cfg)
    console.print(
        f"{result.n_accepted} accepted as labelled, {result.n_corrected} corrected, {result.n_rejected} left out"
        + (f"; {result.n_already_in_data} already in the training data" if result.n_already_in_data else "")
    )
    if result.path is None:
        console.print(result.command[0].upper() + result.command[1:] + ".")
        return
    console.print(f"wrote {result.path}: {result.n_rows} rows; run `{result.command}`")
    if result.n_relabels:
        console.print(f"  {result.n_relabels} of them relabel rows already in the data: the update applies them "
                      "only with update.relabels=apply (as in the command above).")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
