"""train_model's on_eval hook: what pruning, budgets and successive halving stand on.

"stop" ends the run at that evaluation and exports the best weights so far; "pause" checkpoints and exports
nothing, and resuming continues to the very weights an uninterrupted run ends with; an exception ends the run.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from keepfit.train import train_model
from keepfit.train.testing import config_for


def _weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


def test_stop_ends_the_run_at_that_evaluation_and_exports_the_best(tiny_model, easy_snapshot, tmp_path):
    seen = []

    def stop_at_second(row):
        seen.append(row["epoch"])
        return "stop" if len(seen) == 2 else None

    config = config_for(tiny_model, epochs=6, evals_per_epoch=2)
    result = train_model(easy_snapshot, config, tmp_path / "run", progress=False, on_eval=stop_at_second)
    assert len(seen) == 2 and seen[1] == 1.0  # two evaluations per epoch: the run ended after the first epoch
    assert [h["epoch"] for h in result.history] == seen
    assert result.stopped_by == "stop"
    assert (result.model_dir / "model.safetensors").exists()
    assert result.best_epoch in seen


@pytest.mark.parametrize("pause_after", [2, 3])  # at an epoch's end and in the middle of one
def test_pause_then_resume_ends_with_the_uninterrupted_weights(tiny_model, easy_snapshot, tmp_path, pause_after):
    config = config_for(tiny_model, epochs=3, evals_per_epoch=2, dropout=0.1)
    straight = train_model(easy_snapshot, config, tmp_path / "straight", progress=False)

    run, evals = tmp_path / "paused", []

    def pause(row):
        evals.append(row)
        return "pause" if len(evals) == pause_after else None

    paused = train_model(easy_snapshot, config, run, progress=False, on_eval=pause)
    assert paused.stopped_by == "pause"
    assert not (run / "model").exists()
    assert len(paused.history) == pause_after

    resumed = train_model(easy_snapshot, config, run, resume=True, progress=False)
    assert resumed.stopped_by is None
    assert [h["epoch"] for h in resumed.history] == [h["epoch"] for h in straight.history]
    a, b = _weights(straight.model_dir), _weights(resumed.model_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_exception_from_the_hook_ends_the_run_without_a_model(tiny_model, easy_snapshot, tmp_path):
    class Pruned(Exception):
        pass

    def prune(row):
        raise Pruned(row["epoch"])

    run = tmp_path / "run"
    with pytest.raises(Pruned):
        train_model(easy_snapshot, config_for(tiny_model, epochs=3), run, progress=False, on_eval=prune)
    assert not (run / "model").exists()


def test_an_unknown_word_from_the_hook_is_refused(tiny_model, easy_snapshot, tmp_path):
    with pytest.raises(ValueError, match="'halt'"):
        train_model(easy_snapshot, config_for(tiny_model, epochs=1), tmp_path / "run", progress=False,
                    on_eval=lambda row: "halt")
