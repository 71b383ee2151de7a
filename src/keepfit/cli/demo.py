"""`keepfit demo`: the whole story on generated data, no flags needed.

Week 1: generate, init, check (found vs planted), snapshot, fit, evaluate.
Week 2: update with a new intent and shifted data -> diff -> gate -> promotion.
Then a bad candidate (partly corrupted labels) is rejected with its reasons, and the champion is rolled back.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer

from keepfit.cli._console import console


def _step(title: str) -> None:
    console.rule(f"[bold]{title}")


def _found_vs_planted(report: dict, planted: dict) -> None:
    from rich.table import Table

    found = report.get("found_counts", {})
    table = Table(title="Planted problems, and what the check found")
    table.add_column("problem")
    table.add_column("planted", justify="right")
    table.add_column("found", justify="right")
    for key in sorted(set(planted) | set(found)):
        table.add_row(key, str(planted.get(key, "-")), str(found.get(key, "-")))
    console.print(table)
    console.print(
        "  '-' means not counted on that side: planted label noise (a plausible text with a wrong label) cannot be "
        "found by a data check, only by a model; near-duplicates are paraphrases the generator makes naturally."
    )


def _label_issues_vs_planted(found, noisy_rows: tuple[int, ...]) -> None:
    """The label issues `fit` found in the training data, against the noisy labels the generator planted."""
    if found is None or not len(found.issues):
        console.print("label issues: none found")
        return
    rows = set(found.issues["row"].astype(int))
    planted = set(noisy_rows)
    hit = len(rows & planted)
    console.print(
        f"label issues found at fit time (out-of-fold predictions + confident learning): {len(rows)} rows, "
        f"{hit} of the {len(planted)} planted noisy labels among them (a few planted rows were quarantined "
        "earlier as duplicates); `keepfit data review` lists them"
    )


def _corrupted_batch(week1: Path, dst: Path, n_rows: int, seed: int) -> tuple[str, str, int]:
    """Write a fresh batch like week 2 in which an annotator swapped the two most frequent intents.

    Returns the two intents and how many labels are wrong."""
    import pandas as pd

    from keepfit.data.demo_data import generate_next_week

    batch = generate_next_week(pd.read_csv(week1, dtype=str, keep_default_na=False), n_rows, seed).frame
    a, b = batch["intent"].str.strip().value_counts().index[:2]
    swapped = batch["intent"].str.strip().map({a: b, b: a})
    wrong = swapped.notna()
    batch.loc[wrong, "intent"] = swapped[wrong]
    batch.to_csv(dst, index=False)
    return a, b, int(wrong.sum())


def demo_command(
    folder: Path = typer.Option(Path("keepfit-demo"), "--dir", help="Where the demo project is written."),
    small: bool = typer.Option(False, "--small", help="A smaller, faster run (used by the tests)."),
    keep: bool = typer.Option(False, "--keep", help="Keep an existing demo folder instead of starting fresh."),
) -> None:
    """Run keepfit end to end on a generated support-intent task."""
    from keepfit import pipeline
    from keepfit.config import load_config
    from keepfit.data import check_data, snapshot_data
    from keepfit.data.demo_data import write_demo_files
    from keepfit.data.infer import infer_config, write_config_file
    from keepfit.registry import Registry

    started = time.perf_counter()
    if folder.exists() and not keep:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)

    _step("1. Generate two weeks of support tickets")
    files = write_demo_files(folder / "data", small=small)
    console.print(f"week 1: {files.week1} ({files.week1_rows} rows); week 2: {files.week2} ({files.week2_rows} rows)")

    _step("2. keepfit init (infer task and columns)")
    inferred, notes = infer_config(files.week1)
    config_path = write_config_file(inferred, notes, folder / "keepfit.yaml", force=True)
    for note in notes:
        console.print(f"  - {note}")
    overrides = [f"train.epochs={2 if small else 3}", "train.lr=1e-4"]
    if small:
        # head-only on cached frozen features: cheap epochs, so many of them at a head learning rate
        overrides += ["train.strategy=head", "train.epochs=30", "train.head_lr=1e-2", "evaluate.bootstrap=200"]
    config = load_config(config_path, overrides)

    _step("3. keepfit data check week1 (every row kept or quarantined)")
    checked = check_data(files.week1, config)
    _found_vs_planted(checked.report, files.planted_week1)

    _step("4. keepfit data snapshot")
    snap = snapshot_data(config)
    console.print(
        f"snapshot {snap.id[:12]}: train {len(snap.train)}, validation {len(snap.validation)}, test {len(snap.test)}"
    )

    _step("5. keepfit fit (week 1)")
    fitted = pipeline.fit(config)
    console.print(f"version {fitted.version} registered as champion; test metrics:")
    for name in ("accuracy", "macro_f1"):
        if name in fitted.metrics:
            console.print(f"  {name}: {fitted.metrics[name]:.4f}")
    console.print(f"  report: {fitted.report}")
    _label_issues_vs_planted(fitted.label_issues, files.noisy_rows_week1)

    _step("6. keepfit update --data week2 (new intent, shifted data)")
    from keepfit.cli.update import print_decision
    from keepfit.data import diff_renderable

    upd = pipeline.update(config, files.week2, on_diff=lambda d: console.print(diff_renderable(d)))
    print_decision(upd.decision)
    verdict = "promoted to champion" if upd.promoted else "rejected: " + "; ".join(upd.reasons)
    console.print(f"candidate version {upd.candidate_version} {verdict}")

    _step("7. A bad candidate: a careless update on a batch in which an annotator swapped two intents")
    bad = folder / "data" / "week3_swapped.csv"
    a, b, wrong = _corrupted_batch(files.week1, bad, files.week2_rows, seed=11)
    console.print(f"{wrong} of the rows in {bad.name} carry the wrong label ({a} <-> {b})")
    careless = config.model_copy(
        update={"update": config.update.model_copy(
            update={"distill": False, "replay_ratio": 0.0, "interpolate": "off", "screen": "keep"}
        )}
    )
    console.print("trained as plain continued fine-tuning (no replay, no distillation, no interpolation) with the "
                  "batch screen off (update.screen: keep), so only the gate stands between the batch and the champion")
    bad_upd = pipeline.update(careless, bad)
    print_decision(bad_upd.decision)
    if bad_upd.promoted:
        console.print("[red]The gate let the corrupted candidate through; this should not happen.[/]")
    else:
        console.print(f"[green]Rejected[/]: version {bad_upd.candidate_version} stays challenger because:")
        for reason in bad_upd.reasons:
            console.print(f"  - {reason}")
        caught = {r.name: r.failed for r in bad_upd.decision.rules if not r.passed}
        console.print(f"  which rule caught what: {caught}")
        console.print(f"  the batch stays pending in the data history (snapshot {bad_upd.snapshot_id[:12]})")

    _step("7b. The same batch with the default screen (and the pending batch dropped)")
    screened = pipeline.update(config, bad, drop_pending=True)
    if screened.screen is not None:
        console.print(f"screen: {screened.screen.summary}")
    console.print(f"{screened.batch.get('screened_out', 0)} rows set aside for review before training "
                  f"({wrong} were swapped); `keepfit data review` lists them")
    print_decision(screened.decision)
    verdict = "promoted to champion" if screened.promoted else "not promoted: " + "; ".join(screened.reasons)
    console.print(f"candidate version {screened.candidate_version} {verdict}")

    _step("8. keepfit models rollback")
    registry = Registry.open(config)
    before = registry.champion()
    if upd.promoted:
        after = registry.rollback(reason="demo: roll back the week-2 update")
        console.print(f"champion moved from version {before.version} back to version {after.version}")
    else:
        console.print(f"The week-2 candidate was not promoted, so version {before.version} is still champion; "
                      "nothing to roll back.")
    console.print(f"\nDone in {time.perf_counter() - started:.0f} s. Project folder: {folder}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
