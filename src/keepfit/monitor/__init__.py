"""The monitor stage: a window of the prediction log against the reference version's data (drift, label
shift, confidence, abstention, estimated and realised accuracy), with alerts and an offline HTML report."""

from keepfit.monitor.drift import (
    AccuracyEstimate,
    ConfidenceDrop,
    DomainClassifierTest,
    DriftTerm,
    LabelShift,
    Proportion,
    confidence_drop,
    domain_classifier_test,
    estimated_accuracy,
    label_shift,
    proportion,
)
from keepfit.monitor.report import write_report
from keepfit.monitor.run import (
    CHECKS,
    Assessment,
    Check,
    MonitorReport,
    Reference,
    SliceReport,
    TimeBin,
    assess,
    load_reference,
    monitor,
    parse_duration,
    parse_time,
)

__all__ = [
    "AccuracyEstimate",
    "Assessment",
    "CHECKS",
    "Check",
    "ConfidenceDrop",
    "DomainClassifierTest",
    "DriftTerm",
    "LabelShift",
    "MonitorReport",
    "Proportion",
    "Reference",
    "SliceReport",
    "TimeBin",
    "assess",
    "confidence_drop",
    "domain_classifier_test",
    "estimated_accuracy",
    "label_shift",
    "load_reference",
    "monitor",
    "parse_duration",
    "parse_time",
    "proportion",
    "write_report",
]
