"""Reading request bodies: every mistake becomes a :class:`BadRequest` with an HTTP status and a message that
says what was expected, what came, and what to do. Nothing here knows about the model or the web framework."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from keepfit.config import ServeConfig

__all__ = ["BadRequest", "PredictRequest", "parse_json", "parse_predict", "parse_infer", "parse_feedback"]


class BadRequest(Exception):
    """A request the server will not answer: ``status`` (4xx) and the message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PredictRequest:
    texts: list[str]
    top_k: int
    meta: list[dict[str, Any]]  # one per text
    request_id: str | None = None


def parse_json(body: bytes, limits: ServeConfig) -> Any:
    """The JSON value of ``body``; 413 above ``max_body_bytes``, 400 when it is not JSON."""
    if len(body) > limits.max_body_bytes:
        raise BadRequest(
            413, f"The request body is {len(body)} bytes; the limit is {limits.max_body_bytes} "
            "(serve.max_body_bytes). Send fewer or shorter texts per request."
        )
    if not body.strip():
        raise BadRequest(400, "The request body is empty; send a JSON object, e.g. {\"texts\": [\"...\"]}.")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(400, f"The request body is not valid JSON ({err}). Send a JSON object.") from None


def _texts(value: Any, where: str, limits: ServeConfig) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(422, f"{where} must be a JSON list of strings, got {type(value).__name__}.")
    if not value:
        raise BadRequest(422, f"{where} is an empty list; send at least one text.")
    if len(value) > limits.max_texts_per_request:
        raise BadRequest(
            413, f"{where} holds {len(value)} texts; the limit is {limits.max_texts_per_request} per request "
            "(serve.max_texts_per_request). Split it into several requests."
        )
    wrong = [i for i, t in enumerate(value) if not isinstance(t, str)]
    if wrong:
        i = wrong[0]
        raise BadRequest(
            422, f"{where}[{i}] is {type(value[i]).__name__} ({json.dumps(value[i])[:40]}); every text must be a "
            f"string ({len(wrong)} are not)."
        )
    long = [i for i, t in enumerate(value) if len(t) > limits.max_chars_per_text]
    if long:
        i = long[0]
        raise BadRequest(
            413, f"{where}[{i}] has {len(value[i])} characters; the limit is {limits.max_chars_per_text} "
            "(serve.max_chars_per_text). Shorten or split the text."
        )
    return value


def _top_k(value: Any, limits: ServeConfig) -> int:
    if value is None:
        return limits.top_k
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(422, f"top_k must be a positive integer, got {json.dumps(value)}.")
    return value


def _one_meta(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str | int | float | bool) for v in value.values())


def _meta(value: Any, n: int) -> list[dict[str, Any]]:
    """Request metadata, one object per text: one object for all texts, or a list with one per text."""
    if value is None:
        return [{} for _ in range(n)]
    if _one_meta(value):
        return [value] * n
    if isinstance(value, list) and all(_one_meta(v) for v in value):
        if len(value) != n:
            raise BadRequest(422, f"metadata is a list of {len(value)} objects for {n} texts; give one per text.")
        return value
    raise BadRequest(
        422, "metadata must be a JSON object of strings or numbers (e.g. {\"channel\": \"app\"}), or a list of "
        "them, one per text; it is logged with each text (monitoring slices, the columns of a feedback batch)."
    )


def parse_predict(payload: Any, limits: ServeConfig) -> PredictRequest:
    """``POST /predict``: ``{"texts": [...], "top_k": k, "metadata": {...} or [{...}, ...]}`` or a bare JSON list
    of texts."""
    if isinstance(payload, list):
        texts = _texts(payload, "the body", limits)
        return PredictRequest(texts, limits.top_k, _meta(None, len(texts)))
    if not isinstance(payload, dict):
        raise BadRequest(
            422, f"Expected a JSON object with \"texts\" (a list of strings), got {type(payload).__name__}."
        )
    unknown = sorted(set(payload) - {"texts", "top_k", "metadata"})
    if unknown:
        raise BadRequest(422, f"Unknown field(s) {unknown}; /predict takes texts, top_k and metadata.")
    if "texts" not in payload:
        raise BadRequest(422, "The body has no \"texts\"; send {\"texts\": [\"...\"]}.")
    texts = _texts(payload["texts"], "texts", limits)
    return PredictRequest(texts, _top_k(payload.get("top_k"), limits), _meta(payload.get("metadata"), len(texts)))


def parse_infer(payload: Any, limits: ServeConfig) -> PredictRequest:
    """Open Inference Protocol v2 ``POST /v2/models/{name}/infer``: one BYTES input of shape [n] (its name is
    free; ``text`` by convention), optional ``id`` and ``parameters`` (``top_k``, ``metadata``)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise BadRequest(
            422, "Expected an inference request {\"inputs\": [{\"name\": \"text\", \"shape\": [n], "
            "\"datatype\": \"BYTES\", \"data\": [...]}]}."
        )
    inputs = payload["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest(422, f"Expected exactly one input tensor (the texts), got {len(inputs)}.")
    tensor = inputs[0]
    if str(tensor.get("datatype", "")).upper() != "BYTES":
        raise BadRequest(422, f"The input's datatype must be BYTES (texts), got {tensor.get('datatype')!r}.")
    data = tensor.get("data")
    if isinstance(data, list) and data and all(isinstance(x, list) for x in data):
        data = [x for row in data for x in row]  # [[...]] row-major nesting is allowed by the protocol
    texts = _texts(data, "inputs[0].data", limits)
    shape = tensor.get("shape")
    if shape is not None:
        size = 1
        for dim in shape if isinstance(shape, list) else [None]:
            if not isinstance(dim, int) or dim < 0:
                raise BadRequest(422, f"inputs[0].shape must be a list of non-negative integers, got {shape!r}.")
            size *= dim
        if size != len(texts):
            raise BadRequest(422, f"inputs[0].shape {shape} holds {size} elements but data has {len(texts)}.")
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest(422, "parameters must be a JSON object.")
    request_id = payload.get("id")
    return PredictRequest(
        texts,
        _top_k(params.get("top_k"), limits),
        _meta(params.get("metadata"), len(texts)),
        None if request_id is None else str(request_id),
    )


def parse_feedback(payload: Any) -> list[tuple[str, str]]:
    """``POST /feedback``: ``{"request_id": id, "label": l}`` or a list of them (ids are the per-text ``id``
    of a prediction)."""
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise BadRequest(422, "The feedback list is empty; send {\"request_id\": ..., \"label\": ...}.")
    pairs = []
    for i, item in enumerate(items):
        where = "the body" if not isinstance(payload, list) else f"item {i}"
        if not isinstance(item, dict) or not isinstance(item.get("request_id"), str) or "label" not in item:
            raise BadRequest(
                422, f"{where}: expected {{\"request_id\": \"<id of a prediction>\", \"label\": \"<true label>\"}}."
            )
        if not isinstance(item["label"], str) or not item["label"].strip():
            raise BadRequest(422, f"{where}: label must be a non-empty string, got {json.dumps(item['label'])}.")
        pairs.append((item["request_id"], item["label"]))
    return pairs
