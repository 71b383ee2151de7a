"""Flower glue: the ClientApp a member runs, the rounds a ServerApp runs with Flower's own FedAvg / FedProx, and a
ledger of what the server received (per round: which records, which arrays, how many bytes).

Messages use Flower's Message API (``flwr.serverapp`` / ``flwr.clientapp``): the server sends the trainable part's
weights (an ArrayRecord) with a ConfigRecord (round, labels, FedProx's ``proximal-mu``); a client answers with
its new weights and a MetricRecord (``num-examples``, the averaging weight, and its training loss). Nothing else
crosses: the rows stay with the client.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from keepfit.config import KeepfitConfig
from keepfit.federated.local import Member, build_member, set_weights, train_round, trainable_weights

__all__ = ["Ledger", "RoundRecord", "make_strategy", "run_rounds", "make_client_app",
           "ClientSetup", "ClientSource"]

log = logging.getLogger("keepfit.federate")

ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"  # the record keys of Flower's strategies
WEIGHT_KEY = "num-examples"
Weights = dict[str, torch.Tensor]


@dataclass
class RoundRecord:
    """One round as the server saw it. Bytes are Flower's count of the ArrayRecords (serialised NumPy arrays with
    their small headers, plus the names): ``bytes_down`` the global weights times the clients sampled, ``bytes_up``
    what the clients sent back; the rest of a message (config, metrics, framing) is not counted."""

    round: int
    sampled: int  # clients the round's messages went to
    clients: int  # replies with weights
    failures: int
    examples: int
    bytes_down: int
    bytes_up: int
    received: list[dict[str, Any]]  # per reply: its records and what each held (names, shapes, metric keys)
    train_loss: float
    errors: list[str] = field(default_factory=list)  # the failed clients' reasons, as Flower reports them
    validation: dict[str, float] = field(default_factory=dict)


@dataclass
class Ledger:
    """What the server received, round by round. With ``keep_weights``, ``replies`` holds each round's
    (examples, weights) per client and ``averages`` each round's average (tests and benchmarks recompute from
    them); :meth:`save_weights` writes both."""

    keep_weights: bool = False
    rounds: list[RoundRecord] = field(default_factory=list)
    replies: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = field(default_factory=dict)
    averages: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    final: Weights | None = None

    def record(self, server_round: int, replies: list[Any], sent_bytes: int, sampled: int) -> None:
        ok = [m for m in replies if not m.has_error()]
        if len(ok) < sampled:
            log.warning("round %d: %d of %d sampled clients replied with weights", server_round, len(ok), sampled)
        received = [_describe(m.content) for m in ok]
        examples = [int(m.content[METRICS][WEIGHT_KEY]) for m in ok]
        losses = [float(m.content[METRICS].get("train-loss", math.nan)) for m in ok]
        self.rounds.append(RoundRecord(
            round=server_round, sampled=sampled, clients=len(ok), failures=len(replies) - len(ok),
            examples=sum(examples), bytes_down=sent_bytes * sampled,
            bytes_up=sum(m.content[ARRAYS].count_bytes() for m in ok), received=received,
            train_loss=float(np.average(losses, weights=examples)) if examples and sum(examples) else math.nan,
            errors=[m.error.reason for m in replies if m.has_error()],
        ))
        for m in replies:
            if m.has_error():
                log.warning("round %d: a client failed: %s", server_round, m.error.reason)
        if self.keep_weights:
            self.replies[server_round] = [
                (n, {k: a.numpy() for k, a in m.content[ARRAYS].items()}) for n, m in zip(examples, ok, strict=True)
            ]

    def save_weights(self, folder: Path) -> None:
        """Each round's average and replies as safetensors files (``round-001-average``, ``round-001-client-0``
        with the reply's example count in its metadata)."""
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        for r, weights in self.averages.items():
            save_file(weights, str(folder / f"round-{r:03d}-average.safetensors"))
        for r, replies in self.replies.items():
            for k, (n, weights) in enumerate(replies):
                save_file(weights, str(folder / f"round-{r:03d}-client-{k}.safetensors"), metadata={"examples": str(n)})


def _describe(content: Any) -> dict[str, Any]:
    """The shape of a reply without its values: record names and kinds, array names and shapes, metric keys."""
    out: dict[str, Any] = {}
    for key, record in content.items():
        kind = type(record).__name__
        if kind == "ArrayRecord":
            out[key] = {"kind": kind, "arrays": {n: list(a.shape) for n, a in record.items()}}
        else:
            out[key] = {"kind": kind, "keys": sorted(record.keys())}
    return out


def wait_for_clients(grid, clients: int, timeout: float) -> None:
    """Return once ``clients`` clients are connected; a TrainingError after ``timeout`` seconds without them."""
    from keepfit.errors import TrainingError

    deadline = time.monotonic() + timeout
    while len(list(grid.get_node_ids())) < clients:
        if time.monotonic() > deadline:
            raise TrainingError(
                f"Only {len(list(grid.get_node_ids()))} of {clients} clients connected within {timeout:.0f} s. "
                "Expected every client to run `keepfit federate client --server ADDRESS` (and to stay until the "
                "last round); start them, or lower --clients, or raise federate.connect_timeout."
            )
        time.sleep(0.5)


def make_strategy(config: KeepfitConfig, clients: int, ledger: Ledger):
    """Flower's FedAvg or FedProx (federate.strategy), sampling federate.fraction of ``clients`` each round
    (at least two) from the clients connected, with no client-side evaluation (the server scores the average on
    its validation rows); every round's replies go through ``ledger`` first."""
    from flwr.serverapp.strategy import FedAvg, FedProx

    fc = config.federate
    per_round = max(2, min(clients, math.ceil(fc.fraction * clients)))
    common = dict(fraction_train=fc.fraction, fraction_evaluate=0.0, min_train_nodes=per_round,
                  min_evaluate_nodes=0, min_available_nodes=per_round)
    base = FedProx if fc.strategy == "fedprox" else FedAvg

    class Recording(base):  # type: ignore[misc, valid-type]
        """The library's strategy; the ledger sees each round's replies before they are averaged, and a round
        whose clients are gone fails after federate.connect_timeout (Flower would wait for them forever)."""

        def configure_train(self, server_round, arrays, config, grid):
            wait_for_clients(grid, self.min_available_nodes, fc.connect_timeout)
            messages = list(super().configure_train(server_round, arrays, config, grid))
            self._sent = (arrays.count_bytes(), len(messages))
            return messages

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            ledger.record(server_round, replies, *self._sent)
            return super().aggregate_train(server_round, replies)

    return Recording(**common, proximal_mu=fc.mu) if base is FedProx else Recording(**common)


def run_rounds(grid, config: KeepfitConfig, server: Member, labels: list[str], clients: int, ledger: Ledger) -> None:
    """federate.rounds of train-and-average from the server member's weights: after each round the average is
    scored on the server's validation rows (into the ledger); the last average ends in ``ledger.final``."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    fc = config.federate

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:
            return None
        weights = arrays.to_torch_state_dict()
        metrics = _score(server, weights)
        if ledger.keep_weights:
            ledger.averages[server_round] = {k: v.numpy().copy() for k, v in weights.items()}
        if ledger.rounds and ledger.rounds[-1].round == server_round:
            ledger.rounds[-1].validation = metrics
        log.info("round %d: %s", server_round, metrics)
        return MetricRecord({k: float(v) for k, v in metrics.items() if np.isfinite(v)})

    random.seed(fc.seed)  # Flower samples the round's clients with `random`
    strategy = make_strategy(config, clients, ledger)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(trainable_weights(server)),
        num_rounds=fc.rounds,
        timeout=fc.round_timeout,
        train_config=ConfigRecord({"labels": list(labels), "base-model": str(server.base_model),
                                   "rounds": fc.rounds}),
        evaluate_fn=evaluate,
    )
    if ledger.rounds and result.arrays is not None and len(result.arrays):
        ledger.final = result.arrays.to_torch_state_dict()


def _score(member: Member, weights: Weights) -> dict[str, float]:
    """Validation metrics of ``weights`` in the member's model (its job's validation rows)."""
    from keepfit.train.metrics import eval_metrics

    job = member.job
    if len(job.val.ids) == 0:
        return {}
    set_weights(member, weights)
    job.model.eval()
    metrics = eval_metrics(job.task, job.val_logits(job.model), job.val.targets, job.mean, job.std)
    return {f"validation_{k}": float(v) for k, v in metrics.items()}


@dataclass(frozen=True)
class ClientSetup:
    """What a ClientApp needs on its node: the config, its own rows (checked), a name, a work folder, the start
    model (None: the path the server names, on the same machine or a copy) and, for a client process that
    should end with the federation, a file to write after the last round."""

    config: KeepfitConfig
    rows: pd.DataFrame
    name: str
    work_dir: Path
    base_model: Path | None = None
    done_file: Path | None = None


# (the run's config overlaid with the node's, the federation's labels) -> the client's setup
ClientSource = Callable[[dict[str, Any], list[str]], ClientSetup]
_MEMBERS: dict[tuple[str, str], Member] = {}  # one per shard and start model in a client process


def make_client_app(source: ClientSource):
    """The ClientApp: on each train message, its member (built once per process from the rows of the node's
    setup) trains from the received weights and replies with its new weights and example count."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg: Message, context) -> Message:
        settings = msg.content[CONFIG]
        labels = list(settings["labels"])
        setup = source({**context.run_config, **context.node_config}, labels)
        base = Path(setup.base_model or settings["base-model"])
        key = (setup.name, str(base))
        if key not in _MEMBERS:
            _MEMBERS[key] = build_member(setup.config, setup.rows, labels, base, setup.work_dir)
        server_round = int(settings["server-round"])
        weights, n, metrics = train_round(
            _MEMBERS[key], msg.content[ARRAYS].to_torch_state_dict(),
            server_round=server_round, mu=float(settings.get("proximal-mu", 0.0)),
        )
        if setup.done_file is not None and server_round >= int(settings.get("rounds", server_round + 1)):
            setup.done_file.write_text(f"{server_round}\n", encoding="utf-8")
        reply = RecordDict({ARRAYS: ArrayRecord(weights), METRICS: MetricRecord({WEIGHT_KEY: n, **metrics})})
        return Message(content=reply, reply_to=msg)

    return app
