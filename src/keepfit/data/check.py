"""One data check, end to end: load and validate -> quality findings -> (split -> leakage) -> report.

:func:`check_data` checks one file; :func:`snapshot_data` checks ``data.train`` (plus the optional
``data.validation``/``data.test`` files, honoured as given), splits, and stores the result as a snapshot.
Every input row ends up kept or quarantined with a reason; ``n_in == len(kept) + len(quarantine)`` is checked
on every run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from keepfit._io import atomic_write_text
from keepfit.config import KeepfitConfig
from keepfit.data.fairness import fairness_groups
from keepfit.data.quality import (
    QUALITY_CHECKS,
    Finding,
    LabelDistribution,
    add_derived_columns,
    check_leakage,
    drop_derived_columns,
    run_quality,
)
from keepfit.data.report import render_html
from keepfit.data.split import SplitResult, split_frame
from keepfit.data.validate import QUARANTINE_COLUMNS, CheckedRows, load_and_validate
from keepfit.errors import DataError
from keepfit.store import Store
from keepfit.types import LABEL, LABELS, SPLIT, Snapshot, is_generation

if TYPE_CHECKING:
    from keepfit.data.chat import TokenCounter

__all__ = ["CheckResult", "check_data", "check_files", "snapshot_data", "write_check_outputs"]


@dataclass
class CheckResult:
    """Everything a check found: kept rows (with ``split`` when split), quarantined rows, findings, report."""

    kept: pd.DataFrame
    quarantine: pd.DataFrame
    n_in: int
    labels: list[str]
    findings: list[Finding]
    warnings: list[str]
    report: dict[str, Any]
    sources: list[str]
    split: SplitResult | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def finding(self, kind: str) -> Finding | None:
        return next((f for f in self.findings if f.kind == kind), None)


def _concat_quarantine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return pd.concat([p[QUARANTINE_COLUMNS].astype({"row": "int64"}) for p in parts], ignore_index=True)


def _has_labels(config: KeepfitConfig) -> bool:
    """Whether the task's answers are labels (not a number, not a generated text)."""
    return config.task != "regression" and not is_generation(config.task)


def _labels(kept: pd.DataFrame, config: KeepfitConfig, known: list[str] | None) -> list[str]:
    if not _has_labels(config):
        return []
    if config.labels:
        return list(config.labels)
    if config.task == "multi-label":
        found = {str(x) for v in kept[LABELS] for x in v} if LABELS in kept else set()
    else:
        found = set(kept[LABEL].astype(str).unique()) if LABEL in kept else set()
    return sorted(found | set(known or []))


def _found_counts(findings: list[Finding], quarantine: pd.DataFrame) -> dict[str, int]:
    """Counts a user can hold against what was planted: one per finding kind and per quarantine reason."""
    counts = {f.kind: int(f.count) for f in findings if f.kind != "label_distribution"}
    for reason, n in quarantine["reason"].value_counts().items():
        if reason not in ("duplicate", "conflicting_labels", "conflicting_completions", "near_duplicate", "leakage"):
            counts[str(reason)] = int(n)
    return counts


def _report(
    config: KeepfitConfig,
    sources: list[str],
    n_in: int,
    kept: pd.DataFrame,
    quarantine: pd.DataFrame,
    findings: list[Finding],
    warnings: list[str],
    split: SplitResult | None,
) -> dict[str, Any]:
    dist = next((f for f in findings if f.kind == "label_distribution"), None)
    return {
        "sources": sources,
        "task": config.task,
        "n_in": int(n_in),
        "n_kept": len(kept),
        "n_quarantined": len(quarantine),
        "quarantine_reasons": {str(k): int(v) for k, v in quarantine["reason"].value_counts().items()},
        "findings": [f.to_dict() for f in findings],
        "label_counts": dict(dist.details.get("counts", {})) if dist else {},
        "split": None
        if split is None
        else {"method": split.method, "counts": split.counts, "warnings": split.warnings},
        "warnings": warnings,
        "found_counts": _found_counts(findings, quarantine),
        "quality_config": config.quality.model_dump(mode="json"),
    }


def _with_split(rows: CheckedRows, name: str) -> pd.DataFrame:
    return rows.kept.assign(**{SPLIT: name})


def _split_train_rows(frame: pd.DataFrame, config: KeepfitConfig, given: set[str]) -> SplitResult:
    """Split the rows of the training file; a split given as its own file gets none of them."""
    if SPLIT in frame and frame[SPLIT].notna().all() and len(frame):
        return split_frame(frame, config)
    updates = {name: 0.0 for name in ("validation", "test") if name in given}
    cfg = config.model_copy(update={"split": config.split.model_copy(update=updates)}) if updates else config
    if config.split.method == "given" and given:
        cfg = cfg.model_copy(update={"split": cfg.split.model_copy(update={"method": "auto"})})
    return split_frame(frame.drop(columns=[SPLIT], errors="ignore"), cfg)


def check_files(
    train: str | Path,
    config: KeepfitConfig,
    *,
    validation: str | Path | None = None,
    test: str | Path | None = None,
    known_labels: list[str] | None = None,
    split: bool = False,
    count_tokens: TokenCounter | None = None,
) -> CheckResult:
    """Check a training file and optional validation/test files together; with ``split``, split the training
    rows (user-given splits honoured) and look for leakage across splits.

    ``count_tokens`` (text-generation) counts the tokens of each conversation in the model's chat template; rows
    above ``data.max_tokens`` (or the counter's ``max_tokens``) are quarantined as ``too_long``. Without it only
    characters are checked (``data.max_chars``).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    main = load_and_validate(train, config, known_labels=known_labels, count_tokens=count_tokens)
    checked = [main]
    frames = [main.kept]
    given: set[str] = set()
    known = known_labels if known_labels is not None else (main.labels if _has_labels(config) else None)
    for name, path in (("validation", validation), ("test", test)):
        if path is None:
            continue
        rows = load_and_validate(path, config, known_labels=known, count_tokens=count_tokens)
        checked.append(rows)
        frames.append(_with_split(rows, name))
        given.add(name)
    n_in = sum(c.n_in for c in checked)
    warnings = [w for c in checked for w in c.warnings]
    sources = [c.source for c in checked]
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    timings["load_validate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # the label distribution is measured last, on what is finally kept
    combined = add_derived_columns(combined, config)
    outcome = run_quality(
        combined, config, checks=[c for c in QUALITY_CHECKS if c.name != "label_distribution"]
    )
    quarantine_parts = [c.quarantine for c in checked] + [outcome.quarantine]
    kept = outcome.kept
    findings = list(outcome.findings)
    timings["quality_s"] = time.perf_counter() - t0

    result_split: SplitResult | None = None
    if split or given:
        t0 = time.perf_counter()
        is_train_file = kept[SPLIT].isna() if SPLIT in kept and given else pd.Series(True, index=kept.index)
        if split:
            result_split = _split_train_rows(kept[is_train_file.to_numpy()], config, given)
            kept = pd.concat([result_split.frame, kept[~is_train_file.to_numpy()]], ignore_index=True)
            warnings += result_split.warnings
        timings["split_s"] = time.perf_counter() - t0
    if SPLIT in kept and kept[SPLIT].notna().all() and len(kept):
        t0 = time.perf_counter()
        leak = check_leakage(kept, config)
        kept = leak.kept
        findings += leak.findings
        quarantine_parts.append(leak.quarantine)
        timings["leakage_s"] = time.perf_counter() - t0
    kept = drop_derived_columns(kept)
    if result_split is not None:
        result_split = SplitResult(kept, result_split.method, result_split.warnings)
    findings.append(LabelDistribution().run(kept, config))

    quarantine = _concat_quarantine(quarantine_parts)
    if n_in != len(kept) + len(quarantine):  # the promise of the data layer; a failure here is a keepfit bug
        raise DataError(f"internal: {n_in} rows in but {len(kept)} kept + {len(quarantine)} quarantined")
    labels = _labels(kept, config, known_labels)
    report = _report(config, sources, n_in, kept, quarantine, findings, warnings, result_split)
    return CheckResult(
        kept, quarantine, n_in, labels, findings, warnings, report, sources, result_split, timings
    )


def check_data(
    path: str | Path,
    config: KeepfitConfig,
    *,
    store: Store | None = None,
    known_labels: list[str] | None = None,
    split: bool = False,
    count_tokens: TokenCounter | None = None,
    batch: bool = False,
) -> CheckResult:
    """Check one file: validation with quarantine, then the quality findings (and, with ``split``, the split
    and leakage). With ``store``, the quarantine and report are also written under
    ``<store>/checks/<file>/``. ``count_tokens``: text-generation's token-length rule (see check_files).
    Each of evaluate.fairness_columns must hold two groups or more (DataError), except in an update ``batch``,
    which may come from one group (the gaps are judged on the merged data)."""
    result = check_files(path, config, known_labels=known_labels, split=split, count_tokens=count_tokens)
    if not batch:
        fairness_groups(result.kept, config.evaluate.fairness_columns, where=Path(path).name)
    if store is not None:
        write_check_outputs(result, store.root / "checks" / Path(path).stem)
    return result


def write_check_outputs(result: CheckResult, folder: str | Path) -> dict[str, Path]:
    """Write ``quarantine.csv``, ``report.json`` and ``report.html`` into ``folder`` (atomically, each)."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "quarantine": atomic_write_text(folder / "quarantine.csv", result.quarantine.to_csv(index=False)),
        "report_json": atomic_write_text(
            folder / "report.json", json.dumps(result.report, indent=2, default=str)
        ),
        "report_html": atomic_write_text(folder / "report.html", render_html(result.report)),
    }
    return paths


def snapshot_data(
    config: KeepfitConfig,
    *,
    store: Store | None = None,
    train: str | Path | None = None,
    known_labels: list[str] | None = None,
    count_tokens: TokenCounter | None = None,
) -> Snapshot:
    """Check ``data.train`` (and ``data.validation``/``data.test`` when set), split, and store a snapshot.

    Returns the snapshot (an existing one when the content is identical). Raises DataError when no training
    file is configured. ``count_tokens``: see :func:`check_files`.
    """
    from keepfit.data.snapshot import create_snapshot

    path = train or config.data.train
    if not path:
        raise DataError(
            "No training data: expected data.train in keepfit.yaml (or a file argument). "
            "Run `keepfit init DATA` to write a config."
        )
    store = store or Store.at(config.store)
    result = check_files(
        path,
        config,
        validation=config.data.validation,
        test=config.data.test,
        known_labels=known_labels,
        split=True,
        count_tokens=count_tokens,
    )
    fairness_groups(result.kept, config.evaluate.fairness_columns, where=Path(path).name)
    return create_snapshot(
        result.kept,
        quarantine=result.quarantine,
        config=config,
        store=store,
        report=result.report,
        sources=result.sources,
        labels=result.labels,
    )
