"""The evaluate stage: metrics, calibration, slices, bootstrap intervals and reports, from arrays (and, for
text-generation, from generated answers)."""

from __future__ import annotations

from keepfit.evaluation.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from keepfit.evaluation.evaluation import EvaluationResult, evaluate_outputs
from keepfit.evaluation.generation import (
    SCORE_COLUMNS,
    evaluate_generations,
    field_scores,
    match_kind,
    score_generations,
)
from keepfit.evaluation.report import write_evaluation_report

__all__ = [
    "EvaluationResult",
    "evaluate_outputs",
    "evaluate_generations",
    "score_generations",
    "field_scores",
    "match_kind",
    "SCORE_COLUMNS",
    "write_evaluation_report",
    "expected_calibration_error",
    "reliability_bins",
    "fit_temperature",
    "apply_temperature",
]
