"""`keepfit demo --task image`: visual inspection of generated part photos through the same lifecycle.

Photos of a part that is ok, scratched, dented or stained, drawn with Pillow (:mod:`keepfit.data.demo_images`),
in an image folder (one subfolder per class) with planted bad files. Week 1: init, check (found vs planted),
snapshot, fit (EfficientNet-Lite0 from its packaged ImageNet weights), evaluate (headline and the most confused
classes). Week 2 brings a new class, crack: the update replays week-1 photos and distils from the champion on
them, and goes through the paired gate. Then a careless update on photos with scratch and dent swapped is refused
by the gate. Last, a copy of the champion's folder is loaded on its own and labels fresh photos as the registered
champion does. Every step is timed.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from keepfit.cli._console import console

# planted kinds that are kept, and the word the check's warnings use for them
_NOTED_AS = {"cmyk_converted": "CMYK", "wrong_extension": "PNG"}


class _Steps:
    """Times each step of the demo and prints its title, its duration and, at the end, the total."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.times: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        console.rule(f"[bold]{title}")
        t0 = time.perf_counter()
        yield
        self.times.append((title, time.perf_counter() - t0))
        console.print(f"[dim]({self.times[-1][1]:.1f} s)[/]")

    def summary(self, folder: Path) -> None:
        from rich.table import Table

        table = Table(title="Time per step")
        table.add_column("step")
        table.add_column("seconds", justify="right")
        for title, seconds in self.times:
            table.add_row(title, f"{seconds:.1f}")
        console.print(table)
        console.print(f"\nDone in {time.perf_counter() - self.started:.0f} s. Project folder: {folder}")


def _overrides(small: bool) -> list[str]:
    """Fast settings for 2 cores: small pictures, five short epochs, a cheap bootstrap, 1:1 replay."""
    return [
        f"model.image_size={112 if small else 128}", "train.epochs=5", "train.batch_size=16", "train.lr=5e-4",
        "train.evals_per_epoch=1", f"evaluate.bootstrap={200 if small else 500}", "update.replay_ratio=1.0",
        "update.min_steps=0", "split.validation=0.15", "split.test=0.2",
    ]


def _found_vs_planted(report: dict, planted: dict[str, int], warnings: list[str]) -> None:
    from rich.table import Table

    found = report.get("found_counts", {})
    table = Table(title="Planted problems, and what the check found")
    for column in ("problem", "planted", "found"):
        table.add_column(column, justify="left" if column == "problem" else "right")
    for key in sorted(set(planted) | set(found)):
        if key in _NOTED_AS:  # kept, so not counted: the check says so in a warning
            noted = any(_NOTED_AS[key] in w for w in warnings)
            table.add_row(f"{key} (kept)", str(planted[key]), "noted" if noted else "[yellow]not noted[/]")
        else:
            table.add_row(key, str(planted.get(key, "-")), str(found.get(key, "-")))
    console.print(table)
    console.print("  exact_duplicates count the copies after the first, conflicting_duplicates every copy; the "
                  "CMYK JPEG and the PNG named .jpg are kept (converted to RGB, read by their content)")


def _headline(title: str, metrics: dict) -> None:
    shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("accuracy", "macro_f1") if k in metrics)
    console.print(f"{title}: {shown}")


def _most_confused(result, k: int = 3) -> None:
    """The largest off-diagonal cells of the confusion matrix (rows = truth)."""
    import numpy as np

    if result is None or result.confusion is None:
        return
    confusion = np.asarray(result.confusion)
    off = confusion - np.diag(np.diag(confusion))
    order = np.argsort(off, axis=None)[::-1][:k]
    pairs = [np.unravel_index(i, off.shape) for i in order if off.flat[i] > 0]
    if not pairs:
        console.print("no test photo was confused with another class")
        return
    console.print("most confused (truth -> predicted: photos):")
    for t, p in pairs:
        console.print(f"  {result.labels[t]} -> {result.labels[p]}: {int(off[t, p])} of {int(confusion[t].sum())}")


def _refusal(bad) -> None:
    from keepfit.cli.update import print_decision

    print_decision(bad.decision)
    if bad.promoted:
        console.print("[red]The gate let the careless candidate through; this should not happen.[/]")
        return
    console.print(f"[green]Refused[/]: version {bad.candidate_version} stays challenger because:")
    for reason in bad.reasons:
        console.print(f"  - {reason}")
    refused = {r.name: r.failed for r in bad.decision.rules if not r.passed and not getattr(r, "skipped", False)}
    console.print("  rules that refused it: " + ", ".join(
        f"{name}" + (f" ({', '.join(failed[:4])})" if failed else "") for name, failed in refused.items()))


def run_image_demo(folder: Path, *, small: bool = False) -> None:
    """The image-classification story end to end (see the module docstring); ``small`` writes fewer photos."""
    from keepfit import pipeline
    from keepfit.cli.update import print_decision
    from keepfit.config import load_config
    from keepfit.data import check_data, diff_renderable, snapshot_data
    from keepfit.data.demo_images import write_image_demo
    from keepfit.data.infer import infer_config, write_config_file
    from keepfit.errors import ConfigError

    steps = _Steps()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)

    with steps.step("1. Generate photos of parts: week 1, week 2 (a new defect class) and a careless week"):
        files = write_image_demo(folder / "data", small=small)
        counts = files["counts"]
        console.print(f"week 1: {files['week1']} ({sum(counts['week1'].values())} photos of "
                      f"{', '.join(files['classes_week1'])}, plus {sum(files['planted'].values())} planted files)")
        console.print(f"week 2: {files['week2']} ({sum(counts['week2'].values())} photos, new class "
                      f"{files['new_class']}); careless: {files['careless']} ({files['swapped_count']} photos "
                      f"filed wrong: {' <-> '.join(files['swapped'])})")

    with steps.step("2. keepfit init (recognises an image folder: task image-classification)"):
        inferred, notes = infer_config(files["week1"])
        config_path = write_config_file(inferred, notes, folder / "keepfit.yaml", force=True)
        for note in notes:
            console.print(f"  - {note}", markup=False)
        config = load_config(config_path, _overrides(small))
        if config.task != "image-classification":
            raise ConfigError(f"keepfit init should infer task image-classification for the image folder "
                              f"{files['week1']}, but inferred {config.task!r}; this is a keepfit bug.")
        console.print(f"task {config.task}, model {config.model.name}, strategy {config.train.strategy}, "
                      f"image size {config.model.image_size} px")

    with steps.step("3. keepfit data check week1 (every file kept or quarantined)"):
        checked = check_data(files["week1"], config)
        console.print(f"{checked.n_in} files in: {len(checked.kept)} kept, {len(checked.quarantine)} quarantined")
        _found_vs_planted(checked.report, files["planted"], checked.warnings)
        for warning in checked.warnings:
            console.print(f"  warning: {warning}", markup=False)

    with steps.step("4. keepfit data snapshot (the photos are copied into the store by content)"):
        snap = snapshot_data(config)
        console.print(f"snapshot {snap.id[:12]}: train {len(snap.train)}, validation {len(snap.validation)}, "
                      f"test {len(snap.test)}; classes {', '.join(snap.labels)}")

    with steps.step(f"5. keepfit fit ({config.model.name} from its packaged ImageNet weights, strategy "
                    f"{config.train.strategy})"):
        fitted = pipeline.fit(config)
        _headline(f"version {fitted.version} (champion) on the test split", fitted.metrics)
        console.print(f"  report: {fitted.report}")

    with steps.step("6. keepfit evaluate champion"):
        evaluated = pipeline.evaluate(config, "champion", out_dir=folder / "evaluation-week1")
        _headline("champion", evaluated.metrics)
        _most_confused(evaluated.result)
        console.print(f"  report: {evaluated.report}")

    with steps.step(f"7. keepfit update week2 (new class {files['new_class']}; replay + distillation; the gate)"):
        upd = pipeline.update(config, files["week2"], on_diff=lambda d: console.print(diff_renderable(d)))
        print_decision(upd.decision)
        verdict = "promoted to champion" if upd.promoted else "not promoted: " + "; ".join(upd.reasons)
        console.print(f"candidate version {upd.candidate_version} {verdict}")
        if not upd.promoted:
            console.print("  (the champion stays: the gate holds back a candidate that breaks earlier test rows beyond "
                          "gate.max_negative_flip_rate, however much it gains elsewhere; with this small test set "
                          "that budget allows about one broken row, and a few epochs of continued training move "
                          "the borderline photos. More test rows, or a champion trained to convergence, give the "
                          "gate room: see BENCHMARKS.md for the seed noise floor on real images.)")

    with steps.step(f"8. A careless update: {' and '.join(files['swapped'])} swapped, no replay or distillation"):
        console.print(f"{files['swapped_count']} photos in {files['careless'].name}/ are filed under the wrong "
                      "class; trained as plain continued fine-tuning with the batch screen off (update.screen: "
                      "keep), so only the gate stands between the batch and the champion")
        careless = config.model_copy(update={"update": config.update.model_copy(
            update={"distill": False, "replay_ratio": 0.0, "interpolate": "off", "screen": "keep"})})
        _refusal(pipeline.update(careless, files["careless"], drop_pending=True))

    with steps.step("9. The champion's folder, copied and loaded on its own, labels fresh photos"):
        _reloaded_champion(config, folder)
    steps.summary(folder)


def _reloaded_champion(config, folder: Path) -> None:
    """A copy of the champion's folder (nothing else: no store, no packaged weights) against the registered
    champion, on a few photos neither has seen."""
    import numpy as np

    from keepfit import pipeline
    from keepfit.data.demo_images import write_new_photos
    from keepfit.train.predict import load_predictor

    registered = pipeline.resolve_model(config, "champion")
    copy = folder / "champion-copy"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(registered, copy)
    photos = write_new_photos(folder / "data" / "new_photos", per_class=2)
    paths = [str(p) for p, _ in photos]
    ours = load_predictor(registered).predict(paths)
    theirs = load_predictor(copy).predict(paths)
    mine = [ours.labels[i] for i in ours.decisions()]
    copied = [theirs.labels[i] for i in theirs.decisions()]
    for (path, truth), label, prob in zip(photos, copied, theirs.outputs.max(axis=1), strict=True):
        mark = "" if label == truth else "  [yellow](wrong)[/]"
        console.print(f"  {path.name} shows {truth:8s} -> {label} ({prob:.2f}){mark}")
    same = sum(a == b for a, b in zip(mine, copied, strict=True))
    right = sum(label == truth for label, (_, truth) in zip(copied, photos, strict=True))
    gap = float(np.max(np.abs(ours.outputs - theirs.outputs)))
    console.print(f"the copy at {copy} gave {same} of {len(paths)} labels as the registered champion "
                  f"(largest probability difference {gap:.1e}); {right} of {len(paths)} right")
