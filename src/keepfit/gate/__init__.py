"""The gate stage: paired comparison of two models, negative flips, and the group-aware promotion policy."""

from __future__ import annotations

from keepfit.gate.compare import (
    ALL,
    EARLIER,
    NEW,
    OUTPUT_NEW,
    OUTPUT_OLD,
    Comparison,
    GroupComparison,
    compare_outputs,
    describe_group,
    mcnemar_exact,
    negative_flip_sentence,
    union_labels,
)
from keepfit.gate.report import write_comparison_report
from keepfit.gate.rules import (
    DEFAULT_RULES,
    ClassRegression,
    FairnessGap,
    GateDecision,
    GateRule,
    Improvement,
    MaxNegativeFlipRate,
    NewLabelRecall,
    NonInferiority,
    RuleResult,
    Significance,
    apply_gate,
    class_checks,
)

__all__ = [
    "ALL",
    "EARLIER",
    "NEW",
    "OUTPUT_OLD",
    "OUTPUT_NEW",
    "Comparison",
    "GroupComparison",
    "compare_outputs",
    "describe_group",
    "mcnemar_exact",
    "negative_flip_sentence",
    "union_labels",
    "write_comparison_report",
    "GateDecision",
    "GateRule",
    "RuleResult",
    "NonInferiority",
    "MaxNegativeFlipRate",
    "ClassRegression",
    "Improvement",
    "NewLabelRecall",
    "Significance",
    "FairnessGap",
    "DEFAULT_RULES",
    "apply_gate",
    "class_checks",
]
