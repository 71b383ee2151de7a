"""A trained text-generation model ready to answer: the folder loaded once, greedy answers in batches.

The folder is a plain transformers causal-LM folder (what :func:`keepfit.train.sft.export_sft` writes, or any
instruction-tuned model), so ``AutoModelForCausalLM.from_pretrained(folder).generate`` gives the same greedy
answers as :meth:`Generator.answer` at fp32 (a test pins that).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from keepfit.errors import DataError
from keepfit.train.causal import generate_answers, load_causal_model, load_causal_tokenizer, resolve_causal_model
from keepfit.train.inference import choose_precision
from keepfit.train.model import read_meta
from keepfit.train.predict import PredictReport

__all__ = ["Generator", "load_generator", "prompt_messages", "generate_file"]

log = logging.getLogger("keepfit.train")


class Generator:
    """``answer(prompts)``: greedy answers (and whether each ended with EOS) of the model in ``model_dir``."""

    def __init__(self, model_dir: Path, *, precision: str = "fp32", threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model_dir = Path(model_dir)
        source = resolve_causal_model(self.model_dir)
        self.meta = read_meta(source.path)
        self.tokenizer = load_causal_tokenizer(source)
        self.model = load_causal_model(source).eval()
        self.model.config.use_cache = True
        self.precision = choose_precision(precision)
        self.max_new_tokens = int(self.meta.get("max_new_tokens", 128))

    def answer(
        self, prompts: list[list[dict[str, str]]], *, max_new_tokens: int | None = None, batch_size: int = 16
    ) -> tuple[list[str], np.ndarray]:
        return generate_answers(
            self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens or self.max_new_tokens,
            batch_size=batch_size, precision=self.precision,
        )


def load_generator(model_dir: Path, *, precision: str = "fp32") -> Generator:
    return Generator(model_dir, precision=precision)


def prompt_messages(prompts: pd.Series) -> list[list[dict[str, str]]]:
    """The canonical prompt column (JSON) as chat messages."""
    return [json.loads(p) for p in prompts]


def _messages_for_row(row: pd.Series, prompt_column: str, messages_column: str, system: str | None) -> list[dict]:
    if messages_column in row and isinstance(row[messages_column], (list, str)) and row[messages_column] != "":
        value = row[messages_column]
        messages = json.loads(value) if isinstance(value, str) else list(value)
        if messages and messages[-1].get("role") == "assistant":
            messages = messages[:-1]  # a conversation with its answer: answer it again
        return messages
    out = [{"role": "system", "content": str(system)}] if system else []
    return out + [{"role": "user", "content": str(row[prompt_column])}]


def generate_file(
    model_dir: Path,
    in_path: Path,
    out_path: Path,
    *,
    prompt_column: str = "prompt",
    messages_column: str = "messages",
    system_column: str | None = "system",
    batch_size: int = 16,
    max_new_tokens: int | None = None,
) -> PredictReport:
    """Answer every row of a CSV/JSONL/Parquet file (a prompt column, or chat messages) into ``out_path`` with
    the columns ``output`` and ``ended`` (it stopped with EOS within the limit) added, written atomically."""
    from keepfit.train.predict import _read_table, write_table

    frame = _read_table(Path(in_path))
    if prompt_column not in frame and messages_column not in frame:
        raise DataError(
            f"{in_path} has neither a {prompt_column!r} column nor a {messages_column!r} column (it has "
            f"{list(frame.columns)}); name the prompt column with --text-column or data.prompt_column."
        )
    prompts = [
        _messages_for_row(row, prompt_column, messages_column,
                          row.get(system_column) if system_column and system_column in frame else None)
        for _, row in frame.iterrows()
    ]
    generator = load_generator(model_dir)
    start = time.perf_counter()
    texts, ended = generator.answer(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    seconds = time.perf_counter() - start
    out = frame.assign(**{"predicted_output" if "output" in frame else "output": texts,
                          "predicted_ended" if "ended" in frame else "ended": ended})
    write_table(out, Path(out_path))
    return PredictReport(Path(out_path), len(out), seconds, len(out) / max(seconds, 1e-9), "text-generation")
