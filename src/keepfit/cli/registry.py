"""`keepfit models list|show|promote|rollback|history`: the registered model versions and their aliases."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from keepfit.cli._common import ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console, err_console
from keepfit.errors import RegistryError

if TYPE_CHECKING:
    from keepfit.registry import ModelVersionInfo, Registry

models_app = typer.Typer(
    name="models",
    help="Registered model versions: list, show, promote, roll back, history (MLflow registry).",
    no_args_is_help=True,
)

_STATUS_STYLE = {"champion": "bold green", "challenger": "yellow", "rejected": "red", "rolled-back": "red"}


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _open(config: Path | None, overrides: list[str] | None) -> tuple[Registry, Any]:
    from keepfit.registry import Registry

    cfg = resolve_config(config, overrides)
    return Registry.open(cfg), cfg


def _locked(registry: Registry, cfg: Any, what: str) -> AbstractContextManager[None]:
    """The project lock, waiting as long as ``update.lock_timeout`` says; who holds it is shown meanwhile."""
    from keepfit.lock import project_lock

    def say(message: str) -> None:
        err_console.print(message, markup=False)

    return project_lock(registry.store, what, cfg.update.lock_timeout, on_wait=say)


def _status(info: ModelVersionInfo) -> str:
    style = _STATUS_STYLE.get(info.status)
    return f"[{style}]{info.status}[/]" if style else info.status


def _metric(info: ModelVersionInfo, name: str) -> str:
    value = info.metrics.get(name)
    return "" if value is None else f"{value:.4f}"


@models_app.command("list")
def list_command(config: Path = ConfigOption, overrides: list[str] = SetOption) -> None:
    """Every registered version, oldest first, with its status, lineage and headline metric."""
    registry, cfg = _open(config, overrides)
    versions = registry.list()
    if not versions:
        console.print(f"No versions registered in {registry.name!r} yet. Run `keepfit fit` to register one.")
        return
    metric = cfg.gate.metric
    table = Table(title=f"Model versions of {registry.name} ({registry.uri})")
    for column in ("version", "status", "aliases", "created", "data snapshot", "parent", metric, "gate"):
        table.add_column(column, justify="right" if column in ("version", metric) else "left")
    for info in versions:
        table.add_row(
            info.version,
            _status(info),
            ", ".join(info.aliases),
            info.created,
            info.lineage.data_snapshot[:12],
            f"v{info.lineage.parent_version}" if info.lineage.parent_version else "",
            _metric(info, metric),
            (info.gate or {}).get("decision", ""),
        )
    console.print(table)


@models_app.command("show")
def show_command(
    ref: str = typer.Argument("champion", help="Version: 3, v3, champion, challenger or latest."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """One version: status, lineage, where its files are, metrics, and the gate's decision."""
    registry, _ = _open(config, overrides)
    info = registry.get(ref)
    table = Table(title=f"{registry.name} version {info.version}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    lineage = info.lineage
    rows = [
        ("status", _status(info)),
        ("aliases", ", ".join(info.aliases) or "-"),
        ("created", info.created),
        ("task", lineage.task),
        ("labels", f"{len(lineage.labels)}: {', '.join(lineage.labels[:20])}"
                   + (" ..." if len(lineage.labels) > 20 else "")),
        ("data snapshot", lineage.data_snapshot),
        ("parent version", lineage.parent_version or "- (from the pre-trained model)"),
        ("config hash", lineage.config_hash),
        ("code version", lineage.code_version),
        ("run id", info.run_id or "-"),
        ("source", info.source),
    ]
    if info.promotion:
        p = info.promotion
        forced = " (forced past the gate)" if p.get("forced") else ""
        rows.append(("promoted", f"{p['at']} by {p['by']}: {p['reason']}{forced}"))
    if "keepfit.rolled_back_at" in info.tags:
        rows.append(("rolled back", f"{info.tags['keepfit.rolled_back_at']}: "
                                    f"{info.tags.get('keepfit.rollback_reason', '')}"))
    for field, value in rows:
        table.add_row(field, str(value))
    for name, value in sorted(info.metrics.items()):
        table.add_row(f"metric {name}", f"{value:.4f}")
    console.print(table)
    if info.gate:
        console.print(f"Gate decision: [bold]{info.gate.get('decision', '?')}[/]")
        for reason in info.gate.get("reasons", []):
            console.print(f"  - {reason}")


@models_app.command("promote")
def promote_command(
    ref: str = typer.Argument(..., help="Version to make champion: 3, v3, challenger or latest."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (kept in the history)."),
    force: bool = typer.Option(False, "--force", help="Promote a version the gate rejected (recorded)."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Make a version the champion. The previous champion is archived (its files stay)."""
    registry, cfg = _open(config, overrides)
    with _locked(registry, cfg, "keepfit models promote"):  # the checks below hold until the switch
        target = registry.get(ref)
        rejected = (target.gate or {}).get("decision") == "rejected"
        if rejected and not force:
            reasons = "; ".join((target.gate or {}).get("reasons", [])) or "no reasons stored"
            raise RegistryError(
                f"Version {target.version} was rejected by the gate ({reasons}). "
                "Promote it anyway with --force (recorded as forced), or train a better candidate."
            )
        old = registry.champion()
        info = registry.promote(
            target.version, reason=reason, forced=rejected, expected_champion=old.version if old else None
        )
    before = f" (was version {old.version}, now archived)" if old else ""
    how = " past the gate (forced)" if rejected else ""
    console.print(f"[green]Promoted[/] version {info.version} to champion{how}{before}.")


@models_app.command("rollback")
def rollback_command(
    reason: str = typer.Option(..., "--reason", "-r", help="Why (kept in the history)."),
    to: str = typer.Option(None, "--to", help="Version to go back to (default: the previous champion)."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Move champion back to the previous champion; nothing is deleted."""
    registry, cfg = _open(config, overrides)
    with _locked(registry, cfg, "keepfit models rollback"):
        old = registry.champion()
        info = registry.rollback(reason=reason, to=to)
    was = f" from version {old.version}" if old else ""
    console.print(f"[yellow]Rolled back[/]{was}: version {info.version} is champion again.")


@models_app.command("history")
def history_command(config: Path = ConfigOption, overrides: list[str] = SetOption) -> None:
    """Promotions, rollbacks and challenger changes, newest first."""
    registry, _ = _open(config, overrides)
    events = registry.history()
    if not events:
        console.print("No promotions or rollbacks recorded yet.")
        return
    table = Table(title=f"History of {registry.name}")
    for column in ("when (UTC)", "action", "version", "previous", "by", "why"):
        table.add_column(column)
    for event in events:
        why = event.get("reason") or "; ".join(event.get("reasons") or [])
        action = str(event.get("action", ""))
        if event.get("forced"):
            action += " (forced)"
        table.add_row(
            str(event.get("at", "")), action, str(event.get("version", "")),
            str(event.get("previous") or ""), str(event.get("by", "")), why,
        )
    console.print(table)
