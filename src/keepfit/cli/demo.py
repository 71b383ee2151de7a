"""`keepfit demo`: the whole story on generated data, no flags needed.

Week 1: generate, init, check (found vs planted), snapshot, fit, evaluate.
Then the champion is served (`keepfit serve`, a steady client runs to the end and must see no failure). Week 2's
traffic drifts (a new intent, a shifted mix); users send true labels back (POST /feedback); the monitor alerts;
`keepfit update --from-feedback` trains a candidate on the feedback through the gate and the server swaps to it.
Then a bad candidate (partly corrupted labels) is rejected with its reasons, and the champion is rolled back, the
server following.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer

from keepfit.cli._console import console

_TASKS = ("classification", "generation", "image")


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


def _fairness_vs_planted(evaluation: Path, harder_rows: int) -> None:
    """The accuracy gap between regions the evaluation found, against the region whose texts were made harder."""
    import json

    from keepfit.data.demo_data import HARD_REGION

    report = json.loads(evaluation.read_text(encoding="utf-8"))["fairness"]["columns"]["region"]
    gap, groups = report["gaps"]["accuracy_gap"], report["groups"]
    lo, hi = gap["interval"] or (float("nan"), float("nan"))
    accuracy = ", ".join(f"{name} {g['accuracy']:.3f} (n={g['n']})" for name, g in groups.items())
    console.print(
        f"fairness: planted: {harder_rows} week-1 texts of region '{HARD_REGION}' made terse and noisy; found: test "
        f"accuracy by region {accuracy}; accuracy gap {gap['value']:.3f} [{lo:.3f}, {hi:.3f}], lowest "
        f"'{gap['groups'][0]}'; the report's fairness section has the per-group table and the parity and odds gaps"
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
    task: str = typer.Option(
        "classification", "--task", help="classification (intent routing, served and monitored), generation "
        "(instruction tuning of SmolLM2-135M-Instruct: JSON answers, updates through the same gate) or image "
        "(visual inspection: EfficientNet-Lite0 on generated photos of parts, a new defect class in week 2)."
    ),
) -> None:
    """Run keepfit end to end on a generated task (support tickets by default)."""
    if task not in _TASKS:
        import difflib

        from keepfit.errors import ConfigError

        close = difflib.get_close_matches(task, _TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"--task must be classification, generation or image, got {task!r}{hint}.")
    if task == "generation":
        from keepfit.cli.demo_generation import run_generation_demo

        run_generation_demo(folder if folder != Path("keepfit-demo") else Path("keepfit-demo-generation"),
                            small=small)
        return
    if task == "image":
        from keepfit.cli.demo_image import run_image_demo

        run_image_demo(folder if folder != Path("keepfit-demo") else Path("keepfit-demo-image"), small=small)
        return
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
    overrides = [f"train.epochs={2 if small else 3}", "train.lr=1e-4", "evaluate.fairness_columns=[region]"]
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
    _fairness_vs_planted(fitted.report.parent / "evaluation.json", files.harder_rows_week1)

    _step("6. keepfit serve: the champion answers live traffic (a steady client runs from here to the end)")
    from keepfit.cli.demo_loop import DemoServer, SteadyLoad, declare_labels
    from keepfit.cli.update import print_decision
    from keepfit.data.demo_data import NEW_INTENT

    # the product team adds an intent: declared in keepfit.yaml, so feedback may name it before a model knows it
    declare_labels(config_path, sorted({*snap.labels, NEW_INTENT}))
    config = load_config(config_path, overrides)
    server = DemoServer(config_path, config.store_path)
    import pandas as pd

    week1 = pd.read_csv(files.week1, dtype=str, keep_default_na=False)
    steady = SteadyLoad(server.url, week1["text"].tolist()[:200], pause=0.2).start()
    try:
        console.print(f"serving version {fitted.version} at {server.url} (POST /predict, /feedback; GET /metrics)")
        upd = _served_week2(config, folder, files, server.url)
        print_decision(upd.decision)
        verdict = "promoted to champion" if upd.promoted else "rejected: " + "; ".join(upd.reasons)
        console.print(f"candidate version {upd.candidate_version} {verdict}")
        if upd.promoted:
            waited = steady.wait_for(upd.candidate_version)
            console.print(f"the server swapped to version {upd.candidate_version} {waited:.1f} s after the promotion "
                          f"(it follows the champion alias); failed requests so far: {len(steady.failures)}")
        _bad_candidates(config, folder, files)
        _step("10. keepfit models rollback (the server follows)")
        registry = Registry.open(config)
        before = registry.champion()
        steady.wait_for(before.version)  # the server follows each promotion, including the screened update's
        if upd.promoted:
            after = registry.rollback(reason="demo: roll back the week-2 update")
            console.print(f"champion moved from version {before.version} back to version {after.version}")
            waited = steady.wait_for(after.version)
            console.print(f"the server swapped back to version {after.version} in {waited:.1f} s")
        else:
            console.print(f"The week-2 candidate was not promoted, so version {before.version} is still champion; "
                          "nothing to roll back.")
    finally:
        steady.stop()
        server.stop()
    console.print(f"steady client: {steady.answered} requests answered, {len(steady.failures)} failed, versions "
                  f"seen in order: {' -> '.join(steady.versions)}")
    for failure in steady.failures[:3]:
        console.print(f"  [red]failed[/]: {failure}")
    console.print(f"\nDone in {time.perf_counter() - started:.0f} s. Project folder: {folder}")


def _served_week2(config, folder: Path, files, url: str):
    """Steps 7-9: week-2 traffic, feedback, the monitor's alert, and the update from feedback; its result."""
    import pandas as pd

    from keepfit import pipeline
    from keepfit.cli.demo_loop import post_feedback, send_stream, show_monitor
    from keepfit.data import diff_renderable

    _step("7. Week-2 traffic drifts (a new intent, another intent and channel mix); users send true labels back")
    week2 = pd.read_csv(files.week2, dtype=str, keep_default_na=False)
    ids = send_stream(url, week2, "text", ["customer_id", "channel", "region"])
    labelled = week2.sample(frac=0.8, random_state=0).index
    answer = post_feedback(url, [ids[week2.index.get_loc(i)] for i in labelled], week2.loc[labelled, "intent"].tolist())
    console.print(f"{len(ids)} texts answered and logged; feedback for {len(labelled)} of them: {answer}")

    _step("8. keepfit monitor (the log's window against the champion's data)")
    alerts = show_monitor(config, folder / "monitor")
    if not alerts:
        console.print("[yellow]The monitor raised no alert on the drifted week; the update runs anyway.[/]")

    _step("9. keepfit update --from-feedback: the feedback is the batch, checked and gated like any data")
    upd, batch = pipeline.update_from_feedback(config, on_diff=lambda d: console.print(diff_renderable(d)))
    console.print(f"feedback batch: {batch.rows} rows -> {batch.path.name}")
    return upd


def _bad_candidates(config, folder: Path, files) -> None:
    """Steps 9b-9c: a corrupted batch rejected by the gate, then the same batch through the screen."""
    from keepfit import pipeline
    from keepfit.cli.update import print_decision

    _step("9b. A bad candidate: a careless update on a batch in which an annotator swapped two intents")
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

    _step("9c. The same batch with the default screen (and the pending batch dropped)")
    screened = pipeline.update(config, bad, drop_pending=True)
    if screened.screen is not None:
        console.print(f"screen: {screened.screen.summary}")
    console.print(f"{screened.batch.get('screened_out', 0)} rows set aside for review before training "
                  f"({wrong} were swapped); `keepfit data review` lists them")
    print_decision(screened.decision)
    verdict = "promoted to champion" if screened.promoted else "not promoted: " + "; ".join(screened.reasons)
    console.print(f"candidate version {screened.candidate_version} {verdict}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
