"""Backward-compatible weight interpolation between the champion and a warm-started candidate (BCWI).

Schumann et al., EACL 2024: every tensor the two models share becomes ``a * champion + (1 - a) * candidate``;
rows of the head for labels the champion never knew come from the candidate alone. A little of the champion's
weights brings back much of its behaviour on what it got right (fewer negative flips) for little accuracy.
``a`` is chosen on validation rows: the lowest flip rate on rows the champion got right, among the values
whose accuracy stays within ``margin`` of the plain candidate's (``a = 0``); ties go to the smaller ``a``.

The paper's two refinements are here too:

- ``method="fisher"``: each element is weighted by how much each model's likelihood depends on it, a diagonal
  Fisher estimate per model (Matena & Raffel 2022, "Merging Models with Fisher-Weighted Averaging"):
  ``(a F_c theta_c + (1 - a) F_n theta_n) / (a F_c + (1 - a) F_n)``. Elements neither model's predictions
  depend on (both Fishers below a floor: e.g. embeddings of tokens the rows never use) get the uniform mix.
- a soup: several candidates (different seeds) averaged uniformly first, then interpolated with the champion.

Single-label only: it is the task for which "the champion got this row right" is defined on validation here.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from keepfit.errors import ModelError
from keepfit.types import is_single_label

__all__ = [
    "Interpolation",
    "mix_state",
    "soup_states",
    "diagonal_fisher",
    "interpolate_candidate",
    "write_curve",
    "DEFAULT_GRID",
    "METHODS",
]

log = logging.getLogger(__name__)

DEFAULT_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
METHODS = ("uniform", "fisher")
Method = Literal["uniform", "fisher"]
# Fishers are scaled to mean 1 over all of a model's elements; below this an element counts as "no information"
FISHER_FLOOR = 1e-8

Fisher = dict[str, torch.Tensor]


@dataclass
class Interpolation:
    """The chosen ``alpha`` (weight of the champion) and the validation curve it was chosen on."""

    alpha: float
    # per alpha: accuracy, negative_flip_rate and negative_flips (of champion-right rows), positive_flip_rate and
    # positive_flips (of champion-wrong rows)
    curve: list[dict[str, float]]
    margin: float
    n_validation: int
    model_dir: Path | None = None
    note: str = ""
    seconds: float = 0.0
    method: str = "uniform"
    candidates: int = 1  # candidates averaged (a soup) before the interpolation
    plot: Path | None = None  # interpolation.png, once write_curve has drawn it
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model_dir"] = str(self.model_dir) if self.model_dir else None
        out["plot"] = str(self.plot) if self.plot else None
        return out


def mix_state(
    old: dict[str, torch.Tensor],
    new: dict[str, torch.Tensor],
    alpha: float,
    fishers: tuple[Fisher, Fisher] | None = None,
) -> dict[str, torch.Tensor]:
    """``alpha * old + (1 - alpha) * new`` for every shared tensor; a tensor whose first dimension grew (the
    head, for new labels) mixes its first rows only; anything else (and integer buffers) is taken from ``new``.

    ``fishers`` (old's, new's; keyed like the states, shaped like each tensor) weight each element by its
    Fisher information (see the module doc); a tensor missing from either is mixed uniformly.
    """
    fisher_old, fisher_new = fishers or ({}, {})
    out = {}
    for name, value in new.items():
        before = old.get(name)
        f_old, f_new = fisher_old.get(name), fisher_new.get(name)
        if before is None or not torch.is_floating_point(value):
            out[name] = value
        elif before.shape == value.shape:
            out[name] = _mix(before.to(value.dtype), value, alpha, f_old, f_new)
        elif before.dim() == value.dim() and before.shape[1:] == value.shape[1:] and before.shape[0] < value.shape[0]:
            mixed = value.clone()
            k = before.shape[0]
            mixed[:k] = _mix(before.to(value.dtype), value[:k], alpha, f_old, None if f_new is None else f_new[:k])
            out[name] = mixed
        else:
            out[name] = value
    return out


def _mix(old: torch.Tensor, new: torch.Tensor, alpha: float, f_old, f_new) -> torch.Tensor:
    # the ends exactly: a = 0 is the candidate, a = 1 the champion, whatever the Fishers
    if alpha == 0:
        return new
    if alpha == 1:
        return old
    if f_old is None or f_new is None:
        return alpha * old + (1 - alpha) * new
    w_old = alpha * f_old.to(new.dtype).clamp_min(FISHER_FLOOR)
    w_new = (1 - alpha) * f_new.to(new.dtype).clamp_min(FISHER_FLOOR)
    return (w_old * old + w_new * new) / (w_old + w_new)


def soup_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of ``states`` (candidates trained from the same start with different seeds).

    Every state must have the same tensor names and shapes (the same architecture and labels); floating
    tensors are averaged (in float64, so a soup of identical states is exactly that state), integer buffers
    come from the first. Raises ModelError otherwise.
    """
    if not states:
        raise ModelError("A soup needs at least one candidate's weights; got none.")
    first = states[0]
    for i, state in enumerate(states[1:], start=2):
        if state.keys() != first.keys():
            odd = sorted(set(state) ^ set(first))[:3]
            raise ModelError(
                f"Cannot average candidates 1 and {i}: their weights differ in names ({', '.join(odd)}). "
                "A soup needs candidates of the same architecture, trained from the same model."
            )
        for name, value in state.items():
            if value.shape != first[name].shape:
                raise ModelError(
                    f"Cannot average candidates 1 and {i}: {name} is {tuple(first[name].shape)} in one and "
                    f"{tuple(value.shape)} in the other. A soup needs candidates with the same labels."
                )
    if len(states) == 1:
        return dict(first)
    out = {}
    for name, value in first.items():
        if torch.is_floating_point(value):
            total = sum(s[name].to(torch.float64) for s in states)
            out[name] = (total / len(states)).to(value.dtype)
        else:
            out[name] = value
    return out


def diagonal_fisher(predictor, texts: list[str]) -> Fisher:
    """Diagonal Fisher of ``predictor``'s model on ``texts``: per parameter (float32, its shape), the mean over
    the texts of the squared gradient of ``log p(y_hat | x)`` at the model's own prediction ``y_hat``.

    Scaled to mean 1 over all elements, so that only where a model's predictions depend on its weights
    matters, not how confident it is overall (a confident model has small gradients everywhere), and ``a``
    keeps its meaning as the champion's overall share. One text at a time: the squares need per-example
    gradients, and a batch of one has no padding. Dropout is off (eval mode).
    """
    from keepfit.train.batching import collate, tokenize
    from keepfit.train.predict import clean_texts

    model = predictor.model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    total = {name: torch.zeros(p.shape, dtype=torch.float32) for name, p in params.items()}
    ids = tokenize(predictor.tokenizer, clean_texts([str(t) for t in texts]), predictor.max_length)
    pad = predictor.tokenizer.pad_token_id or 0
    with _token_embedding_gradients(model, params) as (embedding_name, looked_up):
        with torch.enable_grad():
            for row in range(len(ids)):
                batch = collate(ids, np.array([row]), pad)
                logp = torch.log_softmax(model(**batch).logits[0].float(), dim=-1)
                model.zero_grad(set_to_none=True)
                logp[int(logp.argmax())].backward()
                for name, p in params.items():
                    if p.grad is not None and name != embedding_name:
                        total[name].addcmul_(p.grad.float(), p.grad.float())
                if embedding_name is not None:
                    _add_rows_squared(total[embedding_name], batch["input_ids"][0], looked_up[0].grad[0])
    model.zero_grad(set_to_none=True)
    mean = sum(float(t.sum()) for t in total.values()) / max(sum(t.numel() for t in total.values()), 1)
    scale = 1.0 / mean if mean > 0 else 1.0
    return {name: t.mul_(scale) for name, t in total.items()}


@contextlib.contextmanager
def _token_embedding_gradients(model: torch.nn.Module, params: dict[str, torch.nn.Parameter]):
    """While open, the token-embedding matrix gets no dense gradient (a vocabulary-sized tensor per example
    is most of the cost on a small encoder); instead the gradient of its looked-up rows is kept, from which
    the matrix's gradient is exactly those rows summed per token. Yields (the matrix's name or None, a list
    holding the looked-up rows of the last forward)."""
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if callable(getter) else None
    name = next((n for n, p in params.items() if embedding is not None and p is embedding.weight), None)
    if name is None:
        yield None, []
        return
    looked_up: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        rows = output.detach().requires_grad_(True)
        looked_up[:] = [rows]
        return rows

    handle = embedding.register_forward_hook(keep)
    embedding.weight.requires_grad_(False)
    try:
        yield name, looked_up
    finally:
        embedding.weight.requires_grad_(True)
        handle.remove()


def _add_rows_squared(total: torch.Tensor, token_ids: torch.Tensor, row_grads: torch.Tensor) -> None:
    """Add to ``total`` the squared gradient of an embedding matrix, from the gradients of its looked-up rows
    ``row_grads`` [tokens, dim]: a token used twice has the sum of its two rows' gradients."""
    used, where = torch.unique(token_ids, return_inverse=True)
    per_token = torch.zeros((len(used), row_grads.shape[-1]), dtype=torch.float32)
    per_token.index_add_(0, where, row_grads.float())
    total.index_add_(0, used, per_token.square())


def _curve_point(alpha: float, pred: np.ndarray, y: np.ndarray, old_right: np.ndarray) -> dict[str, float]:
    right = pred == y
    negative, positive = int((old_right & ~right).sum()), int((~old_right & right).sum())
    return {
        "alpha": float(alpha),
        "accuracy": float(right.mean()) if len(y) else float("nan"),
        "negative_flip_rate": negative / max(int(old_right.sum()), 1),
        "positive_flip_rate": positive / max(int((~old_right).sum()), 1),
        "negative_flips": negative,
        "positive_flips": positive,
    }


def choose_alpha(curve: list[dict[str, float]], margin: float) -> float:
    """The lowest validation flip rate among values within ``margin`` of the plain candidate's accuracy."""
    base = next(p for p in curve if p["alpha"] == 0.0)["accuracy"]
    eligible = [p for p in curve if p["accuracy"] >= base - margin - 1e-12]
    best = min(eligible, key=lambda p: (round(p["negative_flip_rate"], 12), -p["accuracy"], p["alpha"]))
    return float(best["alpha"])


def interpolate_candidate(
    champion_dir: Path,
    candidate_dirs: Path | Sequence[Path],
    texts: list[str],
    labels: list[str],
    out_dir: Path,
    *,
    setting: str | float = "auto",
    margin: float = 0.005,
    grid: tuple[float, ...] = DEFAULT_GRID,
    batch_size: int = 64,
    method: Method = "uniform",
    fisher_rows: int = 256,
    seed: int = 0,
) -> Interpolation:
    """Interpolate the candidate towards the champion and write the result as a model folder in ``out_dir``.

    ``candidate_dirs``: one candidate folder, or several (a soup: averaged uniformly first; the first gives
    the tokenizer, metadata and card). ``texts``/``labels`` are the validation rows (labels as names).
    ``setting``: ``"auto"`` chooses ``a`` on them, a number uses that ``a``. ``method``: ``"uniform"`` or
    ``"fisher"`` (Fishers on at most ``fisher_rows`` of the rows, drawn with ``seed``). The written folder
    carries post-processing refitted on the final weights. Returns the chosen value and the curve;
    ``model_dir`` is None when the result is one candidate as it is (``a = 0``, no soup).
    """
    from keepfit.train.predict import load_predictor

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    dirs = [Path(candidate_dirs)] if isinstance(candidate_dirs, (str, Path)) else [Path(d) for d in candidate_dirs]
    started = time.perf_counter()
    champion = load_predictor(champion_dir)
    candidate = load_predictor(dirs[0])
    if not is_single_label(candidate.task):
        return Interpolation(0.0, [], margin, len(texts), note=f"not done for {candidate.task} tasks",
                             method=method, candidates=len(dirs))
    index = {name: i for i, name in enumerate(candidate.labels)}
    y = np.array([index.get(v, -1) for v in labels])
    # a champion label the candidate lacks is never right (-2 matches no row, not even an unknown one's -1)
    champion_pred = np.array(
        [index.get(champion.labels[j], -2) for j in champion.logits(texts, batch_size).argmax(-1)]
    )
    old_right = champion_pred == y
    old_state = {k: v.detach().clone() for k, v in champion.model.state_dict().items()}
    new_state = _candidate_state(candidate, dirs[1:])
    values = sorted({0.0, *grid}) if setting == "auto" else sorted({0.0, float(setting)})
    extra: dict[str, Any] = {}
    fishers = None
    if method == "fisher" and candidate.tokenizer is None:
        log.info("interpolation: Fisher weighting is done for text models only; the image model is mixed uniformly")
        method = "uniform"
    if method == "fisher" and any(0 < a < 1 for a in values):  # the ends do not depend on the Fishers
        candidate.model.load_state_dict(new_state)
        fishers, extra = _fishers(champion, candidate, texts, fisher_rows, seed)
    curve, logits_at = [], {}
    for alpha in values:
        candidate.model.load_state_dict(mix_state(old_state, new_state, alpha, fishers))
        logits_at[alpha] = candidate.logits(texts, batch_size)
        curve.append(_curve_point(alpha, logits_at[alpha].argmax(-1).numpy(), y, old_right))
        if setting == "auto" and curve[-1]["accuracy"] < curve[0]["accuracy"] - margin - 1e-12:
            # walking from the candidate towards the champion, accuracy only falls further: stop at the first
            # weight outside the margin (it is on the curve, so the report shows why the walk stopped)
            extra["stopped_at"] = alpha
            break
    alpha = choose_alpha(curve, margin) if setting == "auto" else float(setting)
    result = Interpolation(alpha, curve, margin, len(texts), method=method, candidates=len(dirs), extra=extra)
    if alpha > 0 or len(dirs) > 1:
        candidate.model.load_state_dict(mix_state(old_state, new_state, alpha, fishers))
        result.model_dir = _write(candidate, dirs, out_dir, logits_at[alpha], y, alpha, method)
    result.seconds = time.perf_counter() - started
    log.info("interpolation (%s, %d candidate(s)): alpha %.2f chosen on %d validation rows (%s)",
             method, len(dirs), alpha, len(texts), _summary(curve))
    return result


def _candidate_state(candidate, others: list[Path]) -> dict[str, torch.Tensor]:
    """The candidate's weights, or the soup of it and ``others``."""
    from keepfit.train.predict import load_predictor

    states = [{k: v.detach().clone() for k, v in candidate.model.state_dict().items()}]
    for folder in others:
        other = load_predictor(folder)
        if other.labels != candidate.labels:
            raise ModelError(
                f"Cannot average the candidates: {folder} has labels {other.labels}, the first has "
                f"{candidate.labels}. A soup needs candidates trained on the same labels."
            )
        states.append({k: v.detach().clone() for k, v in other.model.state_dict().items()})
    return soup_states(states)


def _fishers(champion, candidate, texts: list[str], cap: int, seed: int) -> tuple[tuple[Fisher, Fisher], dict]:
    started = time.perf_counter()
    rows = np.arange(len(texts))
    if len(rows) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(len(texts), size=cap, replace=False))
    sample = [texts[i] for i in rows]
    fishers = (diagonal_fisher(champion, sample), diagonal_fisher(candidate, sample))
    seconds = time.perf_counter() - started
    log.info("interpolation: Fishers of both models on %d validation rows in %.1f s", len(sample), seconds)
    return fishers, {"fisher_rows": len(sample), "fisher_seconds": seconds}


def _summary(curve: list[dict[str, float]]) -> str:
    return ", ".join(f"a={p['alpha']:.1f}: acc {p['accuracy']:.3f} nfr {p['negative_flip_rate']:.3f}" for p in curve)


def _write(candidate, dirs: list[Path], out_dir: Path, val_logits: torch.Tensor, y: np.ndarray, alpha: float,
           method: str):
    from keepfit.config import EvaluateConfig
    from keepfit.train.export import export_model
    from keepfit.train.postprocess import fit_postprocessing

    meta = json.loads((dirs[0] / "keepfit.json").read_text(encoding="utf-8"))
    meta["interpolation"] = {"alpha": alpha, "champion_weight": alpha, "method": method,
                             "candidates": [str(d) for d in dirs]}
    card_path = dirs[0] / "README.md"
    card = card_path.read_text(encoding="utf-8") if card_path.exists() else ""
    candidate_words = f"the average of {len(dirs)} candidates (a soup)" if len(dirs) > 1 else "candidate"
    weighting = ", each weight weighted by the two models' Fisher information" if method == "fisher" else ""
    card += (f"\n\nWeights interpolated with the champion (BCWI): {alpha:.2f} x champion + "
             f"{1 - alpha:.2f} x {candidate_words}{weighting}.\n")
    known = y >= 0
    # the candidate's own fit used the project's evaluate.in_scope_recall and data.out_of_scope_label
    fitted = candidate.postprocessing
    recall = fitted.in_scope_recall if fitted.in_scope_recall is not None else EvaluateConfig().in_scope_recall
    post = fit_postprocessing(
        candidate.task,
        candidate.labels,
        val_logits[known],
        torch.as_tensor(y[known]),
        in_scope_recall=recall,
        out_of_scope_label=fitted.out_of_scope_label,
    )
    if candidate.tokenizer is None:  # an image model (keepfit.train.vision.ImagePredictor)
        from keepfit.train.vision import write_image_folder

        candidate.model.to(memory_format=torch.contiguous_format)
        return write_image_folder(candidate.model, candidate.labels, Path(out_dir), meta, card, post)
    return export_model(candidate.model, candidate.tokenizer, Path(out_dir), meta, card, postprocessing=post)


def write_curve(result: Interpolation, folder: Path) -> Path:
    """``interpolation.json`` and ``interpolation.png`` (flips and accuracy against alpha) in ``folder``;
    sets ``result.plot`` to the PNG. Returns the PNG, or the JSON when there is no curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keepfit._io import atomic_write_bytes, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not result.curve:
        return atomic_write_text(folder / "interpolation.json", json.dumps(result.to_dict(), indent=2))
    a = [p["alpha"] for p in result.curve]
    fig, left = plt.subplots(figsize=(5.5, 3.4))
    left.plot(a, [100 * p["negative_flip_rate"] for p in result.curve], "o-", color="tab:red")
    left.set_xlabel("alpha (weight of the champion)")
    left.set_ylabel("negative flips, % of champion-right rows", color="tab:red")
    right = left.twinx()
    right.plot(a, [100 * p["accuracy"] for p in result.curve], "s--", color="tab:blue")
    right.set_ylabel("validation accuracy, %", color="tab:blue")
    left.axvline(result.alpha, color="grey", linestyle=":")
    soup = f", soup of {result.candidates}" if result.candidates > 1 else ""
    left.set_title(f"BCWI ({result.method}{soup}) on {result.n_validation} validation rows: "
                   f"alpha {result.alpha:.1f} chosen", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    result.plot = atomic_write_bytes(folder / "interpolation.png", buf.getvalue())
    atomic_write_text(folder / "interpolation.json", json.dumps(result.to_dict(), indent=2))
    return result.plot
