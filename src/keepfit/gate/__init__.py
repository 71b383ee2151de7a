"""The gate stage: paired comparison of two models, negative flips, and the promotion policy."""

from __future__ import annotations

from keepfit.gate.compare import Comparison, GroupComparison, compare_outputs, mcnemar_exact, union_labels
from keepfit.gate.report import write_comparison_report
from keepfit.gate.rules import (
    DEFAULT_RULES,
    GateDecision,
    GateRule,
    MaxNegativeFlipRate,
    MaxSliceDrop,
    MinDelta,
    RuleResult,
    Significance,
    apply_gate,
)

__all__ = [
    "Comparison",
    "GroupComparison",
    "compare_outputs",
    "mcnemar_exact",
    "union_labels",
    "write_comparison_report",
    "GateDecision",
    "GateRule",
    "RuleResult",
    "MinDelta",
    "MaxNegativeFlipRate",
    "MaxSliceDrop",
    "Significance",
    "DEFAULT_RULES",
    "apply_gate",
]
