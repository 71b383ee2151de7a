"""`keepfit demo --task generation`: instruction tuning of a small causal LM through the same lifecycle.

Support messages in, a JSON object out (intent, order id, urgency), generated with planted bad rows
(:mod:`keepfit.data.demo_chat`). Week 1: init, check (found vs planted), snapshot, the base model scored, fit
(LoRA on SmolLM2-135M-Instruct), evaluate. Week 2 brings a new intent: the update replays week-1 examples and
distils from the champion on them, and goes through the paired gate. Then a careless update on answers with two
intents and two urgencies swapped is refused. Last, the champion's folder is loaded by plain transformers and
answers as keepfit does.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from keepfit.cli._console import console


def _step(title: str) -> None:
    console.rule(f"[bold]{title}")


# what the generator plants, under the data check's names for the same problems
_PLANTED_AS = {"missing_answer": "no_answer"}


def _found_vs_planted(report: dict, planted: dict) -> None:
    from rich.table import Table

    found = report.get("found_counts", {})
    table = Table(title="Planted problems, and what the check found")
    for column in ("problem", "planted", "found"):
        table.add_column(column, justify="left" if column == "problem" else "right")
    named = {}
    for key, n in planted.items():
        if isinstance(n, int):
            name = _PLANTED_AS.get(key, key)
            named[name] = named.get(name, 0) + n
    for key in sorted(set(named) | set(found)):
        table.add_row(key, str(named.get(key, "-")), str(found.get(key, "-")))
    console.print(table)
    console.print("  non_utf8: not caught; keepfit reads a file in the one encoding it detects for it, so a Latin-1 "
                  "line in a UTF-8 file is decoded, not quarantined; near_duplicates are paraphrases the generator "
                  "makes naturally (kept, reported)")


def _headline(title: str, metrics: dict) -> None:
    shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("accuracy", "exact_match", "field_match", "json_valid",
                                                         "eos_rate") if k in metrics)
    console.print(f"{title}: {shown}")


def _overrides(small: bool) -> list[str]:
    """A few LoRA steps on 2 cores: short answers, a small test, bootstrap kept cheap."""
    return [
        "train.epochs=1", "train.batch_size=8", "train.lr=1e-3", "train.lora_r=16", "train.lora_alpha=32",
        "train.evals_per_epoch=1", "train.warmup_ratio=0.1", "evaluate.max_new_tokens=40",
        f"evaluate.bootstrap={200 if small else 500}", "update.replay_ratio=0.5", "update.min_steps=0",
        "split.validation=0.1", "split.test=0.15",
    ]


def run_generation_demo(folder: Path, *, small: bool = False) -> None:
    """The text-generation story end to end (see the module docstring); ``small`` runs fewer rows."""
    from keepfit import pipeline
    from keepfit.cli.update import print_decision
    from keepfit.config import load_config
    from keepfit.data import check_data, snapshot_data
    from keepfit.data.demo_chat import NEW_INTENT, write_generation_demo
    from keepfit.data.infer import infer_config, write_config_file

    started = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)

    _step("1. Generate two weeks of support messages with their JSON answers")
    week1_rows, week2_rows = (160, 80) if small else (240, 120)
    files = write_generation_demo(folder / "data", week1_rows=week1_rows, week2_rows=week2_rows, careless=False)
    careless_path, corrupted = _careless_week(folder / "data", week1_rows, week2_rows)
    console.print(f"week 1: {files.week1} ({files.week1_rows} lines); week 2: {files.week2} ({files.week2_rows} "
                  f"lines, new intent {NEW_INTENT}); a careless week 3: {careless_path}")

    _step("2. keepfit init (recognises chat JSONL: task text-generation)")
    inferred, notes = infer_config(files.week1)
    config_path = write_config_file(inferred, notes, folder / "keepfit.yaml", force=True)
    overrides = _overrides(small)
    config = load_config(config_path, overrides)
    console.print(f"task {config.task}, model {config.model.name}, strategy {config.train.strategy}")

    _step("3. keepfit data check week1 (every conversation kept or quarantined)")
    counter = pipeline.token_counter_for(config)
    checked = check_data(files.week1, config, count_tokens=counter)
    _found_vs_planted(checked.report, files.planted_week1)
    for warning in checked.warnings:
        console.print(f"  warning: {warning}", markup=False)

    _step("4. keepfit data snapshot")
    snap = snapshot_data(config, count_tokens=counter)
    console.print(f"snapshot {snap.id[:12]}: train {len(snap.train)}, validation {len(snap.validation)}, "
                  f"test {len(snap.test)}")

    _step("5. The base model on the test split (before any fine-tuning)")
    base = pipeline.evaluate(config, config.model.name, snapshot=snap.id, out_dir=folder / "base-evaluation")
    _headline("base SmolLM2-135M-Instruct", base.metrics)

    _step("6. keepfit fit (LoRA, one epoch)")
    fitted = pipeline.fit(config)
    _headline(f"version {fitted.version} (champion)", fitted.metrics)
    console.print(f"  report: {fitted.report}")

    _step(f"7. keepfit update week2 (new intent {NEW_INTENT}; replay + distillation; the paired gate)")
    upd = pipeline.update(config, files.week2)
    print_decision(upd.decision)
    verdict = "promoted to champion" if upd.promoted else "not promoted: " + "; ".join(upd.reasons)
    console.print(f"candidate version {upd.candidate_version} {verdict}")

    _step("8. A careless update: answers with two intents and two urgencies swapped, no replay or distillation")
    console.print(f"corrupted answers in {careless_path.name}: {corrupted}")
    careless = config.model_copy(update={"update": config.update.model_copy(
        update={"distill": False, "replay_ratio": 0.0})})
    bad = pipeline.update(careless, careless_path, drop_pending=True)
    print_decision(bad.decision)
    if bad.promoted:
        console.print("[red]The gate let the careless candidate through.[/]")
    else:
        console.print(f"[green]Refused[/]: version {bad.candidate_version} stays challenger because:")
        for reason in bad.reasons:
            console.print(f"  - {reason}")

    _step("9. The champion's folder is a plain transformers model")
    _plain_transformers_check(config, snap)
    console.print(f"\nDone in {time.perf_counter() - started:.0f} s. Project folder: {folder}")


def _careless_week(folder: Path, week1_rows: int, week2_rows: int) -> tuple[Path, dict[str, int]]:
    """A third week of fresh messages (old intents and the new one) whose answers a careless annotator
    corrupted: two intents and two urgencies swapped."""
    from keepfit._io import atomic_write_bytes
    from keepfit.data.demo_chat import careless_batch, generate_week1, generate_week2

    week3 = generate_week2(generate_week1(week1_rows, 0), week2_rows, seed=3)
    bad = careless_batch(week3)
    path = atomic_write_bytes(folder / "week3_careless.jsonl", b"".join(line + b"\n" for line in bad.lines))
    return Path(path), bad.corrupted


def _plain_transformers_check(config, snap) -> None:
    """Greedy answers of AutoModelForCausalLM.generate on the champion's folder, beside keepfit's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from keepfit import pipeline
    from keepfit.train.generator import load_generator, prompt_messages

    folder = pipeline.resolve_model(config, "champion")
    messages = prompt_messages(snap.test["prompt"].head(3))
    ours, _ = load_generator(folder).answer(messages, max_new_tokens=config.evaluate.max_new_tokens)
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    same = 0
    for m, mine in zip(messages, ours, strict=True):
        ids = tok.apply_chat_template(m, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=config.evaluate.max_new_tokens, do_sample=False)
        plain = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        same += plain == mine
        console.print(f"  {m[-1]['content'][:60]!r} -> {plain}")
    console.print(f"AutoModelForCausalLM.from_pretrained({folder}) answered {same} of {len(ours)} exactly as keepfit")
