"""`keepfit monitor`: the prediction log's recent window against the reference version's data.

Prints a summary (one row per check), the alerts in red with what to do, and writes ``monitor.html`` and
``monitor.json`` into ``<store>/monitor/<UTC time>/`` (or ``--out``). With ``--fail-on-alert`` an alert makes the
exit code 10, so a cron job or CI step can act on it; a window with too few rows never alerts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from keepfit.cli._common import MONITOR_ALERT, ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console, err_console

_STATUS = {"ok": "[green]ok[/]", "alert": "[bold red]ALERT[/]", "skipped": "[dim]skipped[/]"}


def monitor_command(
    ref: str = typer.Option("champion", "--ref", help="The registry version the traffic is compared with."),
    since: str = typer.Option(
        None, "--since", help="Window start: an ISO time (UTC unless stated) or a duration back from now (2h, 7d); "
        "default: --until minus monitor.window."
    ),
    until: str = typer.Option(None, "--until", help="Window end, same forms as --since; default: now."),
    out: Path = typer.Option(None, "--out", help="Folder for monitor.html and monitor.json "
                             "(default: <store>/monitor/<UTC time>)."),
    json_output: bool = typer.Option(
        False, "--json", help="Print only the JSON figures to stdout; the summary goes to stderr."
    ),
    fail_on_alert: bool = typer.Option(
        False, "--fail-on-alert", help=f"Exit {MONITOR_ALERT} when a check alerts (for cron jobs and CI)."
    ),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Drift, label shift, confidence, abstentions and accuracy of served predictions, with alerts."""
    from keepfit.monitor import monitor, write_report
    from keepfit.store import Store

    cfg = resolve_config(config, overrides)
    report = monitor(cfg, ref=ref, since=since, until=until)
    folder = out or Store.at(cfg.store).root / "monitor" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    html_path, _ = write_report(report, folder)
    shown = err_console if json_output else console
    print_summary(report, shown)
    shown.print(f"Report: {escape(str(html_path))}")
    if json_output:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if fail_on_alert and report.alerts():
        raise typer.Exit(MONITOR_ALERT)


def print_summary(report, shown: Console) -> None:
    """The window, one table row per check, the slices that alerted, and the alerts with what to do."""
    from rich.table import Table

    reference = report.reference
    shown.print(
        f"Window {report.since_iso} .. {report.until_iso}: "
        f"{report.n_rows} logged predictions"
        + (" (the newest only: monitor.max_rows)" if report.truncated else "")
        + f", compared with v{escape(str(reference['version']))} ({escape(report.ref)})."
    )
    if not report.enough_rows:
        shown.print(
            f"Fewer than monitor.min_rows={report.min_rows} rows in the window: no verdicts. "
            "Widen the window (--since) or wait for more traffic."
        )
        return
    table = Table(title="Monitor")
    for column, justify in (("check", "left"), ("value", "right"), ("reference", "right"),
                            ("alert when", "left"), ("status", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for check in report.overall.checks:
        table.add_row(
            check.name, _number(check.value), _number(check.reference), escape(check.threshold), _STATUS[check.status]
        )
    shown.print(table)
    for check in report.overall.checks:
        if check.status == "skipped":
            shown.print(f"[dim]{escape(check.name)} skipped: {escape(check.detail)}[/]")
    alerted = [s for s in report.slices if s.assessment and s.assessment.alerts]
    if report.slices:
        judged = sum(s.assessment is not None for s in report.slices)
        shown.print(f"Slices: {judged} of {len(report.slices)} judged, {len(alerted)} with alerts.")
    alerts = report.alerts()
    if not alerts:
        shown.print("[green]No alert.[/]")
        return
    for line in alerts:
        shown.print(f"[red]ALERT {escape(line)}[/]")
    shown.print(escape(report.suggestion() or ""))


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)
