"""The data stage: load, validate, clean, dedup, split, snapshot, diff.

Public surface (everything else in this package is an implementation detail):

- :func:`check_data` / :func:`snapshot_data`: one check of a file; check + split + snapshot of ``config.data``
- :func:`split_rows`: add a ``split`` column to a canonical row table
- :func:`create_snapshot`, :func:`load_snapshot`, :func:`list_snapshots`: the content-hashed store of data
- :func:`diff_snapshots`, :func:`diff_renderable`: what changed between two snapshots
- :func:`summary_renderable`, :func:`render_html`: the check report for a terminal and as a page
  (the renderables are printed by the CLI: ``keepfit.cli.data.render_summary`` / ``render_diff``)
- :func:`screen_batch`, :func:`apply_screen`: label issues in a new batch, judged by the champion's probabilities
- :func:`find_training_label_issues`, :func:`write_label_issues`, :func:`collect_label_issues`,
  :func:`accept_reviewed`, :func:`accepted_pairs`: label issues at fit time, the review list, re-admitting rows
"""

from __future__ import annotations

from keepfit.data.check import CheckResult, check_data, check_files, snapshot_data, write_check_outputs
from keepfit.data.diff import SnapshotDiff, diff_renderable, diff_snapshots, diff_to_json
from keepfit.data.quality import QUALITY_CHECKS, Finding, QualityCheck, run_quality
from keepfit.data.report import render_html, summary_renderable
from keepfit.data.review import (
    AcceptResult,
    TrainingLabelIssues,
    accept_reviewed,
    accepted_pairs,
    collect_label_issues,
    find_training_label_issues,
    write_label_issues,
)
from keepfit.data.screen import Block, ScreenResult, apply_screen, screen_batch
from keepfit.data.snapshot import SnapshotInfo, ancestors, create_snapshot, list_snapshots, load_snapshot, set_head
from keepfit.data.split import SplitResult, split_frame, split_rows

__all__ = [
    "CheckResult",
    "check_data",
    "check_files",
    "snapshot_data",
    "write_check_outputs",
    "SnapshotDiff",
    "diff_snapshots",
    "diff_to_json",
    "diff_renderable",
    "QUALITY_CHECKS",
    "Finding",
    "QualityCheck",
    "run_quality",
    "render_html",
    "summary_renderable",
    "SnapshotInfo",
    "create_snapshot",
    "list_snapshots",
    "load_snapshot",
    "set_head",
    "ancestors",
    "SplitResult",
    "split_frame",
    "split_rows",
    "Block",
    "ScreenResult",
    "screen_batch",
    "apply_screen",
    "TrainingLabelIssues",
    "AcceptResult",
    "find_training_label_issues",
    "write_label_issues",
    "collect_label_issues",
    "accept_reviewed",
    "accepted_pairs",
]
