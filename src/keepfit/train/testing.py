"""Tiny models for tests: a 2-layer BERT from a config (no weights), a tokenizer trained on given texts, a tiny
causal LM, a tiny ResNet image backbone and generated images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from keepfit.config import KeepfitConfig
from keepfit.types import Snapshot, is_single_label

__all__ = ["make_tiny_model", "sentiment_frame", "all_texts", "snapshot_of", "config_for", "write_tiny_project",
           "make_tiny_causal_lm", "chat_frame", "chat_texts", "CHATML_TEMPLATE", "make_tiny_image_model", "image_frame"]

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
        if is_single_label(task):
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


CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
INTENT_WORDS = {"refund": ["refund", "money", "back"], "track": ["where", "track", "parcel"],
                "cancel": ["cancel", "stop", "undo"]}
SYSTEM_PROMPT = "Answer with the intent as JSON."


def chat_frame(n: int, seed: int, intents: tuple[str, ...] = ("refund", "track")) -> pd.DataFrame:
    """A tiny text-generation task in the canonical columns: a message of filler words and one intent word in,
    ``{"intent": "<intent>"}`` out (an easy task a tiny causal LM learns in a few epochs)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        intent = intents[i % len(intents)]
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 7)))) + [str(rng.choice(INTENT_WORDS[intent]))]
        rng.shuffle(words)
        text = " ".join(words)
        prompt = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]
        rows.append({"row": i + 2, "source": "chat.jsonl", "text": text, "prompt": json.dumps(prompt),
                     "completion": json.dumps({"intent": intent})})
    return pd.DataFrame(rows)


def chat_texts() -> list[str]:
    """Texts covering every word and character of :func:`chat_frame` (to train the tiny tokenizer on)."""
    words = FILLER + [w for ws in INTENT_WORDS.values() for w in ws]
    answers = [json.dumps({"intent": k}) for k in INTENT_WORDS]
    return [" ".join(words), SYSTEM_PROMPT, "system user assistant", *answers] * 5


def make_tiny_causal_lm(folder: Path, texts: list[str], *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Save a random tiny Llama and a byte-level BPE tokenizer with a ChatML chat template to ``folder`` (EOS is
    the end-of-turn token ``<|im_end|>`` and also the pad token, as in SmolLM2). Returns ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                   bos_token="<|im_start|>", unk_token="<|endoftext|>", model_max_length=256)
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(str(folder))
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=True,
        eos_token_id=tok.token_to_id("<|im_end|>"), pad_token_id=tok.token_to_id("<|im_end|>"),
        bos_token_id=tok.token_to_id("<|im_start|>"),
    )
    torch.manual_seed(seed)
    from keepfit.train.model import quiet_transformers

    with quiet_transformers():
        LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def make_tiny_image_model(folder: Path, *, seed: int = 0) -> Path:
    """Save a random tiny transformers ResNet (embedding 8, stages of 8 and 16 channels, one layer each: pooled
    features [n, 16]) to ``folder``; no download. Returns ``folder``."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    from keepfit.train.model import quiet_transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    torch.manual_seed(seed)
    with quiet_transformers():
        ResNetModel(config).save_pretrained(str(folder))
    return folder


IMAGE_COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
IMAGE_SHAPES = {"red": "square", "green": "disc", "blue": "bar"}


def image_frame(tmp: Path, n_per_class: int, classes: tuple[str, ...] = ("red", "green"), *, seed: int = 0,
                size: int = 40) -> pd.DataFrame:
    """Generated PNGs under ``tmp/images/<class>/`` (a coloured square, disc or bar on a noisy grey background,
    at a random place: a tiny model learns the colour) and their canonical rows: row, source, text, image,
    image_sha, image_phash, label."""
    import hashlib

    import imagehash
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(tmp) / "images"
    rows = []
    for k in range(n_per_class):
        for label in classes:
            noise = rng.integers(90, 160, size=(size, size, 3), dtype=np.uint8)
            img = Image.fromarray(noise, "RGB")
            draw = ImageDraw.Draw(img)
            side = int(rng.integers(size // 3, size // 2))
            x, y = (int(v) for v in rng.integers(0, size - side, size=2))
            box = (x, y, x + side, y + side)
            shape = IMAGE_SHAPES.get(label, "square")
            colour = IMAGE_COLOURS.get(label, tuple(int(v) for v in rng.integers(0, 256, 3)))
            if shape == "disc":
                draw.ellipse(box, fill=colour)
            elif shape == "bar":
                draw.rectangle((x, y, x + side, y + max(2, side // 3)), fill=colour)
            else:
                draw.rectangle(box, fill=colour)
            rel = f"{label}/img{k:04d}.png"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path)
            rows.append({"text": rel, "image": str(path.resolve()), "label": label,
                         "image_sha": hashlib.sha256(path.read_bytes()).hexdigest(),
                         "image_phash": str(imagehash.phash(img))})
    rows.sort(key=lambda r: r["text"])
    return pd.DataFrame([{"row": i + 1, "source": "images", **r} for i, r in enumerate(rows)])
