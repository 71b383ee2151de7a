"""Batching, optimiser groups and schedules."""

from __future__ import annotations

import numpy as np
import torch

from keepfit.config import TrainConfig
from keepfit.train.batching import epoch_batches, padding_overhead, sample_indices, sequence_cap
from keepfit.train.optim import build_optimizer, build_scheduler, param_groups


def test_bucketed_batches_cover_every_row_once_and_pad_less():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=2000)
    rows = np.arange(2000)
    bucketed = epoch_batches(rows, lengths, 32, np.random.default_rng(1), bucketing=True)
    plain = epoch_batches(rows, lengths, 32, np.random.default_rng(1), bucketing=False)
    assert sorted(np.concatenate(bucketed).tolist()) == list(range(2000))
    assert padding_overhead(bucketed, lengths) < 1.1 < 1.5 < padding_overhead(plain, lengths)
    again = epoch_batches(rows, lengths, 32, np.random.default_rng(1), bucketing=True)
    assert all(np.array_equal(a, b) for a, b in zip(bucketed, again, strict=True))


def test_padding_overhead_by_hand():
    lengths = np.array([2, 4, 3, 3])
    assert padding_overhead([np.array([0, 1]), np.array([2, 3])], lengths) == (8 + 6) / 12


def test_sequence_cap_follows_the_99th_percentile_and_the_model_limit():
    lengths = np.array([10] * 99 + [500])
    assert sequence_cap(lengths, 512) == 16  # 99th pct ~ 14.9, rounded up to a multiple of 8
    assert sequence_cap(np.array([900] * 10), 512) == 512


def test_over_and_undersampling_balance_classes():
    labels = np.array([0] * 90 + [1] * 10)
    over = sample_indices(100, labels, "oversample", np.random.default_rng(0))
    under = sample_indices(100, labels, "undersample", np.random.default_rng(0))
    assert np.bincount(labels[over]).tolist() == [90, 90]
    assert np.bincount(labels[under]).tolist() == [10, 10]
    assert sample_indices(100, labels, "none", np.random.default_rng(0)).tolist() == list(range(100))


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    return BertForSequenceClassification(config)


def test_no_weight_decay_on_bias_and_layernorm_and_layerwise_decay():
    model = _bert()
    groups = param_groups(model, TrainConfig(lr=1e-3, head_lr=1e-2, weight_decay=0.1, layerwise_lr_decay=0.5))
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert (
        by_param[id(named["bert.encoder.layer.0.attention.output.LayerNorm.weight"])]["weight_decay"] == 0.0
    )
    assert by_param[id(named["bert.encoder.layer.0.attention.self.query.bias"])]["weight_decay"] == 0.0
    assert by_param[id(named["bert.encoder.layer.0.attention.self.query.weight"])]["weight_decay"] == 0.1
    assert by_param[id(named["classifier.weight"])]["lr"] == 1e-2
    assert by_param[id(named["bert.encoder.layer.1.output.dense.weight"])]["lr"] == 1e-3 * 0.5
    assert by_param[id(named["bert.encoder.layer.0.output.dense.weight"])]["lr"] == 1e-3 * 0.25
    assert by_param[id(named["bert.embeddings.word_embeddings.weight"])]["lr"] == 1e-3 * 0.125


def test_schedule_warms_up_then_decays_to_zero():
    model = _bert()
    config = TrainConfig(lr=1e-3, warmup_ratio=0.1, scheduler="linear")
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[10] == max(lrs) and lrs[-1] < 2e-5
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.8))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.8
