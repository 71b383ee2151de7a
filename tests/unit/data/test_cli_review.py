"""`keepfit data review` and `keepfit data accept` through the real typer app."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from keepfit.cli import app
from keepfit.data.review import write_label_issues
from keepfit.errors import DataError

runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keepfit.yaml").write_text(
        "store: .keepfit\nlabels: [card_arrival, card_linking, refund]\n"
        "data:\n  train: data/week1.csv\n  label_column: intent\n"
    )
    swapped = pd.DataFrame(
        {
            "row": range(2, 8),
            "source": "week2.csv",
            "text": [f"my card has not come yet {i}" for i in range(6)],
            "label": "card_linking",
            "suspected_label": "card_arrival",
            "confidence": [0.99, 0.98, 0.97, 0.9, 0.8, 0.6],
            "reason": "block",
            "block": "card_linking->card_arrival",
        }
    )
    write_label_issues(swapped, tmp_path / ".keepfit" / "runs" / "update-1", origin="screen")
    return tmp_path


def test_review_lists_the_flagged_rows_and_writes_csv_and_html(project):
    result = runner.invoke(app, ["data", "review", "--csv", "review.csv", "--html", "review.html"])
    assert result.exit_code == 0, result.output
    assert "6 label issue(s) in " in result.output and ", 6 open." in result.output
    assert "block card_linking->card_arrival: 6 row(s)" in result.output
    table = pd.read_csv(project / "review.csv", dtype=str, keep_default_na=False)
    assert len(table) == 6 and list(table.columns[:3]) == ["issue", "accept", "corrected_label"]
    assert all(issue in result.output for issue in table["issue"])  # every row is in the terminal table
    assert "keepfit data accept review.csv" in result.output
    assert "my card has not come yet 0" in (project / "review.html").read_text()


def test_accept_writes_the_rows_and_says_which_update_to_run(project):
    runner.invoke(app, ["data", "review", "--csv", "review.csv"])
    table = pd.read_csv(project / "review.csv", dtype=str, keep_default_na=False)
    table["accept"] = ["yes", "yes", "yes", "yes", "no", "no"]
    table.loc[:3, "corrected_label"] = "card_arrival"
    table.to_csv(project / "review.csv", index=False)

    result = runner.invoke(app, ["data", "accept", "review.csv"])

    assert result.exit_code == 0, result.output
    assert "0 accepted as labelled, 4 corrected, 2 left out" in result.output
    assert "4 rows; run `keepfit update --data " in result.output
    written = next((project / ".keepfit" / "accepted").glob("*[0-9]Z.csv"))
    assert pd.read_csv(written)["intent"].tolist() == ["card_arrival"] * 4
    again = runner.invoke(app, ["data", "review"])
    assert ", 0 open." in again.output  # decided rows leave the open list


def test_accept_refuses_an_unknown_corrected_label(project):
    runner.invoke(app, ["data", "review", "--csv", "review.csv"])
    table = pd.read_csv(project / "review.csv", dtype=str, keep_default_na=False)
    table["accept"] = "yes"
    table.loc[0, "corrected_label"] = "card_arrivals"
    table.to_csv(project / "review.csv", index=False)

    result = runner.invoke(app, ["data", "accept", "review.csv"])

    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)
    assert 'did you mean "card_arrival"' in str(result.exception)
