"""Bad input to `keepfit federate` through the CLI: one clear message (expected / got / what to do), the error's
exit code, no traceback."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from keepfit.cli import main
from keepfit.train.testing import sentiment_frame, write_tiny_project


@pytest.fixture()
def project(tiny_model, tmp_path, monkeypatch):
    write_tiny_project(tmp_path, tiny_model, rows=60, federate={"connect_timeout": 3})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEEPFIT_DEBUG", raising=False)
    return tmp_path


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["keepfit", "federate", *args])
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Internal error" not in err, err
    return done.value.code, " ".join(err.split())


def test_more_clients_than_rows(project, monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, "simulate", "--clients", "500")
    assert code == 3
    assert "DataError: Cannot deal" in err and "to 500 clients: expected at least one row per client" in err
    assert "Lower federate.clients" in err


def test_without_the_extra_it_names_the_extra(project, monkeypatch, capsys):
    import keepfit.federated.run as run

    monkeypatch.setattr(run, "missing_modules", lambda: ["flwr"])
    code, err = _run(monkeypatch, capsys, "simulate")
    assert code == 8 and "MissingExtraError" in err and "keepfit[federated]" in err


def test_fedprox_without_mu_is_a_config_error(project, monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, "simulate", "--set", "federate.strategy=fedprox", "--set", "federate.mu=0")
    assert code == 2 and "fedprox needs federate.mu > 0" in err


@pytest.mark.parametrize(
    ("rows", "extra", "expected"),
    [
        (pd.DataFrame({"text": ["   ", ""], "label": ["pos", "neg"]}), [],
         "has no usable rows: expected at least one labelled row, got 0"),
        (pd.DataFrame({"text": ["good film", "odd film"], "label": ["pos", "odd"]}), ["--set", "labels=[neg,pos]"],
         "1 label(s) the federation does not know: 'odd'"),
        (pd.DataFrame({"body": ["good film"], "label": ["pos"]}), [], "data.text_column is 'text', which is not a "
                                                                      "column"),
    ],
    ids=["empty", "unknown-label", "no-text-column"],
)
def test_a_client_with_a_bad_shard_stops_before_connecting(project, monkeypatch, capsys, rows, extra, expected):
    rows.to_csv(project / "shard.csv", index=False)
    code, err = _run(monkeypatch, capsys, "client", "--data", "shard.csv", "--server", "127.0.0.1:9", *extra)
    assert code == 3 and "DataError" in err and expected in err


def test_an_unreachable_server_is_an_error_after_the_timeout(project, monkeypatch, capsys):
    import time

    sentiment_frame(10, 3).to_csv(project / "shard.csv", index=False)
    started = time.monotonic()
    code, err = _run(monkeypatch, capsys, "client", "--data", "shard.csv", "--server", "127.0.0.1:9")
    assert code == 5 and time.monotonic() - started < 60
    assert "Could not take part in the federation at 127.0.0.1:9" in err and "start it first" in err


def test_a_malformed_address_is_a_config_error(project, monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, "server", "--clients", "2", "--address", "localhost")
    assert code == 2 and "expected HOST:PORT" in err
