"""The comparison report of an update: the interpolation curve (BCWI) and where the time went."""

import json
import re

import numpy as np
import pytest

from keepfit.config import EvaluateConfig, GateConfig
from keepfit.gate import apply_gate, compare_outputs, write_comparison_report
from keepfit.gate.report import rewrite_timings
from keepfit.train.interpolate import Interpolation, write_curve

LABELS = ["a", "b", "c", "d", "e"]
IMG = '<img src="data:image/png;base64,'
CURVE = [
    {"alpha": 0.0, "accuracy": 0.913, "negative_flip_rate": 0.0625, "positive_flip_rate": 0.5,
     "negative_flips": 10, "positive_flips": 7},
    {"alpha": 0.2, "accuracy": 0.9105, "negative_flip_rate": 0.025, "positive_flip_rate": 0.4286,
     "negative_flips": 4, "positive_flips": 6},
    {"alpha": 0.4, "accuracy": 0.89, "negative_flip_rate": 0.0125, "positive_flip_rate": 0.2857,
     "negative_flips": 2, "positive_flips": 4},
]
TIMINGS = {"data_s": 3.0, "train_s": 12.0, "interpolate_s": 2.5, "my_step_s": 0.5, "total_s": 20.0}


@pytest.fixture
def compared(kit):
    y, old, frame, _ = kit.paired(n=200, seed=5)
    new = old.copy()
    wrong = np.flatnonzero(old != y)
    new[wrong[:5]] = y[wrong[:5]]
    comp = compare_outputs("single-label", LABELS, LABELS, y, kit.probs_for(old, 5), kit.probs_for(new, 5),
                           frame=frame, config=EvaluateConfig(bootstrap=200, length_bins=[]))
    return comp, apply_gate(comp, GateConfig())


def _rows(html: str, after: str) -> list[list[str]]:
    """The cells of each body row of the first table after the heading ``after``."""
    section = html[html.index(after):]
    body = section[section.index("<tbody>"):section.index("</tbody>")]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("<tr>")[1:]]


def test_report_without_interpolation_or_timings_is_as_before(compared, tmp_path):
    comp, decision = compared
    text = write_comparison_report(comp, decision, tmp_path / "cmp").read_text()
    assert "BCWI" not in text and "Where the time went" not in text
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert "interpolation" not in data and "timings" not in data


def test_report_shows_the_interpolation_curve_its_plot_and_the_chosen_weight(compared, tmp_path):
    comp, decision = compared
    result = Interpolation(0.2, CURVE, 0.005, 400, method="fisher", candidates=3)
    write_curve(result, tmp_path / "interpolated")
    text = write_comparison_report(comp, decision, tmp_path / "cmp", interpolation=result).read_text()
    assert text.count(IMG) == 5, "the four comparison figures and the interpolation curve"
    assert "Interpolation with the champion (BCWI)" in text and "Chosen a = <b>0.20</b> on 400" in text
    assert "fisher" in text and "average of 3 candidates" in text
    assert "champion-right rows flip 2.5% of the time (at 0: 6.2%)" in text
    rows = _rows(text, "Interpolation with the champion")
    assert [r[0] for r in rows] == ["0.00", "0.20", "0.40"]
    assert rows[1] == ["0.20", "0.9105", "0.0250", "4", "0.4286", "6", "chosen"]
    assert rows[0][-1] == "" and rows[2][3] == "2"
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())["interpolation"]
    assert saved["alpha"] == 0.2 and saved["method"] == "fisher" and saved["curve"][2]["negative_flips"] == 2
    # a plain mapping without a plot works too (no image, same table)
    text = write_comparison_report(comp, decision, tmp_path / "cmp2",
                                   interpolation={"alpha": 0.0, "curve": CURVE, "n_validation": 400}).read_text()
    assert text.count(IMG) == 4 and _rows(text, "Interpolation with the champion")[0][-1] == "chosen"
    not_done = Interpolation(0.0, [], 0.005, 40, note="not done for multi-label tasks")
    text = write_comparison_report(comp, decision, tmp_path / "cmp3", interpolation=not_done).read_text()
    assert "Not done: not done for multi-label tasks" in text


def test_report_shows_where_the_time_went_and_can_add_registration_later(compared, tmp_path):
    comp, decision = compared
    path = write_comparison_report(comp, decision, tmp_path / "cmp", timings=TIMINGS)
    text = path.read_text()
    rows = _rows(text, "Where the time went")
    assert rows == [
        ["data (merge, snapshot, diff)", "3.00", "15.0%"],
        ["training", "12.00", "60.0%"],
        ["interpolation with the champion", "2.50", "12.5%"],
        ["my_step_s", "0.50", "2.5%"],  # an unknown step as it comes
        ["other (not timed)", "2.00", "10.0%"],
        ["<b>total</b>", "20.00", "100.0%"],
    ]
    assert "Registration comes after this report" in text
    later = {**TIMINGS, "register_s": 2.0, "total_s": 22.0}
    rewrite_timings(tmp_path / "cmp", later)
    again = path.read_text()
    rows = _rows(again, "Where the time went")
    assert ["registration", "2.00", "9.1%"] in rows and rows[-1] == ["<b>total</b>", "22.00", "100.0%"]
    assert "Registration comes after" not in again and again.count("Where the time went") == 1
    assert again.replace(again[again.index("<!-- keepfit:timings"):], "") == \
        text.replace(text[text.index("<!-- keepfit:timings"):], ""), "the rest of the report is untouched"
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["timings"]["register_s"] == 2.0


def test_timings_without_a_total_share_their_sum(compared, tmp_path):
    comp, decision = compared
    text = write_comparison_report(comp, decision, tmp_path / "cmp", timings={"train_s": 3.0, "evaluate_s": 1.0})
    rows = _rows(text.read_text(), "Where the time went")
    assert rows == [["training", "3.00", "75.0%"], ["evaluation", "1.00", "25.0%"], ["<b>total</b>", "4.00", "100.0%"]]
    write_comparison_report(comp, decision, tmp_path / "plain")
    with pytest.raises(ValueError, match="no timings section"):
        rewrite_timings(tmp_path / "plain", {"register_s": 1.0})
