"""The ServerApp and ClientApp that Flower loads by reference, in its own processes: a SuperLink runs
``server_app``; in simulation (``flower-superlink --simulation``) its simulation runtime runs one ``client_app``
per simulated client on Ray; in deployment each SuperNode runs ``client_app`` next to its own rows. Everything
they need comes from files named in their config: the plan that `keepfit federate` writes (run config ``plan``),
and for a deployed client its node config (written by `keepfit federate client`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from keepfit._io import atomic_write_text
from keepfit.errors import KeepfitError
from keepfit.federated.flower import ClientSetup, make_client_app, wait_for_clients
from keepfit.federated.run import CLIENT_ERROR_FILE, OUTCOME_FILE, WEIGHTS_DIR

__all__ = ["server_app", "client_app"]

log = logging.getLogger("keepfit.federate")

server_app = ServerApp()


@server_app.main()
def _serve(grid, context) -> None:
    """Run the plan's rounds; write the outcome (the exported model, or the error) for the waiting command."""
    from keepfit.config import load_config
    from keepfit.data import load_snapshot
    from keepfit.federated.flower import Ledger, run_rounds
    from keepfit.federated.run import export_average, ledger_json, server_member
    from keepfit.store import Store

    plan = json.loads(Path(str(context.run_config["plan"])).read_text(encoding="utf-8"))
    run_dir = Path(plan["run_dir"])
    try:
        config = load_config(Path(plan["config"]))
        snap = load_snapshot(Store.at(config.store), plan["snapshot"])
        server, labels = server_member(config, snap, Path(plan["base"]), run_dir)
        wait_for_clients(grid, plan["clients"], config.federate.connect_timeout)  # all of them, for the first round
        ledger = Ledger(keep_weights=plan.get("keep_weights", False))
        run_rounds(grid, config, server, labels, plan["clients"], ledger)
        trained = export_average(server, snap, ledger, run_dir)
        if ledger.keep_weights:
            ledger.save_weights(run_dir / WEIGHTS_DIR)
        outcome: dict[str, Any] = {"ok": True, "model_dir": str(trained.model_dir), "labels": trained.labels,
                                   "history": trained.history, **ledger_json(ledger)}
    except KeepfitError as err:
        outcome = {"ok": False, "error": type(err).__name__, "message": str(err)}
    except Exception as err:  # the waiting command must hear of a bug too, not wait out its timeout
        atomic_write_text(run_dir / OUTCOME_FILE, json.dumps({
            "ok": False, "error": type(err).__name__,
            "message": f"The federation's server failed ({type(err).__name__}: {err}); this is a bug, see "
                       f"{run_dir / 'superlink.log'}."}))
        raise
    atomic_write_text(run_dir / OUTCOME_FILE, json.dumps(outcome, default=float))


def _client(settings: dict[str, Any], labels: list[str]) -> ClientSetup:
    """A client's setup: a deployed node's own config (``keepfit-config``, ``data-path``, ``work-dir``,
    ``model``), or a simulated client's shard from the plan by the partition id Flower gives it."""
    from keepfit.config import load_config
    from keepfit.federated.run import read_shard
    from keepfit.federated.shards import check_shard

    if "data-path" in settings:
        config = load_config(Path(settings["keepfit-config"]))
        work = Path(settings["work-dir"])
        try:  # labels outside the federation's are only known now (when the client's config names none)
            rows = read_shard(config, Path(settings["data-path"]), labels)
        except KeepfitError as err:
            atomic_write_text(work / CLIENT_ERROR_FILE, json.dumps({"error": type(err).__name__, "message": str(err)}))
            raise
        model = settings.get("model") or None
        return ClientSetup(config=config, rows=rows, name=work.name, work_dir=work,
                           base_model=Path(model) if model else None, done_file=work / "done")
    import pandas as pd

    plan = json.loads(Path(str(settings["plan"])).read_text(encoding="utf-8"))
    name = f"client-{int(settings['partition-id'])}"
    path = Path(plan["shards"]) / f"{name}.parquet"
    rows = check_shard(pd.read_parquet(path), labels, path)
    return ClientSetup(config=load_config(Path(plan["config"])), rows=rows, name=name,
                       work_dir=Path(plan["run_dir"]) / "clients" / name, base_model=Path(plan["base"]))


client_app: ClientApp = make_client_app(_client)
