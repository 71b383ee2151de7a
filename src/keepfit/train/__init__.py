"""The train stage: fine-tune a pre-trained transformer on a snapshot, export a Hugging Face folder, predict.

Public surface: :func:`train_model` / :class:`TrainResult`, :func:`load_predictor` / :class:`Predictor` /
:class:`Predictions`, :func:`predict_file` / :class:`PredictReport`, :func:`resolve_model_path`, and the
post-processing saved with a model (:func:`save_postprocessing` / :func:`load_postprocessing` /
:class:`Postprocessing`: temperature, multi-label thresholds, regression target scaling).
"""

from __future__ import annotations

from keepfit.train.loop import TrainResult, train_model
from keepfit.train.model import resolve_model_path
from keepfit.train.postprocess import Postprocessing, load_postprocessing, save_postprocessing
from keepfit.train.predict import Predictions, Predictor, PredictReport, load_predictor, predict_file

__all__ = [
    "TrainResult",
    "train_model",
    "Predictor",
    "Predictions",
    "PredictReport",
    "load_predictor",
    "predict_file",
    "resolve_model_path",
    "Postprocessing",
    "load_postprocessing",
    "save_postprocessing",
]
