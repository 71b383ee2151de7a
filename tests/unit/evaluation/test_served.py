"""evaluate_outputs judges what is served: given thresholds and temperature are used, never tuned again."""

from __future__ import annotations

import numpy as np
import pytest

from keepfit.config import EvaluateConfig
from keepfit.errors import DataError
from keepfit.evaluation import apply_temperature, evaluate_outputs

CFG = EvaluateConfig(bootstrap=0)
LABELS = ["a", "b", "c"]


def _multi(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.4).astype(int)
    probs = np.clip(0.35 * y + rng.random((n, 3)) * 0.6, 0.01, 0.99)  # positives score higher, overlapping
    return y, probs


def _single(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) * 2
    logits[np.arange(n), y] += 2.5  # right ~75%, and over-confident
    z = logits * 2
    return y, np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_given_thresholds_are_used_not_tuned_on_validation():
    y, probs = _multi(1)
    tuned = evaluate_outputs("multi-label", LABELS, y, probs, config=CFG, validation=_multi(2))
    assert tuned.settings["threshold_source"] == "tuned on validation"
    served = [0.9, 0.2, 0.6]
    assert list(tuned.thresholds.values()) != served
    result = evaluate_outputs(
        "multi-label", LABELS, y, probs, config=CFG, validation=_multi(2), thresholds=np.array(served)
    )
    assert result.settings["threshold_source"] == "served"
    assert result.thresholds == dict(zip(LABELS, served, strict=True))
    predicted_a = [("a" in row) for row in result.predicted]
    assert predicted_a == list(probs[:, 0] >= 0.9)
    mapping = dict(zip(LABELS, served, strict=True))
    as_mapping = evaluate_outputs("multi-label", LABELS, y, probs, config=CFG, thresholds=mapping)
    assert as_mapping.headline == result.headline
    default = evaluate_outputs("multi-label", LABELS, y, probs, config=CFG)
    assert default.settings["threshold_source"] == "default 0.5"


def test_a_served_temperature_is_reported_as_served_and_not_refitted():
    y, raw = _single(3)
    y_val, raw_val = _single(4)
    fitted = evaluate_outputs("single-label", LABELS, y, raw, config=CFG, validation=(y_val, raw_val))
    cal = fitted.calibration
    temperature = cal["temperature"]
    assert temperature > 1.2  # the outputs are over-confident: the fit softens them
    assert cal["temperature_source"] == "fitted on validation (not served)"
    assert fitted.headline["ece"] == cal["ece"]  # the raw probabilities are what was served

    served = apply_temperature("single-label", raw, temperature)
    served_val = apply_temperature("single-label", raw_val, temperature)
    judged = evaluate_outputs(
        "single-label", LABELS, y, served, config=CFG, validation=(y_val, served_val), temperature=temperature
    )
    c = judged.calibration
    assert c["temperature_source"] == "served" and c["temperature"] == temperature
    assert judged.headline["ece"] == pytest.approx(cal["ece_after"], abs=1e-9)
    assert judged.headline["ece"] < cal["ece"]
    assert c["ece"] == pytest.approx(cal["ece"], abs=1e-9)  # "before" is the raw model, recovered
    assert c["nll"] == pytest.approx(cal["nll"], abs=1e-9)
    assert c["nll_after"] == pytest.approx(cal["nll_after"], abs=1e-9)
    # without saying so, the served outputs would be calibrated a second time
    again = evaluate_outputs("single-label", LABELS, y, served, config=CFG, validation=(y_val, served_val))
    assert again.calibration["temperature"] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"thresholds": [0.5, 0.5]}, "Expected 3 thresholds"),
        ({"thresholds": {"a": 0.5}}, "lack labels"),
        ({"thresholds": [0.5, 1.5, 0.5]}, r"in \[0, 1\]"),
        ({"temperature": 0.0}, "positive finite"),
    ],
)
def test_unusable_served_values_are_refused(kwargs, match):
    y, probs = _multi(5, 20)
    with pytest.raises(DataError, match=match):
        evaluate_outputs("multi-label", LABELS, y, probs, config=CFG, **kwargs)


def test_thresholds_for_a_single_label_task_are_refused():
    y, probs = _single(6, 20)
    with pytest.raises(DataError, match="multi-label outputs only"):
        evaluate_outputs("single-label", LABELS, y, probs, config=CFG, thresholds=[0.5, 0.5, 0.5])
