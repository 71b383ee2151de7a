"""Tiny models for tests: a 2-layer BERT from a config (no weights), a tokenizer trained on given texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from keepfit.config import KeepfitConfig
from keepfit.types import Snapshot

__all__ = ["make_tiny_model", "sentiment_frame", "all_texts", "snapshot_of", "config_for", "write_tiny_project"]

KEYWORDS = {
    "neg": ["bad", "awful", "hate", "sad", "poor"],
    "pos": ["great", "good", "love", "happy", "nice"],
    "neu": ["okay", "fine", "average", "plain", "so-so"],
}
FILLER = ["the", "movie", "was", "really", "quite", "a", "film", "story", "very", "this", "it", "plot"]


def sentiment_frame(n: int, seed: int, labels: tuple[str, ...] = ("neg", "pos")) -> pd.DataFrame:
    """Texts of 2-12 filler words plus one keyword that decides the label (an easy task)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        tokens = list(rng.choice(FILLER, size=int(rng.integers(2, 13)))) + [str(rng.choice(KEYWORDS[label]))]
        rng.shuffle(tokens)
        rows.append({"text": " ".join(tokens), "label": label})
    return pd.DataFrame(rows)


def all_texts() -> list[str]:
    """Texts covering every word of the synthetic tasks (to train the tiny tokenizer on)."""
    words = FILLER + [w for ws in KEYWORDS.values() for w in ws]
    return [" ".join(words)] * 3 + sentiment_frame(300, 99, ("neg", "pos", "neu"))["text"].tolist()


def snapshot_of(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    task: str = "single-label",
    labels: list[str] | None = None,
    snapshot_id: str = "snap0123456789",
) -> Snapshot:
    if labels is None:
        if task == "single-label":
            labels = sorted(set(train["label"]))
        elif task == "multi-label":
            labels = sorted({x for v in train["labels"] for x in v})
        else:
            labels = []
    return Snapshot(
        id=snapshot_id,
        path=Path("."),
        task=task,
        labels=labels,
        train=train,
        validation=validation,
        test=test,
        quarantine=pd.DataFrame(),
    )


def config_for(model: Path, task: str = "single-label", **train) -> KeepfitConfig:
    """A config for quick tests: fp32, one thread, few epochs, high learning rate."""
    defaults = {
        "epochs": 4,
        "lr": 1e-2,
        "head_lr": None,
        "batch_size": 16,
        "precision": "fp32",
        "threads": 1,
        "checkpoint_every_steps": 1000,
        "freeze_embeddings": False,  # a random tiny encoder's word embeddings carry nothing until they learn
    }
    defaults.update(train)
    raw = {"task": task, "model": {"name": str(model)}, "train": defaults}
    if task == "regression":
        raw["data"] = {"target_column": "target"}
    return KeepfitConfig.model_validate(raw)


def make_tiny_model(
    folder: Path,
    texts: list[str],
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    bert_normalizer: bool = True,
    mean_pooling: bool = False,
) -> Path:
    """Save a random tiny BERT (hidden ``hidden``, ``layers`` layers) and a WordPiece tokenizer to ``folder``.

    The folder loads like any Hugging Face model, so tests name it as users name a model. Without
    ``bert_normalizer`` the tokenizer only lowercases: accents, control characters and Unicode forms then
    reach the vocabulary as they are (as with many non-BERT tokenizers). ``mean_pooling`` adds the
    sentence-transformers pooling file declaring mean pooling (as all-MiniLM-L6-v2 has). Returns ``folder``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True) if bert_normalizer else normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(list(texts), trainers.WordPieceTrainer(vocab_size=500, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    torch.manual_seed(seed)
    from keepfit.train.model import quiet_transformers

    with quiet_transformers():
        BertModel(config).save_pretrained(str(folder))
    if mean_pooling:
        (folder / "1_Pooling").mkdir(exist_ok=True)
        pooling = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def write_tiny_project(folder: Path, model: Path, rows: int = 300, **settings) -> Path:
    """A project folder with ``rows.csv`` (the easy sentiment task) and a keepfit.yaml training ``model`` with
    the quick-test recipe of :func:`config_for`; ``settings`` are top-level sections merged over it (e.g.
    ``tune={...}``, ``train={...}``). Returns the keepfit.yaml path."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sentiment_frame(rows, 1).to_csv(folder / "rows.csv", index=False)
    train = config_for(model).train.model_dump(exclude_defaults=True)
    raw = {"model": {"name": str(model)}, "data": {"train": "rows.csv"}, "train": train,
           "registry": {"model_name": "tiny"}}
    for section, values in settings.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    path = folder / "keepfit.yaml"
    path.write_text("# a tiny test project\n" + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path
