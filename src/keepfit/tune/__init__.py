"""Hyper-parameter search on Optuna (extra ``tune``): the search space of ``tune.space`` as trial suggestions."""

from keepfit.tune.space import suggest, train_overrides

__all__ = ["suggest", "train_overrides"]
