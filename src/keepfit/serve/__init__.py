"""Serving: the prediction log, the micro-batching server with hot swap, feedback (extra ``serve``)."""

from keepfit.serve.log import Feedback, FeedbackResult, LoggedPrediction, PredictionLog, log_path_for, text_hash

__all__ = ["Feedback", "FeedbackResult", "LoggedPrediction", "PredictionLog", "log_path_for", "text_hash"]
