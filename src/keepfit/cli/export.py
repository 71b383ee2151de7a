"""`keepfit export`: a registered version (or a model folder) to ONNX, optionally int8, with a parity check."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console
from keepfit.config import KeepfitConfig

FORMATS = ("onnx",)


def export_command(
    model: str = typer.Argument(..., help="Registry ref (champion, challenger, 3, v3, latest) or a model folder."),
    fmt: str = typer.Option("onnx", "--format", help=f"Export format: {', '.join(FORMATS)}."),
    int8: bool = typer.Option(False, "--int8", help="Also write a dynamically int8-quantised model."),
    out: Path = typer.Option(
        None, "--out", help="Output folder (default: <store>/exports/v<N>/onnx, or <folder>-onnx for a folder)."
    ),
    texts: Path = typer.Option(
        None, "--texts", help="Parity texts: CSV/TSV/JSONL/Parquet (data.text_column, labels optional) or .txt."
    ),
    no_parity: bool = typer.Option(False, "--no-parity", help="Skip the parity and speed check."),
    threads: int = typer.Option(None, "--threads", min=1, help="Threads for both engines (default: torch's)."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Export a model to ONNX; check it against PyTorch on the version's test split (agreement, flips, speed)."""
    from keepfit.errors import ConfigError
    from keepfit.pipeline import resolve_model
    from keepfit.train.onnx_export import check_export, export_onnx

    if fmt not in FORMATS:
        raise ConfigError(
            f"--format {fmt!r} is not supported: expected one of {', '.join(FORMATS)}. Use --format onnx."
        )
    cfg = resolve_config(config, overrides)
    model_dir = resolve_model(cfg, model)
    version, snapshot_id = _version_and_snapshot(cfg, model, model_dir)
    target = out or _default_out(cfg, version, model_dir)
    rows = None if no_parity else _parity_rows(cfg, model_dir, texts, snapshot_id)  # fail before exporting
    export = export_onnx(model_dir, target, int8=int8)
    console.print(
        f"Exported {'version ' + version if version else model_dir} to {export.out_dir} "
        f"(opset {export.opset}; fp32 logits within {export.fp32_max_abs_diff:.1e} of torch)"
    )
    if rows is None:
        return
    texts_in, labels, source = rows
    check = check_export(model_dir, export, texts_in, labels, texts_source=source, threads=threads)
    _print_check(check)


def _version_and_snapshot(cfg: KeepfitConfig, ref: str, model_dir: Path) -> tuple[str | None, str | None]:
    """The registered version a ref names (None for a folder path) and the data snapshot the model was trained
    on (from the registry's lineage, else the folder's keepfit.json)."""
    from keepfit.train.model import read_meta

    if Path(ref).exists():
        return None, read_meta(model_dir).get("data_snapshot")
    from keepfit.registry import Registry

    info = Registry.open(cfg).get(ref)
    return info.version, info.lineage.data_snapshot


def _default_out(cfg: KeepfitConfig, version: str | None, model_dir: Path) -> Path:
    from keepfit.store import Store

    if version is not None:
        return Store.at(cfg.store).export(version) / "onnx"
    return model_dir.with_name(f"{model_dir.name}-onnx")


def _parity_rows(cfg: KeepfitConfig, model_dir: Path, texts: Path | None, snapshot_id: str | None):
    """(texts, true labels or None, where they came from): the --texts file, else the snapshot's test split."""
    from keepfit.errors import DataError
    from keepfit.train.model import read_meta
    from keepfit.train.onnx_export import texts_from_file

    if texts is not None:
        multi = read_meta(model_dir).get("task") == "multi-label"
        rows, labels = texts_from_file(
            texts, cfg.data.text_column, cfg.data.label_column,
            label_separator=cfg.data.label_separator if multi else None,
        )
        return rows, labels, str(texts)
    if snapshot_id is None:
        raise DataError(
            f"No texts to check the export on: {model_dir} names no data snapshot. "
            "Pass --texts FILE (a table with a text column, or a .txt file) or --no-parity."
        )
    from keepfit.data import load_snapshot
    from keepfit.store import Store

    try:
        snap = load_snapshot(Store.at(cfg.store), snapshot_id)
    except DataError as err:
        raise DataError(f"{err} The export is checked on the test split of the model's snapshot "
                        f"{snapshot_id[:12]}: pass --texts FILE or --no-parity instead.") from None
    if len(snap.test) == 0:
        raise DataError(
            f"Snapshot {snapshot_id[:12]} has no test rows to check the export on. Pass --texts FILE or --no-parity."
        )
    truth = None if snap.task == "regression" else [
        v if isinstance(v, str) else list(v) for v in snap.test[snap.answer_column]
    ]
    return snap.test["text"].astype(str).tolist(), truth, f"snapshot {snapshot_id[:12]} test split"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _print_check(check) -> None:
    from rich.table import Table

    parity_rows = next((b.parity.rows for b in check.backends if b.parity), 0)
    table = Table(title=f"{check.texts_source}: parity on {parity_rows} texts, speed on "
                        f"{check.reference.speed.texts} (threads: {check.threads})")
    table.add_column("")
    for backend in check.backends:
        table.add_column(backend.name, justify="right")
    parities = [b.parity for b in check.backends]
    rows_of = [
        ("file size (MB)", [f"{b.size_mb:.2f}" if b.size_mb is not None else "-" for b in check.backends]),
        ("agreement with pytorch", [_percent(p.agreement) if p else "-" for p in parities]),
        ("negative flips", [f"{p.negative_flips} ({_percent(p.negative_flip_rate)})"
                            if p and p.negative_flips is not None else "-" for p in parities]),
        ("positive flips", [f"{p.positive_flips} ({_percent(p.positive_flip_rate)})"
                            if p and p.positive_flips is not None else "-" for p in parities]),
        ("accuracy", [_percent(parities[1].reference_accuracy if len(parities) > 1 and parities[1] else None)]
         + [_percent(p.other_accuracy if p else None) for p in parities[1:]]),
        ("max |prob diff|", ["-"] + [f"{p.max_abs_prob_diff:.2e}" if p else "-" for p in parities[1:]]),
        ("ms per text, batch 1", [f"{b.speed.ms_per_text_batch1:.2f}" for b in check.backends]),
        (f"texts/s, batch {check.reference.speed.batch_size}",
         [f"{b.speed.texts_per_second:.0f}" for b in check.backends]),
    ]
    for name, cells in rows_of:
        table.add_row(name, *cells)
    console.print(table)
    console.print(f"Report: {check.report}")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
