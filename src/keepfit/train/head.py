"""Head-only training: the frozen encoder runs once over every text; epochs then train only the output layer.

The cached features are exactly the inputs of the model's output layer (captured with a forward hook), so the
head trained on them drops back into the full model unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import load_file, save
from torch import nn

from keepfit._io import atomic_write_bytes
from keepfit.train.inference import sorted_forward
from keepfit.train.model import head_linear

__all__ = ["HeadModel", "encode_features", "cached_features", "fit_probe"]


class HeadModel(nn.Module):
    """Dropout + a copy of the model's output layer, fed with cached features [B, hidden]."""

    def __init__(self, linear: nn.Linear, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.linear.load_state_dict(linear.state_dict())

    def forward(self, features: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.linear(self.dropout(features)))


def encode_features(
    model: nn.Module, ids: list[list[int]], pad_id: int, batch_size: int, precision: str
) -> torch.Tensor:
    """Inputs of the output layer for every row: float32 [n, hidden]."""
    layer = head_linear(model)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        captured.clear()
        model(**batch)
        return captured[-1].reshape(captured[-1].shape[0], -1)

    was_training = model.training
    model.eval()
    try:
        return sorted_forward(ids, pad_id, batch_size, forward, precision=precision)
    finally:
        hook.remove()
        model.train(was_training)


def _key(model_path: Path, ids: list[list[int]], precision: str) -> str:
    h = hashlib.sha256(f"{model_path}|{precision}".encode())
    for seq in ids:
        h.update(len(seq).to_bytes(4, "little"))
        h.update(b"".join(t.to_bytes(4, "little") for t in seq))
    return h.hexdigest()[:16]


def cached_features(
    cache_dir: Path,
    name: str,
    model: nn.Module,
    model_path: Path,
    ids: list[list[int]],
    pad_id: int,
    batch_size: int,
    precision: str,
) -> torch.Tensor:
    """Features of ``ids``: from ``cache_dir`` when made before from the same inputs, else made and saved."""
    path = Path(cache_dir) / f"features-{name}-{_key(model_path, ids, precision)}.safetensors"
    if path.exists():
        return load_file(str(path))["features"]
    features = encode_features(model, ids, pad_id, batch_size, precision)

    atomic_write_bytes(path, save({"features": features.contiguous()}))
    return features


def fit_probe(head: nn.Linear, features: torch.Tensor, target: torch.Tensor, tc, task: str) -> tuple[float, float]:
    """Fit ``head`` on frozen ``features`` (a linear probe: full-batch AdamW from zeros, ``tc.probe_steps`` steps,
    lr 1e-2) and write the weights into it; returns the final loss and the training accuracy (NaN unless
    single-label). Fine-tuning then starts from a head that already fits (LP-FT, Kumar et al. 2022)."""
    from keepfit.train.losses import task_loss
    from keepfit.types import is_single_label

    weight = torch.zeros_like(head.weight, dtype=torch.float32, requires_grad=True)
    bias = torch.zeros(head.out_features, dtype=torch.float32, device=features.device, requires_grad=True)
    optimizer = torch.optim.AdamW([weight, bias], lr=1e-2, weight_decay=tc.weight_decay)
    loss = torch.zeros(())
    for _ in range(tc.probe_steps):
        optimizer.zero_grad(set_to_none=True)
        loss = task_loss(features @ weight.T + bias, target, task, label_smoothing=tc.label_smoothing)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_(bias.to(head.bias.dtype))
        logits = features @ weight.T + bias
        fit = (logits.argmax(-1) == target).float().mean() if is_single_label(task) else float("nan")
    return float(loss.detach()), float(fit)
