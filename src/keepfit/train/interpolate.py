"""Backward-compatible weight interpolation between the champion and a warm-started candidate (BCWI).

Schumann et al., EACL 2024: every tensor the two models share becomes ``a * champion + (1 - a) * candidate``;
rows of the head for labels the champion never knew come from the candidate alone. A little of the champion's
weights brings back much of its behaviour on what it got right (fewer negative flips) for little accuracy.
``a`` is chosen on validation rows: the lowest flip rate on rows the champion got right, among the values
whose accuracy stays within ``margin`` of the plain candidate's (``a = 0``); ties go to the smaller ``a``.

Single-label only: it is the task for which "the champion got this row right" is defined on validation here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Interpolation", "mix_state", "interpolate_candidate", "DEFAULT_GRID"]

log = logging.getLogger(__name__)

DEFAULT_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


@dataclass
class Interpolation:
    """The chosen ``alpha`` (weight of the champion) and the validation curve it was chosen on."""

    alpha: float
    curve: list[dict[str, float]]  # per alpha: accuracy, negative_flip_rate (of champion-right rows), positive
    margin: float
    n_validation: int
    model_dir: Path | None = None
    note: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model_dir"] = str(self.model_dir) if self.model_dir else None
        return out


def mix_state(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``alpha * old + (1 - alpha) * new`` for every shared tensor; a tensor whose first dimension grew (the
    head, for new labels) mixes its first rows only; anything else (and integer buffers) is taken from ``new``."""
    out = {}
    for name, value in new.items():
        before = old.get(name)
        if before is None or not torch.is_floating_point(value):
            out[name] = value
        elif before.shape == value.shape:
            out[name] = alpha * before.to(value.dtype) + (1 - alpha) * value
        elif before.dim() == value.dim() and before.shape[1:] == value.shape[1:] and before.shape[0] < value.shape[0]:
            mixed = value.clone()
            k = before.shape[0]
            mixed[:k] = alpha * before.to(value.dtype) + (1 - alpha) * value[:k]
            out[name] = mixed
        else:
            out[name] = value
    return out


def _curve_point(alpha: float, pred: np.ndarray, y: np.ndarray, old_right: np.ndarray) -> dict[str, float]:
    right = pred == y
    n_old_right = max(int(old_right.sum()), 1)
    return {
        "alpha": float(alpha),
        "accuracy": float(right.mean()) if len(y) else float("nan"),
        "negative_flip_rate": float((old_right & ~right).sum() / n_old_right),
        "positive_flip_rate": float((~old_right & right).sum() / max(int((~old_right).sum()), 1)),
    }


def choose_alpha(curve: list[dict[str, float]], margin: float) -> float:
    """The lowest validation flip rate among values within ``margin`` of the plain candidate's accuracy."""
    base = next(p for p in curve if p["alpha"] == 0.0)["accuracy"]
    eligible = [p for p in curve if p["accuracy"] >= base - margin - 1e-12]
    best = min(eligible, key=lambda p: (round(p["negative_flip_rate"], 12), -p["accuracy"], p["alpha"]))
    return float(best["alpha"])


def interpolate_candidate(
    champion_dir: Path,
    candidate_dir: Path,
    texts: list[str],
    labels: list[str],
    out_dir: Path,
    *,
    setting: str | float = "auto",
    margin: float = 0.005,
    grid: tuple[float, ...] = DEFAULT_GRID,
    batch_size: int = 64,
) -> Interpolation:
    """Interpolate the candidate towards the champion and write the result as a model folder in ``out_dir``.

    ``texts``/``labels`` are the validation rows (labels as names). ``setting``: ``"auto"`` chooses ``a`` on
    them, a number uses that ``a``. The written folder carries post-processing refitted on the final weights.
    Returns the chosen value and the curve; ``model_dir`` is None when ``a = 0`` (the candidate is kept as is).
    """
    import time

    from keepfit.train.predict import load_predictor

    started = time.perf_counter()
    champion = load_predictor(champion_dir)
    candidate = load_predictor(candidate_dir)
    if candidate.task != "single-label":
        return Interpolation(0.0, [], margin, len(texts), note=f"not done for {candidate.task} tasks")
    index = {name: i for i, name in enumerate(candidate.labels)}
    y = np.array([index.get(v, -1) for v in labels])
    champion_pred = np.array([index[champion.labels[j]] for j in champion.logits(texts, batch_size).argmax(-1)])
    old_right = champion_pred == y
    old_state = {k: v.detach().clone() for k, v in champion.model.state_dict().items()}
    new_state = {k: v.detach().clone() for k, v in candidate.model.state_dict().items()}
    values = sorted({0.0, *grid}) if setting == "auto" else sorted({0.0, float(setting)})
    curve, logits_at = [], {}
    for alpha in values:
        candidate.model.load_state_dict(mix_state(old_state, new_state, alpha))
        logits_at[alpha] = candidate.logits(texts, batch_size)
        curve.append(_curve_point(alpha, logits_at[alpha].argmax(-1).numpy(), y, old_right))
    alpha = choose_alpha(curve, margin) if setting == "auto" else float(setting)
    result = Interpolation(alpha, curve, margin, len(texts))
    if alpha > 0:
        candidate.model.load_state_dict(mix_state(old_state, new_state, alpha))
        result.model_dir = _write(candidate, candidate_dir, out_dir, logits_at[alpha], y, alpha)
    result.seconds = time.perf_counter() - started
    log.info("interpolation: alpha %.2f chosen on %d validation rows (%s)", alpha, len(texts), _summary(curve))
    return result


def _summary(curve: list[dict[str, float]]) -> str:
    return ", ".join(f"a={p['alpha']:.1f}: acc {p['accuracy']:.3f} nfr {p['negative_flip_rate']:.3f}" for p in curve)


def _write(candidate, candidate_dir: Path, out_dir: Path, val_logits: torch.Tensor, y: np.ndarray, alpha: float):
    from keepfit.train.export import export_model
    from keepfit.train.postprocess import fit_postprocessing

    meta = json.loads((Path(candidate_dir) / "keepfit.json").read_text(encoding="utf-8"))
    meta["interpolation"] = {"alpha": alpha, "champion_weight": alpha}
    card_path = Path(candidate_dir) / "README.md"
    card = card_path.read_text(encoding="utf-8") if card_path.exists() else ""
    card += (f"\n\nWeights interpolated with the champion (BCWI): {alpha:.2f} x champion + "
             f"{1 - alpha:.2f} x candidate.\n")
    known = y >= 0
    post = fit_postprocessing(candidate.task, candidate.labels, val_logits[known], torch.as_tensor(y[known]))
    return export_model(candidate.model, candidate.tokenizer, Path(out_dir), meta, card, postprocessing=post)


def write_curve(result: Interpolation, folder: Path) -> Path:
    """``interpolation.json`` and ``interpolation.png`` (flips and accuracy against alpha) in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keepfit._io import atomic_write_bytes, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "interpolation.json", json.dumps(result.to_dict(), indent=2))
    if not result.curve:
        return folder / "interpolation.json"
    a = [p["alpha"] for p in result.curve]
    fig, left = plt.subplots(figsize=(5.5, 3.4))
    left.plot(a, [100 * p["negative_flip_rate"] for p in result.curve], "o-", color="tab:red")
    left.set_xlabel("alpha (weight of the champion)")
    left.set_ylabel("negative flips, % of champion-right rows", color="tab:red")
    right = left.twinx()
    right.plot(a, [100 * p["accuracy"] for p in result.curve], "s--", color="tab:blue")
    right.set_ylabel("validation accuracy, %", color="tab:blue")
    left.axvline(result.alpha, color="grey", linestyle=":")
    left.set_title(f"BCWI on {result.n_validation} validation rows: alpha {result.alpha:.1f} chosen")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(folder / "interpolation.png", buf.getvalue())
