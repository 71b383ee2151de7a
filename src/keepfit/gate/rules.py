"""The gate policy: small rules behind one protocol, judged on one group of a paired :class:`Comparison`.

Rules (``policy`` is :class:`keepfit.config.GateConfig`; intervals are the paired bootstrap intervals at
``EvaluateConfig.confidence``):
- **min_delta**: the change of ``policy.metric`` (new - old, turned so that positive = better for metrics
  where lower is better, such as MAE) must be at least ``min_delta``. With ``require_significance`` the
  improvement must be *shown*, not just observed: the lower end of its interval must lie above ``min_delta``
  (a one-sided test at level (1 - confidence) / 2; with ``min_delta`` < 0 this is a non-inferiority test
  with that margin). Without bootstrap resamples there is no interval, and a required significance then
  fails (set evaluate.bootstrap). ``accuracy`` means subset accuracy for multi-label and falls back to MAE
  for regression (said in the detail).
- **max_negative_flip_rate**: examples the old model got right and the new one gets wrong, over all examples
  of the group, must not exceed the budget (the observed rate; its Wilson interval is reported).
- **max_slice_drop**: every class and slice value with at least ``min_slice_size`` examples is checked. It
  fails when the whole interval of its delta lies below ``-max_slice_drop`` (the drop exceeds the allowance
  even at the optimistic end; the point delta is used when there is no interval), and - regardless of
  intervals - when the new model gets none of its examples right while the old model got more than
  ``max_slice_drop`` of them right ("broken completely"; a class the old model already got at most that
  share of is not newly broken). Smaller ones are reported, not gated. We chose the interval form over
  "point delta below the allowance" because a point drop of a 20-example class moves by 5 points per flipped
  example, so the point form rejects on noise.
- **significance** (only with ``require_significance``): McNemar's exact test on the discordant pairs must
  give p < ``alpha`` with the new model ahead (more old-wrong/new-right than old-right/new-wrong).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from statsmodels.stats.proportion import proportion_confint

from keepfit.config import GateConfig
from keepfit.errors import ConfigError
from keepfit.evaluation._json import jsonable
from keepfit.evaluation.metrics import HIGHER_IS_BETTER
from keepfit.gate.compare import ALL, Comparison, GroupComparison

__all__ = [
    "RuleResult",
    "GateRule",
    "GateDecision",
    "MinDelta",
    "MaxNegativeFlipRate",
    "MaxSliceDrop",
    "Significance",
    "DEFAULT_RULES",
    "apply_gate",
    "resolve_metric",
]

log = logging.getLogger(__name__)
_TOL = 1e-12
_ALIASES = {"multi-label": {"accuracy": "subset_accuracy"}, "regression": {"accuracy": "mae"}}


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict: ``value`` is what was measured, ``threshold`` what it was held to; ``detail`` says
    both
    in a sentence (and, on failure, what would pass)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@runtime_checkable
class GateRule(Protocol):
    """A gate rule: a name and a verdict on one group of a comparison under a policy."""

    name: str

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str = ALL) -> RuleResult: ...


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


@dataclass(frozen=True)
class MinDelta:
    name: str = "min_delta"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str = ALL) -> RuleResult:
        g = comparison.group(group)
        metric, note = resolve_metric(comparison, policy.metric)
        d = g.deltas[metric]
        gain = _signed(metric, d["delta"])
        word = "improvement" if HIGHER_IS_BETTER[metric] else "reduction"
        interval = d["interval"]
        lo = None if interval is None else min(_signed(metric, interval[0]), _signed(metric, interval[1]))
        hi = None if interval is None else max(_signed(metric, interval[0]), _signed(metric, interval[1]))
        ci = "" if interval is None else f", interval of the {word} [{lo:+.4f}, {hi:+.4f}]"
        head = f"{metric}{note} on {group}: old {d['old']:.4f}, new {d['new']:.4f}, {word} {gain:+.4f}{ci}"
        if policy.require_significance:
            if lo is None:
                return RuleResult(
                    self.name,
                    False,
                    gain,
                    policy.min_delta,
                    f"{head}; significance is required but there is no interval: set "
                    "evaluate.bootstrap above 0 (e.g. 1000).",
                )
            passed = lo > policy.min_delta
            need = (
                f"the lower end of the interval must be above {policy.min_delta:+.4f}; it is {lo:+.4f}, "
                "short "
                f"by {policy.min_delta - lo:.4f} (more test data narrows the interval)"
            )
            return RuleResult(
                self.name,
                passed,
                lo,
                policy.min_delta,
                f"{head}; {'passes' if passed else 'fails'}: "
                + (f"the lower end {lo:+.4f} is above {policy.min_delta:+.4f}" if passed else need),
            )
        passed = gain >= policy.min_delta - _TOL
        target = d["old"] + (policy.min_delta if HIGHER_IS_BETTER[metric] else -policy.min_delta)
        rel = "at least" if HIGHER_IS_BETTER[metric] else "at most"
        tail = (
            f"passes: at least {policy.min_delta:+.4f} needed"
            if passed
            else f"fails: needs {policy.min_delta:+.4f}, short by {policy.min_delta - gain:.4f}; "
            f"a candidate with {metric} {rel} {target:.4f} would pass"
        )
        return RuleResult(self.name, passed, gain, policy.min_delta, f"{head}; {tail}.")


@dataclass(frozen=True)
class MaxNegativeFlipRate:
    name: str = "max_negative_flip_rate"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str = ALL) -> RuleResult:
        g = comparison.group(group)
        flips, n = g.mcnemar["old_right_new_wrong"], g.n
        rate = g.negative_flip_rate
        budget = policy.max_negative_flip_rate
        allowed = math.floor(budget * n + _TOL)
        lo, hi = proportion_confint(flips, n, alpha=0.05, method="wilson") if n else (float("nan"),) * 2
        head = (
            f"negative flip rate on {group}: {flips} of {n} examples the old model got right are now wrong "
            f"= {rate:.4f} (95% Wilson interval [{lo:.4f}, {hi:.4f}]), budget {budget:.4f}"
        )
        passed = rate <= budget + _TOL
        tail = (
            "passes"
            if passed
            else f"fails by {rate - budget:.4f}: at most {allowed} negative flips of {n} would pass "
            f"({flips - allowed} too many)"
        )
        return RuleResult(self.name, passed, rate, budget, f"{head}; {tail}.")


@dataclass(frozen=True)
class MaxSliceDrop:
    name: str = "max_slice_drop"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str = ALL) -> RuleResult:
        g = comparison.group(group)
        units = _units(comparison, g)
        gated = [u for u in units if u["n"] >= policy.min_slice_size and _finite(u["delta"])]
        small = len(units) - len(gated)
        failing = [u for u in gated if _drops(u, policy.max_slice_drop)]
        worst = min((u["delta"] for u in gated), default=None)
        head = (
            f"{len(gated)} classes/slices with at least {policy.min_slice_size} examples checked on {group} "
            f"({small} smaller or empty ones reported, not gated); allowed drop {policy.max_slice_drop:.4f} "
            "beyond the interval"
        )
        if not failing:
            tail = "passes" + (
                f"; the largest drop is {-worst:.4f}" if worst is not None and worst < 0 else ""
            )
            return RuleResult(self.name, True, worst, -policy.max_slice_drop, f"{head}; {tail}.")
        listed = "; ".join(_unit_sentence(u, policy.max_slice_drop) for u in failing[:10])
        more = f"; and {len(failing) - 10} more" if len(failing) > 10 else ""
        return RuleResult(
            self.name,
            False,
            worst,
            -policy.max_slice_drop,
            f"{head}; fails for {len(failing)}: {listed}{more}.",
        )


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(x)


def _units(comparison: Comparison, g: GroupComparison) -> list[dict[str, Any]]:
    metric = comparison.settings.get("class_metric") or "metric"
    units = [{"kind": "class", "name": name, "metric": metric, **row} for name, row in g.per_class.items()]
    slice_metric = comparison.settings.get("slice_metric", "accuracy")
    for sname, values in g.per_slice.items():
        units += [
            {"kind": "slice", "name": f"{sname}={value}", "metric": slice_metric, **row}
            for value, row in values.items()
        ]
    return units


def _broken(u: dict[str, Any], allowed: float) -> bool:
    return u["new"] <= 0 and u["old"] > allowed + _TOL


def _drops(u: dict[str, Any], allowed: float) -> bool:
    if _broken(u, allowed):
        return True
    interval = u.get("interval")
    upper = interval[1] if interval else u["delta"]
    return upper < -allowed - _TOL


def _unit_sentence(u: dict[str, Any], allowed: float) -> str:
    interval = u.get("interval")
    ci = f", interval [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""
    why = (
        "broken completely: the new model gets none of its examples right"
        if _broken(u, allowed)
        else f"the interval's upper end is below -{allowed:.4f}; it would pass if the drop stayed within "
        f"{allowed:.4f} at the interval's upper end"
    )
    return (
        f"{u['kind']} {u['name']!r} (n={u['n']}): {u['metric']} {u['old']:.4f} -> {u['new']:.4f} "
        f"(delta {u['delta']:+.4f}{ci}), {why}"
    )


@dataclass(frozen=True)
class Significance:
    name: str = "significance"

    def evaluate(self, comparison: Comparison, policy: GateConfig, *, group: str = ALL) -> RuleResult:
        g = comparison.group(group)
        mc = g.mcnemar
        b, c, p = mc["old_right_new_wrong"], mc["old_wrong_new_right"], mc["p_value"]
        head = (
            f"McNemar exact test on {group}: {c} examples fixed vs {b} broken, p = {p:.4g} "
            f"(alpha {policy.alpha})"
        )
        if not policy.require_significance:
            return RuleResult(
                self.name,
                True,
                p,
                policy.alpha,
                f"{head}; not required (gate.require_significance is false).",
                skipped=True,
            )
        passed = p < policy.alpha and c > b
        if passed:
            tail = "passes: the new model is significantly better"
        elif c <= b:
            tail = "fails: the new model does not fix more examples than it breaks"
        else:
            tail = f"fails: p must be below {policy.alpha}; more test data or a larger improvement would pass"
        return RuleResult(self.name, passed, p, policy.alpha, f"{head}; {tail}.")


DEFAULT_RULES: tuple[GateRule, ...] = (MinDelta(), MaxNegativeFlipRate(), MaxSliceDrop(), Significance())


@dataclass
class GateDecision:
    """The gate's verdict: passed only if every rule passed; ``reasons`` are the failed rules' sentences."""

    passed: bool
    group: str
    rules: list[RuleResult]
    reasons: list[str]
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "passed": self.passed,
                "group": self.group,
                "rules": [r.to_dict() for r in self.rules],
                "reasons": self.reasons,
                "policy": self.policy,
            }
        )


def apply_gate(
    comparison: Comparison,
    policy: GateConfig,
    *,
    group: str = ALL,
    rules: tuple[GateRule, ...] = DEFAULT_RULES,
) -> GateDecision:
    """Judge group ``group`` of ``comparison`` by every rule of ``policy``; a failed rule never raises."""
    comparison.group(group)
    results = [rule.evaluate(comparison, policy, group=group) for rule in rules]
    reasons = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    return GateDecision(
        passed=not reasons, group=group, rules=results, reasons=reasons, policy=policy.model_dump(mode="json")
    )
