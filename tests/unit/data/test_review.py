"""Fit-time label issues on the demo data, the review store, and accepting reviewed rows back into the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keepfit.config import load_config
from keepfit.data import check_data
from keepfit.data.demo_data import INTENTS, generate_demo_data
from keepfit.data.review import (
    ACCEPTED_DIR,
    accept_reviewed,
    accepted_pairs,
    collect_label_issues,
    find_training_label_issues,
    render_review_html,
    write_label_issues,
    write_review_csv,
)
from keepfit.data.screen import ISSUE_COLUMNS, LABEL_ISSUE
from keepfit.errors import DataError


def _config(root, **data):
    cfg = load_config(None, [f"store={root / '.keepfit'}", "data.label_column=intent",
                             "data.group_column=customer_id", "data.slice_columns=[channel]"])
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=data)}) if data else cfg


@pytest.mark.parametrize("seed", [0, 1])
def test_the_demo_datas_planted_noisy_labels_are_found(tmp_path, seed):
    demo = generate_demo_data(2000, seed)
    path = tmp_path / "week1.csv"
    demo.frame.to_csv(path, index=False)
    checked = check_data(path, _config(tmp_path))
    planted = set(demo.noisy_rows) & set(checked.kept["row"])  # a few flipped rows were also quarantined

    result = find_training_label_issues(checked.kept, "single-label", sorted(INTENTS), seed)

    found = set(result.issues["row"])
    assert len(found & planted) >= 0.8 * len(planted)
    assert len(found - planted) <= 0.2 * len(found)  # what it flags is mostly what was planted
    assert result.n_checked == len(checked.kept) and result.accuracy > 0.9
    assert list(result.issues.columns[: len(ISSUE_COLUMNS)]) == ISSUE_COLUMNS
    assert {"group", "slice:channel"} <= set(result.issues.columns)
    assert (result.issues["suspected_label"] != result.issues["label"]).all()


def test_other_tasks_and_rare_labels_are_said_not_to_be_checked():
    frame = pd.DataFrame({"row": [2, 3], "source": "f.csv", "text": ["a", "b"], "labels": [["x"], ["y"]]})
    multi = find_training_label_issues(frame, "multi-label", ["x", "y"], 0)
    assert len(multi.issues) == 0 and "single-label tasks only" in multi.note

    rows = [{"row": i + 2, "source": "f.csv", "text": f"word{i % 7} refund money {i}", "label": "refund"}
            for i in range(30)]
    rows += [{"row": 40 + i, "source": "f.csv", "text": f"card lost {i}", "label": "lost_card"} for i in range(30)]
    rows += [{"row": 90, "source": "f.csv", "text": "hello", "label": "greeting"}]
    some = find_training_label_issues(pd.DataFrame(rows), "single-label", ["refund", "lost_card", "greeting"], 0)
    assert some.n_checked == 60 and "greeting" in some.note


def _issues(n: int, origin_label: str = "card_lost", suspected: str = "refund_request", block: str = ""):
    return pd.DataFrame(
        {
            "row": np.arange(2, n + 2),
            "source": "week2.csv",
            "text": [f"please help with case {i}" for i in range(n)],
            "label": origin_label,
            "suspected_label": suspected,
            "confidence": 0.97,
            "reason": "block" if block else "confident",
            "block": block,
            "group": "C00007",
            "slice:channel": "chat",
        }
    )


@pytest.fixture
def store(tmp_path):
    """A store with screened rows in an update run, fit-time rows in a fit run, and a bare quarantine row."""
    root = tmp_path / ".keepfit"
    write_label_issues(_issues(4, block="card_lost->refund_request"), root / "runs" / "update-1", origin="screen",
                       snapshot_id="b" * 64)
    fit = _issues(2, origin_label="order_status", suspected="cancel_order").assign(
        text=["where is my parcel", "my order has not arrived"], reason="out_of_fold")
    write_label_issues(fit, root / "runs" / "fit-1", origin="fit", snapshot_id="a" * 64)
    quarantine = pd.DataFrame(
        {
            "row": [2, 9],
            "source": "week2.csv",
            "reason": [LABEL_ISSUE, "empty_text"],
            "detail": ["the champion says 'refund_request' (p=0.97) ...", "no text"],
            "raw_text": ["please help with case 0", ""],
            "raw_label": ["card_lost", "card_lost"],
        }
    )
    (root / "snapshots" / ("b" * 64)).mkdir(parents=True)
    quarantine.to_parquet(root / "snapshots" / ("b" * 64) / "quarantine.parquet")
    late = pd.DataFrame({"row": [30], "source": "week3.csv", "reason": [LABEL_ISSUE], "detail": ["from a screen"],
                         "raw_text": ["refund my blender"], "raw_label": ["card_lost"]})
    (root / "snapshots" / ("c" * 64)).mkdir(parents=True)
    late.to_parquet(root / "snapshots" / ("c" * 64) / "quarantine.parquet")
    return tmp_path, root


def test_collect_gathers_every_flagged_row_once_with_where_it_came_from(store):
    _, root = store
    issues = collect_label_issues(root)

    assert len(issues) == 4 + 2 + 1  # the quarantine row that a run's file describes is not listed twice
    assert issues.groupby("origin").size().to_dict() == {"fit": 2, "screen": 5}
    assert set(issues["where"]) == {"runs/update-1", "runs/fit-1", f"snapshots/{'c' * 64}"}
    assert (issues["status"] == "open").all() and issues["issue"].is_unique
    bare = issues[issues["text"] == "refund my blender"].iloc[0]
    assert bare["detail"] == "from a screen" and bare["label"] == "card_lost"
    blocked = issues[issues["block"] != ""]
    assert blocked["detail"].str.contains("part of block card_lost->refund_request").all()
    assert collect_label_issues(root.parent / "empty").empty


def _review(tmp_path, root, decide):
    issues = collect_label_issues(root)
    path = write_review_csv(issues, tmp_path / "review.csv")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(table.columns[:3]) == ["issue", "accept", "corrected_label"]
    decide(table)
    table.to_csv(path, index=False)
    return path


def test_accept_writes_a_normal_data_file_that_the_next_update_reads(store):
    tmp_path, root = store
    cfg = _config(tmp_path, train="week1.csv")
    labels = sorted(INTENTS)

    def decide(t):
        screened = t["origin"] == "screen"
        t.loc[screened, "accept"] = "yes"
        t.loc[screened & (t["text"] == "please help with case 1"), "corrected_label"] = "refund_request"
        t.loc[t["text"] == "please help with case 3", "accept"] = "no"
        t.loc[t["origin"] == "fit", "accept"] = "yes"  # kept as labelled: already in the data

    result = accept_reviewed(_review(tmp_path, root, decide), cfg, labels=labels)

    assert (result.n_accepted, result.n_corrected, result.n_rejected) == (5, 1, 1)
    assert result.n_already_in_data == 2 and result.n_relabels == 0 and result.n_rows == 4
    assert result.path.parent == root / ACCEPTED_DIR
    assert result.command == f"keepfit update --data {result.path}"
    written = pd.read_csv(result.path)
    assert list(written.columns) == ["text", "intent", "customer_id", "channel"]
    assert dict(zip(written["text"], written["intent"], strict=True))["please help with case 1"] == "refund_request"
    checked = check_data(result.path, cfg)  # the update's own check takes it as it is
    assert len(checked.kept) == 4 and len(checked.quarantine) == 0
    groups = dict(zip(checked.kept["text"], checked.kept["group"], strict=True))
    assert groups["please help with case 0"] == "C00007"  # the row's group and slice travel with it
    assert groups["refund my blender"] == ""  # a bare quarantine row has none to give

    status = collect_label_issues(root).set_index("text")["status"]
    assert status["please help with case 1"] == "corrected" and status["please help with case 3"] == "rejected"
    assert status["where is my parcel"] == "accepted"
    pairs = accepted_pairs(root)
    assert ("please help with case 1", "refund_request") in pairs and ("please help with case 0", "card_lost") in pairs
    assert not any(text == "please help with case 3" for text, _ in pairs)


def test_corrected_fit_time_rows_are_relabels_and_say_how_to_apply_them(store):
    tmp_path, root = store

    def decide(t):
        t.loc[t["origin"] == "fit", ["accept", "corrected_label"]] = ["yes", "cancel_order"]
        t.drop(t.index[t["origin"] == "screen"], inplace=True)  # a subset of the rows is fine

    result = accept_reviewed(_review(tmp_path, root, decide), _config(tmp_path), labels=sorted(INTENTS))
    assert result.n_relabels == 2 and result.n_rows == 2
    assert result.command.endswith("--set update.relabels=apply")


def test_nothing_to_write_when_only_fit_rows_are_accepted_as_labelled(store):
    tmp_path, root = store

    def decide(t):
        t.loc[t["origin"] == "fit", "accept"] = "yes"  # the screened rows are left undecided

    result = accept_reviewed(_review(tmp_path, root, decide), _config(tmp_path), labels=sorted(INTENTS))
    assert result.path is None and result.n_already_in_data == 2 and "nothing to add" in result.command
    assert result.n_rejected == 0
    status = collect_label_issues(root).groupby("origin")["status"].agg(set).to_dict()
    assert status == {"fit": {"accepted"}, "screen": {"open"}}


@pytest.mark.parametrize(
    ("decide", "message"),
    [
        (lambda t: t.drop(columns=["accept"], inplace=True), r"\['accept'\] missing"),
        (lambda t: t.loc.__setitem__((t.index[0], "accept"), "maybe"), "accept must be yes or no.*'maybe'"),
        (lambda t: t.loc.__setitem__((t.index[0], "issue"), "000000000000"), "name no label issue"),
        (lambda t: t.loc.__setitem__((t.index[0], "corrected_label"), "Refund_Request"),
         'not one of the 13 known labels \\(did you mean "refund_request"\\?\\)'),
    ],
)
def test_bad_review_files_are_clear_errors(store, decide, message):
    tmp_path, root = store
    path = _review(tmp_path, root, decide)
    with pytest.raises(DataError, match=message):
        accept_reviewed(path, _config(tmp_path), labels=[*sorted(INTENTS), "crypto_payment"])
    assert not (root / ACCEPTED_DIR).exists()  # nothing written on bad input


def test_missing_review_file_is_a_clear_error(store):
    tmp_path, _ = store
    with pytest.raises(DataError, match="keepfit data review --csv"):
        accept_reviewed(tmp_path / "nope.csv", _config(tmp_path), labels=["a"])


def test_the_review_page_escapes_texts(store):
    _, root = store
    issues = collect_label_issues(root)
    issues.loc[0, "text"] = "<script>alert(1)</script>"
    page = render_review_html(issues)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "7 flagged row(s), 7 open" in page


def test_write_label_issues_rejects_a_table_without_the_issue_columns(tmp_path):
    with pytest.raises(DataError, match="lacks"):
        write_label_issues(pd.DataFrame({"text": ["a"]}), tmp_path, origin="fit")
