"""The evaluate stage: metrics, calibration, slices, bootstrap intervals and reports, from arrays."""

from __future__ import annotations

from keepfit.evaluation.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from keepfit.evaluation.evaluation import EvaluationResult, evaluate_outputs
from keepfit.evaluation.report import write_evaluation_report

__all__ = [
    "EvaluationResult",
    "evaluate_outputs",
    "write_evaluation_report",
    "expected_calibration_error",
    "reliability_bins",
    "fit_temperature",
    "apply_temperature",
]
