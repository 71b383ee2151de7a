"""What a model does after its forward pass, saved in its folder so that what is served is what was judged.

``keepfit_postprocess.json`` (format version 1) holds:

- ``temperature``: logits are divided by it before the softmax (single-label) or the sigmoids (multi-label);
  null serves the raw probabilities;
- ``thresholds``: multi-label only, ``{label: t}``: a label is predicted when its probability is >= t;
  null means 0.5 for every label;
- ``target_mean`` / ``target_std``: regression predictions are ``output * std + mean`` (original units);
- ``text_normalization``: the :data:`keepfit.data.normalize.NORMALIZATION_VERSION` of the cleaning the
  training texts went through; the predictor cleans texts the same way before tokenising;
- ``abstain_threshold``: single-label only: the model abstains on a text whose top (temperature-scaled)
  probability is below it (:mod:`keepfit.evaluation.open_set`); null never abstains for low confidence;
- ``in_scope_recall``: the share of in-scope validation rows the threshold was chosen to answer (null: the
  threshold was given by hand, or none was fitted);
- ``out_of_scope_label``: single-label only: the model's label for "none of the others" (e.g. ``oos``);
  predicting it counts as abstaining;
- ``fitted_on``: where the temperature, thresholds and abstain threshold came from, in words.

Training writes the file into the model folder it exports (fitted on the validation split);
:func:`save_postprocessing` changes it afterwards. A folder without the file (made by an older keepfit, or
a plain Hugging Face folder) loads with the defaults above and a logged note; a file without the open-set
fields (older keepfit) loads with them null.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from keepfit._io import atomic_write_text
from keepfit.data.normalize import NORMALIZATION_VERSION
from keepfit.errors import ModelError
from keepfit.train.model import read_meta
from keepfit.types import is_single_label

__all__ = [
    "POSTPROCESS_FILE",
    "POSTPROCESS_VERSION",
    "Postprocessing",
    "load_postprocessing",
    "save_postprocessing",
    "fit_postprocessing",
]

POSTPROCESS_FILE = "keepfit_postprocess.json"
POSTPROCESS_VERSION = 1
log = logging.getLogger("keepfit.train")


@dataclass(frozen=True)
class Postprocessing:
    """The post-processing of one model folder (see the module docstring for each field).

    ``thresholds`` follow ``labels`` (multi-label only); ``saved`` says whether it was read from the folder's
    file (False: the defaults of a folder without one).
    """

    task: str
    labels: tuple[str, ...]
    temperature: float | None = None
    thresholds: tuple[float, ...] | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    text_normalization: int = NORMALIZATION_VERSION
    abstain_threshold: float | None = None
    in_scope_recall: float | None = None
    out_of_scope_label: str | None = None
    fitted_on: str | None = None
    saved: bool = False

    def decision_thresholds(self) -> np.ndarray | None:
        """Multi-label thresholds [C] as served (0.5 where none were saved); None for other tasks."""
        if self.task != "multi-label":
            return None
        if self.thresholds is None:
            return np.full(len(self.labels), 0.5)
        return np.array(self.thresholds, dtype=float)

    def to_json(self) -> str:
        thresholds = None if self.thresholds is None else dict(zip(self.labels, self.thresholds, strict=True))
        body = {
            "version": POSTPROCESS_VERSION,
            "task": self.task,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "thresholds": thresholds,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "text_normalization": self.text_normalization,
            "abstain_threshold": self.abstain_threshold,
            "in_scope_recall": self.in_scope_recall,
            "out_of_scope_label": self.out_of_scope_label,
            "fitted_on": self.fitted_on,
        }
        return json.dumps(body, indent=2) + "\n"


def _folder_defaults(model_dir: Path) -> Postprocessing:
    """Task, labels and target scaling of the folder (keepfit.json, else config.json), nothing fitted."""
    from keepfit.train.model import task_from_config

    meta = read_meta(model_dir)
    task, labels = meta.get("task"), meta.get("labels")
    if not task or (labels is None and task != "regression"):
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(str(model_dir))
        except (OSError, ValueError) as err:
            raise ModelError(f"Could not read the model config in {model_dir}: {err}") from None
        task = task or task_from_config(config)
        if labels is None:
            labels = [config.id2label[i] for i in range(config.num_labels)]
    return Postprocessing(
        task=task,
        labels=tuple(labels or ()),
        target_mean=float(meta.get("target_mean", 0.0)),
        target_std=float(meta.get("target_std", 1.0)),
    )


def _checked_temperature(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ModelError(
            f"{where}: temperature must be a positive finite number (logits are divided by it), got {value!r}. "
            "Pass a value such as the one evaluation fitted, or leave it out."
        )
    return float(value)


def _checked_thresholds(value: Any, post: Postprocessing, where: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if post.task != "multi-label":
        raise ModelError(
            f"{where}: thresholds apply to multi-label models only; this model's task is {post.task}. "
            "Leave thresholds out."
        )
    labels = list(post.labels)
    if isinstance(value, Mapping):
        missing = [x for x in labels if x not in value]
        extra = [x for x in value if x not in labels]
        if missing or extra:
            raise ModelError(
                f"{where}: thresholds must name exactly the model's labels {labels}; "
                f"missing {missing}, unknown {extra}. Give one threshold per label."
            )
        values = [value[x] for x in labels]
    else:
        values = list(np.ravel(np.asarray(value, dtype=object)))
        if len(values) != len(labels):
            raise ModelError(
                f"{where}: expected {len(labels)} thresholds (one per label, in the order {labels}), "
                f"got {len(values)}. Pass a {{label: threshold}} mapping or a list in label order."
            )
    bad = {
        x: v
        for x, v in zip(labels, values, strict=True)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < 1
    }
    if bad:
        raise ModelError(
            f"{where}: thresholds must be probabilities strictly between 0 and 1, got {bad}. "
            "A label is predicted when its probability is >= its threshold."
        )
    return tuple(float(v) for v in values)


def _checked_abstain_threshold(value: Any, post: Postprocessing, where: str) -> float | None:
    if value is None:
        return None
    if not is_single_label(post.task):
        raise ModelError(
            f"{where}: abstain_threshold applies to single-label models only; this model's task is {post.task}. "
            "Leave abstain_threshold out."
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ModelError(
            f"{where}: abstain_threshold must be a probability strictly between 0 and 1 (the model abstains "
            f"when its top probability is below it), got {value!r}. Refit it with fit_postprocessing, or "
            "leave it out to never abstain for low confidence."
        )
    return float(value)


def _checked_recall(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ModelError(
            f"{where}: in_scope_recall must be the share in (0, 1] of in-scope rows the abstain threshold was "
            f"chosen to answer, got {value!r}. Save it again, or leave it out."
        )
    return float(value)


def _checked_out_of_scope_label(value: Any, post: Postprocessing, where: str) -> str | None:
    if value is None:
        return None
    if not is_single_label(post.task) or value not in post.labels:
        raise ModelError(
            f"{where}: out_of_scope_label must be one of the labels of a single-label model "
            f"({post.task}, labels {list(post.labels)}), got {value!r}. Name the model's out-of-scope label, "
            "or leave it out."
        )
    return str(value)


def _checked_scale(mean: Any, std: Any, where: str) -> tuple[float, float]:
    if not (isinstance(mean, numbers.Real) and math.isfinite(mean)):
        raise ModelError(f"{where}: target_mean must be a finite number, got {mean!r}.")
    if not (isinstance(std, numbers.Real) and math.isfinite(std) and std > 0):
        raise ModelError(
            f"{where}: target_std must be a positive finite number (predictions are output * std + mean), got {std!r}."
        )
    return float(mean), float(std)


def load_postprocessing(model_dir: Path) -> Postprocessing:
    """The folder's :class:`Postprocessing`: its ``keepfit_postprocess.json``, else the defaults (logged).

    Raises ModelError when the file is unreadable, from a newer keepfit, or names other labels than the model.
    """
    model_dir = Path(model_dir)
    defaults = _folder_defaults(model_dir)
    path = model_dir / POSTPROCESS_FILE
    if not path.exists():
        note = log.warning if read_meta(model_dir) else log.info
        note(
            "%s has no %s (made before keepfit saved post-processing, or not by keepfit): serving raw "
            "probabilities%s without temperature scaling; keepfit.train.save_postprocessing adds one",
            model_dir,
            POSTPROCESS_FILE,
            ", 0.5 thresholds" if defaults.task == "multi-label" else "",
        )
        return defaults
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(
            f"Could not read {path}: {err}. Delete the file to serve without post-processing, or "
            "write it again with keepfit.train.save_postprocessing."
        ) from None
    version = raw.get("version") if isinstance(raw, dict) else None
    if not isinstance(version, int) or version > POSTPROCESS_VERSION:
        raise ModelError(
            f"{path} has format version {version!r}; this keepfit reads versions up to "
            f"{POSTPROCESS_VERSION}. Upgrade keepfit to serve this model."
        )
    where = str(path)
    if raw.get("task", defaults.task) != defaults.task or list(raw.get("labels", defaults.labels)) != list(
        defaults.labels
    ):
        raise ModelError(
            f"{where} is for task {raw.get('task')!r} with labels {raw.get('labels')}, but the model is "
            f"{defaults.task} with labels {list(defaults.labels)}. The file belongs to another model: "
            "delete it or save it again for this model."
        )
    mean, std = _checked_scale(
        raw.get("target_mean", defaults.target_mean), raw.get("target_std", defaults.target_std), where
    )
    post = replace(
        defaults,
        temperature=_checked_temperature(raw.get("temperature"), where),
        target_mean=mean,
        target_std=std,
        text_normalization=int(raw.get("text_normalization", NORMALIZATION_VERSION)),
        fitted_on=raw.get("fitted_on"),
        saved=True,
    )
    post = replace(
        post,
        thresholds=_checked_thresholds(raw.get("thresholds"), post, where),
        abstain_threshold=_checked_abstain_threshold(raw.get("abstain_threshold"), post, where),
        in_scope_recall=_checked_recall(raw.get("in_scope_recall"), where),
        out_of_scope_label=_checked_out_of_scope_label(raw.get("out_of_scope_label"), post, where),
    )
    if post.text_normalization != NORMALIZATION_VERSION:
        log.warning(
            "%s was trained on texts cleaned by text normalisation version %d; this keepfit cleans with "
            "version %d, so served texts may differ slightly from training texts",
            model_dir,
            post.text_normalization,
            NORMALIZATION_VERSION,
        )
    return post


def save_postprocessing(
    model_dir: Path,
    *,
    temperature: float | None = None,
    thresholds: Mapping[str, float] | Sequence[float] | np.ndarray | None = None,
    target_mean: float | None = None,
    target_std: float | None = None,
    abstain_threshold: float | None = None,
    in_scope_recall: float | None = None,
    out_of_scope_label: str | None = None,
    fitted_on: str | None = None,
) -> Path:
    """Write ``keepfit_postprocess.json`` into ``model_dir`` atomically; returns its path.

    Each argument left as None keeps the value already saved (or the default). ``temperature`` > 0 divides
    the logits; ``thresholds`` (multi-label) is ``{label: probability}`` or one value per label in label
    order; ``abstain_threshold`` (single-label, in (0, 1)): the model abstains below it; given without
    ``in_scope_recall`` it records no recall (a threshold set by hand, not chosen for one);
    ``out_of_scope_label``: one of the model's labels, whose prediction counts as abstaining.
    Raises ModelError for values the predictor could not use.
    """
    model_dir = Path(model_dir)
    current = load_postprocessing(model_dir) if (model_dir / POSTPROCESS_FILE).exists() else None
    post = current or _folder_defaults(model_dir)
    where = f"save_postprocessing({model_dir})"
    mean, std = _checked_scale(
        post.target_mean if target_mean is None else target_mean,
        post.target_std if target_std is None else target_std,
        where,
    )
    post = replace(
        post,
        temperature=post.temperature if temperature is None else _checked_temperature(temperature, where),
        thresholds=post.thresholds if thresholds is None else _checked_thresholds(thresholds, post, where),
        target_mean=mean,
        target_std=std,
        fitted_on=post.fitted_on if fitted_on is None else fitted_on,
        saved=True,
    )
    if abstain_threshold is not None:
        post = replace(
            post,
            abstain_threshold=_checked_abstain_threshold(abstain_threshold, post, where),
            in_scope_recall=_checked_recall(in_scope_recall, where),
        )
    elif in_scope_recall is not None:
        post = replace(post, in_scope_recall=_checked_recall(in_scope_recall, where))
    if out_of_scope_label is not None:
        post = replace(post, out_of_scope_label=_checked_out_of_scope_label(out_of_scope_label, post, where))
    return atomic_write_text(model_dir / POSTPROCESS_FILE, post.to_json())


def fit_postprocessing(
    task: str,
    labels: list[str],
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    in_scope_recall: float = 0.95,
    out_of_scope_label: str | None = None,
) -> Postprocessing:
    """Temperature (classification), thresholds (multi-label) and abstain threshold (single-label) fitted on
    validation ``logits``.

    ``logits`` [n, C] and ``targets`` (class ids [n], or 0/1 [n, C]) are the validation split's. The
    temperature minimises the validation NLL; multi-label thresholds maximise each label's F1 on the
    temperature-scaled probabilities (what is served). With no rows, nothing is fitted. A temperature at a
    bound of the search is not served: the validation NLL then keeps falling towards the bound (a split the
    model separates perfectly, or outputs without signal), so the split does not determine one.

    The abstain threshold (:func:`keepfit.evaluation.open_set.choose_abstain_threshold`) answers at least
    ``in_scope_recall`` of the in-scope validation rows by their top temperature-scaled probability; rows of
    ``out_of_scope_label`` (when it is one of ``labels``; it is then saved, and predicting it abstains) are
    left out of the choice. None for recall 1, without in-scope rows, and for regression and multi-label
    (a multi-label model answering "no label" already says "none of these"; regression has no confidence).
    """
    from keepfit.evaluation.calibration import TEMPERATURE_BOUNDS, fit_temperature
    from keepfit.evaluation.metrics import tune_thresholds
    from keepfit.evaluation.open_set import choose_abstain_threshold

    post = Postprocessing(
        task,
        tuple(labels),
        target_mean=target_mean,
        target_std=target_std,
        out_of_scope_label=_known_out_of_scope(task, labels, out_of_scope_label),
        saved=True,
    )
    n = len(logits)
    if task == "regression" or n == 0:
        return post
    z = logits.float()
    y = targets.cpu().numpy()
    squash = (lambda x: torch.softmax(x, dim=-1)) if is_single_label(task) else torch.sigmoid
    if task == "multi-label":
        y = y.astype(int)
    temperature: float | None = fit_temperature(task, y, squash(z).numpy())
    if any(abs(math.log(temperature / bound)) < 0.01 for bound in TEMPERATURE_BOUNDS):
        log.warning(
            "validation (%d rows) does not determine a temperature (the fit ran to %.3g, a bound of the "
            "search): serving unscaled probabilities",
            n,
            temperature,
        )
        temperature = None
    fitted_on = f"validation split ({n} rows)"
    served = squash(z / (temperature or 1.0)).numpy()
    if is_single_label(task):
        in_scope = y != labels.index(post.out_of_scope_label) if post.out_of_scope_label else np.ones(n, bool)
        threshold = choose_abstain_threshold(served[in_scope].max(axis=1), in_scope_recall)
        if threshold is not None:
            fitted_on += f"; abstain threshold on its {int(in_scope.sum())} in-scope rows"
        return replace(
            post,
            temperature=temperature,
            abstain_threshold=threshold,
            in_scope_recall=in_scope_recall,
            fitted_on=fitted_on,
        )
    thresholds = tune_thresholds(y, served)
    return replace(post, temperature=temperature, thresholds=tuple(float(t) for t in thresholds), fitted_on=fitted_on)


def _known_out_of_scope(task: str, labels: list[str], out_of_scope_label: str | None) -> str | None:
    """``out_of_scope_label`` when a single-label model has it among its labels; else None (logged)."""
    if out_of_scope_label is None or not is_single_label(task):
        return None
    if out_of_scope_label not in labels:
        log.warning(
            "data.out_of_scope_label %r is not one of the model's labels %s: predicting it cannot count as "
            "abstaining, and every validation row counts as in scope for the abstain threshold",
            out_of_scope_label,
            labels,
        )
        return None
    return out_of_scope_label
