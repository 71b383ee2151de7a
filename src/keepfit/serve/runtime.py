"""The served model and its hot swap: one loaded version at a time, replaced whole when the alias moves.

A :class:`ServedModel` is a loaded, warmed-up registry version. The :class:`ModelSlot` holds the one that
answers; the micro-batcher reads it once per batch, so a batch is answered by exactly one version and every
answer names it. The :class:`Watcher` polls the registry (``serve.poll_seconds``): when ``serve.model_ref``
(``champion`` by default) names another version (an update promoted, or a rollback), it loads that version
beside the current one, answers a warm-up text with it, and only then swaps the reference. Requests in flight
finish on the version they started with; none is answered by a half-loaded model. A version that fails to
load is reported and the current one keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keepfit.config import KeepfitConfig
from keepfit.errors import ConfigError, KeepfitError, ModelError, RegistryError
from keepfit.store import Store
from keepfit.train.model import read_meta

__all__ = ["Answer", "ServedModel", "ModelSlot", "Watcher", "load_served_model"]

log = logging.getLogger("keepfit.serve")

# passes of fewer texts than this run in fp32 (see Predictor.fp32_below): bf16 autocast wins from about 8 texts
SMALL_PASS = 4


@dataclass(frozen=True)
class Answer:
    """The answer to one text. ``label`` is None when the model abstained (single-label) or for regression
    (then ``value`` holds the prediction); ``top_k`` is [(label, probability)], best first."""

    label: str | None
    score: float
    probabilities: list[float]
    top_k: list[tuple[str, float]]
    abstained: bool = False
    labels: list[str] | None = None
    value: float | None = None


@dataclass
class ServedModel:
    """One loaded version: ``predictor`` (torch or ONNX Runtime) and what the answers need to say."""

    version: str
    predictor: Any
    backend: str
    model_dir: Path
    abstain: bool = True
    loaded_at: float = field(default_factory=time.time)

    @property
    def task(self) -> str:
        return self.predictor.task

    @property
    def labels(self) -> list[str]:
        return list(self.predictor.labels)

    def answer(self, texts: list[str], *, top_k: int, batch_size: int) -> list[Answer]:
        """One :class:`Answer` per text, in order (one forward pass over all of them, length-sorted)."""
        preds = self.predictor.predict(texts, batch_size=batch_size, top_k=top_k)
        if preds.task == "regression":
            return [Answer(None, float(v), [], [], value=float(v)) for v in preds.outputs]
        outputs = np.asarray(preds.outputs, dtype=float)
        tops = [list(zip(ls, ps, strict=True)) for ls, ps in zip(preds.top_k_labels, preds.top_k_scores, strict=True)]
        if preds.task == "multi-label":
            chosen = preds.decisions()
            return [
                Answer(
                    "|".join(preds.labels[j] for j in np.flatnonzero(row)) or None,
                    float(out.max()),
                    out.tolist(),
                    top,
                    labels=[preds.labels[j] for j in np.flatnonzero(row)],
                )
                for row, out, top in zip(chosen, outputs, tops, strict=True)
            ]
        best = outputs.argmax(axis=1)
        abstained = preds.abstained() if self.abstain else np.zeros(len(texts), dtype=bool)
        return [
            Answer(
                None if out_ else preds.labels[j],
                float(row[j]),
                row.tolist(),
                top,
                abstained=bool(out_),
            )
            for j, row, top, out_ in zip(best, outputs, tops, abstained, strict=True)
        ]


def load_served_model(config: KeepfitConfig, version: str, model_dir: Path) -> ServedModel:
    """Load ``version`` from ``model_dir`` with the configured backend and answer one warm-up text with it.

    ONNX: the version's export under the store (made once, on first use; extra ``export``)."""
    serve = config.serve
    if read_meta(Path(model_dir)).get("task") == "text-generation":
        raise ConfigError(
            f"Version {version} is a text-generation model; keepfit serve answers classification and regression "
            "models only so far. Answer prompts in batches with `keepfit predict VERSION in.csv out.csv`, or serve "
            "the model folder (a plain transformers causal LM) with a generation server."
        )
    if read_meta(Path(model_dir)).get("task") == "image-classification":
        raise ConfigError(
            f"Version {version} is an image-classification model; keepfit serve answers text models only so far "
            "(its API takes texts). Predict images in batches with `keepfit predict VERSION FOLDER out.csv` (a "
            "folder of images or a table of image paths)."
        )
    if serve.backend == "onnx":
        from keepfit.train.onnx_export import OnnxPredictor, ensure_onnx

        # the folder `keepfit export VERSION --int8` writes too, so an export made beforehand is reused
        onnx_path = ensure_onnx(model_dir, Store.at(config.store).export(version) / "onnx", int8=serve.onnx_int8)
        predictor: Any = OnnxPredictor(model_dir, onnx_path, threads=serve.threads)
    else:
        from keepfit.train.predict import Predictor

        predictor = Predictor(model_dir, precision="auto", threads=serve.threads)
        predictor.fp32_below = SMALL_PASS
    model = ServedModel(str(version), predictor, serve.backend, Path(model_dir), abstain=serve.abstain)
    model.answer(["warm-up"], top_k=1, batch_size=1)  # first-call costs (allocations, kernels) happen here
    return model


class ModelSlot:
    """The version that answers now. ``current`` is swapped as one reference assignment (atomic in Python);
    ``on_swap`` callbacks run after each swap with (old version or None, new model)."""

    def __init__(self) -> None:
        self._current: ServedModel | None = None
        self.swaps = 0
        self.on_swap: list[Callable[[str | None, ServedModel], None]] = []

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def set(self, model: ServedModel) -> None:
        old = self._current
        self._current = model
        if old is not None:
            self.swaps += 1
        for callback in self.on_swap:
            callback(old.version if old else None, model)


class Watcher:
    """Follows ``serve.model_ref`` in the registry and swaps the slot when it names another version.

    ``check()`` does one round (also what /admin/reload calls); ``start()`` runs it every ``poll_seconds``
    in a daemon thread until ``stop()``. Loading happens in the calling thread, beside the serving model.
    """

    def __init__(
        self,
        config: KeepfitConfig,
        slot: ModelSlot,
        *,
        loader: Callable[[KeepfitConfig, str, Path], ServedModel] = load_served_model,
        on_error: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.config = config
        self.slot = slot
        self.ref = config.serve.model_ref
        self._loader = loader
        self._on_error = on_error
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry: Any = None
        self._failed: dict[str, float] = {}
        self.last_error: str | None = None

    def _open_registry(self) -> Any:
        if self._registry is None:
            from keepfit.registry import Registry

            self._registry = Registry.open(self.config)
        return self._registry

    def _target(self, ref: str) -> tuple[str, Path] | None:
        """The version ``ref`` names now and its folder; None when the alias names nothing yet (no
        champion). The folder is looked up only when the version is not the one serving."""
        registry = self._open_registry()
        if ref.lower() == "latest":
            version: str | None = registry.get("latest").version
        else:
            version = registry.alias_target(ref)
        if version is None:
            return None
        current = self.slot.current
        if current is not None and current.version == version:
            return version, current.model_dir
        return version, registry.model_path(version)

    def check(self, ref: str | None = None, *, force: bool = False) -> str | None:
        """Load and swap in the version ``ref`` names when it is not the one serving; returns the serving
        version afterwards. A version that failed to load is retried after 30 s, or at once with ``force``.
        Raises the loading error when ``ref`` or ``force`` was given (an admin asked for it)."""
        with self._lock:
            wanted = ref or self.ref
            version: str | None = None
            current = self.slot.current
            try:
                found = self._target(wanted)
                if found is None:
                    if ref is not None:
                        raise RegistryError(f"No version has the alias {ref!r} in the registry; name a version "
                                            "(3, v3), champion, challenger or latest.")
                    return current.version if current else None
                version, folder = found
                self.ref = wanted
                if current is not None and current.version == version:
                    return version
                failed_at = self._failed.get(version)
                if failed_at is not None and not force and time.time() - failed_at < 30:
                    return current.version if current else None
                self.slot.set(self._loader(self.config, version, folder))
                self._failed.pop(version, None)
                self.last_error = None
                return version
            except (KeepfitError, OSError, ValueError, RuntimeError) as err:
                self.last_error = f"{type(err).__name__}: {err}"
                if version is not None:
                    self._failed[version] = time.time()
                log.error("could not load %s from the registry: %s", wanted, err)
                if self._on_error is not None:
                    self._on_error("load", err)
                if ref is not None or force:
                    if isinstance(err, KeepfitError):
                        raise
                    raise ModelError(f"Could not load {wanted}: {err}") from err
                return current.version if current else None

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.config.serve.poll_seconds):
                self.check()

        self._thread = threading.Thread(target=loop, name="keepfit-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
