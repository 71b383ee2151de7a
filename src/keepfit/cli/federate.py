"""`keepfit federate`: federated fine-tuning on Flower (the ``federated`` extra).

Exit codes: 0 when the federated model was registered and is the champion (a first version, or promoted by
the gate), 6 (GateRejected) when the gate kept the champion (the model stays challenger with the reasons).
"""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console, err_console
from keepfit.errors import GateRejected

federate_app = typer.Typer(
    help="Federated fine-tuning on Flower: clients train the head (or LoRA) on their own rows; the server averages.",
    no_args_is_help=True,
)


@federate_app.command("simulate")
def simulate_command(
    config: Path = ConfigOption,
    clients: int = typer.Option(None, "--clients", min=2, help="Simulated clients (default: federate.clients)."),
    shards: str = typer.Option(
        None, "--shards", help="iid, or dirichlet (label-skewed by federate.alpha); default: federate.shards."
    ),
    rounds: int = typer.Option(None, "--rounds", min=1, help="Federated rounds (default: federate.rounds)."),
    snapshot: str = typer.Option(None, "--snapshot", help="Snapshot id (default: from config data, else HEAD)."),
    no_register: bool = typer.Option(False, "--no-register", help="Export the model without registering it."),
    overrides: list[str] = SetOption,
) -> None:
    """Deal the training rows to simulated clients and run Flower's simulation engine; the average is exported,
    evaluated on the test split and registered (through the gate when a champion exists)."""
    from keepfit.federated import federate

    if shards is not None and shards not in ("iid", "dirichlet"):
        raise typer.BadParameter(f"expected iid or dirichlet, got {shards!r}", param_hint="--shards")
    cfg = resolve_config(config, overrides)
    result = federate(cfg, snapshot=snapshot, clients=clients, shards=shards, rounds=rounds,
                      register=not no_register)
    _report(result)


def _report(result) -> None:
    """Rounds, test metrics, where the model is, and the gate's verdict (exit 6 when it kept the champion)."""
    if result.clients:
        console.print(f"Clients: {len(result.clients)} with {', '.join(map(str, result.clients))} training rows")
    for r in result.rounds:
        accuracy = r["validation"].get("validation_accuracy")
        shown = f", validation accuracy {accuracy:.4f}" if accuracy is not None else ""
        console.print(f"  round {r['round']}: {r['clients']} clients, {r['examples']} examples, "
                      f"{r['bytes_up'] / 1024:.1f} KiB up, {r['bytes_down'] / 1024:.1f} KiB down{shown}")
    for name, value in result.metrics.items():
        if isinstance(value, (int, float)):
            console.print(f"  test {name}: {value:.4f}")
    console.print(f"Model: {result.model_dir}")
    console.print(f"Report: {result.report}")
    if result.version is None:
        return
    if result.judged_against is None:
        console.print(f"Registered version {result.version} (champion)")
        return
    if result.promoted:
        console.print(f"Registered version {result.version}: the gate passed, it is the champion now")
        return
    err_console.print(f"Registered version {result.version} as challenger; champion {result.champion_version} stays:")
    for reason in result.reasons:
        err_console.print(f"  - {reason}")
    raise typer.Exit(GateRejected.exit_code)


@federate_app.command("server")
def server_command(
    clients: int = typer.Option(..., "--clients", min=2, help="Client processes to wait for (all join each round)."),
    address: str = typer.Option("127.0.0.1:9092", "--address", help="HOST:PORT the clients connect to."),
    config: Path = ConfigOption,
    rounds: int = typer.Option(None, "--rounds", min=1, help="Federated rounds (default: federate.rounds)."),
    snapshot: str = typer.Option(None, "--snapshot", help="Snapshot id (default: from config data, else HEAD)."),
    no_register: bool = typer.Option(False, "--no-register", help="Export the model without registering it."),
    overrides: list[str] = SetOption,
) -> None:
    """Serve a federation of separate client processes (Flower SuperLink): wait for --clients clients, run the
    rounds, then export, evaluate and register the average (through the gate when a champion exists)."""
    from keepfit.federated.processes import serve

    cfg = resolve_config(config, [*(overrides or []), *([f"federate.rounds={rounds}"] if rounds else [])])
    _report(serve(cfg, clients=clients, address=address, snapshot=snapshot, register=not no_register))


@federate_app.command("client")
def client_command(
    data: Path = typer.Option(..., "--data", help="This client's own rows (CSV/TSV/JSONL/Parquet); they stay here."),
    server: str = typer.Option(..., "--server", help="HOST:PORT of `keepfit federate server`."),
    config: Path = ConfigOption,
    model: Path = typer.Option(
        None, "--model", help="This client's copy of the start model (default: the path the server names)."
    ),
    work_dir: Path = typer.Option(None, "--work-dir", help="Folder for features, checkpoints and the log."),
    overrides: list[str] = SetOption,
) -> None:
    """Join a federation: check the shard, connect to the server (giving up after federate.connect_timeout),
    train the head (or LoRA) on the shard in each round, and end after the last round. Only weights and counts
    are sent."""
    from keepfit.federated.processes import join

    cfg = resolve_config(config, overrides)
    result = join(cfg, data=data, server=server, model=model, work_dir=work_dir)
    console.print(f"Trained {result.rounds} round(s) on {result.rows} rows; log: {result.log}")


def register(app: typer.Typer) -> None:
    app.add_typer(federate_app, name="federate")
