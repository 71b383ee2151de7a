"""The gate policy: small rules behind one protocol, each judging the group of test rows it names.

Each rule judges one group of a paired :class:`Comparison`, named in ``policy.groups`` (``gate.groups`` in
keepfit.yaml); the default policy (``policy`` is :class:`keepfit.config.GateConfig`; intervals are the paired
bootstrap intervals at ``EvaluateConfig.confidence``):

- **non_inferiority** on the earlier test set (what the champion could already do): the lower end of the
  interval of the change of ``policy.metric`` (new - old, turned so that positive = better for metrics where
  lower is better, such as MAE) must lie above ``-margin``. Rows of new labels are not in this group, so they
  cannot lift it.
- **max_negative_flip_rate** on the earlier test set: NFR = #(old right and new wrong) / N must be within the
  budget (the observed rate; its Wilson interval and the share of previously-right rows are reported).
- **class_regression** on every class and slice value of the earlier test set: an exact McNemar test
  (one-sided: the candidate is worse) on its discordant pairs, Holm-corrected across every class and slice value
  with at least one discordant pair (family-wise level ``alpha``); and a flip budget that catches small classes,
  where a test has no power: a class fails with at least ``class_min_flips`` negative flips that are also more
  than ``max_class_flip_share`` of its previously-right rows, or that loses every one (at least two) of its
  previously-right rows ("broken completely" when it keeps none). Classes
  with fewer previously-right rows than that cannot be protected: the power statement (``detectable_flips``, the
  smallest number of flips either check rejects for sure) says so per class, and the decision warns.
- **improvement** on the new test set: with ``improvement: not_worse`` (default) the candidate fails when the
  whole interval of the change lies below ``min_delta`` (shown worse); with ``shown`` the lower end must lie
  above ``min_delta`` (a tie does not pass).
- **new_label_recall** on the new test set: each label the old model does not know, where it has rows, needs
  recall (F1 for multi-label) of at least ``new_label_min_recall``.
- **significance** (only with ``require_significance``): McNemar's exact test on the improvement's group must
  give p < ``alpha`` with the new model ahead.
- **fairness_gap** on the earlier test set (with ``evaluate.fairness_columns``): for every fairness column, the
  accuracy gap, demographic parity and equalised odds difference between its groups
  (:mod:`keepfit.evaluation.fairness`) of both models on the same rows; a candidate fails when a gap is shown to
  widen by more than ``max_fairness_gap_increase``: the lower end of the one-sided paired interval of the change
  (the same bootstrap resamples for both models) lies above it. Without fairness columns it passes with a note.

A group the comparison lacks, or that has no rows, falls back: the earlier and the new test set to all rows
(plain ``keepfit compare A B``, or an update without new test rows); the rule's detail says which group it
judged. Without bootstrap resamples there is no interval, and the interval rules fail (set evaluate.bootstrap).
``accuracy`` means subset accuracy for multi-label and MAE for regression (said in the detail).

text-generation comparisons are judged by the same rules: ``accuracy`` is the share of right answers (the
configured match score at least its threshold), flips and McNemar count right answers; class_regression judges
the per-field table (top-level fields of JSON references, kind "field") and the slices, and is skipped when
there is neither; new_label_recall does not apply (there are no labels) and passes with a note.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from keepfit.config import GateConfig
from keepfit.errors import ConfigError
from keepfit.evaluation._json import jsonable
from keepfit.evaluation.metrics import HIGHER_IS_BETTER
from keepfit.gate.compare import (
    ALL,
    EARLIER,
    NEW,
    Comparison,
    GroupComparison,
    describe_group,
    negative_flip_sentence,
)
from keepfit.types import is_generation, is_single_label

__all__ = [
    "RuleResult",
    "GateRule",
    "GateDecision",
    "NonInferiority",
    "MaxNegativeFlipRate",
    "ClassRegression",
    "Improvement",
    "NewLabelRecall",
    "Significance",
    "FairnessGap",
    "DEFAULT_RULES",
    "FALLBACK",
    "apply_gate",
    "class_checks",
    "judged_group",
    "resolve_metric",
]

log = logging.getLogger(__name__)
_TOL = 1e-12
_LISTED = 10
_ALIASES = {"multi-label": {"accuracy": "subset_accuracy"}, "regression": {"accuracy": "mae"}}
FALLBACK = {EARLIER: ALL, NEW: ALL}


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict: ``value`` is what was measured, ``threshold`` what it was held to; ``detail`` says
    both in a sentence (and, on failure, what would pass). ``group``: the group judged; ``failed``: the
    classes/slices/labels it failed."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    skipped: bool = False
    group: str | None = None
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@runtime_checkable
class GateRule(Protocol):
    """A gate rule: a name and a verdict on one group of a comparison under a policy.

    ``group`` None means the group the policy names for this rule (``policy.groups[name]``, with fallback).
    """

    name: str

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str | None = None) -> RuleResult: ...


def judged_group(
    comparison: Comparison, policy: GateConfig, rule: str, group: str | None = None
) -> tuple[GroupComparison, str]:
    """The group ``rule`` judges and a note saying so when it fell back; an explicit ``group`` never falls back."""
    if group is not None:
        return comparison.group(group), ""
    wanted = policy.groups.get(rule, ALL)
    g = comparison.groups.get(wanted)
    if g is not None and g.n > 0:
        return g, ""
    fallback = FALLBACK.get(wanted)
    if fallback is None or fallback not in comparison.groups:
        raise ConfigError(
            f"gate.groups.{rule} is {wanted!r}, which this comparison does not have (it has "
            f"{sorted(comparison.groups)}); name one of those."
        )
    why = "has no rows" if g is not None else "is not part of this comparison"
    return comparison.groups[fallback], f" ({describe_group(wanted)} {why}, so {describe_group(fallback)} are judged)"


def resolve_metric(comparison: Comparison, name: str) -> tuple[str, str]:
    """The metric to gate on for this task and a note when an alias was used; ConfigError when unknown."""
    resolved = _ALIASES.get(comparison.task, {}).get(name, name)
    available = next(iter(comparison.groups.values())).deltas
    if resolved not in available:
        raise ConfigError(
            f"gate.metric is {name!r}, which a {comparison.task} comparison does not report; "
            f"use one of {sorted(available)}."
        )
    note = "" if resolved == name else f" (gate.metric {name!r} means {resolved!r} for {comparison.task})"
    if note:
        log.warning("gate.metric %r is read as %r for a %s task", name, resolved, comparison.task)
    return resolved, note


def _signed(metric: str, value: float) -> float:
    return value if HIGHER_IS_BETTER[metric] else -value


def _bounds_phrase(comparison: Comparison, d: dict[str, Any]) -> str:
    """How the bounds a rule tests were made: one-sided bounds at the comparison's confidence when there are."""
    confidence = float(comparison.settings.get("confidence", 0.95))
    if d.get("one_sided"):
        return f"one-sided {confidence:.0%} bounds (paired bootstrap)"
    return f"{confidence:.0%} interval"


def _interval_rule(
    rule: str, comparison: Comparison, g: GroupComparison, note: str, policy: GateConfig, bound: float, why: str
) -> RuleResult:
    """Passes when the lower end of the metric change's interval on ``g`` lies above ``bound``."""
    metric, alias = resolve_metric(comparison, policy.metric)
    d = g.deltas[metric]
    gain = _signed(metric, d["delta"])
    word = "improvement" if HIGHER_IS_BETTER[metric] else "reduction"
    interval = d.get("one_sided") or d["interval"]
    head = (
        f"{metric}{alias} on {describe_group(g.name)} ({g.n} rows){note}: old {d['old']:.4f}, new {d['new']:.4f}, "
        f"{word} {gain:+.4f}"
    )
    if interval is None:
        return RuleResult(
            rule, False, gain, bound,
            f"{head}; fails: there is no interval to show it with; set evaluate.bootstrap above 0 (e.g. 1000).",
            group=g.name,
        )
    lo, hi = sorted((_signed(metric, interval[0]), _signed(metric, interval[1])))
    head += f", {_bounds_phrase(comparison, d)} [{lo:+.4f}, {hi:+.4f}]"
    if lo > bound + _TOL:
        return RuleResult(
            rule, True, lo, bound, f"{head}; passes: its lower end {lo:+.4f} is above {bound:+.4f}.", group=g.name
        )
    return RuleResult(
        rule, False, lo, bound,
        f"{head}; fails: the lower end {lo:+.4f} must be above {bound:+.4f} ({why}); it is short by "
        f"{bound - lo:.4f} (a larger gain, or more test rows to narrow the interval, would pass).",
        group=g.name,
    )


@dataclass(frozen=True)
class NonInferiority:
    name: str = "non_inferiority"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str | None = None) -> RuleResult:
        g, note = judged_group(comparison, policy, self.name, group)
        why = f"not worse than the champion by more than gate.margin {policy.margin:.4f}"
        return _interval_rule(self.name, comparison, g, note, policy, -policy.margin, why)


@dataclass(frozen=True)
class Improvement:
    name: str = "improvement"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str | None = None) -> RuleResult:
        g, note = judged_group(comparison, policy, self.name, group)
        if policy.improvement == "shown":
            why = f"an improvement of more than gate.min_delta {policy.min_delta:+.4f} shown; a tie does not pass"
            return _interval_rule(self.name, comparison, g, note, policy, policy.min_delta, why)
        return _not_shown_worse(self.name, comparison, g, note, policy)


def _not_shown_worse(rule: str, comparison: Comparison, g: GroupComparison, note: str, policy: GateConfig):
    """``gate.improvement: not_worse``: passes unless the whole interval of the change lies below min_delta.

    A routine batch of known labels (or a corrected batch) cannot show an improvement on its few test rows; the
    earlier test set's rules carry the evidence that nothing broke, and this rule refuses a candidate that is
    shown to be worse on the rows the batch brought."""
    metric, alias = resolve_metric(comparison, policy.metric)
    d = g.deltas[metric]
    gain = _signed(metric, d["delta"])
    head = (
        f"{metric}{alias} on {describe_group(g.name)} ({g.n} rows){note}: old {d['old']:.4f}, new {d['new']:.4f}, "
        f"change {gain:+.4f}"
    )
    if d["interval"] is None:
        return RuleResult(
            rule, False, gain, policy.min_delta,
            f"{head}; fails: there is no interval to judge it with; set evaluate.bootstrap above 0 (e.g. 1000).",
            group=g.name,
        )
    interval = d.get("one_sided") or d["interval"]
    lo, hi = sorted((_signed(metric, interval[0]), _signed(metric, interval[1])))
    head += f", {_bounds_phrase(comparison, d)} [{lo:+.4f}, {hi:+.4f}]"
    if hi >= policy.min_delta - _TOL:
        return RuleResult(
            rule, True, hi, policy.min_delta,
            f"{head}; passes: not shown worse (the upper end {hi:+.4f} reaches {policy.min_delta:+.4f}; "
            "gate.improvement: shown would require the lower end above it).", group=g.name,
        )
    return RuleResult(
        rule, False, hi, policy.min_delta,
        f"{head}; fails: shown worse on these rows (even the upper end {hi:+.4f} is below {policy.min_delta:+.4f}).",
        group=g.name,
    )


@dataclass(frozen=True)
class MaxNegativeFlipRate:
    name: str = "max_negative_flip_rate"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str | None = None) -> RuleResult:
        g, note = judged_group(comparison, policy, self.name, group)
        flips, n, right = g.mcnemar["old_right_new_wrong"], g.n, _old_right(g)
        budget = policy.max_negative_flip_rate
        allowed = math.floor(budget * n + _TOL)
        lo, hi = proportion_confint(flips, n, alpha=0.05, method="wilson") if n else (float("nan"),) * 2
        head = (
            f"{negative_flip_sentence(flips, n, right, g.name)}{note}; NFR {g.negative_flip_rate:.4f} "
            f"(95% Wilson interval [{lo:.4f}, {hi:.4f}]), budget {budget:.4f}"
        )
        passed = n == 0 or g.negative_flip_rate <= budget + _TOL
        tail = (
            "passes"
            if passed
            else f"fails by {g.negative_flip_rate - budget:.4f}: at most {allowed} negative flips of {n} would pass "
            f"({flips - allowed} too many)"
        )
        return RuleResult(self.name, passed, g.negative_flip_rate, budget, f"{head}; {tail}.", group=g.name)


def _old_right(g: GroupComparison) -> int:
    mc = g.mcnemar
    return int(mc.get("old_right", mc["both_right"] + mc["old_right_new_wrong"]))


def _unit_kind(comparison: Comparison) -> str:
    """What a per-class entry is: a label ("class"), or for text-generation a JSON field ("field")."""
    return "field" if is_generation(comparison.task) else "class"


def _units(comparison: Comparison, g: GroupComparison) -> list[dict[str, Any]]:
    """Classes the old model knows (text-generation: every JSON field) and slice values, with rows in ``g``."""
    kind = _unit_kind(comparison)
    known = set(g.per_class) if kind == "field" else set(comparison.labels_old)
    metric = comparison.settings.get("class_metric") or "metric"
    units = [
        {"kind": kind, "name": name, "metric": metric, **row}
        for name, row in g.per_class.items()
        if name in known and row["n"] > 0
    ]
    slice_metric = comparison.settings.get("slice_metric", "accuracy")
    for sname, values in g.per_slice.items():
        units += [
            {"kind": "slice", "name": f"{sname}={value}", "metric": slice_metric, **row}
            for value, row in values.items()
            if row["n"] > 0
        ]
    return units


def _flip_budget_fails(flips: int, old_right: int, policy: GateConfig) -> bool:
    return flips >= policy.class_min_flips and flips > policy.max_class_flip_share * old_right + _TOL


def _all_lost(flips: int, old_right: int, n: int) -> bool:
    """Every row (at least two) of a class the old model mostly got right is now wrong: a systematic break, not
    seed noise (two given rows both flip at a 2% flip rate with probability 0.0004)."""
    return old_right >= _MIN_ALL_LOST and flips == old_right and old_right >= 0.5 * n


_MIN_ALL_LOST = 2


def _detectable_flips(old_right: int, n: int, family: int, policy: GateConfig) -> int | None:
    """The fewest negative flips (and no fixes) of ``old_right`` rows that a per-class check rejects for sure.

    McNemar with k flips and no fixes gives p = 0.5**k; Holm rejects any p <= alpha / family whatever the others.
    """
    by_budget = max(policy.class_min_flips, math.floor(policy.max_class_flip_share * old_right + _TOL) + 1)
    by_test = math.ceil(math.log2(family / policy.alpha) - _TOL)
    by_loss = old_right if old_right >= _MIN_ALL_LOST and old_right >= 0.5 * n else by_budget
    k = min(by_budget, by_test, by_loss)
    return k if k <= old_right else None


def class_checks(comparison: Comparison, g: GroupComparison, policy: GateConfig) -> list[dict[str, Any]]:
    """Per class and slice value of ``g``: paired counts, one-sided McNemar p (raw and Holm-adjusted across those
    with a discordant pair), the power statement and which checks failed; the worst first."""
    units = _units(comparison, g)
    for u in units:
        b, c = u["old_right_new_wrong"], u["old_wrong_new_right"]
        u["p_value"] = float(binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    tested = [u for u in units if u["old_right_new_wrong"] + u["old_wrong_new_right"] > 0]
    if tested:
        reject, adjusted, _, _ = multipletests([u["p_value"] for u in tested], alpha=policy.alpha, method="holm")
        for u, r, p in zip(tested, reject, adjusted, strict=True):
            u["p_holm"], u["mcnemar_rejects"] = float(p), bool(r)
    for u in units:
        u.setdefault("p_holm", 1.0)
        u.setdefault("mcnemar_rejects", False)
        flips, right = u["old_right_new_wrong"], u["old_right"]
        family = len(tested) + (0 if flips + u["old_wrong_new_right"] else 1)  # as if this one were tested
        k = _detectable_flips(right, u["n"], max(family, 1), policy)
        u["detectable_flips"] = k
        u["detectable_drop"] = None if k is None else k / u["n"]
        u["new_right"] = right - flips + u["old_wrong_new_right"]
        failed = []
        if u["mcnemar_rejects"]:
            failed.append("mcnemar")
        if _flip_budget_fails(flips, right, policy):
            failed.append("flip_budget")
        if _all_lost(flips, right, u["n"]):
            failed.append("all_lost")
        if failed and u["new_right"] == 0:
            failed.append("broken")
        u["failed_by"] = failed
    return sorted(units, key=lambda u: (not u["failed_by"], u["p_holm"], -u["old_right_new_wrong"]))


def _unit_label(u: dict[str, Any]) -> str:
    return f"{u['kind']} {u['name']!r}"


def _unit_sentence(u: dict[str, Any]) -> str:
    why = []
    if "broken" in u["failed_by"]:
        why.append("broken completely: the new model gets none of its rows right")
    if "flip_budget" in u["failed_by"]:
        why.append("over the flip budget")
    if "all_lost" in u["failed_by"]:
        why.append("every row the old model got right is lost")
    if "mcnemar" in u["failed_by"]:
        why.append(f"significantly worse (Holm-adjusted p = {u['p_holm']:.2g})")
    return (
        f"{_unit_label(u)} (n={u['n']}): {u['metric']} {u['old']:.4f} -> {u['new']:.4f}, "
        f"{u['old_right_new_wrong']} of the {u['old_right']} rows the old model got right are now wrong, "
        f"{u['old_wrong_new_right']} fixed; {', '.join(why)}"
    )


@dataclass(frozen=True)
class ClassRegression:
    name: str = "class_regression"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str | None = None) -> RuleResult:
        g, note = judged_group(comparison, policy, self.name, group)
        units = class_checks(comparison, g, policy)
        kind = _unit_kind(comparison)
        noun = "fields" if kind == "field" else "classes"
        if kind == "field" and not g.per_class:
            note += " (no per-field table: the references are not JSON objects)"
            if not units:
                return RuleResult(
                    self.name, True, None, 0.0,
                    f"nothing to check on {describe_group(g.name)}{note}, and no slices; flips are judged by "
                    "max_negative_flip_rate.", skipped=True, group=g.name,
                )
        failing = [u for u in units if u["failed_by"]]
        classes = sum(u["kind"] == kind for u in units)
        tested = sum(u["old_right_new_wrong"] + u["old_wrong_new_right"] > 0 for u in units)
        blind = sum(u["detectable_flips"] is None for u in units if u["kind"] == kind)
        head = (
            f"{classes} {noun} and {len(units) - classes} slice values of {describe_group(g.name)}{note} checked: "
            f"exact McNemar (one-sided, candidate worse) with Holm correction across the {tested} with a "
            f"discordant pair (family-wise alpha {policy.alpha}), and a flip budget (at least "
            f"{policy.class_min_flips} negative flips that are more than {policy.max_class_flip_share:.0%} of its "
            f"previously-right rows)"
            + (f"; {blind} {noun} have too few previously-right rows for any drop to be caught" if blind else "")
        )
        if not failing:
            worst = next((u for u in units if u["old_right_new_wrong"]), None)
            tail = "passes" + (
                f"; the closest: {_unit_label(worst)} with {worst['old_right_new_wrong']} of "
                f"{worst['old_right']} flipped, Holm-adjusted p = {worst['p_holm']:.2g}"
                if worst
                else ""
            )
            return RuleResult(self.name, True, 0.0, 0.0, f"{head}; {tail}.", group=g.name)
        listed = "; ".join(_unit_sentence(u) for u in failing[:_LISTED])
        more = f"; and {len(failing) - _LISTED} more" if len(failing) > _LISTED else ""
        return RuleResult(
            self.name,
            False,
            float(len(failing)),
            0.0,
            f"{head}; fails for {len(failing)}: {listed}{more}.",
            group=g.name,
            failed=[_unit_label(u) for u in failing],
        )


@dataclass(frozen=True)
class NewLabelRecall:
    name: str = "new_label_recall"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str | None = None) -> RuleResult:
        g, note = judged_group(comparison, policy, self.name, group)
        floor = policy.new_label_min_recall
        if is_generation(comparison.task):
            return RuleResult(
                self.name, True, None, floor,
                "not applicable to text-generation: answers are generated, there are no labels to be new.",
                skipped=True, group=g.name,
            )
        known = set(comparison.labels_old)
        metric = comparison.settings.get("class_metric") or "recall"
        judged = {
            name: row
            for name, row in g.per_class.items()
            if name in comparison.labels_new and name not in known and row["n"] > 0
        }
        where = f"{describe_group(g.name)}{note}"
        if not judged:
            return RuleResult(
                self.name, True, None, floor,
                f"no new label has rows on {where} (0 judged); nothing to hold to the floor {floor:.2f}.",
                skipped=True, group=g.name,
            )
        # single-label recall is a share of the label's rows: a label fails when even the upper one-sided bound
        # (Wilson, level alpha) lies below the floor, so 5 unlucky rows of a learnt label do not refuse an update
        binomial = is_single_label(comparison.task)
        upper = {name: _recall_upper(row, policy.alpha) if binomial else row["new"] for name, row in judged.items()}
        low = {name: row for name, row in judged.items() if upper[name] < floor - _TOL}
        worst = min(row["new"] for row in judged.values())
        shown = "the upper one-sided bound of each label's recall" if binomial else f"each label's {metric}"
        head = f"{len(judged)} new labels judged on {where}, {metric} floor {floor:.2f} ({shown} must reach it)"
        if not low:
            return RuleResult(
                self.name, True, worst, floor, f"{head}; passes: the lowest is {worst:.4f}.", group=g.name
            )
        listed = "; ".join(
            f"{name!r} {metric} {row['new']:.4f} on {row['n']} rows (upper bound {upper[name]:.4f})"
            for name, row in low.items()
        )
        return RuleResult(
            self.name, False, worst, floor,
            f"{head}; fails for {len(low)}: {listed} (more training rows of these labels would help).",
            group=g.name, failed=[f"label {name!r}" for name in low],
        )


def _recall_upper(row: dict[str, Any], alpha: float) -> float:
    n = int(row["n"])
    right = int(round(row["new"] * n))
    return float(proportion_confint(right, n, alpha=2 * alpha, method="wilson")[1]) if n else 1.0


@dataclass(frozen=True)
class Significance:
    name: str = "significance"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str | None = None) -> RuleResult:
        g, note = judged_group(comparison, policy, self.name, group)
        mc = g.mcnemar
        b, c, p = mc["old_right_new_wrong"], mc["old_wrong_new_right"], mc["p_value"]
        head = (
            f"McNemar exact test on {describe_group(g.name)}{note}: {c} rows fixed vs {b} broken, p = {p:.4g} "
            f"(alpha {policy.alpha})"
        )
        if not policy.require_significance:
            return RuleResult(
                self.name, True, p, policy.alpha,
                f"{head}; not required (gate.require_significance is false).", skipped=True, group=g.name,
            )
        passed = p < policy.alpha and c > b
        if passed:
            tail = "passes: the new model is significantly better"
        elif c <= b:
            tail = "fails: the new model does not fix more rows than it breaks"
        else:
            tail = f"fails: p must be below {policy.alpha}; more test data or a larger improvement would pass"
        return RuleResult(self.name, passed, p, policy.alpha, f"{head}; {tail}.", group=g.name)


@dataclass(frozen=True)
class FairnessGap:
    name: str = "fairness_gap"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str | None = None) -> RuleResult:
        g, note = judged_group(comparison, policy, self.name, group)
        budget = policy.max_fairness_gap_increase
        if not g.fairness:
            return RuleResult(
                self.name, True, None, budget,
                "0 fairness columns configured (evaluate.fairness_columns is empty); no gap between groups to judge.",
                skipped=True, group=g.name,
            )
        gaps = [(column, metric, d) for column, per in g.fairness.items() for metric, d in per.items()
                if d["delta"] is not None]
        head = (f"{len(gaps)} gaps between groups of {', '.join(map(repr, g.fairness))} on "
                f"{describe_group(g.name)} ({g.n} rows){note}, budget +{budget:.4f} on a widening")
        if not gaps:
            return RuleResult(self.name, True, None, budget, f"{head}; passes: no gap is defined for both models "
                              "(fewer than two groups with enough rows).", skipped=True, group=g.name)
        missing = [d for _, _, d in gaps if d["one_sided"] is None]
        if missing:
            return RuleResult(self.name, False, None, budget, f"{head}; fails: there is no interval to judge them "
                              "with; set evaluate.bootstrap above 0 (e.g. 1000).", group=g.name)
        widened = [(c, m, d) for c, m, d in gaps if min(d["one_sided"]) > budget + _TOL]
        worst = max(gaps, key=lambda x: min(x[2]["one_sided"]))
        if not widened:
            return RuleResult(self.name, True, min(worst[2]["one_sided"]), budget,
                              f"{head}; passes: none is shown to widen beyond it; the closest: "
                              f"{_gap_sentence(*worst)}.", group=g.name)
        listed = "; ".join(_gap_sentence(*x) for x in widened[:_LISTED])
        return RuleResult(
            self.name, False, max(min(d["one_sided"]) for _, _, d in widened), budget,
            f"{head}; fails for {len(widened)}: {listed} (the lower end of each change is above the budget).",
            group=g.name, failed=[f"{c} {m} {_between(d)}" for c, m, d in widened],
        )


def _between(d: dict[str, Any]) -> str:
    ends = d.get("groups_new") or d.get("groups_old")
    where = f"between {ends[0]!r} and {ends[1]!r}" if ends else "between its groups"
    return where + (f", label {d['label']!r}" if d.get("label") else "")


def _gap_sentence(column: str, metric: str, d: dict[str, Any]) -> str:
    lo, hi = sorted(d["one_sided"])
    return (f"{column!r} {metric} {_between(d)}: old {d['old']:.4f}, new {d['new']:.4f}, change {d['delta']:+.4f}, "
            f"one-sided bounds (paired bootstrap) [{lo:+.4f}, {hi:+.4f}]")


DEFAULT_RULES: tuple[GateRule, ...] = (
    NonInferiority(),
    MaxNegativeFlipRate(),
    ClassRegression(),
    Improvement(),
    NewLabelRecall(),
    Significance(),
    FairnessGap(),
)


@dataclass
class GateDecision:
    """The gate's verdict: passed only if every rule passed; ``reasons`` are the failed rules' sentences.

    ``group``: the group the regression rules judged (the earlier test set, or its fallback); ``groups``: the
    group each rule judged; ``classes``: the per-class/per-slice checks of that group (counts, p-values, the
    smallest detectable drop); ``warnings``: what the test set cannot see, with the fix.
    """

    passed: bool
    group: str
    rules: list[RuleResult]
    reasons: list[str]
    policy: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    classes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "passed": self.passed,
                "group": self.group,
                "groups": self.groups,
                "rules": [r.to_dict() for r in self.rules],
                "reasons": self.reasons,
                "warnings": self.warnings,
                "classes": self.classes,
                "policy": self.policy,
            }
        )


def _power_warnings(units: list[dict[str, Any]], group: str, policy: GateConfig, kind: str = "class") -> list[str]:
    classes = [u for u in units if u["kind"] == kind]
    small = [u for u in classes if u["n"] < policy.warn_class_rows]
    if not small:
        return []
    blind = sum(u["detectable_flips"] is None for u in small)
    drops = [u["detectable_drop"] for u in small if u["detectable_drop"] is not None]
    can = (
        f"on them the gate catches only a drop of at least {min(drops):.0%} of a {kind}'s rows"
        if drops
        else "on them the gate can catch no drop"
    )
    fix = (
        ". Fix: more test rows per class (a per-class minimum in the split, e.g. split.min_test_per_class, "
        "or a larger split.test)."
        if kind == "class"
        else ". Fix: more test rows whose reference has these fields (a larger split.test)."
    )
    return [
        f"{len(small)} of {len(classes)} {'classes' if kind == 'class' else 'fields'} of {describe_group(group)} "
        f"have fewer than {policy.warn_class_rows} rows (the smallest has {min(u['n'] for u in small)}); {can}"
        + (f", and on {blind} of them no drop at all" if blind and drops else "")
        + fix
    ]


def apply_gate(
    comparison: Comparison,
    policy: GateConfig,
    *,
    group: str | None = None,
    rules: tuple[GateRule, ...] = DEFAULT_RULES,
) -> GateDecision:
    """Judge ``comparison`` by every rule, each on the group ``policy.groups`` names for it (with fallback), or
    every rule on ``group`` when given; a failed rule never raises.

    The pipeline's update passes the groups "earlier test set", "new test set" and "all"
    (:data:`~keepfit.gate.compare.EARLIER`, :data:`~keepfit.gate.compare.NEW`, ``ALL``).
    """
    if group is not None:
        comparison.group(group)
    results = [rule.evaluate(comparison, policy, group=group) for rule in rules]
    reasons = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    judged = {r.name: r.group for r in results if r.group is not None}
    g, _ = judged_group(comparison, policy, ClassRegression.name, group)
    units = class_checks(comparison, g, policy)
    return GateDecision(
        passed=not reasons,
        group=g.name,
        rules=results,
        reasons=reasons,
        policy=policy.model_dump(mode="json"),
        groups=judged,
        classes=units,
        warnings=_power_warnings(units, g.name, policy, _unit_kind(comparison)),
    )
